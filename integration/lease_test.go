package integration

import (
	"sync"
	"testing"
	"time"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/upkeep"
)

// TestLeases, with donor processes and a 4-second lease: the fragments of a deleted file
// leave the donors at once (their STAT shows the space freed), those of a file nobody
// renews lapse, and those of a file the owner keeps renewing never do. A DELETE by another
// owner key removes nothing.
func TestLeases(t *testing.T) {
	if testing.Short() {
		t.Skip("starts donor processes")
	}
	ds := startDaemons(t, 8, "1G")
	_, nw := newClient(t, ds[0].Addrs)
	waitCandidates(t, nw, 8)
	const lease = 4 * time.Second
	st, err := pipeline.NewStore(nw, testKeys(), pipeline.Config{K: 4, M: 2, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	put := func(seed uint64) []pipeline.Ref {
		refs, err := putStream(ctx, st, plainStream(seed, 6<<20), 4)
		if err != nil {
			t.Fatal(err)
		}
		return refs
	}
	deleted, renewed, abandoned := put(1), put(2), put(3)
	u := upkeep.New(nw, upkeep.Config{Lease: lease})

	used := func() (sum int64) {
		for _, d := range ds {
			s, err := nw.Stat(ctx, swarm.PeerID(d.ID.String()))
			if err != nil {
				t.Fatal(err)
			}
			sum += s.Used
		}
		return sum
	}
	held := func(refs []pipeline.Ref) (n int) {
		_, cst, err := u.Check(ctx, refs, upkeep.CheckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cst.Found
	}

	// Someone else's signed DELETE of the renewed file's fragments: skipped by the donors.
	_, mallory := newClient(t, ds[0].Addrs)
	for p := range holdersOf(renewed) {
		var ids []chunker.FragmentID
		for _, r := range renewed {
			for _, f := range r.Fragments {
				if f.Peer == p {
					ids = append(ids, f.ID)
				}
			}
		}
		if err := mallory.Delete(ctx, p, ids); err != nil {
			t.Fatalf("another owner's DELETE to %s: %v", p, err)
		}
	}
	if got, want := held(renewed), 6*len(renewed); got != want {
		t.Fatalf("after another owner's DELETE %d of %d fragments held", got, want)
	}

	before := used()
	done, cst, err := u.Collect(ctx, deleted, nil)
	if err != nil || len(done) != len(deleted) || len(cst.Failures) != 0 {
		t.Fatalf("collect: %d of %d, %+v, %v", len(done), len(deleted), cst, err)
	}
	var size int64
	for _, r := range deleted {
		size += int64(len(r.Fragments)) * int64(chunker.Header{K: int(r.K), SealedLen: int(r.SealedLen)}.FragmentSize())
	}
	if after := used(); before-after < size {
		t.Fatalf("donors freed %d bytes, the deleted file's fragments are %d", before-after, size)
	}
	if n := held(deleted); n != 0 {
		t.Fatalf("%d fragments of the deleted file still held", n)
	}

	// Renew one file every second until the other's leases have lapsed.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var renewErr error
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			rst, err := u.Renew(ctx, renewed, time.Now().Add(lease), nil)
			if err == nil && len(rst.Failures) > 0 {
				err = rst.Failures[0]
			}
			if err != nil && renewErr == nil {
				renewErr = err
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for held(abandoned) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned file's fragments outlived their lease by 26 s")
		}
		time.Sleep(250 * time.Millisecond) // polling the donors: their clocks decide
	}
	// One more lease length of renewals (time passing is what this test is about), then stop.
	time.Sleep(lease)
	close(stop)
	wg.Wait()
	if renewErr != nil {
		t.Fatalf("renew: %v", renewErr)
	}
	if got, want := held(renewed), 6*len(renewed); got != want {
		t.Fatalf("renewed file: %d of %d fragments held", got, want)
	}
	if _, err := readBack(ctx, st, renewed, 2, 6<<20, 4); err != nil {
		t.Fatalf("renewed file: %v", err)
	}
}
