package delegate

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/root"
	"github.com/scatterfs/scatter/swarm"
)

// Errors.
var (
	// ErrCorrupt means a page or record payload is malformed: it decrypted (so it was
	// written with this capability) but does not parse, or it did not parse before
	// decryption.
	ErrCorrupt = errors.New("delegate: malformed page or record")
	// ErrInvalid means a record is not a valid record of this drive: bad signature,
	// another identity, expired, or a payload that does not decrypt under the capability.
	ErrInvalid = errors.New("delegate: invalid record")
	// ErrReplay means a valid record carries a sequence number below one already seen.
	ErrReplay = errors.New("delegate: record older than one already seen")
	// ErrNotFound means the DHT holds no such record yet.
	ErrNotFound = errors.New("delegate: no record found")
)

// Page kinds (docs/format.md, "Repair capability and manifest").
const (
	formatV1 = 1

	kindManifest = 1 // a page of the manifest: live Refs
	kindIndex    = 2 // the list of a manifest's or log's pages
	kindLog      = 3 // a page of the repair log: pairs old Ref, new Ref
	kindRecord   = 4 // a record's payload: the index Ref, if any

	noPeer = 0xffff // peer index of a fragment with no holder

	// maxRefs bounds a list before anything is allocated for it: the largest page holds
	// refsPerPage Refs (logs: pairs), an index far fewer.
	maxRefs = 1 << 20
	// refsPerPage is the most Refs a page holds: about 0.5-1 MiB with RS(8,4).
	refsPerPage = 2048
	// cutMask cuts a manifest page after a Ref whose chunk ID's last two bytes have
	// these bits zero: 1024 Refs a page on average. Chunk IDs are keyed hashes, so a cut
	// depends on that Ref alone and a change to the drive changes only the pages around
	// it: the others keep their bytes, hence their chunk IDs, and are not put again.
	cutMask = 1023
)

// encodeList writes refs as a list of kind: version, kind, the peers table (distinct
// holders, ascending, each length-prefixed), then each Ref with its holders as indexes
// into the table.
func encodeList(kind byte, refs []pipeline.Ref) ([]byte, error) {
	var peers []swarm.PeerID
	for _, r := range refs {
		for _, f := range r.Fragments {
			if f.Peer != "" {
				peers = append(peers, f.Peer)
			}
		}
	}
	slices.Sort(peers)
	peers = slices.Compact(peers)
	if len(peers) >= noPeer {
		return nil, fmt.Errorf("delegate: %d holders in one page, at most %d", len(peers), noPeer-1)
	}
	if len(refs) > maxRefs {
		return nil, fmt.Errorf("delegate: %d refs in one page, at most %d", len(refs), maxRefs)
	}
	b := []byte{formatV1, kind}
	b = binary.BigEndian.AppendUint16(b, uint16(len(peers)))
	for _, p := range peers {
		if len(p) == 0 || len(p) > 255 {
			return nil, fmt.Errorf("delegate: peer ID of %d bytes", len(p))
		}
		b = append(b, byte(len(p)))
		b = append(b, p...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(refs)))
	for i := range refs {
		r := &refs[i]
		if err := checkRef(r); err != nil {
			return nil, err
		}
		b = append(b, r.ID[:]...)
		b = binary.BigEndian.AppendUint32(b, r.Size)
		b = binary.BigEndian.AppendUint32(b, r.SealedLen)
		b = append(b, r.K, r.M)
		for _, f := range r.Fragments {
			b = append(b, f.ID[:]...)
			idx := uint16(noPeer)
			if f.Peer != "" {
				j, _ := slices.BinarySearch(peers, f.Peer)
				idx = uint16(j)
			}
			b = binary.BigEndian.AppendUint16(b, idx)
		}
	}
	return b, nil
}

// checkRef rejects a Ref no chunk can have.
func checkRef(r *pipeline.Ref) error {
	if r.K == 0 || int(r.K)+int(r.M) > chunker.MaxShards || len(r.Fragments) != int(r.K)+int(r.M) {
		return fmt.Errorf("%w: chunk %s: %d fragments for %d+%d", ErrCorrupt, r.ID, len(r.Fragments), r.K, r.M)
	}
	return nil
}

// decodeList parses what encodeList wrote, strictly: the version and kind wanted, the peers
// table ascending with no duplicates or empty IDs, every holder index in the table, no
// trailing bytes, every peer of the table used: one list, one encoding. Anything else is
// ErrCorrupt.
func decodeList(b []byte, kind byte) ([]pipeline.Ref, error) {
	d := &dec{b: b}
	if v := d.u8(); d.err == nil && v != formatV1 {
		return nil, fmt.Errorf("%w: version %d", ErrCorrupt, v)
	}
	if k := d.u8(); d.err == nil && k != kind {
		return nil, fmt.Errorf("%w: kind %d, want %d", ErrCorrupt, k, kind)
	}
	np := int(d.u16())
	if np >= noPeer {
		d.fail("peer table of %d", np)
	}
	peers := make([]swarm.PeerID, 0, min(np, len(d.b)/2))
	for i := 0; i < np && d.err == nil; i++ {
		p := swarm.PeerID(d.bytes(int(d.u8())))
		if d.err == nil && (p == "" || i > 0 && p <= peers[i-1]) {
			d.fail("peer table not ascending at %d", i)
		}
		peers = append(peers, p)
	}
	n := int(d.u32())
	if d.err == nil && (n > maxRefs || n*(32+4+4+2) > len(d.b)) {
		d.fail("%d refs in %d bytes", n, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	refs := make([]pipeline.Ref, n)
	used := make([]bool, len(peers))
	for i := range refs {
		r := &refs[i]
		copy(r.ID[:], d.bytes(32))
		r.Size, r.SealedLen = d.u32(), d.u32()
		r.K, r.M = d.u8(), d.u8()
		if d.err != nil {
			break
		}
		if r.K == 0 || int(r.K)+int(r.M) > chunker.MaxShards {
			d.fail("chunk %s coded %d+%d", r.ID, r.K, r.M)
			break
		}
		r.Fragments = make([]pipeline.Fragment, int(r.K)+int(r.M))
		for j := range r.Fragments {
			copy(r.Fragments[j].ID[:], d.bytes(32))
			switch idx := d.u16(); {
			case idx == noPeer:
			case int(idx) < len(peers):
				r.Fragments[j].Peer = peers[idx]
				used[idx] = true
			default:
				d.fail("holder %d of %d", idx, len(peers))
			}
		}
		if d.err != nil {
			break
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if i := slices.Index(used, false); d.err == nil && i >= 0 {
		d.fail("peer %d of the table holds nothing", i)
	}
	if d.err != nil {
		return nil, d.err
	}
	return refs, nil
}

// dec reads big-endian fields, recording the first shortfall.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
}

func (d *dec) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.fail("truncated")
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *dec) u8() uint8 {
	if b := d.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *dec) u16() uint16 {
	if b := d.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *dec) u32() uint32 {
	if b := d.bytes(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// Replacement is one entry of the repair log: the chunk's Ref as the manifest listed it,
// and the Ref with the holders the repairer placed rebuilt fragments on.
type Replacement struct {
	Old, New pipeline.Ref
}

// encodeLog writes replacements as a log page: a list of 2n Refs, old and new in turn.
func encodeLog(rs []Replacement) ([]byte, error) {
	refs := make([]pipeline.Ref, 0, 2*len(rs))
	for _, r := range rs {
		if !r.Old.SameChunk(&r.New) {
			return nil, fmt.Errorf("delegate: replacement of chunk %s by another chunk", r.Old.ID)
		}
		refs = append(refs, r.Old, r.New)
	}
	return encodeList(kindLog, refs)
}

// decodeLog parses a log page; each pair must describe one chunk (only holders differ).
func decodeLog(b []byte) ([]Replacement, error) {
	refs, err := decodeList(b, kindLog)
	if err != nil {
		return nil, err
	}
	if len(refs)%2 != 0 {
		return nil, fmt.Errorf("%w: log page of %d refs", ErrCorrupt, len(refs))
	}
	out := make([]Replacement, len(refs)/2)
	for i := range out {
		out[i] = Replacement{Old: refs[2*i], New: refs[2*i+1]}
		if !out[i].Old.SameChunk(&out[i].New) {
			return nil, fmt.Errorf("%w: replacement %d changes chunk %s", ErrCorrupt, i, out[i].Old.ID)
		}
	}
	return out, nil
}

// compareRefs orders Refs by chunk ID, then holders: the manifest's order, so equal sets
// of Refs give equal pages.
func compareRefs(a, b pipeline.Ref) int {
	if c := bytes.Compare(a.ID[:], b.ID[:]); c != 0 {
		return c
	}
	return slices.CompareFunc(a.Fragments, b.Fragments, func(x, y pipeline.Fragment) int {
		return cmp.Or(bytes.Compare(x.ID[:], y.ID[:]), cmp.Compare(x.Peer, y.Peer))
	})
}

// recordBody is a record's payload once decrypted: how many Refs (manifest) or
// replacements (log) it names, and the index of its pages (none when count is 0).
type recordBody struct {
	count uint32
	index *pipeline.Ref
}

// Payload associated-data prefixes: they bind a payload to its record kind.
const (
	adManifest = "scatter repair manifest v1\x00"
	adLog      = "scatter repair log v1\x00"
)

// sealBody encrypts body: version (1) | nonce (24) | XChaCha20-Poly1305 under key of
// count (u32) | a list of kind 4 holding the index Ref or nothing; associated data =
// ad prefix | identity public key | sequence (u64), so a payload cannot move to another
// record, identity or sequence.
func sealBody(key [crypt.KeySize]byte, ad string, pub []byte, seq uint64, body recordBody) ([]byte, error) {
	var refs []pipeline.Ref
	if body.index != nil {
		refs = []pipeline.Ref{*body.index}
	}
	list, err := encodeList(kindRecord, refs)
	if err != nil {
		return nil, err
	}
	plain := binary.BigEndian.AppendUint32(nil, body.count)
	plain = append(plain, list...)
	return bodySealing(key, ad).Seal(pub, seq, plain)
}

// bodySealing is the sealing of a record kind's payloads (root.Sealing, the same as
// every named record's).
func bodySealing(key [crypt.KeySize]byte, ad string) *root.Sealing {
	return &root.Sealing{Key: key, Version: formatV1, AD: ad,
		Invalid: ErrInvalid, What: "payload", Whose: "with this repair capability"}
}

// openBody decrypts and parses what sealBody wrote. A payload that does not decrypt is
// ErrInvalid; one that decrypts but does not parse is ErrCorrupt.
func openBody(key [crypt.KeySize]byte, ad string, pub []byte, seq uint64, b []byte) (recordBody, error) {
	plain, err := bodySealing(key, ad).Open(pub, seq, b)
	if err != nil {
		return recordBody{}, err
	}
	return parseBody(plain)
}

func parseBody(plain []byte) (recordBody, error) {
	if len(plain) < 4 {
		return recordBody{}, fmt.Errorf("%w: payload truncated", ErrCorrupt)
	}
	body := recordBody{count: binary.BigEndian.Uint32(plain)}
	refs, err := decodeList(plain[4:], kindRecord)
	if err != nil {
		return recordBody{}, err
	}
	switch {
	case len(refs) > 1:
		return recordBody{}, fmt.Errorf("%w: %d index refs", ErrCorrupt, len(refs))
	case len(refs) == 1:
		body.index = &refs[0]
	}
	if (body.count == 0) != (body.index == nil) {
		return recordBody{}, fmt.Errorf("%w: %d entries with %d index refs", ErrCorrupt, body.count, len(refs))
	}
	return body, nil
}
