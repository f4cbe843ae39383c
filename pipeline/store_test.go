package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/swarm/memnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testStore(t *testing.T, peers int, quota int64) (*Store, *memnet.World, []swarm.PeerID) {
	t.Helper()
	w := memnet.NewWorld()
	ids := w.AddPeers("donor", peers, quota)
	s, err := NewStore(w.Net("me", "owner"), testKeys(t, 20), Config{K: 4, M: 2})
	if err != nil {
		t.Fatal(err)
	}
	return s, w, ids
}

// TestStorePutGet places chunks on distinct peers and reads them back with up to m
// holders dead, one holder corrupting what it serves, and then with m+1 dead.
func TestStorePutGet(t *testing.T) {
	ctx := context.Background()
	s, w, _ := testStore(t, 10, 64<<20)
	plain := randBytes(30, 3<<20)
	ref, err := s.Put(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[swarm.PeerID]bool{}
	for i, f := range ref.Fragments {
		if f.Peer == "" || seen[f.Peer] {
			t.Fatalf("fragment %d on peer %q: holders must be distinct and set: %+v", i, f.Peer, ref.Fragments)
		}
		seen[f.Peer] = true
	}
	got, err := s.Get(ctx, ref, nil)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("get: %v", err)
	}

	w.SetCorrupt(ref.Fragments[0].Peer, true)
	w.Kill(ref.Fragments[1].Peer)
	if got, err := s.Get(ctx, ref, nil); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("get with one corrupt and one dead holder: %v", err)
	}
	w.Kill(ref.Fragments[2].Peer)
	if _, err := s.Get(ctx, ref, nil); !errors.Is(err, ErrUnrecoverable) {
		t.Fatalf("get with m+1 holders lost: err = %v, want ErrUnrecoverable", err)
	}
}

// TestStoreNoPeers: with fewer peers than fragments, Put fails with the network's error
// instead of recording a chunk that is not stored.
func TestStoreNoPeers(t *testing.T) {
	s, _, _ := testStore(t, 5, 64<<20)
	if _, err := s.Put(context.Background(), []byte("hello")); !errors.Is(err, swarm.ErrNotEnoughPeers) {
		t.Fatalf("put with 5 peers for 6 fragments: err = %v, want ErrNotEnoughPeers", err)
	}
}

func TestCapacity(t *testing.T) {
	s, w, ids := testStore(t, 8, 10<<20)
	c, err := s.Capacity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// 8 peers of 10 MiB, fragments on 6 distinct peers: 80/6 MiB per holder slot, times
	// k=4 of plaintext, less the margin.
	if want := int64(80<<20) / 6 * 4; c > want || c < want*95/100 {
		t.Fatalf("capacity %d, want just under %d", c, want)
	}
	for _, id := range ids[:3] {
		w.SetQuota(id, 0)
	}
	if c, _ := s.Capacity(context.Background()); c != 0 {
		t.Fatalf("capacity with 5 peers of space for 6 fragments: %d, want 0", c)
	}
}

func TestPlaceable(t *testing.T) {
	for _, tc := range []struct {
		free []int64
		n    int
		want int64
	}{
		{nil, 3, 0},
		{[]int64{10, 10}, 3, 0},
		{[]int64{10, 10, 10}, 3, 10},
		{[]int64{1, 100, 100}, 3, 1},
		{[]int64{5, 5, 5, 5}, 2, 10},
		{[]int64{100, 1, 1, 1}, 2, 3}, // the big peer pairs with the three small ones
		{[]int64{9, 9, 9, 9, 9, 9}, 6, 9},
		{[]int64{50, 40, 30, 20, 10}, 3, 50}, // 150 in all over 3 slots
	} {
		t.Run(fmt.Sprint(tc.free, tc.n), func(t *testing.T) {
			if got := placeable(tc.free, tc.n); got != tc.want {
				t.Fatalf("placeable(%v, %d) = %d, want %d", tc.free, tc.n, got, tc.want)
			}
		})
	}
}

// TestStoreOtherShape: a store reads chunks coded with another k+m than it writes (a
// drive recovered or shared on a device with other defaults), and refuses a Ref whose
// fragment count contradicts its shape before asking anyone.
func TestStoreOtherShape(t *testing.T) {
	ctx := context.Background()
	small, w, ids := testStore(t, 14, 64<<20) // writes 4+2
	big, err := NewStore(w.Net("me", "owner"), testKeys(t, 20), Config{K: 8, M: 4})
	if err != nil {
		t.Fatal(err)
	}
	plain := randBytes(31, 1<<20)
	ref, err := small.Put(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := big.Get(ctx, ref, nil); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("an 8+4 store reading a 4+2 chunk: %v", err)
	}
	before := 0
	for _, id := range ids {
		before += w.Requests(id, memnet.OpGet)
	}
	bad := ref
	bad.Fragments = bad.Fragments[:5]
	if _, err := big.GetSealed(ctx, bad); err == nil {
		t.Fatal("a Ref coded 4+2 with 5 fragments was accepted")
	}
	bad = ref
	bad.K, bad.M = 0, 6
	if _, err := big.GetSealed(ctx, bad); err == nil {
		t.Fatal("a Ref coded 0+6 was accepted")
	}
	after := 0
	for _, id := range ids {
		after += w.Requests(id, memnet.OpGet)
	}
	if after != before {
		t.Errorf("malformed Refs sent %d GETs, want none", after-before)
	}
}
