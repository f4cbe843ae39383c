package memchunks

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
)

// Objects keeps metadata snapshot objects in memory, sealed with the drive's keys as
// pipeline.Store seals them (snapshot readers open them with per-object read keys, so
// Store's unkeyed stand-in sealing would not do). It implements snapshot.Store and
// snapshot.Fetcher for tests.
type Objects struct {
	Keys *crypt.Keys

	mu     sync.Mutex
	sealed map[crypt.ChunkID][]byte
	puts   int
}

// NewObjects returns an empty Objects sealing with keys.
func NewObjects(keys *crypt.Keys) *Objects {
	return &Objects{Keys: keys, sealed: map[crypt.ChunkID][]byte{}}
}

// Put seals plain and keeps it; the Ref names one holder, "mem".
func (s *Objects) Put(ctx context.Context, plain []byte) (pipeline.Ref, error) {
	id := s.Keys.ChunkID(plain)
	sealed := s.Keys.Seal(nil, id, plain)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealed[id] = sealed
	s.puts++
	return pipeline.Ref{ID: id, Size: uint32(len(plain)), SealedLen: uint32(len(sealed)), K: 1,
		Fragments: []pipeline.Fragment{{Peer: "mem"}}}, nil
}

// GetSealed returns a copy of the sealed object, or an error wrapping
// pipeline.ErrUnrecoverable.
func (s *Objects) GetSealed(ctx context.Context, ref pipeline.Ref) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.sealed[ref.ID]
	if !ok {
		return nil, fmt.Errorf("object %s: %w", ref.ID, pipeline.ErrUnrecoverable)
	}
	return bytes.Clone(b), nil
}

// Puts returns how many objects were put (again-puts of one object included).
func (s *Objects) Puts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.puts
}
