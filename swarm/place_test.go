package swarm_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/swarm/memnet"
)

var key = []byte("chunk key")

// checkHolders checks that holders are distinct, that none is in bad, and that each holds
// its fragment intact.
func checkHolders(t *testing.T, net swarm.Network, holders []swarm.PeerID, frags [][]byte, bad ...swarm.PeerID) {
	t.Helper()
	if len(holders) != len(frags) {
		t.Fatalf("%d holders for %d fragments", len(holders), len(frags))
	}
	seen := make(map[swarm.PeerID]bool)
	for i, h := range holders {
		if h == "" {
			t.Fatalf("fragment %d has no holder", i)
		}
		if seen[h] {
			t.Fatalf("peer %s holds two fragments: %v", h, holders)
		}
		seen[h] = true
		if slices.Contains(bad, h) {
			t.Fatalf("fragment %d placed on %s, which should have failed", i, h)
		}
		got, err := net.Get(context.Background(), h, chunker.FragmentIDOf(frags[i]))
		if err != nil || string(got) != string(frags[i]) {
			t.Fatalf("fragment %d on %s: err %v", i, h, err)
		}
	}
}

func TestPlaceDistinct(t *testing.T) {
	w, net, peers := world(30, 1<<20)
	spread(w, peers, 0, 3*time.Millisecond)
	frags, ids := fragments(1, 12, 4096)
	holders, err := swarm.Place(t.Context(), net, key, frags, ids, time.Now().Add(time.Hour), swarm.PlaceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkHolders(t, net, holders, frags)
	// Spares may leave a copy whose reply was lost to cancellation, never more.
	if n := stored(t, net, peers); n < 12 || n > 12+swarm.DefaultExtra {
		t.Fatalf("%d fragments stored in all, want 12 to %d", n, 12+swarm.DefaultExtra)
	}
}

func TestPlaceHangingPeer(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  swarm.PlaceOptions
	}{
		// A spare PUT takes the hung peer's slot; the PUT timeout is never reached.
		{"spare", swarm.PlaceOptions{Timeout: time.Hour}},
		// No spares: the PUT timeout fails the hung PUT and it is retried elsewhere.
		{"timeout", swarm.PlaceOptions{Extra: -1, Timeout: 250 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, net, peers := world(20, 1<<20)
			spread(w, peers, 2*time.Millisecond, 3*time.Millisecond)
			// The fastest peer hangs: it is ranked first and surely gets a PUT.
			hung := peers[5]
			w.SetDelay(hung, 100*time.Microsecond)
			w.SetFault(hung, memnet.Hang)
			frags, ids := fragments(2, 6, 1000)
			holders, err := swarm.Place(t.Context(), net, key, frags, ids, time.Now().Add(time.Hour), tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			checkHolders(t, net, holders, frags, hung)
			if n := w.Requests(hung, memnet.OpPut); n != 1 {
				t.Fatalf("hung peer got %d PUTs, want 1", n)
			}
		})
	}
}

func TestPlaceRetriesFailures(t *testing.T) {
	w, net, peers := world(16, 1<<20)
	spread(w, peers, time.Millisecond, 2*time.Millisecond)
	// The five fastest peers fail, each differently.
	faults := map[swarm.PeerID]memnet.Fault{
		peers[10]: memnet.Busy, peers[11]: memnet.Refuse, peers[12]: memnet.Unreachable,
		peers[13]: memnet.Full, peers[14]: memnet.Healthy,
	}
	var bad []swarm.PeerID
	for p, f := range faults {
		w.SetDelay(p, 100*time.Microsecond)
		w.SetFault(p, f)
		bad = append(bad, p)
	}
	w.Kill(peers[14])
	frags, ids := fragments(3, 6, 1000)
	holders, err := swarm.Place(t.Context(), net, key, frags, ids, time.Now().Add(time.Hour),
		swarm.PlaceOptions{Extra: -1})
	if err != nil {
		t.Fatal(err)
	}
	checkHolders(t, net, holders, frags, bad...)
	for _, p := range bad {
		if n := w.Requests(p, memnet.OpPut); n != 1 {
			t.Errorf("failing peer %s got %d PUTs, want exactly 1", p, n)
		}
	}
}

func TestPlaceSkipsFullPeers(t *testing.T) {
	w, net, peers := world(12, 1<<20)
	frags, ids := fragments(4, 4, 5000)
	// Known to be too small: never asked.
	full := peers[:4]
	for _, p := range full {
		w.SetQuota(p, 4999)
	}
	// Too small but not known to be: asked once, refuses with ErrFull, and the fragment
	// goes elsewhere.
	secret := peers[4]
	w.SetQuota(secret, 100)
	w.SetHidden(secret, true)
	excluded := peers[5:7]
	holders, err := swarm.Place(t.Context(), net, key, frags, ids, time.Now().Add(time.Hour),
		swarm.PlaceOptions{Exclude: excluded, Extra: -1, Candidates: 12})
	if err != nil {
		t.Fatal(err)
	}
	checkHolders(t, net, holders, frags, append(append([]swarm.PeerID{secret}, full...), excluded...)...)
	for _, p := range append(slices.Clone(full), excluded...) {
		if n := w.Requests(p, memnet.OpPut); n != 0 {
			t.Errorf("full or excluded peer %s got %d PUTs", p, n)
		}
	}
	// The hidden peer ranks after all measured ones, so it is asked only if they run out;
	// with 5 usable measured peers and 4 fragments it must not be needed.
	if n := w.Requests(secret, memnet.OpPut); n != 0 {
		t.Errorf("unmeasured peer got %d PUTs while measured peers were left", n)
	}

	// Now only the hidden small peer and 3 others: it is asked and refuses.
	w2, net2, peers2 := world(4, 1<<20)
	w2.SetQuota(peers2[0], 100)
	w2.SetHidden(peers2[0], true)
	_, err = swarm.Place(t.Context(), net2, key, frags, ids, time.Now().Add(time.Hour), swarm.PlaceOptions{Extra: -1})
	if !errors.Is(err, swarm.ErrNotEnoughPeers) || !errors.Is(err, swarm.ErrFull) {
		t.Fatalf("err %v, want ErrNotEnoughPeers wrapping ErrFull", err)
	}
	if n := w2.Requests(peers2[0], memnet.OpPut); n != 1 {
		t.Errorf("small unmeasured peer got %d PUTs, want 1", n)
	}
	if n := stored(t, net2, peers2); n != 0 {
		t.Errorf("a failed placement left %d fragments behind", n)
	}
}

func TestPlaceNotEnoughPeers(t *testing.T) {
	frags, ids := fragments(5, 6, 1000)
	exp := time.Now().Add(time.Hour)

	// Too few candidates from the start: nothing is sent.
	w, net, peers := world(5, 1<<20)
	_, err := swarm.Place(t.Context(), net, key, frags, ids, exp, swarm.PlaceOptions{})
	var perr *swarm.PlaceError
	if !errors.Is(err, swarm.ErrNotEnoughPeers) || !errors.As(err, &perr) || perr.Candidates != 5 {
		t.Fatalf("err %v, want a PlaceError with 5 candidates", err)
	}
	if got := requests(w, peers, memnet.OpPut); len(got) != 0 {
		t.Fatalf("PUTs sent although placement could not succeed: %v", got)
	}

	// Enough candidates, but three are busy.
	w, net, peers = world(8, 1<<20)
	for _, p := range peers[:3] {
		w.SetFault(p, memnet.Busy)
	}
	holders, err := swarm.Place(t.Context(), net, key, frags, ids, exp, swarm.PlaceOptions{Extra: -1})
	if holders != nil || !errors.As(err, &perr) || !errors.Is(err, swarm.ErrBusy) || errors.Is(err, swarm.ErrDegraded) {
		t.Fatalf("holders %v, err %v: want none, a PlaceError wrapping ErrBusy", holders, err)
	}
	if perr.Placed != 5 || len(perr.Failures) != 3 {
		t.Fatalf("PlaceError %+v: want 5 placed, 3 failures", perr)
	}
	if n := stored(t, net, peers[3:]); n != 0 {
		t.Fatalf("a failed placement left %d fragments behind", n)
	}

	// The same with a minimum of 5 accepted: a degraded placement.
	holders, err = swarm.Place(t.Context(), net, key, frags, ids, exp, swarm.PlaceOptions{Extra: -1, Min: 5})
	if !errors.Is(err, swarm.ErrDegraded) || errors.Is(err, swarm.ErrNotEnoughPeers) {
		t.Fatalf("err %v, want ErrDegraded", err)
	}
	missing := 0
	for i, h := range holders {
		if h == "" {
			missing++
			continue
		}
		if slices.Contains(peers[:3], h) {
			t.Fatalf("fragment %d on busy peer %s", i, h)
		}
	}
	if missing != 1 {
		t.Fatalf("holders %v: want exactly one fragment unplaced", holders)
	}
}

func TestPlaceCancel(t *testing.T) {
	w, net, peers := world(10, 1<<20)
	for _, p := range peers {
		w.SetFault(p, memnet.Hang)
	}
	frags, ids := fragments(6, 4, 100)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err := swarm.Place(ctx, net, key, frags, ids, time.Now().Add(time.Hour), swarm.PlaceOptions{Timeout: time.Hour})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the ctx's deadline", err)
	}
}

func TestPlaceBadInput(t *testing.T) {
	_, net, _ := world(10, 1<<20)
	frags, ids := fragments(7, 4, 100)
	exp := time.Now().Add(time.Hour)
	for name, call := range map[string]func() error{
		"no fragments": func() error {
			_, err := swarm.Place(t.Context(), net, key, nil, nil, exp, swarm.PlaceOptions{})
			return err
		},
		"IDs mismatch": func() error {
			_, err := swarm.Place(t.Context(), net, key, frags, ids[:3], exp, swarm.PlaceOptions{})
			return err
		},
		"min too big": func() error {
			_, err := swarm.Place(t.Context(), net, key, frags, ids, exp, swarm.PlaceOptions{Min: 5})
			return err
		},
	} {
		if err := call(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A wrong ID is refused by every donor: the placement fails with ErrDenied.
	ids[2][0] ^= 1
	if _, err := swarm.Place(t.Context(), net, key, frags, ids, exp, swarm.PlaceOptions{}); !errors.Is(err, swarm.ErrDenied) {
		t.Errorf("wrong fragment ID: err %v, want ErrDenied", err)
	}
}

// TestPlaceSpreadsOverKeySpace: donors advertising far more free space than the others do
// not attract a fragment of every chunk; each chunk goes to its own part of the key space.
func TestPlaceSpreadsOverKeySpace(t *testing.T) {
	w := memnet.NewWorld()
	ids := w.AddPeers("donor", 24, 64<<20)
	big := ids[:5]
	for _, id := range big {
		w.SetQuota(id, 1<<40)
	}
	net := w.Net("self", "owner")
	const k, m, chunks = 4, 2, 40
	held := map[swarm.PeerID]int{}
	for c := range chunks {
		frags, fids := fragments(uint64(1000+c), k+m, 4096)
		holders, err := swarm.Place(t.Context(), net, []byte(fmt.Sprintf("chunk %d", c)), frags, fids,
			time.Now().Add(time.Hour), swarm.PlaceOptions{})
		if err != nil {
			t.Fatal(err)
		}
		bigHere := 0
		for _, h := range holders {
			held[h]++
			if slices.Contains(big, h) {
				bigHere++
			}
		}
		if bigHere > m {
			t.Fatalf("chunk %d: %d of its %d fragments on the 5 large donors (more than m=%d)", c, bigHere, k+m, m)
		}
	}
	if len(held) < 20 {
		t.Fatalf("%d chunks of %d fragments landed on only %d of 24 donors: %v", chunks, k+m, len(held), held)
	}
}
