package upkeep_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/swarm/memnet"
	"github.com/scatterfs/scatter/upkeep"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const owner = "owner"

// env is a memnet world with a drive's chunks stored on it.
type env struct {
	w     *memnet.World
	net   *memnet.Net
	store *pipeline.Store
	peers []swarm.PeerID
	refs  []pipeline.Ref
	plain [][]byte
}

// newEnv stores chunks random chunks coded 4+2 on peers donors.
func newEnv(t *testing.T, peers, chunks int) *env {
	t.Helper()
	w := memnet.NewWorld()
	e := &env{w: w, net: w.Net("me", owner), peers: w.AddPeers("donor", peers, 1<<30)}
	var secret crypt.Secret
	secret[0] = 7
	st, err := pipeline.NewStore(e.net, secret.Keys(), pipeline.Config{K: 4, M: 2})
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	r := rand.New(rand.NewPCG(1, 2))
	for range chunks {
		p := make([]byte, 50<<10+r.IntN(100<<10))
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		ref, err := st.Put(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		e.refs = append(e.refs, ref)
		e.plain = append(e.plain, p)
	}
	return e
}

// readAll reads every chunk back through refs and compares it.
func (e *env) readAll(t *testing.T, refs []pipeline.Ref) {
	t.Helper()
	for i, ref := range refs {
		got, err := e.store.Get(t.Context(), ref, nil)
		if err != nil || !bytes.Equal(got, e.plain[i]) {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
}

// holding returns the indexes of ref's fragments on any of peers.
func holding(ref pipeline.Ref, peers ...swarm.PeerID) []int {
	var out []int
	for i, f := range ref.Fragments {
		if slices.Contains(peers, f.Peer) {
			out = append(out, i)
		}
	}
	return out
}

// checkWhole fails unless every fragment of every ref is on a distinct live holder that
// serves the right bytes (which also proves regenerated fragments are byte-identical).
func (e *env) checkWhole(t *testing.T, refs []pipeline.Ref, dead ...swarm.PeerID) {
	t.Helper()
	coder, err := chunker.NewCoder(4, 2)
	if err != nil {
		t.Fatal(err)
	}
	for c, ref := range refs {
		seen := map[swarm.PeerID]bool{}
		for i, f := range ref.Fragments {
			if f.Peer == "" || seen[f.Peer] || slices.Contains(dead, f.Peer) {
				t.Fatalf("chunk %d fragment %d on %q: want distinct live holders, have %v", c, i, f.Peer, ref.Fragments)
			}
			seen[f.Peer] = true
			b, err := e.net.Get(t.Context(), f.Peer, f.ID)
			if err != nil {
				t.Fatalf("chunk %d fragment %d on %s: %v", c, i, f.Peer, err)
			}
			if _, err := coder.VerifyFragment(ref.ID, i, f.ID, b); err != nil {
				t.Fatalf("chunk %d: %v", c, err)
			}
		}
	}
}

func TestCheckOneHasPerPeer(t *testing.T) {
	e := newEnv(t, 10, 30)
	dead := e.refs[0].Fragments[1].Peer
	e.w.Kill(dead)
	e.w.ResetRequests()
	u := upkeep.New(e.net, upkeep.Config{})
	var steps []upkeep.Progress
	hs, st, err := u.Check(t.Context(), e.refs, upkeep.CheckOptions{Progress: func(p upkeep.Progress) { steps = append(steps, p) }})
	if err != nil {
		t.Fatal(err)
	}
	holders := map[swarm.PeerID]bool{}
	for _, r := range e.refs {
		for _, f := range r.Fragments {
			holders[f.Peer] = true
		}
	}
	for p := range holders {
		if n := e.w.Requests(p, memnet.OpHas); n != 1 {
			t.Errorf("peer %s got %d HAS requests, want 1", p, n)
		}
	}
	if last := steps[len(steps)-1]; last.Done != len(holders) || last.Total != len(holders) || last.Phase != "check" {
		t.Errorf("last progress %+v, want %d of %d", last, len(holders), len(holders))
	}
	lost := 0
	for i, h := range hs {
		want := holding(e.refs[i], dead)
		lost += len(want)
		if !slices.Equal(h.Missing, want) || h.Found != 6-len(want) || !h.Readable() {
			t.Errorf("chunk %d: found %d missing %v, want missing %v", i, h.Found, h.Missing, want)
		}
	}
	if st.Chunks != 30 || st.Fragments != 180 || st.Found != 180-lost || len(st.Failures) != 1 || st.Failures[0].Peer != dead ||
		!errors.Is(st.Failures[0], swarm.ErrUnreachable) || st.Complete+st.Degraded != 30 || st.Degraded == 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestRepairAfterLosingM: with m holders gone every chunk is rebuilt onto live, distinct
// peers; then m other peers die and every chunk still reads.
func TestRepairAfterLosingM(t *testing.T) {
	e := newEnv(t, 12, 40)
	dead := []swarm.PeerID{e.peers[0], e.peers[1]}
	for _, p := range dead {
		e.w.Kill(p)
	}
	u := upkeep.New(e.net, upkeep.Config{Repairs: 3})
	hs, _, err := u.Check(t.Context(), e.refs, upkeep.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	paced := 0
	pace := func(ctx context.Context, n int) error { paced += n; return nil }
	updated, st, err := u.RepairAll(t.Context(), hs, upkeep.RepairOptions{Pace: pace})
	if err != nil {
		t.Fatal(err)
	}
	if st.Failed != 0 || st.Partial != 0 || st.Repaired != st.Chunks || st.Chunks == 0 || len(updated) != st.Chunks {
		t.Fatalf("repair stats %+v (updated %d)", st, len(updated))
	}
	refs := slices.Clone(e.refs)
	want := 0
	for i, r := range refs {
		want += len(holding(r, dead...))
		if nr, ok := updated[r.ID]; ok {
			refs[i] = nr
		}
	}
	if st.Rebuilt != want || paced == 0 || st.Bytes != int64(paced) {
		t.Fatalf("rebuilt %d fragments of %d bytes (paced %d), want %d", st.Rebuilt, st.Bytes, paced, want)
	}
	e.checkWhole(t, refs, dead...)
	if _, cst, err := u.Check(t.Context(), refs, upkeep.CheckOptions{}); err != nil || cst.Complete != len(refs) {
		t.Fatalf("after repair: %+v, %v", cst, err)
	}
	for _, p := range []swarm.PeerID{e.peers[2], e.peers[3]} {
		e.w.Kill(p)
	}
	e.readAll(t, refs)
}

// TestRepairHostile: a corrupting holder and a hanging one are found by a verifying check
// and replaced; a corrupting holder met during the fetch is replaced too.
func TestRepairHostile(t *testing.T) {
	e := newEnv(t, 12, 20)
	bad, hung := e.peers[4], e.peers[5]
	e.w.SetCorrupt(bad, true)
	e.w.SetFault(hung, memnet.Hang)
	u := upkeep.New(e.net, upkeep.Config{Timeout: time.Second, Fetch: swarm.FetchOptions{Timeout: time.Second}})
	hs, st, err := u.Check(t.Context(), e.refs, upkeep.CheckOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Corrupt == 0 || len(st.Failures) != 1 || st.Failures[0].Peer != hung || !slices.Equal(st.Liars, []swarm.PeerID{bad}) {
		t.Fatalf("verify check: %+v", st)
	}
	for i, h := range hs {
		if want := holding(e.refs[i], bad, hung); !slices.Equal(h.Missing, want) {
			t.Fatalf("chunk %d missing %v, want %v", i, h.Missing, want)
		}
	}
	updated, rst, err := u.RepairAll(t.Context(), hs, upkeep.RepairOptions{Avoid: st.Suspects()})
	if err != nil || rst.Failed != 0 || rst.Partial != 0 {
		t.Fatalf("repair: %+v %v", rst, err)
	}
	refs := slices.Clone(e.refs)
	for i, r := range refs {
		if nr, ok := updated[r.ID]; ok {
			refs[i] = nr
		}
	}
	e.w.SetFault(hung, memnet.Healthy)
	e.w.SetCorrupt(bad, false)
	e.checkWhole(t, refs, bad, hung)

	// A holder the check trusted but that corrupts during the repair's fetch: with every
	// other holder of a chunk but k dead, the fetch must use it, and it is replaced.
	ref := refs[0]
	victim := ref.Fragments[0].Peer
	e.w.SetCorrupt(victim, true)
	e.w.Kill(ref.Fragments[5].Peer)
	// Fragments 0..4 are "found"; 5 is missing. k=4: the fetch asks 0..3 plus a spare.
	nr, err := u.Repair(t.Context(), upkeep.Health{Ref: ref, Found: 5, Missing: []int{5}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if nr.Fragments[5].Peer == ref.Fragments[5].Peer {
		t.Fatalf("missing fragment not replaced: %v", nr.Fragments)
	}
	if nr.Fragments[0].Peer == victim {
		// Fetch asks k plus one spare holder at once: all five, so the victim was asked.
		t.Fatalf("holder that served bad bytes during the repair kept its fragment: %v", nr.Fragments)
	}
	e.w.SetCorrupt(victim, false)
	e.checkWhole(t, []pipeline.Ref{nr}, ref.Fragments[5].Peer)
}

func TestRepairUnrecoverableAndNoPeers(t *testing.T) {
	e := newEnv(t, 6, 1)
	ref := e.refs[0]
	u := upkeep.New(e.net, upkeep.Config{})
	for _, i := range []int{0, 1, 2} {
		e.w.Kill(ref.Fragments[i].Peer)
	}
	hs, _, err := u.Check(t.Context(), e.refs, upkeep.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if hs[0].Readable() {
		t.Fatal("chunk with 3 of 6 fragments found counts as readable with k=4")
	}
	if got, err := u.Repair(t.Context(), hs[0], nil); !errors.Is(err, upkeep.ErrUnrecoverable) || !slices.Equal(got.Fragments, ref.Fragments) {
		t.Fatalf("repair of an unreadable chunk: %v", err)
	}
	e.w.Revive(ref.Fragments[0].Peer)
	// Five fragments readable but only the six peers exist, all holders: nowhere to go.
	hs, _, _ = u.Check(t.Context(), e.refs, upkeep.CheckOptions{})
	got, err := u.Repair(t.Context(), hs[0], nil)
	if !errors.Is(err, swarm.ErrNotEnoughPeers) || !slices.Equal(got.Fragments, ref.Fragments) {
		t.Fatalf("repair with no spare peer: %v, %v", err, got.Fragments)
	}
	if _, err := u.Repair(t.Context(), upkeep.Health{Ref: pipeline.Ref{K: 4, M: 2}}, nil); !errors.Is(err, upkeep.ErrBadRef) {
		t.Fatalf("malformed ref: %v", err)
	}
}

func TestRenewOneRequestPerPeer(t *testing.T) {
	e := newEnv(t, 8, 25)
	e.w.ResetRequests()
	u := upkeep.New(e.net, upkeep.Config{})
	expires := time.Now().Add(400 * 24 * time.Hour).Truncate(time.Second) // beyond the PUT's lease: renewals never shorten one
	st, err := u.Renew(t.Context(), e.refs, expires, nil)
	if err != nil || len(st.Failures) != 0 || st.Fragments != 150 || st.Renewed != 150 || st.Requests != st.Peers {
		t.Fatalf("renew: %+v, %v", st, err)
	}
	for _, r := range e.refs {
		for _, f := range r.Fragments {
			if got, ok := e.w.Lease(f.Peer, owner, f.ID); !ok || !got.Equal(expires) {
				t.Fatalf("lease of %s on %s: %v %v, want %v", f.ID, f.Peer, got, ok, expires)
			}
		}
	}
	for _, p := range e.peers {
		if n := e.w.Requests(p, memnet.OpRenew); n > 1 {
			t.Fatalf("peer %s got %d RENEWs", p, n)
		}
	}
	// Batches of 4 IDs, and a dead peer reported.
	e.w.ResetRequests()
	e.w.Kill(e.peers[0])
	st, err = upkeep.New(e.net, upkeep.Config{MaxBatch: 4}).Renew(t.Context(), e.refs, expires.Add(time.Hour), nil)
	if err != nil || len(st.Failures) != 1 || st.Failures[0].Peer != e.peers[0] || !errors.Is(st.Failures[0], swarm.ErrUnreachable) {
		t.Fatalf("renew with a dead peer: %+v, %v", st, err)
	}
	per := map[swarm.PeerID]int{}
	for _, r := range e.refs {
		for _, f := range r.Fragments {
			per[f.Peer]++
		}
	}
	for p, n := range per {
		if p == e.peers[0] {
			continue
		}
		if got := e.w.Requests(p, memnet.OpRenew); got != (n+3)/4 {
			t.Fatalf("peer %s with %d fragments got %d RENEWs of at most 4, want %d", p, n, got, (n+3)/4)
		}
	}
	// An expiry sweep keeps what was renewed and drops what was not.
	e.w.Expire(expires.Add(30 * time.Minute))
	e.w.Revive(e.peers[0])
	hs, cst, err := u.Check(t.Context(), e.refs, upkeep.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		if want := holding(e.refs[i], e.peers[0]); !slices.Equal(h.Missing, want) {
			t.Fatalf("after expiry chunk %d misses %v, want %v (%+v)", i, h.Missing, want, cst)
		}
	}
}

func TestCollect(t *testing.T) {
	e := newEnv(t, 8, 10)
	garbage, live := e.refs[:6], e.refs[6:]
	dead, busy := e.peers[0], e.peers[1]
	e.w.Kill(dead)
	e.w.SetFault(busy, memnet.Busy)
	var before int64
	for _, p := range e.peers[2:] {
		s, _ := e.net.Stat(t.Context(), p)
		before += s.Used
	}
	u := upkeep.New(e.net, upkeep.Config{})
	done, st, err := u.Collect(t.Context(), garbage, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []crypt.ChunkID
	for _, r := range garbage {
		if len(holding(r, busy)) == 0 {
			want = append(want, r.ID)
		}
	}
	if !slices.Equal(done, want) || st.Collected != len(want) || len(st.Failures) != 2 {
		t.Fatalf("collected %d of %d (%+v), want %d", len(done), len(garbage), st, len(want))
	}
	var after int64
	for _, p := range e.peers[2:] {
		s, _ := e.net.Stat(t.Context(), p)
		after += s.Used
	}
	if after >= before {
		t.Fatalf("donors use %d bytes after collection, %d before", after, before)
	}
	for _, r := range garbage {
		for _, f := range r.Fragments {
			if f.Peer == dead || f.Peer == busy {
				continue
			}
			if has, _ := e.net.Has(t.Context(), f.Peer, []chunker.FragmentID{f.ID}); has[0] {
				t.Fatalf("fragment %s still on %s", f.ID, f.Peer)
			}
		}
	}
	e.w.SetFault(busy, memnet.Healthy)
	e.w.Revive(dead)
	for _, r := range live {
		if _, err := e.store.Get(t.Context(), r, nil); err != nil {
			t.Fatalf("live chunk after collection: %v", err)
		}
	}
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
