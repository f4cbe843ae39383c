// Package memchunks is an in-memory implementation of volume.Chunks for tests and local
// experiments, with knobs for failure, delay and loss. It neither encrypts nor
// erasure-codes: the "sealed" form of a chunk is its plaintext with a 1-byte header, so
// tests can check that the core stores and returns sealed bytes unchanged.
package memchunks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	chunk "github.com/ipfs/boxo/chunker"
	"github.com/zeebo/blake3"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/volume"
)

// ErrInjected is returned by Put and GetSealed while failure is switched on.
var ErrInjected = errors.New("memchunks: injected failure")

// Store is an in-memory chunk store. The zero value is not usable; call New.
type Store struct {
	chunkSize int64

	mu       sync.Mutex
	chunks   map[crypt.ChunkID][]byte // sealed form
	capacity int64
	putDelay time.Duration
	putGate  chan struct{} // when non-nil, each Put waits for a receive... send on it
	failPut  bool
	failGet  bool
	puts     int
	gets     int
}

var _ volume.Chunks = (*Store)(nil)

// New returns an empty store cutting chunks of chunkSize bytes (boxo's size splitter)
// and reporting capacity bytes free.
func New(chunkSize int64, capacity int64) *Store {
	return &Store{chunkSize: chunkSize, chunks: map[crypt.ChunkID][]byte{}, capacity: capacity}
}

// Split implements volume.Chunks with fixed-size chunks.
func (s *Store) Split(r io.Reader) chunk.Splitter { return chunk.NewSizeSplitter(r, s.chunkSize) }

// Put implements volume.Chunks.
func (s *Store) Put(ctx context.Context, plain []byte) (pipeline.Ref, error) {
	s.mu.Lock()
	delay, gate, fail := s.putDelay, s.putGate, s.failPut
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return pipeline.Ref{}, ctx.Err()
		}
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return pipeline.Ref{}, ctx.Err()
		}
	}
	if fail {
		return pipeline.Ref{}, fmt.Errorf("put: %w", ErrInjected)
	}
	id := crypt.ChunkID(blake3.Sum256(plain))
	sealed := append([]byte{0x5e}, plain...)
	s.mu.Lock()
	s.chunks[id] = sealed
	s.puts++
	s.mu.Unlock()
	return pipeline.Ref{ID: id, Size: uint32(len(plain)), SealedLen: uint32(len(sealed)), K: 1, M: 0,
		Fragments: []pipeline.Fragment{{Peer: "mem"}}}, nil
}

// GetSealed implements volume.Chunks.
func (s *Store) GetSealed(ctx context.Context, ref pipeline.Ref) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failGet {
		return nil, fmt.Errorf("get: %w", ErrInjected)
	}
	b, ok := s.chunks[ref.ID]
	if !ok {
		return nil, fmt.Errorf("chunk %s: %w", ref.ID, pipeline.ErrUnrecoverable)
	}
	s.gets++
	return bytes.Clone(b), nil
}

// Open implements volume.Chunks.
func (s *Store) Open(dst []byte, ref pipeline.Ref, sealed []byte) ([]byte, error) {
	if len(sealed) != int(ref.SealedLen) || len(sealed) == 0 || sealed[0] != 0x5e {
		return nil, fmt.Errorf("memchunks: chunk %s does not open", ref.ID)
	}
	if crypt.ChunkID(blake3.Sum256(sealed[1:])) != ref.ID {
		return nil, fmt.Errorf("memchunks: chunk %s corrupt", ref.ID)
	}
	return append(dst, sealed[1:]...), nil
}

// Capacity implements volume.Chunks.
func (s *Store) Capacity(ctx context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.capacity, nil
}

// SetPutDelay makes every Put wait d.
func (s *Store) SetPutDelay(d time.Duration) { s.mu.Lock(); s.putDelay = d; s.mu.Unlock() }

// SetPutGate makes every Put wait for a value on gate (nil: no gate).
func (s *Store) SetPutGate(gate chan struct{}) { s.mu.Lock(); s.putGate = gate; s.mu.Unlock() }

// SetFailPut makes Put fail (or succeed again).
func (s *Store) SetFailPut(fail bool) { s.mu.Lock(); s.failPut = fail; s.mu.Unlock() }

// SetFailGet makes GetSealed fail (or succeed again).
func (s *Store) SetFailGet(fail bool) { s.mu.Lock(); s.failGet = fail; s.mu.Unlock() }

// Lose deletes every stored chunk (as if all holders vanished).
func (s *Store) Lose() { s.mu.Lock(); clear(s.chunks); s.mu.Unlock() }

// Stats returns the number of chunks stored and of successful Puts and Gets.
func (s *Store) Stats() (chunks, puts, gets int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.chunks), s.puts, s.gets
}
