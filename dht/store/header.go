package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/scatterfs/scatter/chunker"
)

// On-disk layout of one fragment file (docs/format.md, "Donor store"), version 2:
//
//	off  size  field
//	0    4     magic "SCFR"
//	4    1     version (2; 1 is still read, see below)
//	5    1     n: number of lease slots (1..MaxOwners)
//	6    2     reserved, zero
//	8    4     payload length (1..MaxFragmentSize)
//	12   32    fragment ID (BLAKE3-256 of the payload; equals the file name)
//	44   4     CRC-32C (Castagnoli) of the payload
//	48   40*n  lease slots: owner Ed25519 public key (32), expiry Unix seconds (int64, 8)
//	48+40n 4   CRC-32C of bytes [0, 48+40n)
//	52+40n     payload
//
// Version 1, written before the payload CRC, has no field at 44: the slots start there.
// Its files are still served (their payload checked against the BLAKE3 ID instead) and
// their headers rewritten in place as version 1; a version 1 file that grows a slot is
// written anew as version 2.
//
// A slot whose expiry is not after now holds no lease; DELETE sets it to 0. Slots are
// reused before the header grows, so renewals and deletions rewrite the header in place.
const (
	headerMagic   = "SCFR"
	headerVersion = 2
	headerFixed   = 48 // bytes before the lease slots (version 2)
	headerFixedV1 = 44 // bytes before the lease slots (version 1)
	slotSize      = 40
	headerCRCSize = 4

	// MaxOwners is the most owners one stored fragment can have at once.
	MaxOwners = 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errHeader reports a fragment file whose header is not valid; the file is dropped.
var errHeader = errors.New("store: bad fragment header")

// slot is one owner's lease on a fragment.
type slot struct {
	owner   Owner
	expires int64 // Unix seconds; <= now means no lease
}

// header is the decoded header of a fragment file.
type header struct {
	version uint8 // 1 or 2; 0 means headerVersion
	id      chunker.FragmentID
	size    uint32 // payload length
	sum     uint32 // CRC-32C of the payload (version 2)
	slots   []slot
}

// headerLen returns the encoded length of a version 2 header with n lease slots.
func headerLen(n int) int { return headerFixed + slotSize*n + headerCRCSize }

// headerLenV returns the encoded length of a header of version v with n lease slots.
func headerLenV(v uint8, n int) int {
	if v == 1 {
		return headerFixedV1 + slotSize*n + headerCRCSize
	}
	return headerLen(n)
}

// fixedLen returns the length of the part of a version v header before its slots.
func fixedLen(v uint8) int {
	if v == 1 {
		return headerFixedV1
	}
	return headerFixed
}

// payloadSum returns the checksum a version 2 header records for payload b.
func payloadSum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// encode appends the encoded header to b.
func (h *header) encode(b []byte) []byte {
	if len(h.slots) < 1 || len(h.slots) > MaxOwners {
		panic(fmt.Sprintf("BUG: store: header with %d slots", len(h.slots)))
	}
	v := h.version
	if v == 0 {
		v = headerVersion
	}
	if v != 1 && v != 2 {
		panic(fmt.Sprintf("BUG: store: header version %d", v))
	}
	start := len(b)
	b = append(b, headerMagic...)
	b = append(b, v, byte(len(h.slots)), 0, 0)
	b = binary.BigEndian.AppendUint32(b, h.size)
	b = append(b, h.id[:]...)
	if v == 2 {
		b = binary.BigEndian.AppendUint32(b, h.sum)
	}
	for _, s := range h.slots {
		b = append(b, s.owner[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(s.expires))
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// parseHeaderPrefix checks the fixed prefix (at least 8 bytes) and returns the full header
// length, so a reader knows how much more to read before calling parseHeader.
func parseHeaderPrefix(b []byte) (int, error) {
	if len(b) < 8 {
		return 0, fmt.Errorf("%w: %d bytes, want at least 8", errHeader, len(b))
	}
	if string(b[:4]) != headerMagic {
		return 0, fmt.Errorf("%w: bad magic %q", errHeader, b[:4])
	}
	if b[4] != 1 && b[4] != 2 {
		return 0, fmt.Errorf("%w: unknown version %d", errHeader, b[4])
	}
	n := int(b[5])
	if n < 1 || n > MaxOwners {
		return 0, fmt.Errorf("%w: %d lease slots", errHeader, n)
	}
	if b[6] != 0 || b[7] != 0 {
		return 0, fmt.Errorf("%w: reserved bytes not zero", errHeader)
	}
	return headerLenV(b[4], n), nil
}

// parseHeader decodes a header from the start of b, which must hold the whole header
// (it may hold more). maxSize bounds the payload length.
func parseHeader(b []byte, maxSize int) (header, error) {
	var h header
	hl, err := parseHeaderPrefix(b)
	if err != nil {
		return h, err
	}
	if len(b) < hl {
		return h, fmt.Errorf("%w: %d bytes, want %d", errHeader, len(b), hl)
	}
	crcAt := hl - headerCRCSize
	if got, want := crc32.Checksum(b[:crcAt], castagnoli), binary.BigEndian.Uint32(b[crcAt:hl]); got != want {
		return h, fmt.Errorf("%w: checksum %08x, want %08x", errHeader, got, want)
	}
	h.size = binary.BigEndian.Uint32(b[8:12])
	if h.size == 0 || int64(h.size) > int64(maxSize) {
		return h, fmt.Errorf("%w: payload length %d out of range", errHeader, h.size)
	}
	copy(h.id[:], b[12:44])
	h.version = b[4]
	if h.version == 2 {
		h.sum = binary.BigEndian.Uint32(b[44:48])
	}
	fixed := fixedLen(h.version)
	n := int(b[5])
	h.slots = make([]slot, n)
	for i := range n {
		o := fixed + i*slotSize
		copy(h.slots[i].owner[:], b[o:o+32])
		h.slots[i].expires = int64(binary.BigEndian.Uint64(b[o+32 : o+40]))
	}
	return h, nil
}
