package swarm_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/swarm/memnet"
)

// chunk is a chunk's k+m fragments stored on some peers of a world.
type chunk struct {
	frags   [][]byte
	holders []swarm.Holder
}

// storeChunk puts fragment i of a fresh chunk on on[i], before any delay is set.
func storeChunk(t testing.TB, net swarm.Network, seed uint64, on []swarm.PeerID) chunk {
	t.Helper()
	frags, ids := fragments(seed, len(on), 2048)
	c := chunk{frags: frags}
	for i, p := range on {
		if err := net.Put(context.Background(), p, ids[i], frags[i], time.Now().Add(time.Hour)); err != nil {
			t.Fatalf("Put: %v", err)
		}
		c.holders = append(c.holders, swarm.Holder{Index: i, ID: ids[i], Peer: p})
	}
	return c
}

// check checks that got holds at least k fragments, each equal to the chunk's.
func (c chunk) check(t *testing.T, got [][]byte, k int) {
	t.Helper()
	n := 0
	for i, b := range got {
		if b == nil {
			continue
		}
		n++
		if !bytes.Equal(b, c.frags[i]) {
			t.Fatalf("fragment %d differs from the one stored", i)
		}
	}
	if n < k {
		t.Fatalf("%d fragments fetched, want %d", n, k)
	}
}

func TestFetchAsksFastest(t *testing.T) {
	w, net, peers := world(30, 1<<20)
	// 12 holders scattered over the 30 peers, listed in no particular order.
	on := []swarm.PeerID{peers[29], peers[3], peers[17], peers[8], peers[22], peers[0],
		peers[11], peers[26], peers[5], peers[14], peers[20], peers[1]}
	c := storeChunk(t, net, 1, on)
	spread(w, peers, 2*time.Millisecond, 120*time.Millisecond)
	const k = 8
	// No hedging: on a loaded machine a reply can come late enough to be hedged, and
	// this test counts requests.
	got, err := swarm.Fetch(t.Context(), net, c.holders, k, swarm.FetchOptions{Hedge: -1})
	if err != nil {
		t.Fatal(err)
	}
	c.check(t, got, k)
	// The k+1 lowest-latency holders, and only they, were asked.
	want := map[swarm.PeerID]int{}
	for _, i := range []int{0, 1, 3, 5, 8, 11, 14, 17, 20} {
		want[peers[i]] = 1
	}
	if asked := requests(w, peers, memnet.OpGet); !maps.Equal(asked, want) {
		t.Fatalf("asked %v, want the 9 fastest holders %v", asked, want)
	}
}

// fastSetup returns a world of 12 holders of an 8+4 chunk, holder i with one-way delay
// (i+1)·100µs, so RankHolders order is the holders' order.
func fastSetup(t *testing.T) (*memnet.World, *memnet.Net, []swarm.PeerID, chunk) {
	w, net, peers := world(12, 1<<20)
	c := storeChunk(t, net, 2, peers)
	for i, p := range peers {
		w.SetDelay(p, time.Duration(i+1)*100*time.Microsecond)
	}
	return w, net, peers, c
}

func TestFetchBypassesBadHolders(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opt   swarm.FetchOptions
		fault func(w *memnet.World, p swarm.PeerID)
	}{
		{"corrupt", swarm.FetchOptions{}, func(w *memnet.World, p swarm.PeerID) { w.SetCorrupt(p, true) }},
		{"refuse", swarm.FetchOptions{}, func(w *memnet.World, p swarm.PeerID) { w.SetFault(p, memnet.Refuse) }},
		{"busy", swarm.FetchOptions{Spares: -1}, func(w *memnet.World, p swarm.PeerID) { w.SetFault(p, memnet.Busy) }},
		{"killed", swarm.FetchOptions{Spares: -1}, func(w *memnet.World, p swarm.PeerID) { w.Kill(p) }},
		// Spares and the adaptive hedge (the default) complete the k while the hung
		// holders wait.
		{"hang-adaptive", swarm.FetchOptions{Timeout: time.Hour}, hang},
		// Only spares: two of them cover two hung holders.
		{"hang-spares", swarm.FetchOptions{Spares: 2, Hedge: -1, Timeout: time.Hour}, hang},
		// No spare, no hedge: the request timeout gives up on the hung holders. It is
		// generous because a healthy holder timing out on a loaded machine would fail the
		// test too.
		{"hang-timeout", swarm.FetchOptions{Spares: -1, Hedge: -1, Timeout: 250 * time.Millisecond}, hang},
		// No spare and no timeout in sight: a fixed hedge starts the next holders.
		{"hang-hedge", swarm.FetchOptions{Spares: -1, Timeout: time.Hour, Hedge: 5 * time.Millisecond}, hang},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, net, peers, c := fastSetup(t)
			// The two fastest holders misbehave.
			tc.fault(w, peers[0])
			tc.fault(w, peers[1])
			got, err := swarm.Fetch(t.Context(), net, c.holders, 8, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, got, 8)
			if got[0] != nil || got[1] != nil {
				t.Fatal("fragments 0 and 1 returned by the misbehaving holders")
			}
			for _, p := range peers[:2] {
				if n := w.Requests(p, memnet.OpGet); n != 1 {
					t.Errorf("bad holder %s asked %d times, want 1", p, n)
				}
			}
		})
	}
}

func hang(w *memnet.World, p swarm.PeerID) { w.SetFault(p, memnet.Hang) }

func TestFetchNotEnough(t *testing.T) {
	w, net, peers, c := fastSetup(t)
	for _, p := range peers[:3] {
		w.Kill(p)
	}
	w.SetCorrupt(peers[3], true)
	w.SetFault(peers[4], memnet.Refuse)
	_, err := swarm.Fetch(t.Context(), net, c.holders, 8, swarm.FetchOptions{})
	var ferr *swarm.FetchError
	if !errors.As(err, &ferr) || !errors.Is(err, swarm.ErrNotEnoughFragments) {
		t.Fatalf("err %v, want a FetchError", err)
	}
	if ferr.Verified != 7 || ferr.Want != 8 || len(ferr.Failures) != 5 {
		t.Fatalf("FetchError %+v: want 7 of 8 verified, 5 failures", ferr)
	}
	for _, want := range []error{swarm.ErrUnreachable, swarm.ErrCorrupt, swarm.ErrDenied} {
		if !errors.Is(err, want) {
			t.Errorf("err %v does not wrap %v", err, want)
		}
	}
	for _, p := range peers {
		if n := w.Requests(p, memnet.OpGet); n != 1 {
			t.Errorf("holder %s asked %d times, want 1", p, n)
		}
	}

	// Fewer distinct fragments than k: no request at all.
	w.ResetRequests()
	_, err = swarm.Fetch(t.Context(), net, c.holders[:7], 8, swarm.FetchOptions{})
	if !errors.As(err, &ferr) || ferr.Verified != 0 {
		t.Fatalf("7 holders for k=8: err %v", err)
	}
	if asked := requests(w, peers, memnet.OpGet); len(asked) != 0 {
		t.Fatalf("requests sent for a hopeless fetch: %v", asked)
	}
}

func TestFetchAvoid(t *testing.T) {
	w, net, peers, c := fastSetup(t)
	got, err := swarm.Fetch(t.Context(), net, c.holders, 8, swarm.FetchOptions{Spares: -1, Hedge: -1, Avoid: peers[:2]})
	if err != nil {
		t.Fatal(err)
	}
	c.check(t, got, 8)
	if asked := requests(w, peers, memnet.OpGet); len(asked) != 8 || asked[peers[0]]+asked[peers[1]] != 0 {
		t.Fatalf("asked %v: want 8 holders, not the avoided ones", asked)
	}
}

func TestFetchDuplicateHolders(t *testing.T) {
	// Fragment 0 on two peers; the faster copy is gone.
	w, net, peers := world(4, 1<<20)
	c := storeChunk(t, net, 3, peers[:3])
	if err := net.Put(t.Context(), peers[3], c.holders[0].ID, c.frags[0], time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := net.Delete(t.Context(), peers[0], []chunker.FragmentID{c.holders[0].ID}); err != nil {
		t.Fatal(err)
	}
	holders := append(slices.Clone(c.holders), swarm.Holder{Index: 0, ID: c.holders[0].ID, Peer: peers[3]})
	spread(w, peers, time.Millisecond, 2*time.Millisecond)
	got, err := swarm.Fetch(t.Context(), net, holders, 3, swarm.FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.check(t, got, 3)
	if len(got) != 3 {
		t.Fatalf("result has %d entries, want 3 (largest index + 1)", len(got))
	}
}

func TestFetchCancel(t *testing.T) {
	w, net, peers, c := fastSetup(t)
	for _, p := range peers {
		hang(w, p)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	_, err := swarm.Fetch(ctx, net, c.holders, 8, swarm.FetchOptions{Timeout: time.Hour, Hedge: time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the ctx's deadline", err)
	}
}

func TestFetchBadInput(t *testing.T) {
	_, net, _, c := fastSetup(t)
	if _, err := swarm.Fetch(t.Context(), net, c.holders, 0, swarm.FetchOptions{}); err == nil {
		t.Error("k = 0 accepted")
	}
	bad := slices.Clone(c.holders)
	bad[3].Index = -1
	if _, err := swarm.Fetch(t.Context(), net, bad, 8, swarm.FetchOptions{}); err == nil {
		t.Error("negative index accepted")
	}
}

func TestRankHolders(t *testing.T) {
	w, net, peers := world(5, 1<<20)
	w.SetDelay(peers[0], 5*time.Millisecond)
	w.SetDelay(peers[1], 1*time.Millisecond)
	w.SetHidden(peers[2], true) // unknown latency
	w.SetDelay(peers[3], 3*time.Millisecond)
	w.SetDelay(peers[4], 2*time.Millisecond)
	var hs []swarm.Holder
	for i, p := range peers {
		hs = append(hs, swarm.Holder{Index: i, Peer: p})
	}
	orig := slices.Clone(hs)
	var order []swarm.PeerID
	for _, h := range swarm.RankHolders(net, hs, []swarm.PeerID{peers[4]}) {
		order = append(order, h.Peer)
	}
	if want := []swarm.PeerID{peers[1], peers[3], peers[0], peers[2], peers[4]}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v (fastest first, unknown after known, avoided last)", order, want)
	}
	if !slices.Equal(hs, orig) {
		t.Fatal("RankHolders modified its argument")
	}
}
