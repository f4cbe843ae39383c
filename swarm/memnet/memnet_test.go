package memnet_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/swarm/memnet"
	"github.com/scatterfs/scatter/swarm/swarmtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	ownerA = "owner-a"
	ownerB = "owner-b"
)

func harness(t *testing.T, peers int) swarmtest.Harness {
	w := memnet.NewWorld()
	ids := w.AddPeers("donor", peers, 4<<20)
	// Self is a server peer of the world too, so Candidates has a reason to leave it out.
	w.AddPeer("self", 4<<20)
	w.AddPeer("phone", 4<<20)
	w.SetClient("phone", true)
	for i, id := range ids {
		w.SetDelay(id, time.Duration(i)*100*time.Microsecond)
	}
	return swarmtest.Harness{
		Net:     w.Net("self", ownerA),
		Other:   w.Net("other", ownerB),
		Self:    "self",
		Peers:   ids,
		Clients: []swarm.PeerID{"phone"},
		Kill:    w.Kill,
		Hang:    func(p swarm.PeerID) { w.SetFault(p, memnet.Hang) },
		Lease: func(p swarm.PeerID, id chunker.FragmentID) (time.Time, bool) {
			return w.Lease(p, ownerA, id)
		},
	}
}

func TestConformance(t *testing.T) {
	swarmtest.Run(t, harness)
}

func frag(s string) ([]byte, chunker.FragmentID) {
	b := []byte(s)
	return b, chunker.FragmentIDOf(b)
}

func TestCandidatesDeterministic(t *testing.T) {
	w := memnet.NewWorld()
	w.AddPeers("p", 20, 1<<20)
	n := w.Net("", ownerA)
	ctx := t.Context()
	a, err := n.Candidates(ctx, []byte("key"), 20)
	if err != nil || len(a) != 20 {
		t.Fatalf("Candidates: %d peers, err %v", len(a), err)
	}
	b, _ := n.Candidates(ctx, []byte("key"), 5)
	if !slices.Equal(a[:5], b) {
		t.Fatalf("Candidates(5) = %v, want the first 5 of Candidates(20) %v", b, a[:5])
	}
	c, _ := n.Candidates(ctx, []byte("another key"), 20)
	if slices.Equal(a, c) {
		t.Fatal("two keys gave the same order of 20 peers")
	}
}

func TestKnobs(t *testing.T) {
	w := memnet.NewWorld()
	ids := w.AddPeers("p", 3, 1000)
	n := w.Net("", ownerA)
	ctx := t.Context()
	exp := time.Now().Add(time.Hour)
	data, id := frag("hello fragment")
	p := ids[0]
	if err := n.Put(ctx, p, id, data, exp); err != nil {
		t.Fatal(err)
	}

	w.SetCorrupt(p, true)
	got, err := n.Get(ctx, p, id)
	if err != nil || chunker.FragmentIDOf(got) == id || len(got) != len(data) {
		t.Fatalf("corrupting peer: err %v, got %q", err, got)
	}
	w.SetCorrupt(p, false)
	if got, err := n.Get(ctx, p, id); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after corruption off: err %v, got %q: the stored bytes must stay intact", err, got)
	}

	for f, want := range map[memnet.Fault]error{
		memnet.Unreachable: swarm.ErrUnreachable,
		memnet.Busy:        swarm.ErrBusy,
		memnet.Refuse:      swarm.ErrDenied,
	} {
		w.SetFault(p, f)
		if _, err := n.Get(ctx, p, id); !errors.Is(err, want) {
			t.Errorf("fault %v: Get err %v, want %v", f, err, want)
		}
	}
	w.SetFault(p, memnet.Full)
	if err := n.Put(ctx, p, id, data, exp); !errors.Is(err, swarm.ErrFull) {
		t.Errorf("fault full: Put err %v, want ErrFull", err)
	}
	if _, err := n.Get(ctx, p, id); err != nil {
		t.Errorf("fault full: Get err %v, want served", err)
	}
	w.SetFault(p, memnet.Healthy)

	w.Kill(p)
	if _, err := n.Stat(ctx, p); !errors.Is(err, swarm.ErrUnreachable) {
		t.Errorf("killed: Stat err %v", err)
	}
	w.Revive(p)
	if got, err := n.Get(ctx, p, id); err != nil || !bytes.Equal(got, data) {
		t.Errorf("revived: Get err %v: the store must survive", err)
	}

	w.SetHidden(p, true)
	if l := n.Latency(p); l != 0 {
		t.Errorf("hidden peer: Latency %v, want 0", l)
	}
	cs, _ := n.Candidates(ctx, nil, 3)
	for _, c := range cs {
		if c.ID == p && (c.Free != -1 || c.Latency != 0) {
			t.Errorf("hidden peer in Candidates: %+v", c)
		}
	}
	w.SetDelay(ids[1], 3*time.Millisecond)
	if l := n.Latency(ids[1]); l != 6*time.Millisecond {
		t.Errorf("Latency with 3ms one way = %v, want the round trip 6ms", l)
	}

	// Quota: 1000 bytes.
	big := bytes.Repeat([]byte{7}, 1001)
	if err := n.Put(ctx, ids[2], chunker.FragmentIDOf(big), big, exp); !errors.Is(err, swarm.ErrFull) {
		t.Errorf("Put over quota: err %v, want ErrFull", err)
	}
	if err := n.Put(ctx, ids[2], id, data, time.Now().Add(-time.Second)); !errors.Is(err, swarm.ErrDenied) {
		t.Errorf("Put with an expired lease: err %v, want ErrDenied", err)
	}

	if got := w.Requests(p, memnet.OpGet); got != 7 {
		t.Errorf("Requests(get) = %d, want 7", got)
	}
	if _, err := n.Has(ctx, p, []chunker.FragmentID{id, id, id}); err != nil {
		t.Fatal(err)
	}
	if got := w.Requests(p, memnet.OpHas); got != 1 {
		t.Errorf("Has of 3 IDs counted %d requests, want 1", got)
	}
	w.ResetRequests()
	if got := w.Requests(p, memnet.OpGet); got != 0 {
		t.Errorf("after ResetRequests: %d", got)
	}
}

func TestSharedFragmentLeases(t *testing.T) {
	w := memnet.NewWorld()
	p := w.AddPeers("p", 1, 1000)[0]
	a, b := w.Net("", ownerA), w.Net("", ownerB)
	ctx := t.Context()
	data, id := frag("same bytes for two owners")
	exp := time.Now().Add(time.Hour)
	if err := a.Put(ctx, p, id, data, exp); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, p, id, data, exp.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if st, _ := a.Stat(ctx, p); st.Used != int64(len(data)) || st.Fragments != 1 {
		t.Fatalf("one fragment for two owners: Stat %+v", st)
	}
	if err := a.Delete(ctx, p, []chunker.FragmentID{id}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, p, id); err != nil {
		t.Fatalf("B's fragment gone after A's DELETE: %v", err)
	}
	if _, ok := w.Lease(p, ownerA, id); ok {
		t.Fatal("A's lease kept after A's DELETE")
	}
	w.Expire(exp.Add(30 * time.Minute)) // before B's lease ends
	if _, err := b.Get(ctx, p, id); err != nil {
		t.Fatalf("expired too early: %v", err)
	}
	w.Expire(exp.Add(2 * time.Hour))
	if st, _ := a.Stat(ctx, p); st.Used != 0 || st.Fragments != 0 {
		t.Fatalf("after every lease expired: Stat %+v", st)
	}
}

func TestDelayRespectsCtx(t *testing.T) {
	w := memnet.NewWorld()
	p := w.AddPeers("p", 1, 1000)[0]
	w.SetDelay(p, time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
	defer cancel()
	if _, err := w.Net("", ownerA).Stat(ctx, p); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stat with a 1h delay and a 1ms deadline: err %v", err)
	}
}
