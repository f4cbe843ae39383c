package upkeep_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/upkeep"
)

// fakeDrive is an in-memory upkeep.Drive that signals its updates.
type fakeDrive struct {
	mu      sync.Mutex
	live    []pipeline.Ref
	garbage []pipeline.Ref
	settled []time.Time   // the argument of each Garbage call
	updated chan struct{} // a send per UpdateRefs
	dropped chan struct{} // a send per DropGarbage
}

func newFakeDrive(live, garbage []pipeline.Ref) *fakeDrive {
	return &fakeDrive{live: slices.Clone(live), garbage: slices.Clone(garbage),
		updated: make(chan struct{}, 100), dropped: make(chan struct{}, 100)}
}

func (d *fakeDrive) LiveRefs(ctx context.Context) ([]pipeline.Ref, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.live), nil
}

func (d *fakeDrive) UpdateRefs(ctx context.Context, refs map[crypt.ChunkID]pipeline.Ref) error {
	d.mu.Lock()
	for i, r := range d.live {
		if nr, ok := refs[r.ID]; ok {
			d.live[i] = nr
		}
	}
	d.mu.Unlock()
	d.updated <- struct{}{}
	return nil
}

func (d *fakeDrive) Garbage(ctx context.Context, settled time.Time) ([]pipeline.Ref, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.settled = append(d.settled, settled)
	return slices.Clone(d.garbage), nil
}

func (d *fakeDrive) DropGarbage(ctx context.Context, refs []pipeline.Ref) (int, error) {
	d.mu.Lock()
	n := len(d.garbage)
	d.garbage = slices.DeleteFunc(d.garbage, func(g pipeline.Ref) bool {
		return slices.ContainsFunc(refs, func(r pipeline.Ref) bool { return r.ID == g.ID })
	})
	n -= len(d.garbage)
	d.mu.Unlock()
	d.dropped <- struct{}{}
	return n, nil
}

func (d *fakeDrive) refs() []pipeline.Ref {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.live)
}

// TestLoopRun: an on-demand check with repair records the new holders in the drive.
func TestLoopRun(t *testing.T) {
	e := newEnv(t, 10, 20)
	dead := []swarm.PeerID{e.peers[0], e.peers[1]}
	for _, p := range dead {
		e.w.Kill(p)
	}
	d := newFakeDrive(e.refs, nil)
	l := upkeep.Start(upkeep.New(e.net, upkeep.Config{}), d, upkeep.LoopConfig{
		RenewEvery: time.Hour, CheckEvery: -1, CollectEvery: -1, Logger: quietLog(),
	})
	defer l.Close()
	rep, err := l.Run(t.Context(), false, false, nil)
	if err != nil || rep.Repair != nil || rep.Check.Degraded == 0 {
		t.Fatalf("check only: %+v %v", rep, err)
	}
	var last upkeep.Progress
	rep, err = l.Run(t.Context(), true, false, func(p upkeep.Progress) { last = p })
	if err != nil || rep.Repair == nil || rep.Repair.Repaired != rep.Check.Degraded || rep.Repair.Failed != 0 {
		t.Fatalf("repair: %+v %v", rep, err)
	}
	if last.Phase != "repair" || last.Done != last.Total || last.Bytes == 0 {
		t.Fatalf("last progress %+v", last)
	}
	<-d.updated
	e.checkWhole(t, d.refs(), dead...)
	rep, err = l.Run(t.Context(), true, false, nil)
	if err != nil || rep.Check.Complete != 20 || rep.Repair != nil {
		t.Fatalf("after repair: %+v %v", rep, err)
	}
}

// TestLoopBackground: started with a lost peer and garbage, the loop renews, repairs and
// collects on its own; Close stops it.
func TestLoopBackground(t *testing.T) {
	e := newEnv(t, 10, 20)
	live, garbage := e.refs[:14], e.refs[14:]
	dead := e.peers[2]
	e.w.Kill(dead)
	d := newFakeDrive(live, garbage)
	lease := 2 * 365 * 24 * time.Hour // beyond the PUTs' leases, so the renewal shows
	start := time.Now()
	l := upkeep.Start(upkeep.New(e.net, upkeep.Config{Lease: lease}), d, upkeep.LoopConfig{
		RenewEvery: time.Hour, CheckEvery: time.Hour, CollectEvery: time.Hour, RepairRate: -1,
		SnapshotGrace: 3 * time.Hour, Guard: upkeep.NewGuard(0), Logger: quietLog(),
	})
	<-d.updated // renewal, then the check's repair
	<-d.dropped // then the collection
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	refs := d.refs()
	e.checkWhole(t, refs, dead)
	for _, r := range refs {
		for _, f := range r.Fragments {
			exp, ok := e.w.Lease(f.Peer, owner, f.ID)
			if !ok || exp.Before(start.Add(lease-time.Minute)) {
				t.Fatalf("fragment %s on %s leased until %v, want about %v", f.ID, f.Peer, exp, start.Add(lease))
			}
		}
	}
	for _, r := range garbage {
		for _, f := range r.Fragments {
			if f.Peer == dead {
				continue
			}
			if has, _ := e.net.Has(t.Context(), f.Peer, []chunker.FragmentID{f.ID}); has[0] {
				t.Fatalf("garbage fragment %s still on %s", f.ID, f.Peer)
			}
		}
	}
	// The collection asked only for garbage no snapshot published in the last 3 hours
	// references.
	if len(d.settled) != 1 || d.settled[0].After(start.Add(-3*time.Hour+time.Minute)) || d.settled[0].Before(start.Add(-4*time.Hour)) {
		t.Fatalf("Garbage asked with settled %v, want about %v", d.settled, start.Add(-3*time.Hour))
	}
	if g, _ := d.Garbage(t.Context(), time.Now()); len(g) != 0 {
		t.Fatalf("%d garbage chunks left (a dead holder does not hold collection back)", len(g))
	}
}
