// Package swarmtest is the conformance suite for swarm.Network implementations. Every
// implementation (the in-memory swarm/memnet, the libp2p one in package dht over mocknet and
// over real TCP hosts) runs the same checks, so the data path can rely on the contract
// written in package swarm rather than on one implementation's habits.
//
// Use it from a test of the implementation:
//
//	func TestConformance(t *testing.T) {
//		swarmtest.Run(t, func(t *testing.T, peers int) swarmtest.Harness { ... })
//	}
package swarmtest

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/swarm"
)

// Harness is one fresh network built for one subtest. Run calls the constructor once per
// subtest, so state never leaks from one check to the next; the constructor registers its
// own cleanup with t.Cleanup.
type Harness struct {
	// Net is the network under test, acting for owner A.
	Net swarm.Network
	// Other acts for a second owner B over the same peers (another drive).
	Other swarm.Network
	// Self is Net's own peer ID, which Candidates must never return; "" when Net's node is
	// not a peer of the network.
	Self swarm.PeerID
	// Peers are the donors (server mode) reachable from Net and Other, at least as many as
	// asked for. Candidates may return only these. Each must start empty, with a quota of
	// 2 to 16 MiB: the suite stores fragments of up to about 1 MiB and fills one peer up.
	Peers []swarm.PeerID
	// Clients are peers in client mode, which Candidates must never return. May be empty.
	Clients []swarm.PeerID

	// The hooks below are optional; a nil hook skips the checks that need it.

	// Kill makes p unreachable for the rest of the subtest (a stopped process).
	Kill func(p swarm.PeerID)
	// Hang makes p accept requests and never answer them.
	Hang func(p swarm.PeerID)
	// Lease returns owner A's lease on fragment id at p, and whether A holds one.
	Lease func(p swarm.PeerID, id chunker.FragmentID) (time.Time, bool)
}

// Peers is how many donor peers Run asks the constructor for.
const Peers = 6

// guard bounds any single call the suite makes, so a broken implementation fails the
// subtest instead of hanging the test binary. It is never a performance assertion.
const guard = 30 * time.Second

// Run runs every conformance check as a subtest of t, each on a network from newNet.
func Run(t *testing.T, newNet func(t *testing.T, peers int) Harness) {
	checks := []struct {
		name string
		f    func(t *testing.T, h Harness)
	}{
		{"RoundTrip", testRoundTrip},
		{"PutIdempotent", testPutIdempotent},
		{"GetMissing", testGetMissing},
		{"PutMismatch", testPutMismatch},
		{"HasBatch", testHasBatch},
		{"DeleteFreesSpace", testDelete},
		{"OtherOwner", testOtherOwner},
		{"Renew", testRenew},
		{"StatQuota", testStatQuota},
		{"Candidates", testCandidates},
		{"Cancelled", testCancelled},
		{"HungPeer", testHungPeer},
		{"Unreachable", testUnreachable},
		{"Concurrent", testConcurrent},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			h := newNet(t, Peers)
			if len(h.Peers) < Peers {
				t.Fatalf("harness has %d peers, want at least %d", len(h.Peers), Peers)
			}
			if h.Net == nil || h.Other == nil {
				t.Fatal("harness without Net or Other")
			}
			c.f(t, h)
		})
	}
}

// fragment returns size reproducible random bytes and their ID.
func fragment(seed uint64, size int) ([]byte, chunker.FragmentID) {
	r := rand.New(rand.NewPCG(seed, 0x5ca77e2))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b, chunker.FragmentIDOf(b)
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	t.Cleanup(cancel)
	return ctx
}

func put(t *testing.T, n swarm.Network, p swarm.PeerID, data []byte, id chunker.FragmentID, expires time.Time) {
	t.Helper()
	if err := n.Put(ctxFor(t), p, id, data, expires); err != nil {
		t.Fatalf("Put %s on %s: %v", id, p, err)
	}
}

func stat(t *testing.T, n swarm.Network, p swarm.PeerID) swarm.Stat {
	t.Helper()
	st, err := n.Stat(ctxFor(t), p)
	if err != nil {
		t.Fatalf("Stat %s: %v", p, err)
	}
	if st.Used < 0 || st.Fragments < 0 || st.Used > st.Quota {
		t.Fatalf("Stat %s = %+v: want 0 <= Used <= Quota, Fragments >= 0", p, st)
	}
	return st
}

func has(t *testing.T, n swarm.Network, p swarm.PeerID, ids ...chunker.FragmentID) []bool {
	t.Helper()
	got, err := n.Has(ctxFor(t), p, ids)
	if err != nil {
		t.Fatalf("Has on %s: %v", p, err)
	}
	if len(got) != len(ids) {
		t.Fatalf("Has on %s: %d answers for %d IDs", p, len(got), len(ids))
	}
	return got
}

// leaseTolerance absorbs implementations that carry lease expiries in whole seconds.
const leaseTolerance = time.Second

func sameTime(a, b time.Time) bool {
	d := a.Sub(b)
	return d < leaseTolerance && d > -leaseTolerance
}

func lease(t *testing.T, h Harness, p swarm.PeerID, id chunker.FragmentID) time.Time {
	t.Helper()
	l, ok := h.Lease(p, id)
	if !ok {
		t.Fatalf("no lease of owner A on %s at %s", id, p)
	}
	return l
}

func testRoundTrip(t *testing.T, h Harness) {
	expires := time.Now().Add(time.Hour)
	for i, size := range []int{1, 4096, 1<<20 + 17} {
		p := h.Peers[i]
		data, id := fragment(uint64(i), size)
		put(t, h.Net, p, data, id, expires)
		got, err := h.Net.Get(ctxFor(t), p, id)
		if err != nil {
			t.Fatalf("Get %d bytes: %v", size, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("Get %d bytes: returned %d bytes that differ from what was put", size, len(got))
		}
		// The caller's buffer is its own after Put returns: changing it must not change
		// what the peer stores.
		data[0] ^= 0xff
		if got, err := h.Net.Get(ctxFor(t), p, id); err != nil || chunker.FragmentIDOf(got) != id {
			t.Fatalf("Get after the caller reused its buffer: err %v, bytes changed %v", err, err == nil)
		}
		if st := stat(t, h.Net, p); st.Used < int64(size) || st.Fragments != 1 {
			t.Fatalf("Stat after one PUT of %d bytes = %+v, want Used >= %d, Fragments 1", size, st, size)
		}
	}
}

func testPutIdempotent(t *testing.T, h Harness) {
	p := h.Peers[0]
	data, id := fragment(1, 10000)
	t1 := time.Now().Add(time.Hour)
	t2 := t1.Add(24 * time.Hour)
	put(t, h.Net, p, data, id, t1)
	once := stat(t, h.Net, p)
	put(t, h.Net, p, data, id, t2)
	if st := stat(t, h.Net, p); st != once || st.Fragments != 1 || st.Used < int64(len(data)) {
		t.Fatalf("Stat after the same PUT twice = %+v, after once %+v: want the same, 1 fragment", st, once)
	}
	if h.Lease == nil {
		return
	}
	if l := lease(t, h, p, id); !sameTime(l, t2) {
		t.Fatalf("lease after a second PUT = %v, want it extended to %v", l, t2)
	}
	put(t, h.Net, p, data, id, t1)
	if l := lease(t, h, p, id); !sameTime(l, t2) {
		t.Fatalf("lease after a PUT with an earlier expiry = %v, want it kept at %v", l, t2)
	}
}

func testGetMissing(t *testing.T, h Harness) {
	_, id := fragment(2, 100)
	_, err := h.Net.Get(ctxFor(t), h.Peers[0], id)
	if !errors.Is(err, swarm.ErrNotFound) {
		t.Fatalf("Get of a fragment never stored: err %v, want ErrNotFound", err)
	}
}

func testPutMismatch(t *testing.T, h Harness) {
	p := h.Peers[0]
	data, id := fragment(3, 5000)
	bad := bytes.Clone(data)
	bad[100] ^= 1
	err := h.Net.Put(ctxFor(t), p, id, bad, time.Now().Add(time.Hour))
	if !errors.Is(err, swarm.ErrDenied) {
		t.Fatalf("Put of bytes that do not hash to the ID: err %v, want ErrDenied", err)
	}
	if has(t, h.Net, p, id)[0] {
		t.Fatal("the peer kept a fragment it refused")
	}
	if st := stat(t, h.Net, p); st.Used != 0 || st.Fragments != 0 {
		t.Fatalf("Stat after a refused PUT = %+v, want nothing stored", st)
	}
}

func testHasBatch(t *testing.T, h Harness) {
	p := h.Peers[0]
	a, ida := fragment(4, 300)
	b, idb := fragment(5, 400)
	_, missing := fragment(6, 500)
	exp := time.Now().Add(time.Hour)
	put(t, h.Net, p, a, ida, exp)
	put(t, h.Net, p, b, idb, exp)
	got := has(t, h.Net, p, ida, missing, ida, idb, missing)
	if want := []bool{true, false, true, true, false}; !slices.Equal(got, want) {
		t.Fatalf("Has(a, missing, a, b, missing) = %v, want %v", got, want)
	}
	if got := has(t, h.Net, p); len(got) != 0 {
		t.Fatalf("Has of no IDs = %v, want empty", got)
	}
	// Another peer holds none of them.
	if got := has(t, h.Net, h.Peers[1], ida, idb); !slices.Equal(got, []bool{false, false}) {
		t.Fatalf("Has on a peer that stores nothing = %v", got)
	}
}

func testDelete(t *testing.T, h Harness) {
	p := h.Peers[0]
	a, ida := fragment(7, 3000)
	b, idb := fragment(8, 5000)
	_, missing := fragment(9, 10)
	exp := time.Now().Add(time.Hour)
	before := stat(t, h.Net, p)
	put(t, h.Net, p, a, ida, exp)
	withA := stat(t, h.Net, p)
	put(t, h.Net, p, b, idb, exp)
	st := stat(t, h.Net, p)
	if st.Used < before.Used+int64(len(a)+len(b)) || st.Fragments != before.Fragments+2 {
		t.Fatalf("Stat after two PUTs = %+v, was %+v", st, before)
	}
	// What b costs, overhead included, is what deleting a must leave.
	costB := st.Used - withA.Used
	if err := h.Net.Delete(ctxFor(t), p, []chunker.FragmentID{ida, missing}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	st = stat(t, h.Net, p)
	if st.Used != before.Used+costB || st.Fragments != before.Fragments+1 {
		t.Fatalf("Stat after deleting one of two = %+v, was %+v before both PUTs", st, before)
	}
	if st.Free() != st.Quota-st.Used {
		t.Fatalf("Free = %d, want Quota-Used", st.Free())
	}
	if _, err := h.Net.Get(ctxFor(t), p, ida); !errors.Is(err, swarm.ErrNotFound) {
		t.Fatalf("Get after Delete: err %v, want ErrNotFound", err)
	}
	if got := has(t, h.Net, p, ida, idb); !slices.Equal(got, []bool{false, true}) {
		t.Fatalf("Has after Delete = %v, want [false true]", got)
	}
	if err := h.Net.Delete(ctxFor(t), p, []chunker.FragmentID{ida}); err != nil {
		t.Fatalf("Delete again (idempotent): %v", err)
	}
}

func testOtherOwner(t *testing.T, h Harness) {
	p := h.Peers[0]
	data, id := fragment(10, 2000)
	t1 := time.Now().Add(time.Hour)
	put(t, h.Net, p, data, id, t1)
	before := stat(t, h.Net, p)
	if err := h.Other.Delete(ctxFor(t), p, []chunker.FragmentID{id}); err != nil {
		t.Fatalf("Delete by another owner: err %v, want nil (skipped)", err)
	}
	if !has(t, h.Net, p, id)[0] {
		t.Fatal("another owner's DELETE removed the fragment")
	}
	if st := stat(t, h.Net, p); st != before {
		t.Fatalf("Stat after another owner's DELETE = %+v, want unchanged %+v", st, before)
	}
	if got, err := h.Net.Get(ctxFor(t), p, id); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after another owner's DELETE: %v", err)
	}
	if h.Lease == nil {
		return
	}
	t2 := t1.Add(48 * time.Hour)
	if err := h.Other.Renew(ctxFor(t), p, []chunker.FragmentID{id}, t2); err != nil {
		t.Fatalf("Renew by another owner: err %v, want nil (skipped)", err)
	}
	if l := lease(t, h, p, id); !sameTime(l, t1) {
		t.Fatalf("lease after another owner's RENEW = %v, want unchanged %v", l, t1)
	}
}

func testRenew(t *testing.T, h Harness) {
	if h.Lease == nil {
		t.Skip("harness has no Lease hook")
	}
	p := h.Peers[0]
	data, id := fragment(11, 700)
	t1 := time.Now().Add(time.Hour)
	t2 := t1.Add(72 * time.Hour)
	put(t, h.Net, p, data, id, t1)
	if l := lease(t, h, p, id); !sameTime(l, t1) {
		t.Fatalf("lease after PUT = %v, want %v", l, t1)
	}
	for range 2 { // idempotent
		if err := h.Net.Renew(ctxFor(t), p, []chunker.FragmentID{id}, t2); err != nil {
			t.Fatalf("Renew: %v", err)
		}
		if l := lease(t, h, p, id); !sameTime(l, t2) {
			t.Fatalf("lease after RENEW = %v, want %v", l, t2)
		}
	}
}

func testStatQuota(t *testing.T, h Harness) {
	p := h.Peers[1]
	st := stat(t, h.Net, p)
	if st.Used != 0 || st.Fragments != 0 {
		t.Fatalf("Stat of a fresh peer = %+v, want empty", st)
	}
	const size = 64 << 10
	if st.Quota < 2<<20 || st.Quota > 16<<20 {
		t.Fatalf("harness peer quota %d: want 2 to 16 MiB so the suite can fill it", st.Quota)
	}
	// Fill the peer with fragments until it answers ErrFull; Used may count more than the
	// payload (headers, rounding) but never passes Quota.
	exp := time.Now().Add(time.Hour)
	var stored int64
	for seed := uint64(100); ; seed++ {
		data, id := fragment(seed, size)
		err := h.Net.Put(ctxFor(t), p, id, data, exp)
		after := stat(t, h.Net, p)
		if errors.Is(err, swarm.ErrFull) {
			if after != st {
				t.Fatalf("Stat after a refused PUT = %+v, want unchanged %+v", after, st)
			}
			break
		}
		if err != nil {
			t.Fatalf("Put %d bytes with %d stored: %v", size, stored, err)
		}
		stored += size
		if after.Used < st.Used+size || after.Fragments != st.Fragments+1 {
			t.Fatalf("Stat after a PUT of %d bytes = %+v, was %+v", size, after, st)
		}
		if stored > st.Quota {
			t.Fatalf("stored %d bytes with a quota of %d and no ErrFull", stored, st.Quota)
		}
		st = after
	}
	// Not a byte more than is free can fit.
	data, id := fragment(1, int(st.Free())+1)
	if err := h.Net.Put(ctxFor(t), p, id, data, exp); !errors.Is(err, swarm.ErrFull) {
		t.Fatalf("Put of %d bytes with %d free: err %v, want ErrFull", len(data), st.Free(), err)
	}
	// A fragment the peer already holds is not charged twice, even when full.
	data0, id0 := fragment(100, size)
	put(t, h.Net, p, data0, id0, exp.Add(time.Hour))
	if after := stat(t, h.Net, p); after != st {
		t.Fatalf("Stat after re-PUT of a held fragment on a full peer = %+v, want %+v", after, st)
	}
}

func testCandidates(t *testing.T, h Harness) {
	known := make(map[swarm.PeerID]bool)
	for _, p := range h.Peers {
		known[p] = true
	}
	for _, key := range [][]byte{[]byte("chunk a"), {0, 1, 2, 3}, bytes.Repeat([]byte{0xff}, 32)} {
		for _, n := range []int{0, 1, 3, len(h.Peers), 3 * len(h.Peers)} {
			got, err := h.Net.Candidates(ctxFor(t), key, n)
			if err != nil {
				t.Fatalf("Candidates(%x, %d): %v", key, n, err)
			}
			if len(got) > n {
				t.Fatalf("Candidates(%x, %d) returned %d peers", key, n, len(got))
			}
			if n > 0 && len(got) == 0 {
				t.Fatalf("Candidates(%x, %d) returned none of %d peers", key, n, len(h.Peers))
			}
			seen := make(map[swarm.PeerID]bool)
			for _, c := range got {
				switch {
				case c.ID == h.Self && h.Self != "":
					t.Fatalf("Candidates(%x, %d) returned self %s", key, n, c.ID)
				case slices.Contains(h.Clients, c.ID):
					t.Fatalf("Candidates(%x, %d) returned client-mode peer %s", key, n, c.ID)
				case !known[c.ID]:
					t.Fatalf("Candidates(%x, %d) returned %q, not a donor of the harness", key, n, c.ID)
				case seen[c.ID]:
					t.Fatalf("Candidates(%x, %d) returned %s twice", key, n, c.ID)
				case c.Latency < 0 || c.Free < -1:
					t.Fatalf("Candidates(%x, %d): peer %+v: Latency must be >= 0, Free >= -1", key, n, c)
				}
				seen[c.ID] = true
			}
		}
	}
}

// testCancelled checks that every request with an already cancelled ctx fails with an error
// that wraps context.Canceled.
func testCancelled(t *testing.T, h Harness) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p := h.Peers[0]
	data, id := fragment(12, 100)
	exp := time.Now().Add(time.Hour)
	calls := map[string]func() error{
		"Put": func() error { return h.Net.Put(ctx, p, id, data, exp) },
		"Get": func() error { _, err := h.Net.Get(ctx, p, id); return err },
		"Has": func() error { _, err := h.Net.Has(ctx, p, []chunker.FragmentID{id}); return err },
		"Delete": func() error {
			return h.Net.Delete(ctx, p, []chunker.FragmentID{id})
		},
		"Renew": func() error {
			return h.Net.Renew(ctx, p, []chunker.FragmentID{id}, exp)
		},
		"Stat": func() error { _, err := h.Net.Stat(ctx, p); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled ctx: err %v, want context.Canceled", name, err)
		}
	}
}

// testHungPeer checks that requests to a peer that never answers return once their ctx
// ends, with the ctx's error.
func testHungPeer(t *testing.T, h Harness) {
	if h.Hang == nil {
		t.Skip("harness has no Hang hook")
	}
	p := h.Peers[2]
	data, id := fragment(13, 1000)
	h.Hang(p)
	calls := map[string]func(ctx context.Context) error{
		"Put": func(ctx context.Context) error { return h.Net.Put(ctx, p, id, data, time.Now().Add(time.Hour)) },
		"Get": func(ctx context.Context) error { _, err := h.Net.Get(ctx, p, id); return err },
		"Has": func(ctx context.Context) error {
			_, err := h.Net.Has(ctx, p, []chunker.FragmentID{id})
			return err
		},
		"Stat": func(ctx context.Context) error { _, err := h.Net.Stat(ctx, p); return err },
	}
	var wg sync.WaitGroup
	for name, call := range calls {
		wg.Go(func() {
			// The deadline cancels the request while it waits for the hung peer.
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- call(ctx) }()
			select {
			case err := <-done:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("%s to a hung peer: err %v, want context.DeadlineExceeded", name, err)
				}
			case <-time.After(guard):
				t.Errorf("%s to a hung peer did not return %v after its ctx ended", name, guard)
				<-done // the call would leak otherwise; the test times out here if it never returns
			}
		})
	}
	wg.Wait()
}

func testUnreachable(t *testing.T, h Harness) {
	if h.Kill == nil {
		t.Skip("harness has no Kill hook")
	}
	p := h.Peers[3]
	data, id := fragment(14, 1000)
	exp := time.Now().Add(time.Hour)
	put(t, h.Net, p, data, id, exp)
	h.Kill(p)
	calls := map[string]func() error{
		"Put": func() error { return h.Net.Put(ctxFor(t), p, id, data, exp) },
		"Get": func() error { _, err := h.Net.Get(ctxFor(t), p, id); return err },
		"Has": func() error { _, err := h.Net.Has(ctxFor(t), p, []chunker.FragmentID{id}); return err },
		"Stat": func() error {
			_, err := h.Net.Stat(ctxFor(t), p)
			return err
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, swarm.ErrUnreachable) {
			t.Errorf("%s to a killed peer: err %v, want ErrUnreachable", name, err)
		}
	}
	// The other peers are unaffected.
	if _, err := h.Net.Stat(ctxFor(t), h.Peers[0]); err != nil {
		t.Errorf("Stat of a live peer after killing another: %v", err)
	}
}

// testConcurrent runs round trips from both owners on all peers at once; with -race it
// checks that the implementation is safe for concurrent use.
func testConcurrent(t *testing.T, h Harness) {
	var wg sync.WaitGroup
	exp := time.Now().Add(time.Hour)
	for i, p := range h.Peers {
		for j, n := range []swarm.Network{h.Net, h.Other} {
			wg.Go(func() {
				for k := range 4 {
					data, id := fragment(uint64(1000+100*i+10*j+k), 2000+k)
					ctx := ctxFor(t)
					if err := n.Put(ctx, p, id, data, exp); err != nil {
						t.Errorf("Put on %s: %v", p, err)
						return
					}
					got, err := n.Get(ctx, p, id)
					if err != nil || !bytes.Equal(got, data) {
						t.Errorf("Get on %s: err %v, equal %v", p, err, bytes.Equal(got, data))
						return
					}
				}
			})
		}
	}
	wg.Wait()
	for _, p := range h.Peers {
		if st := stat(t, h.Net, p); st.Fragments != 8 || st.Used < 2*(2000+2001+2002+2003) {
			t.Errorf("Stat of %s after concurrent PUTs = %+v, want 8 fragments", p, st)
		}
	}
}
