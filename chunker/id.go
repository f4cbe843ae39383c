package chunker

import (
	"encoding/hex"
	"fmt"

	"github.com/zeebo/blake3"
)

// FragmentID names a fragment by its content: the BLAKE3-256 hash of the whole fragment
// (header and shard). Anyone can check it, so a donor verifies a PUT against it and a reader
// verifies every fragment it receives before handing it to Reed-Solomon, which cannot tell
// a bad shard from a good one.
type FragmentID [32]byte

// FragmentIDOf returns the ID of the fragment bytes b.
func FragmentIDOf(b []byte) FragmentID {
	return FragmentID(blake3.Sum256(b))
}

// String returns the ID in lower-case hex.
func (id FragmentID) String() string { return hex.EncodeToString(id[:]) }

// ParseFragmentID parses the hex form produced by String.
func ParseFragmentID(s string) (FragmentID, error) {
	var id FragmentID
	if hex.DecodedLen(len(s)) != len(id) {
		return id, fmt.Errorf("chunker: fragment ID %q: want %d hex digits", s, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("chunker: fragment ID %q: %w", s, err)
	}
	return id, nil
}
