package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/delegate"
	"github.com/scatterfs/scatter/dht"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/root"
	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/upkeep"
)

// memRefs is the owner's metadata in memory: a delegate.Refs over a list of Refs.
type memRefs struct {
	mu   sync.Mutex
	refs []pipeline.Ref
}

func (m *memRefs) LiveRefs(context.Context) ([]pipeline.Ref, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.refs), nil
}

func (m *memRefs) UpdateRefs(_ context.Context, u map[crypt.ChunkID]pipeline.Ref) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.refs {
		if nr, ok := u[m.refs[i].ID]; ok {
			m.refs[i] = nr
		}
	}
	return nil
}

// ownerClient starts a client-mode node acting for the drive's storage key, and its Network.
func ownerClient(t *testing.T, boot []string, keys *crypt.Keys) (*dht.Node, *dht.Network) {
	t.Helper()
	n, err := dht.New(t.Context(), dht.Config{
		DataDir: t.TempDir(), ListenAddrs: tcpLoopback, Bootstrap: boot,
		Mode: dht.ModeClient, Owner: keys.Storage, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() }) // Close may come earlier too: it is idempotent
	nw, err := dht.NewNetwork(n, dht.NetworkConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return n, nw
}

func delegateSize(t *testing.T) int64 {
	if s := os.Getenv("SCATTER_DELEGATE_MIB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("SCATTER_DELEGATE_MIB: %v", err)
		}
		return int64(n) << 20
	}
	return 24 << 20
}

// TestDelegatedRepair: the owner writes a file (and another it never lists in the
// manifest), publishes the repair manifest and goes offline; m donors die; `scatter
// daemon -repair CAP` on another donor brings every chunk back to k+m fragments on live,
// distinct donors (checked with HAS on the donors, not by trusting its log) and keeps
// renewing: the fragments outlive the lease of the owner's PUTs while the unlisted file's
// lapse. The owner comes back, merges the repair log, reads every byte, and its own check
// finds every chunk complete, and deletes them all: the rebuilt fragments are the storage
// key's. With only the capability, neither data chunks nor snapshot
// objects nor the root record open.
func TestDelegatedRepair(t *testing.T) {
	if testing.Short() {
		t.Skip("starts donor processes")
	}
	const (
		k, m  = 4, 2
		lease = 20 * time.Second // of the owner's PUTs; the repairer renews to the same
		seed  = 31
	)
	size := delegateSize(t)
	ctx := t.Context()
	keys := testKeys()
	c := keys.RepairCap()
	ds := startDaemons(t, 10, "2G")

	// The owner writes, publishes the manifest, and goes offline.
	node, nw := ownerClient(t, ds[0].Addrs, keys)
	waitCandidates(t, nw, 10)
	st, err := pipeline.NewStore(nw, keys, pipeline.Config{K: k, M: m, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	refs, err := putStream(ctx, st, plainStream(seed, size), 4)
	if err != nil {
		t.Fatal(err)
	}
	unlisted, err := putStream(ctx, st, plainStream(seed+1, 4<<20), 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkDistinct(refs); err != nil {
		t.Fatal(err)
	}
	owner := delegate.NewOwner(node.DHT(), nw, keys, delegate.OwnerConfig{Pages: pipeline.Config{K: k, M: m, Lease: lease}})
	if ok, err := owner.Publish(ctx, refs); err != nil || !ok {
		t.Fatalf("publish manifest: %v %v", ok, err)
	}
	// Objects the capability must not open: a data chunk, a snapshot object, the root record.
	dirPtr, err := snapshot.NewBuilder(st, keys, nil).Dir(ctx, []snapshot.Entry{{Name: "secret-name"}})
	if err != nil {
		t.Fatal(err)
	}
	rootRec, err := root.Encode(keys, 1, root.Payload{Root: dirPtr}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sealedData, err := st.GetSealed(ctx, refs[0])
	if err != nil {
		t.Fatal(err)
	}
	sealedDir, err := st.GetSealed(ctx, dirPtr.Ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("owner wrote %d MiB in %d chunks (+%d unlisted), published the manifest and went offline",
		size>>20, len(refs), len(unlisted))

	// m donors holding fragments die.
	var dead []swarm.PeerID
	for _, d := range ds[1:] {
		p := swarm.PeerID(d.ID.String())
		if holdersOf(refs)[p] > 0 && len(dead) < m {
			d.kill()
			dead = append(dead, p)
		}
	}
	needed := 0
	var neededBytes int64
	for _, r := range refs {
		if slices.ContainsFunc(r.Fragments, func(f pipeline.Fragment) bool { return slices.Contains(dead, f.Peer) }) {
			needed++
			neededBytes += int64(r.Size)
		}
	}

	// The repairer: another donor, with the capability file.
	dir := t.TempDir()
	capFile := filepath.Join(dir, "repair.cap")
	if err := os.WriteFile(capFile, []byte(c.Text()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	// startDaemonAt's prefix runs the binary through sh, which appends the repair flags.
	rd := startDaemonAt(t, filepath.Join(dir, "repairer"), "2G", tcpLoopback[0], ds[0].Addrs, "sh", "-c",
		fmt.Sprintf(`exec "$0" "$@" -repair %s -repair-lease %s -repair-renew-every 3s -repair-check-every 2s -repair-rate 1G`,
			capFile, lease))
	if err := rd.waitReady(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}

	// An observer (no storage key) watches the donors: the manifest's Refs with the
	// repair log applied, checked with HAS.
	obsNode, obsNet := newClient(t, ds[0].Addrs)
	observer := delegate.NewOwner(obsNode.DHT(), obsNet, keys, delegate.OwnerConfig{})
	check := upkeep.New(obsNet, upkeep.Config{})
	view := &memRefs{refs: slices.Clone(refs)}
	var healthy time.Duration
	for deadline := time.Now().Add(90 * time.Second); ; {
		if _, err := observer.Merge(ctx, view); err != nil && !errors.Is(err, delegate.ErrNotFound) {
			t.Logf("observer merge: %v", err)
		}
		cur, _ := view.LiveRefs(ctx)
		_, cst, err := check.Check(ctx, cur, upkeep.CheckOptions{})
		if err == nil && cst.Complete == len(cur) {
			healthy = time.Since(started)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not back to full health 90 s after the repairer started: %+v\n%s", cst, rd.output())
		}
		time.Sleep(500 * time.Millisecond) // polling the donors and the DHT
	}
	t.Logf("full health %v after the repairer started: %d chunks (%.1f MiB) rebuilt, %.1f MB/s of chunks rebuilt including startup and lookups",
		healthy.Round(time.Millisecond), needed, float64(neededBytes)/(1<<20), float64(neededBytes)/healthy.Seconds()/1e6)

	// Past the end of the owner's leases: the unlisted file lapses, the drive does not.
	held := func(refs []pipeline.Ref) int {
		_, cst, err := check.Check(ctx, refs, upkeep.CheckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cst.Found
	}
	for deadline := written.Add(lease + 40*time.Second); held(unlisted) > 0; {
		if time.Now().After(deadline) {
			t.Fatal("the unlisted file's fragments outlived their lease by 40 s: donors do not expire leases")
		}
		time.Sleep(250 * time.Millisecond) // polling the donors: their clocks decide
	}
	// Donors keep expiries in whole seconds, so a lease may end up to a second early.
	if gone := time.Since(written); gone < lease-time.Second {
		t.Fatalf("unlisted fragments gone %v after they were written, before their lease of %v ended", gone, lease)
	}
	t.Logf("the unlisted file lapsed %v after it was written", time.Since(written).Round(time.Second))

	// The owner comes back and merges.
	node2, nw2 := ownerClient(t, ds[0].Addrs, keys)
	owner2 := delegate.NewOwner(node2.DHT(), nw2, keys, delegate.OwnerConfig{Pages: pipeline.Config{K: k, M: m, Lease: lease}})
	drive := &memRefs{refs: slices.Clone(refs)}
	mst, err := owner2.Merge(ctx, drive)
	if err != nil {
		t.Fatal(err)
	}
	if mst.Applied != needed {
		t.Fatalf("merge: %+v, want %d chunks applied", mst, needed)
	}
	merged, _ := drive.LiveRefs(ctx)
	if err := checkDistinct(merged); err != nil {
		t.Fatal(err)
	}
	for i, r := range merged {
		for j, f := range r.Fragments {
			if slices.Contains(dead, f.Peer) {
				t.Fatalf("chunk %d fragment %d still recorded on dead donor %s", i, j, f.Peer)
			}
		}
	}
	st2, err := pipeline.NewStore(nw2, keys, pipeline.Config{K: k, M: m})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readBack(ctx, st2, merged, seed, size, 4); err != nil {
		t.Fatalf("owner reads after merging: %v", err)
	}
	ou := upkeep.New(nw2, upkeep.Config{})
	if _, cst, err := ou.Check(ctx, merged, upkeep.CheckOptions{}); err != nil || cst.Complete != len(merged) {
		t.Fatalf("owner's check after merging: %+v, %v", cst, err)
	}
	t.Logf("owner merged %d replacements (log %d), read %d MiB back, its check finds %d of %d chunks complete",
		mst.Applied, mst.Seq, size>>20, len(merged), len(merged))

	// The rebuilt fragments belong to the storage key: the owner's DELETE removes them.
	rd.kill() // no more repairs behind the owner's back
	if _, cst, err := ou.Collect(ctx, merged, nil); err != nil || len(cst.Failures) != 0 {
		t.Fatalf("owner's delete: %+v, %v", cst, err)
	}
	if n := held(merged); n != 0 {
		t.Fatalf("%d fragments left after the owner deleted the drive's chunks", n)
	}

	// With only the capability nothing of the drive opens.
	ck := c.ObjectKeys()
	if _, err := ck.Open(nil, refs[0].ID, sealedData); !errors.Is(err, crypt.ErrAuth) {
		t.Fatalf("data chunk under the capability's keys: %v, want crypt.ErrAuth", err)
	}
	if _, err := ck.Open(nil, dirPtr.Ref.ID, sealedDir); !errors.Is(err, crypt.ErrAuth) {
		t.Fatalf("snapshot object under the capability's keys: %v, want crypt.ErrAuth", err)
	}
	if _, err := root.Decode(ck, rootRec); !errors.Is(err, root.ErrInvalid) {
		t.Fatalf("root record under the capability's keys: %v, want root.ErrInvalid", err)
	}
}
