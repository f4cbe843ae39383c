package crypt

import "encoding/hex"

// ChunkID names a plaintext chunk within one drive: a keyed hash of the plaintext under the
// drive's chunk-ID key. Equal chunks of one drive get equal IDs (deduplication); without the
// drive key nobody can compute the ID of a known plaintext, so an ID confirms nothing.
// A ChunkID is not secret: it appears in fragment headers and is the DHT key for placement.
// The chunk's sealing key is derived from the ID together with the drive's content key.
type ChunkID [32]byte

// String returns the ID in lower-case hex.
func (id ChunkID) String() string { return hex.EncodeToString(id[:]) }
