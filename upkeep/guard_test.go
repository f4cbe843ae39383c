package upkeep

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
)

// blockingPut returns a put function for chunk id that signals started and waits for
// proceed on each call, and counts its calls.
func blockingPut(id crypt.ChunkID, started chan<- struct{}, proceed <-chan struct{}, calls *atomic.Int32) func(context.Context) (pipeline.Ref, error) {
	return func(ctx context.Context) (pipeline.Ref, error) {
		calls.Add(1)
		started <- struct{}{}
		<-proceed
		return pipeline.Ref{ID: id}, nil
	}
}

// TestGuardPutDuringDeletion: a Put in flight while its chunk is deleted is made again,
// whether it returns during the deletion or after it.
func TestGuardPutDuringDeletion(t *testing.T) {
	for _, returnDuring := range []bool{true, false} {
		g := NewGuard(0)
		id := crypt.ChunkID{1}
		started, proceed := make(chan struct{}), make(chan struct{}, 2)
		var calls atomic.Int32
		done := make(chan error)
		go func() {
			_, err := g.Put(t.Context(), blockingPut(id, started, proceed, &calls))
			done <- err
		}()
		<-started // the Put is in flight
		held, release := g.hold([]crypt.ChunkID{id, {2}})
		if len(held) != 2 {
			t.Fatalf("held %v, want both chunks", held)
		}
		if returnDuring {
			proceed <- struct{}{} // returns while deleting: must wait, then put again
			release()
		} else {
			release()
			proceed <- struct{}{} // returns after the deletion it overlapped
		}
		<-started // the second call
		proceed <- struct{}{}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n := calls.Load(); n != 2 {
			t.Fatalf("returnDuring=%v: put called %d times, want 2", returnDuring, n)
		}
		// Just put: not collectable within the grace period.
		if held, release := g.hold([]crypt.ChunkID{id}); len(held) != 0 {
			t.Fatalf("chunk put a moment ago held for deletion")
		} else {
			release()
		}
	}
}

// TestGuardPutAfterDeletion: a Put that starts after a deletion ended is not repeated,
// and the deletion's record is pruned once no Put that overlapped it is in flight.
func TestGuardPutAfterDeletion(t *testing.T) {
	g := NewGuard(0)
	id := crypt.ChunkID{3}
	_, release := g.hold([]crypt.ChunkID{id})
	release()
	started, proceed := make(chan struct{}, 1), make(chan struct{}, 1)
	proceed <- struct{}{}
	var calls atomic.Int32
	if _, err := g.Put(t.Context(), blockingPut(id, started, proceed, &calls)); err != nil || calls.Load() != 1 {
		t.Fatalf("put after deletion: %d calls, %v", calls.Load(), err)
	}
	_, release = g.hold(nil)
	release()
	if len(g.deleted) != 0 {
		t.Fatalf("deletion records kept with no Put in flight: %v", g.deleted)
	}
}
