package upkeep_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/swarm/memnet"
	"github.com/scatterfs/scatter/upkeep"
)

// fragmentsOn returns the fragment IDs refs record on p.
func fragmentsOn(refs []pipeline.Ref, p swarm.PeerID) []chunker.FragmentID {
	var ids []chunker.FragmentID
	for _, r := range refs {
		for _, f := range r.Fragments {
			if f.Peer == p {
				ids = append(ids, f.ID)
			}
		}
	}
	return ids
}

// TestHostileDonorsAvoided: a donor that acknowledged its PUTs and then denies holding the
// fragments, one that answers HAS but serves bad bytes, and one that does not answer are
// all suspects of a verifying check, and the repair of that pass rebuilds their fragments
// onto other peers only. A check without Verify still finds the first and the last.
func TestHostileDonorsAvoided(t *testing.T) {
	e := newEnv(t, 14, 24)
	denier, liar, hung := hostileTriple(t, e)
	// The denier drops the fragments it acknowledged (as a second device of the owner
	// deleting them would make it).
	if err := e.w.Net("other", owner).Delete(t.Context(), denier, fragmentsOn(e.refs, denier)); err != nil {
		t.Fatal(err)
	}
	e.w.SetCorrupt(liar, true)
	e.w.SetFault(hung, memnet.Hang)
	u := upkeep.New(e.net, upkeep.Config{Timeout: 200 * time.Millisecond, Fetch: swarm.FetchOptions{Timeout: 200 * time.Millisecond}})

	_, st, err := u.Check(t.Context(), e.refs, upkeep.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := sorted(denier, hung); !slices.Equal(st.Suspects(), want) ||
		!slices.Equal(st.Deniers, []swarm.PeerID{denier}) || st.Denied != len(fragmentsOn(e.refs, denier)) {
		t.Fatalf("check: suspects %v, want %v; stats %+v", st.Suspects(), want, st)
	}

	d := newFakeDrive(e.refs, nil)
	l := upkeep.Start(u, d, upkeep.LoopConfig{RenewEvery: time.Hour, CheckEvery: -1, CollectEvery: -1, Logger: quietLog()})
	defer l.Close()
	rep, err := l.Run(t.Context(), true, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Check
	if want := sorted(denier, liar, hung); !slices.Equal(c.Suspects(), want) {
		t.Fatalf("verify check: suspects %v, want %v; stats %+v", c.Suspects(), want, c)
	}
	if !slices.Equal(c.Liars, []swarm.PeerID{liar}) || c.Corrupt != len(fragmentsOn(e.refs, liar)) {
		t.Fatalf("verify check: liars %v corrupt %d", c.Liars, c.Corrupt)
	}
	if len(c.Failures) != 1 || c.Failures[0].Peer != hung || !errors.Is(c.Failures[0], context.DeadlineExceeded) {
		t.Fatalf("verify check: failures %v", c.Failures)
	}
	if rep.Repair == nil || rep.Repair.Failed != 0 || rep.Repair.Partial != 0 || rep.Repair.Repaired == 0 {
		t.Fatalf("repair: %+v", rep.Repair)
	}
	<-d.updated
	e.w.SetFault(hung, memnet.Healthy)
	e.w.SetCorrupt(liar, false)
	// Every fragment on a distinct live holder other than the three, with the right bytes.
	e.checkWhole(t, d.refs(), denier, liar, hung)
}

// hostileTriple picks three peers that each hold fragments and, together, hold at most m
// fragments of any chunk: placement varies from run to run, and a chunk with more than m
// fragments on the three would be unrecoverable, which is not what the test is about.
func hostileTriple(t *testing.T, e *env) (a, b, c swarm.PeerID) {
	t.Helper()
	ok := func(ps ...swarm.PeerID) bool {
		for _, p := range ps {
			if len(fragmentsOn(e.refs, p)) == 0 {
				return false
			}
		}
		for _, r := range e.refs {
			n := 0
			for _, f := range r.Fragments {
				if slices.Contains(ps, f.Peer) {
					n++
				}
			}
			if n > int(r.M) {
				return false
			}
		}
		return true
	}
	for i := range e.peers {
		for j := i + 1; j < len(e.peers); j++ {
			for k := j + 1; k < len(e.peers); k++ {
				if ok(e.peers[i], e.peers[j], e.peers[k]) {
					return e.peers[i], e.peers[j], e.peers[k]
				}
			}
		}
	}
	t.Fatal("no three peers hold fragments with at most m of any chunk among them")
	return
}

func sorted(ps ...swarm.PeerID) []swarm.PeerID {
	slices.Sort(ps)
	return ps
}

// TestRepairFindsSuspects: a holder the check trusted that serves bad bytes to a repair's
// fetch joins the run's suspects: its fragment is replaced, and no later chunk of the run
// is placed on it.
func TestRepairFindsSuspects(t *testing.T) {
	e := newEnv(t, 12, 12)
	lost := e.peers[0]
	e.w.Kill(lost)
	// One repair at a time, k GETs and no more: memnet latencies are equal, so each fetch
	// asks the chunk's first k live holders, in fragment order.
	u := upkeep.New(e.net, upkeep.Config{Repairs: 1, Fetch: swarm.FetchOptions{Spares: -1, Hedge: -1}})
	hs, st, err := u.Check(t.Context(), e.refs, upkeep.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := slices.IndexFunc(hs, func(h upkeep.Health) bool { return !h.Complete() })
	if first < 0 {
		t.Fatal("nothing to repair: the test needs another seed")
	}
	fr := hs[first].Ref.Fragments
	liarAt := slices.IndexFunc(fr, func(f pipeline.Fragment) bool { return f.Peer != lost })
	liar := fr[liarAt].Peer
	e.w.SetCorrupt(liar, true) // after the check, before the repair
	updated, rst, err := u.RepairAll(t.Context(), hs, upkeep.RepairOptions{Avoid: st.Suspects()})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rst.Suspects, []swarm.PeerID{liar}) {
		t.Fatalf("repair suspects %v, want [%s] (stats %+v)", rst.Suspects, liar, rst)
	}
	if got := updated[hs[first].Ref.ID].Fragments[liarAt].Peer; got == liar {
		t.Fatalf("fragment %d of the first chunk left on %s, which served bad bytes for it", liarAt, liar)
	}
	for _, r := range e.refs {
		nr, ok := updated[r.ID]
		if !ok {
			continue
		}
		for i, f := range nr.Fragments {
			if f.Peer == liar && r.Fragments[i].Peer != liar {
				t.Fatalf("chunk %s: rebuilt fragment %d placed on %s, found serving bad bytes in this run", r.ID, i, liar)
			}
		}
	}
	e.w.SetCorrupt(liar, false)
}

// stallNet is a memnet Net whose stalling peers answer HAS but never answer a GET: each
// GET waits for the caller's deadline. It notes whether the stalling peers' GETs were in
// flight at the same time.
type stallNet struct {
	*memnet.Net
	stall map[swarm.PeerID]bool

	mu         sync.Mutex
	gets       map[swarm.PeerID]int // guarded by mu
	inflight   int                  // guarded by mu
	all        chan struct{}        // closed once every stalling peer has a GET in flight
	overlapped bool                 // guarded by mu
}

func (n *stallNet) Get(ctx context.Context, p swarm.PeerID, id chunker.FragmentID) ([]byte, error) {
	if !n.stall[p] {
		return n.Net.Get(ctx, p, id)
	}
	n.mu.Lock()
	n.gets[p]++
	if n.inflight++; n.inflight == len(n.stall) {
		close(n.all)
	}
	n.mu.Unlock()
	select {
	case <-n.all:
		n.mu.Lock()
		n.overlapped = true
		n.mu.Unlock()
	case <-ctx.Done():
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestVerifyStallingDonors: two donors that answer HAS but stall every GET cost one
// audit timeout each, in parallel, for the whole check: each gets exactly one audit GET,
// its other fragments count as missing for this check, and every other fragment is
// audited.
func TestVerifyStallingDonors(t *testing.T) {
	e := newEnv(t, 12, 20)
	a, b := e.peers[1], e.peers[2]
	sn := &stallNet{Net: e.net, stall: map[swarm.PeerID]bool{a: true, b: true},
		gets: map[swarm.PeerID]int{}, all: make(chan struct{})}
	e.w.ResetRequests()
	u := upkeep.New(sn, upkeep.Config{Timeout: 2 * time.Second})
	hs, st, err := u.Check(t.Context(), e.refs, upkeep.CheckOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if sn.gets[a] != 1 || sn.gets[b] != 1 {
		t.Fatalf("stalling donors got %d and %d audit GETs, want 1 each", sn.gets[a], sn.gets[b])
	}
	if !sn.overlapped {
		t.Fatal("the stalling donors' audits did not run at the same time")
	}
	held := len(fragmentsOn(e.refs, a)) + len(fragmentsOn(e.refs, b))
	if st.Unaudited != held || st.Found != st.Fragments-held || st.Corrupt != 0 || len(st.Liars) != 0 {
		t.Fatalf("stats %+v, want %d unaudited", st, held)
	}
	if len(st.Failures) != 2 || !slices.Equal(st.Suspects(), sorted(a, b)) {
		t.Fatalf("failures %v", st.Failures)
	}
	for _, f := range st.Failures {
		if !errors.Is(f, context.DeadlineExceeded) {
			t.Fatalf("failure %v, want the audit's deadline", f)
		}
	}
	for i, h := range hs {
		if want := holding(e.refs[i], a, b); !slices.Equal(h.Missing, want) {
			t.Fatalf("chunk %d missing %v, want %v", i, h.Missing, want)
		}
	}
	for _, p := range e.peers {
		if p == a || p == b {
			continue
		}
		if n, want := e.w.Requests(p, memnet.OpGet), len(fragmentsOn(e.refs, p)); n != want {
			t.Fatalf("peer %s: %d audit GETs, want %d", p, n, want)
		}
	}
}
