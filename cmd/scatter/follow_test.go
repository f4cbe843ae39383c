package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scatterfs/scatter/control"
	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/swarm/memnet"
	"github.com/scatterfs/scatter/upkeep"
	"github.com/scatterfs/scatter/volume"
)

// publish does what `scatter sync` does on the writer: staged data to the peers, then a
// snapshot published.
func publish(t *testing.T, w *volume.Volume, snaps *snapshots) {
	t.Helper()
	if err := w.SyncAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := snaps.Now(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestFollower follows a writer through its root records: a lease renewal (same root,
// new sequence) restores nothing, a published change is restored and swapped in, a
// failing source or restore keeps the snapshot shown, and Close leaves no restore
// directory behind.
func TestFollower(t *testing.T) {
	ctx := t.Context()
	e := newSnapEnv(t)
	w := e.open(t, t.TempDir())
	writeFile(t, w, volume.RootIno, "a", []byte("first"))
	snaps, err := startSnapshots(w, e.store, e.keys, e.dht, 0,
		snapshotConfig{Writer: "writer", Lease: time.Hour, Poll: time.Hour}, quietLog, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		snaps.Close()
		w.Close()
	}()
	publish(t, w, snaps)

	cache, err := volume.OpenCache(volume.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var restores atomic.Int32
	var failRestore atomic.Bool
	restore := restoreFrom(e.store, quietLog)
	dir := filepath.Join(t.TempDir(), "follow")
	if err := os.MkdirAll(filepath.Join(dir, "7"), 0o700); err != nil { // left by an earlier run
		t.Fatal(err)
	}
	f, err := startFollower(ctx, followConfig{
		Dir: dir, Interval: time.Hour, Logger: quietLog,
		Source: rootSource(e.dht, e.keys),
		Restore: func(ctx context.Context, dir string, p snapshot.Ptr) error {
			restores.Add(1)
			if failRestore.Load() {
				os.MkdirAll(dir, 0o700)
				return errors.New("injected restore failure")
			}
			return restore(ctx, dir, p)
		},
		Open: func(dir string) (*volume.Volume, error) {
			return volume.OpenShared(volume.Config{Dir: dir, Logger: quietLog}, e.store, cache)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			f.Close()
		}
	}()
	if _, err := os.Stat(filepath.Join(dir, "7")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a stale restore directory survived the start: %v", err)
	}
	shows := func(name string) bool {
		t.Helper()
		_, err := f.Live().Volume().Lookup(ctx, volume.RootIno, name)
		if err != nil && !errors.Is(err, volume.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	if !shows("a") {
		t.Fatal("the first snapshot is not shown")
	}

	// A lease renewal: a new record, the same root.
	seq := e.published(t).Seq
	if err := snaps.renew(ctx); err != nil {
		t.Fatal(err)
	}
	if e.published(t).Seq == seq {
		t.Fatal("BUG: the renewal published no new record")
	}
	if swapped, err := f.Check(ctx); swapped || err != nil || restores.Load() != 1 {
		t.Errorf("after a lease renewal: swapped %v, %v, %d restores; want no swap, 1 restore", swapped, err, restores.Load())
	}

	// A change, published.
	writeFile(t, w, volume.RootIno, "b", []byte("second"))
	if err := w.Unlink(ctx, volume.RootIno, "a"); err != nil {
		t.Fatal(err)
	}
	publish(t, w, snaps)
	if swapped, err := f.Check(ctx); !swapped || err != nil {
		t.Fatalf("after a change: swapped %v, %v", swapped, err)
	}
	if shows("a") || !shows("b") {
		t.Errorf("after the swap: a shown %v, b shown %v; want only b", shows("a"), shows("b"))
	}

	// The source fails: the snapshot shown stays.
	e.dht.mu.Lock()
	e.dht.getErr = errors.New("injected lookup failure")
	e.dht.mu.Unlock()
	if swapped, err := f.Check(ctx); swapped || err == nil {
		t.Errorf("failing source: swapped %v, %v", swapped, err)
	}
	e.dht.mu.Lock()
	e.dht.getErr = nil
	e.dht.mu.Unlock()

	// The restore fails: its directory goes, the snapshot shown stays, the next check
	// restores again.
	writeFile(t, w, volume.RootIno, "c", []byte("third"))
	publish(t, w, snaps)
	failRestore.Store(true)
	if swapped, err := f.Check(ctx); swapped || err == nil {
		t.Errorf("failing restore: swapped %v, %v", swapped, err)
	}
	if !shows("b") || shows("c") {
		t.Error("a failed restore changed what is shown")
	}
	failRestore.Store(false)
	if swapped, err := f.Check(ctx); !swapped || err != nil || !shows("c") {
		t.Errorf("restore after the failure: swapped %v, %v", swapped, err)
	}
	// scatter status on a follower (and on a share's mount: the same control) says what
	// it shows.
	net := memnet.NewWorld().Net("me", "owner")
	ctl := followControl{f: f, share: true, base: mountControl{
		shape: driveSettings{K: 4, M: 2}, key: e.keys.Public, net: net, m: newMeters(), up: upkeep.New(net, upkeep.Config{}),
	}}
	if st, err := ctl.Status(ctx, false); err != nil || st.Follow == nil || !st.Follow.Share ||
		st.Follow.Seq != e.published(t).Seq || st.Follow.Root != e.published(t).Root.Ref.ID.String() || st.Follow.Swaps != 2 {
		t.Errorf("follower status: %+v, %v", st, err)
	}
	follows := false
	if err := ctl.Sync(ctx, func(p control.Progress) { follows = follows || p.Follow }); err != nil || !follows {
		t.Errorf("follower sync: %v, follow progress %v; want the read-only mark", err, follows)
	}
	if st, rec := f.Status(), e.published(t); st.Swaps != 2 || st.Seq != rec.Seq || st.Shown.Ref.ID != rec.Root.Ref.ID {
		t.Errorf("status %+v; want 2 swaps, showing record %d (root %s)", st, rec.Seq, rec.Root.Ref.ID)
	}

	if err := f.Close(); err != nil {
		t.Error(err)
	}
	closed = true
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("after Close the follow directory holds %v (%v)", ents, err)
	}
	if _, err := f.Check(ctx); err == nil {
		t.Error("Check after Close succeeded")
	}
}
