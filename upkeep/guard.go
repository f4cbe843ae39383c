package upkeep

import (
	"cmp"
	"context"
	"sync"
	"time"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
)

// DefaultGrace is Guard's default grace: how long after a chunk's Put returns its Ref may
// still be on its way into the metadata (an upload's commit follows its Put within
// seconds; a stalled disk can take longer).
const DefaultGrace = 10 * time.Minute

// Guard closes the race between collecting a garbage chunk and writing the same content
// again. Chunk and fragment IDs depend only on content, and placement favours the same
// peers for the same chunk, so a new Put of a garbage chunk can store a fragment on a
// holder just before the collector's DELETE removes it, and the new extent would then
// point at nothing. Every Put of the drive goes through Guard.Put and Loop collects
// through the same Guard:
//
//   - a garbage chunk put within the grace period is not collected this round (its Ref may
//     not be committed yet, so it still looks like garbage);
//   - a Put that returns while its chunk is being deleted, or that was in flight while it
//     was, waits for the deletion to end and puts the chunk again.
//
// The zero value is not usable; create one with NewGuard. It is safe for concurrent use.
type Guard struct {
	grace time.Duration

	mu       sync.Mutex
	recent   map[crypt.ChunkID]time.Time     // guarded by mu: when a Put of the chunk returned
	deleting map[crypt.ChunkID]chan struct{} // guarded by mu: closed when the deletion ends
	deleted  map[crypt.ChunkID]time.Time     // guarded by mu: when a deletion ended
	inflight map[uint64]time.Time            // guarded by mu: start of each Put in flight
	next     uint64                          // guarded by mu
}

// NewGuard returns a Guard with the given grace; 0 means DefaultGrace.
func NewGuard(grace time.Duration) *Guard {
	return &Guard{
		grace:    cmp.Or(grace, DefaultGrace),
		recent:   map[crypt.ChunkID]time.Time{},
		deleting: map[crypt.ChunkID]chan struct{}{},
		deleted:  map[crypt.ChunkID]time.Time{},
		inflight: map[uint64]time.Time{},
	}
}

// Put calls put, which stores one chunk and returns its Ref (pipeline.Store.Put), and
// calls it again if a collection of the same chunk overlapped it. A failed put is returned
// as it is: the caller records nothing of it.
func (g *Guard) Put(ctx context.Context, put func(context.Context) (pipeline.Ref, error)) (pipeline.Ref, error) {
	for {
		g.mu.Lock()
		tok, start := g.next, time.Now()
		g.next++
		g.inflight[tok] = start
		g.mu.Unlock()

		ref, err := put(ctx)

		g.mu.Lock()
		delete(g.inflight, tok)
		if err != nil {
			g.mu.Unlock()
			return ref, err
		}
		ch := g.deleting[ref.ID]
		end, wasDeleted := g.deleted[ref.ID]
		if ch == nil && !(wasDeleted && !end.Before(start)) {
			g.recent[ref.ID] = time.Now()
			g.mu.Unlock()
			return ref, nil
		}
		g.mu.Unlock()
		if ch != nil {
			select {
			case <-ch:
			case <-ctx.Done():
				return pipeline.Ref{}, ctx.Err()
			}
		}
		// Some of this Put's fragments may have been deleted: store them again.
	}
}

// hold marks the chunks of ids that may be collected now as being deleted and returns
// them; release ends the deletion of exactly those. Chunks put within the grace period,
// or being deleted by another collection, are left out.
func (g *Guard) hold(ids []crypt.ChunkID) (held []crypt.ChunkID, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	for id, t := range g.recent {
		if now.Sub(t) >= g.grace {
			delete(g.recent, id)
		}
	}
	for _, id := range ids {
		if _, ok := g.recent[id]; ok {
			continue
		}
		if _, ok := g.deleting[id]; ok {
			continue
		}
		g.deleting[id] = make(chan struct{})
		held = append(held, id)
	}
	return held, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		now := time.Now()
		for _, id := range held {
			close(g.deleting[id])
			delete(g.deleting, id)
			g.deleted[id] = now
		}
		// A deletion matters only to Puts in flight when it ended.
		oldest := now
		for _, t := range g.inflight {
			if t.Before(oldest) {
				oldest = t
			}
		}
		for id, t := range g.deleted {
			if t.Before(oldest) {
				delete(g.deleted, id)
			}
		}
	}
}
