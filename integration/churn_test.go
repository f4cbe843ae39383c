package integration

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/upkeep"
)

// churnSize is the bytes TestChurn writes: SCATTER_CHURN_SIZE (bytes) or 256 MiB, which
// keeps the test well within CI's time on a shared 2-core machine.
func churnSize(t *testing.T) int64 {
	if s := os.Getenv("SCATTER_CHURN_SIZE"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			t.Fatalf("SCATTER_CHURN_SIZE=%q: want a positive byte count", s)
		}
		return n
	}
	return 256 << 20
}

// TestChurn: 20 donor processes, k+m = 8+4. Stop 4 random donors: every byte reads;
// repair restores every chunk to 12 fragments on live, distinct peers; stop 4 more: every
// byte still reads. Donors restarted keep their fragments and serve them again.
func TestChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 20 donor processes")
	}
	size := churnSize(t)
	const seed = 77
	ds := startDaemons(t, 20, "4G")
	node, nw := newClient(t, ds[0].Addrs)
	waitCandidates(t, nw, 20)
	st, err := pipeline.NewStore(nw, testKeys(), pipeline.Config{K: 8, M: 4})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	start := time.Now()
	refs, err := putStream(ctx, st, plainStream(seed, size), 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d MiB in %d chunks in %v", size>>20, len(refs), time.Since(start).Round(time.Millisecond))
	if err := checkDistinct(refs); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	order := r.Perm(len(ds))
	first, second := order[:4], order[4:8]
	for _, i := range first {
		ds[i].kill()
	}
	dead := func(idx []int) []swarm.PeerID {
		var out []swarm.PeerID
		for _, i := range idx {
			out = append(out, swarm.PeerID(ds[i].ID.String()))
		}
		return out
	}
	if _, err := readBack(ctx, st, refs, seed, size, 8); err != nil {
		t.Fatalf("read with 4 donors stopped: %v", err)
	}

	u := upkeep.New(nw, upkeep.Config{Repairs: 4})
	hs, cst, err := u.Check(ctx, refs, upkeep.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	holding := 0 // stopped donors holding fragments: each fails the check
	for p := range holdersOf(refs) {
		if slices.Contains(dead(first), p) {
			holding++
		}
	}
	if cst.Unreadable != 0 || cst.Degraded == 0 || len(cst.Failures) != holding {
		t.Fatalf("check with 4 donors stopped: %+v", cst)
	}
	start = time.Now()
	updated, rst, err := u.RepairAll(ctx, hs, upkeep.RepairOptions{Avoid: cst.Suspects()})
	took := time.Since(start)
	if err != nil || rst.Failed != 0 || rst.Partial != 0 {
		t.Fatalf("repair: %+v, %v", rst, err)
	}
	t.Logf("repaired %d chunks (%d fragments, %.1f MiB of chunks) in %v: %.1f MB/s of chunks rebuilt",
		rst.Repaired, rst.Rebuilt, float64(rst.Bytes)/(1<<20), took.Round(time.Millisecond), float64(rst.Bytes)/took.Seconds()/1e6)
	repaired := slices.Clone(refs)
	for i, ref := range repaired {
		if nr, ok := updated[ref.ID]; ok {
			repaired[i] = nr
		}
	}
	if err := checkDistinct(repaired); err != nil {
		t.Fatal(err)
	}
	for i, ref := range repaired {
		for j, f := range ref.Fragments {
			if slices.Contains(dead(first), f.Peer) {
				t.Fatalf("chunk %d fragment %d still on stopped donor %s", i, j, f.Peer)
			}
		}
	}
	if _, cst, err := u.Check(ctx, repaired, upkeep.CheckOptions{}); err != nil || cst.Complete != len(repaired) {
		t.Fatalf("check after repair: %+v, %v", cst, err)
	}

	for _, i := range second {
		ds[i].kill()
	}
	if _, err := readBack(ctx, st, repaired, seed, size, 8); err != nil {
		t.Fatalf("read with 8 donors stopped, 4 after repair: %v", err)
	}

	// Restart the first four: same identity and fragment store, new ports.
	deadline := time.Now().Add(60 * time.Second)
	live := ds[order[8]]
	oldIDs := map[int]peer.ID{}
	for _, i := range first {
		old := ds[i]
		oldIDs[i] = old.ID
		os.Remove(filepath.Join(old.dir, "ready"))
		ds[i] = startDaemon(t, old.dir, "4G", live.Addrs)
	}
	for _, i := range first {
		if err := ds[i].waitReady(deadline); err != nil {
			t.Fatal(err)
		}
		if ds[i].ID != oldIDs[i] {
			t.Fatalf("restarted donor has a new identity %s, was %s", ds[i].ID, oldIDs[i])
		}
		// The client gave up on these peers a moment ago: dial their new addresses.
		connect(t, node.Host().Connect, ds[i])
	}
	for _, p := range dead(first) {
		var ids []chunker.FragmentID
		for _, ref := range refs {
			for _, f := range ref.Fragments {
				if f.Peer == p {
					ids = append(ids, f.ID)
				}
			}
		}
		has, err := nw.Has(ctx, p, ids)
		if err != nil {
			t.Fatalf("HAS to restarted donor %s: %v", p, err)
		}
		for k, ok := range has {
			if !ok {
				t.Fatalf("restarted donor %s lost fragment %s (%d of %d)", p, ids[k], k, len(ids))
			}
		}
	}
	// Repair after the second loss: the restarted donors are candidates again.
	hs, cst, err = u.Check(ctx, repaired, upkeep.CheckOptions{})
	if err != nil || cst.Unreadable != 0 {
		t.Fatalf("check after the second loss: %+v, %v", cst, err)
	}
	updated, rst, err = u.RepairAll(ctx, hs, upkeep.RepairOptions{Avoid: cst.Suspects()})
	if err != nil || rst.Failed != 0 || rst.Partial != 0 {
		t.Fatalf("second repair: %+v, %v", rst, err)
	}
	reused := 0
	for i, ref := range repaired {
		if nr, ok := updated[ref.ID]; ok {
			repaired[i] = nr
			for j, f := range nr.Fragments {
				if f.Peer != ref.Fragments[j].Peer && slices.Contains(dead(first), f.Peer) {
					reused++
				}
			}
		}
	}
	if reused == 0 {
		t.Fatal("no rebuilt fragment went to a restarted donor")
	}
	if _, err := readBack(ctx, st, repaired, seed, size, 8); err != nil {
		t.Fatalf("read after the second repair: %v", err)
	}
}

// connect dials d's current addresses through connectFn (a host's Connect).
func connect(t *testing.T, connectFn func(context.Context, peer.AddrInfo) error, d *daemon) {
	t.Helper()
	ai := peer.AddrInfo{ID: d.ID}
	for _, a := range d.Addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			t.Fatal(err)
		}
		info, err := peer.AddrInfoFromP2pAddr(m)
		if err != nil {
			t.Fatal(err)
		}
		ai.Addrs = append(ai.Addrs, info.Addrs...)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := connectFn(ctx, ai); err != nil {
		t.Fatalf("connect to %s: %v", d.ID, err)
	}
}
