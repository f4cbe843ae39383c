package volume_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/volume"
)

// publish takes a snapshot of e's volume and records it as published at at.
func (e *env) publish(st *snapStore, at time.Time) snapshot.Ptr {
	e.t.Helper()
	// Namespace changes commit within a window; a snapshot reads the last commit.
	if err := e.v.SyncAll(ctx); err != nil {
		e.t.Fatal(err)
	}
	root, _, err := e.v.Snapshot(ctx, st, st.Keys)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.v.SnapshotPublished(root, at); err != nil {
		e.t.Fatal(err)
	}
	return root
}

// writeFile creates name with n distinct 64 KiB chunks of seed's content and uploads it.
func (e *env) writeFile(name string, seed byte, n int) {
	e.t.Helper()
	_, h := e.create(volume.RootIno, name)
	for i := range n {
		e.write(h, bytes.Repeat([]byte{seed + byte(i)}, 64<<10), int64(i)<<16)
	}
	if err := h.Fsync(ctx); err != nil {
		e.t.Fatal(err)
	}
	h.Release()
}

func garbageIDs(t *testing.T, v *volume.Volume, settled time.Time) int {
	t.Helper()
	g, err := v.Garbage(ctx, settled)
	if err != nil {
		t.Fatal(err)
	}
	return len(g)
}

// TestGarbageWaitsForPublishedSnapshot: a chunk whose last reference went is collectable
// only once a snapshot taken after that was published, and that publication is older
// than the settled time asked for; a snapshot taken but not published, or published too
// recently, keeps it.
func TestGarbageWaitsForPublishedSnapshot(t *testing.T) {
	e := newEnv(t, volume.Config{InlineMax: 1})
	st := newSnapStore()
	t0 := time.Unix(1_800_000_000, 0)
	e.writeFile("f", 'a', 3)
	if n := garbageIDs(t, e.v, t0.Add(time.Hour)); n != 0 {
		t.Fatalf("%d garbage before any deletion", n)
	}
	e.publish(st, t0) // references f's chunks
	if err := e.v.Unlink(ctx, volume.RootIno, "f"); err != nil {
		t.Fatal(err)
	}
	if _, g, _ := volume.ChunkRefs(e.v); g != 3 {
		t.Fatalf("%d chunks listed as garbage, want 3", g)
	}
	// The published snapshot still references them, however long ago it was published.
	if n := garbageIDs(t, e.v, t0.Add(24*time.Hour)); n != 0 {
		t.Fatalf("%d collectable while the published snapshot references them", n)
	}
	// A newer snapshot taken but not (yet) published protects nothing less.
	if err := e.v.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	root, _, err := e.v.Snapshot(ctx, st, st.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if n := garbageIDs(t, e.v, t0.Add(24*time.Hour)); n != 0 {
		t.Fatalf("%d collectable before the new snapshot was published", n)
	}
	// Publishing a root that is not the last snapshot records nothing.
	other := root
	other.Ref.ID[0] ^= 1
	if err := e.v.SnapshotPublished(other, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := garbageIDs(t, e.v, t0.Add(24*time.Hour)); n != 0 {
		t.Fatalf("%d collectable after publishing another root", n)
	}
	t1 := t0.Add(time.Hour)
	if err := e.v.SnapshotPublished(root, t1); err != nil {
		t.Fatal(err)
	}
	// A later publication of the same snapshot (the unmount's) does not move its time.
	if err := e.v.SnapshotPublished(root, t1.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := garbageIDs(t, e.v, t1.Add(-time.Second)); n != 0 {
		t.Fatalf("%d collectable before the grace after publication", n)
	}
	if n := garbageIDs(t, e.v, t1); n != 3 {
		t.Fatalf("%d collectable once the snapshot without them settled, want 3", n)
	}

	// A chunk dropped after the last publication waits for the next one.
	e.writeFile("g", 'x', 2)
	e.publish(st, t1.Add(time.Minute))
	if err := e.v.Unlink(ctx, volume.RootIno, "g"); err != nil {
		t.Fatal(err)
	}
	e.reopen() // the records survive a restart
	if n := garbageIDs(t, e.v, t1.Add(24*time.Hour)); n != 3 {
		t.Fatalf("%d collectable, want the 3 of f only", n)
	}
	t2 := t1.Add(2 * time.Hour)
	e.publish(st, t2)
	if n := garbageIDs(t, e.v, t2); n != 5 {
		t.Fatalf("%d collectable after the next publication, want 5", n)
	}

	// Content written again is referenced again and leaves the list.
	e.writeFile("f2", 'a', 3)
	if n := garbageIDs(t, e.v, t2); n != 2 {
		t.Fatalf("%d collectable after f's content came back, want 2", n)
	}
	g, err := e.v.Garbage(ctx, t2)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.v.DropGarbage(ctx, g); err != nil || n != 2 {
		t.Fatalf("dropped %d, %v", n, err)
	}
	if _, left, _ := volume.ChunkRefs(e.v); left != 0 {
		t.Fatalf("%d garbage chunks left", left)
	}
}

// TestGarbageAfterRestore: a restored drive's snapshot counts once published by the mount
// that restored it, like any other.
func TestGarbageAfterRestore(t *testing.T) {
	e := newEnv(t, volume.Config{InlineMax: 1})
	st := newSnapStore()
	e.writeFile("f", 'a', 2)
	root := e.publish(st, time.Unix(1_800_000_000, 0))
	if err := e.v.Close(); err != nil {
		t.Fatal(err)
	}
	e.v = nil
	cfg := e.cfg
	cfg.Dir = t.TempDir()
	if err := volume.Restore(ctx, cfg, snapshot.NewReader(st), root); err != nil {
		t.Fatal(err)
	}
	e2 := newEnvStore(t, e.store, cfg)
	t0 := time.Unix(1_900_000_000, 0)
	if err := e2.v.SnapshotPublished(root, t0); err != nil {
		t.Fatal(err)
	}
	if err := e2.v.Unlink(ctx, volume.RootIno, "f"); err != nil {
		t.Fatal(err)
	}
	if n := garbageIDs(t, e2.v, t0.Add(time.Hour)); n != 0 {
		t.Fatalf("%d collectable while the restored snapshot references them", n)
	}
	e2.publish(st, t0.Add(time.Minute))
	if n := garbageIDs(t, e2.v, t0.Add(time.Hour)); n != 2 {
		t.Fatalf("%d collectable after the next publication, want 2", n)
	}
}

// TestSupersededSnapshotObjectsNotRenewed: once a newer snapshot is taken, the objects only
// the older one had are no longer among the live Refs, so upkeep never renews them (they
// lapse with their leases); the objects both share stay live.
func TestSupersededSnapshotObjectsNotRenewed(t *testing.T) {
	e := newEnv(t, volume.Config{InlineMax: 1})
	st := newSnapStore()
	e.writeFile("a", 'a', 1)
	mkdir := func(name string) {
		if _, err := e.v.Mkdir(ctx, volume.RootIno, name, 0o755, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	mkdir("keep")
	first := e.publish(st, time.Unix(1_800_000_000, 0))
	live1 := liveIDs(t, e.v)
	if !live1[first.Ref.ID] {
		t.Fatal("the snapshot's root object is not live")
	}
	e.writeFile("b", 'b', 1)
	second := e.publish(st, time.Unix(1_800_000_100, 0))
	live2 := liveIDs(t, e.v)
	if live2[first.Ref.ID] || !live2[second.Ref.ID] {
		t.Fatalf("root objects live: first %v, second %v; want only the second", live2[first.Ref.ID], live2[second.Ref.ID])
	}
	shared := 0
	for id := range live1 {
		if live2[id] {
			shared++
		}
	}
	if shared == 0 {
		t.Fatal("no object shared by both snapshots stays live (the unchanged directory, the data chunk)")
	}
}

func liveIDs(t *testing.T, v *volume.Volume) map[[32]byte]bool {
	t.Helper()
	refs, err := v.LiveRefs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[[32]byte]bool{}
	for _, r := range refs {
		out[r.ID] = true
	}
	return out
}

// TestSnapshotPublishedIsNoChange: recording a publication changes nothing a snapshot
// holds, so a store current with its last snapshot stays current (otherwise every
// publication would call for another snapshot).
func TestSnapshotPublishedIsNoChange(t *testing.T) {
	e := newEnv(t, volume.Config{InlineMax: 1})
	st := newSnapStore()
	e.writeFile("f", 'a', 1)
	if err := e.v.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	root, _, err := e.v.Snapshot(ctx, st, st.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := e.v.SnapshotChanged(); err != nil || changed {
		t.Fatalf("changed right after the snapshot: %v %v", changed, err)
	}
	v0, _ := e.v.Version()
	if err := e.v.SnapshotPublished(root, time.Now()); err != nil {
		t.Fatal(err)
	}
	if v1, _ := e.v.Version(); v1 == v0 {
		t.Fatal("the publication was not recorded (no commit)")
	}
	if changed, err := e.v.SnapshotChanged(); err != nil || changed {
		t.Fatalf("changed after recording the publication: %v %v", changed, err)
	}
}
