package main

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/scatterfs/scatter/volume"
)

// TestSnapshotsReleaseGarbage: the mount's snapshot component reports each publication to
// the volume, so chunks deleted before a published snapshot become collectable, and only
// after it was published.
func TestSnapshotsReleaseGarbage(t *testing.T) {
	ctx := t.Context()
	e := newSnapEnv(t)
	v := e.open(t, t.TempDir())
	defer v.Close()
	writeFile(t, v, volume.RootIno, "f", bytes.Repeat([]byte("garbage soon "), 30<<10)) // chunked, not inline
	if err := v.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Unlink(ctx, volume.RootIno, "f"); err != nil {
		t.Fatal(err)
	}
	if err := v.SyncAll(ctx); err != nil { // the unlink committed: snapshots read the last commit
		t.Fatal(err)
	}
	if g, err := v.Garbage(ctx, time.Now().Add(time.Hour)); err != nil || len(g) != 0 {
		t.Fatalf("garbage before any publication: %d, %v", len(g), err)
	}
	before := time.Now()
	s, err := startSnapshots(v, e.store, e.keys, e.dht, 0, snapshotConfig{Poll: time.Hour}, quietLog, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Now(ctx); err != nil {
		t.Fatal(err)
	}
	g, err := v.Garbage(ctx, time.Now())
	if err != nil || len(g) == 0 {
		t.Fatalf("garbage after the publication: %d, %v", len(g), err)
	}
	if g, err := v.Garbage(ctx, before); err != nil || len(g) != 0 {
		t.Fatalf("garbage settled before the publication: %d, %v", len(g), err)
	}
}
