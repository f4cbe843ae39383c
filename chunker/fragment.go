package chunker

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/scatterfs/scatter/crypt"
)

// Fragment header layout, version 1 (docs/format.md "Fragment"):
//
//	offset size field
//	0      1    version (1)
//	1      1    k, data fragments of the chunk (1..255)
//	2      1    m, parity fragments of the chunk (0..255-k)
//	3      1    index of this fragment (0..k+m-1; below k: data, else parity)
//	4      4    sealed length in bytes, big-endian (0..MaxSealedSize)
//	8      32   chunk ID
//	40     s    shard: s = max(1, ceil(sealed length / k)) bytes
const (
	// FragmentVersion is the version byte of the fragments this package writes.
	FragmentVersion = 1
	// HeaderSize is the size of a version 1 fragment header.
	HeaderSize = 40
	// MaxShards is the largest k+m: index, k and m are one byte each, and the library's
	// GF(2^8) codec allows 256 shards at most (beyond, it switches to a codec with other
	// size rules).
	MaxShards = 255
	// MaxSealedSize is the largest sealed chunk a Coder accepts: twice MaxChunkSize, which
	// leaves room for any sealing overhead while bounding what a header can claim.
	MaxSealedSize = 2 * MaxChunkSize
)

var (
	// ErrFragmentHeader means a fragment header is malformed: too short, an unknown
	// version, or fields out of range.
	ErrFragmentHeader = errors.New("chunker: malformed fragment header")
	// ErrBadFragment means a fragment failed verification: its ID differs from the
	// expected one, its header does not fit its place, or its length is wrong. A reader
	// treats the fragment as missing and should report its holder.
	ErrBadFragment = errors.New("chunker: bad fragment")
	// ErrTooFewFragments means fewer than k fragments passed verification, so the chunk
	// cannot be decoded from what was given. Errors matching it are *NotEnoughError.
	ErrTooFewFragments = errors.New("chunker: too few good fragments")
)

// NotEnoughError is the error of Decode and Regenerate when fewer than Need fragments
// passed verification. It matches ErrTooFewFragments with errors.Is.
type NotEnoughError struct {
	Have int   // fragments that passed verification
	Need int   // k
	Bad  []int // indexes of fragments that were given but failed verification, ascending
}

func (e *NotEnoughError) Error() string {
	return fmt.Sprintf("chunker: too few good fragments: have %d, need %d (bad: %v)", e.Have, e.Need, e.Bad)
}

// Unwrap returns ErrTooFewFragments.
func (e *NotEnoughError) Unwrap() error { return ErrTooFewFragments }

// Header is the parsed header of a fragment.
type Header struct {
	K, M      int           // data and parity fragments of the chunk
	Index     int           // this fragment's index: data if below K, else parity
	SealedLen int           // length of the sealed chunk
	Chunk     crypt.ChunkID // the chunk the fragment belongs to
}

// ShardSize returns the size of the shard following the header.
func (h Header) ShardSize() int { return shardSize(h.SealedLen, h.K) }

// FragmentSize returns the size of the whole fragment, header and shard.
func (h Header) FragmentSize() int { return HeaderSize + h.ShardSize() }

// check reports whether the fields are in range.
func (h Header) check() error {
	switch {
	case h.K < 1 || h.M < 0 || h.K+h.M > MaxShards:
		return fmt.Errorf("%w: k=%d m=%d (want k >= 1, m >= 0, k+m <= %d)", ErrFragmentHeader, h.K, h.M, MaxShards)
	case h.Index < 0 || h.Index >= h.K+h.M:
		return fmt.Errorf("%w: index %d of %d fragments", ErrFragmentHeader, h.Index, h.K+h.M)
	case h.SealedLen < 0 || h.SealedLen > MaxSealedSize:
		return fmt.Errorf("%w: sealed length %d above %d", ErrFragmentHeader, h.SealedLen, MaxSealedSize)
	}
	return nil
}

// AppendTo appends the HeaderSize-byte encoding of h to b. h must be valid: Coder only
// builds valid headers.
func (h Header) AppendTo(b []byte) []byte {
	if err := h.check(); err != nil {
		panic("BUG: " + err.Error())
	}
	b = append(b, FragmentVersion, byte(h.K), byte(h.M), byte(h.Index))
	b = binary.BigEndian.AppendUint32(b, uint32(h.SealedLen))
	return append(b, h.Chunk[:]...)
}

// ParseHeader parses the header at the start of a fragment; bytes after HeaderSize are
// ignored (use Header.FragmentSize to check a whole fragment's length). Errors match
// ErrFragmentHeader. A header alone proves nothing: only the fragment's ID, checked
// against the manifest, does.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes, want %d", ErrFragmentHeader, len(b), HeaderSize)
	}
	if b[0] != FragmentVersion {
		return Header{}, fmt.Errorf("%w: unknown version %d", ErrFragmentHeader, b[0])
	}
	h := Header{
		K:     int(b[1]),
		M:     int(b[2]),
		Index: int(b[3]),
		// Where int is 32 bits a huge length wraps negative; check rejects it either way.
		SealedLen: int(binary.BigEndian.Uint32(b[4:8])),
	}
	copy(h.Chunk[:], b[8:HeaderSize])
	if err := h.check(); err != nil {
		return Header{}, err
	}
	return h, nil
}

// shardSize is the size of each of the k shards of a sealed chunk of n bytes. Shards are
// never empty, because the Reed-Solomon library rejects empty shards: an empty sealed
// chunk (which crypt never produces, but costs nothing to allow) has 1-byte shards.
func shardSize(n, k int) int {
	return max(1, (n+k-1)/k)
}
