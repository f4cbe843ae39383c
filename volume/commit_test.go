package volume_test

import (
	"bytes"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/scatterfs/scatter/volume"
)

// TestDeferredCommits runs the namespace and file tests again with deferred commits
// whose window never ends by itself (an hour): every read must see the changes through
// the open transaction.
func TestDeferredCommits(t *testing.T) {
	defer func(w time.Duration) { testCommitWindow = w }(testCommitWindow)
	testCommitWindow = time.Hour
	for name, fn := range map[string]func(*testing.T){
		"Namespace":           TestNamespace,
		"ReadDirPaging":       TestReadDirPaging,
		"RenameCases":         TestRenameCases,
		"ConcurrentNamespace": TestConcurrentNamespace,
		"UnlinkOpenFile":      TestUnlinkOpenFile,
		"OrphanAfterCrash":    TestOrphanAfterCrash,
		"InlineSmallFiles":    TestInlineSmallFiles,
		"CrashReplay":         TestCrashReplay,
		"ChunkRefs":           TestChunkRefs,
		"SeekDataHole":        TestSeekDataHole,
	} {
		t.Run(name, fn)
	}
}

// deferredEnv is a volume whose acknowledged namespace changes commit only when
// something makes them durable.
func deferredEnv(t *testing.T, cfg volume.Config) *env {
	cfg.CommitWindow = time.Hour
	return newEnv(t, cfg)
}

func exists(e *env, parent uint64, name string) bool {
	_, err := e.v.Lookup(ctx, parent, name)
	if err != nil && !errors.Is(err, volume.ErrNotFound) {
		e.t.Fatalf("lookup %s: %v", name, err)
	}
	return err == nil
}

// TestDeferredDurability: an acknowledged change is visible at once but not durable
// until a sync point (a crash loses it); after fsyncdir, fsync, SyncAll or close(2) of
// written data, everything acknowledged before survives a crash.
func TestDeferredDurability(t *testing.T) {
	e := deferredEnv(t, volume.Config{})
	v0 := must[uint64](t)(e.v.Version())
	d := must[volume.Attr](t)(e.v.Mkdir(ctx, volume.RootIno, "d", 0o755, 0, 0))
	_, h := e.create(d.Ino, "f")
	h.Release()
	mode := uint32(0o600)
	if _, err := e.v.Setattr(ctx, d.Ino, volume.SetAttr{Mode: &mode}); err != nil {
		t.Fatal(err)
	}
	if err := e.v.Rename(ctx, d.Ino, "f", d.Ino, "g", 0); err != nil {
		t.Fatal(err)
	}
	if !exists(e, d.Ino, "g") || exists(e, d.Ino, "f") {
		t.Fatal("acknowledged changes not visible")
	}
	if a := must[volume.Attr](t)(e.v.Getattr(ctx, d.Ino)); a.Mode&0o7777 != 0o600 {
		t.Errorf("mode %o after chmod, want 600", a.Mode&0o7777)
	}
	if v1 := must[uint64](t)(e.v.Version()); v1 != v0 {
		t.Errorf("committed (version %d, before %d) with the window still open", v1, v0)
	}
	e.crash()
	if exists(e, volume.RootIno, "d") {
		t.Fatal("a change nothing made durable survived a crash inside its window")
	}

	syncs := []struct {
		name string
		sync func(t *testing.T, e *env)
	}{
		{"fsyncdir", func(t *testing.T, e *env) {
			if err := e.v.SyncDir(ctx); err != nil {
				t.Fatal(err)
			}
		}},
		{"SyncAll", func(t *testing.T, e *env) {
			if err := e.v.SyncAll(ctx); err != nil {
				t.Fatal(err)
			}
		}},
		{"fsync of another file", func(t *testing.T, e *env) {
			_, h := e.create(volume.RootIno, "other")
			defer h.Release()
			if err := h.Fsync(ctx); err != nil {
				t.Fatal(err)
			}
		}},
		{"close of written data", func(t *testing.T, e *env) {
			_, h := e.create(volume.RootIno, "written")
			defer h.Release()
			e.write(h, []byte("data"), 0)
			if err := h.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, s := range syncs {
		t.Run(s.name, func(t *testing.T) {
			e := deferredEnv(t, volume.Config{})
			d := must[volume.Attr](t)(e.v.Mkdir(ctx, volume.RootIno, "d", 0o755, 0, 0))
			_, h := e.create(d.Ino, "f")
			h.Release()
			if err := e.v.Rename(ctx, d.Ino, "f", volume.RootIno, "g", 0); err != nil {
				t.Fatal(err)
			}
			s.sync(t, e)
			e.crash()
			if !exists(e, volume.RootIno, "d") || !exists(e, volume.RootIno, "g") || exists(e, d.Ino, "f") {
				t.Error("changes made before the sync point lost in a crash")
			}
		})
	}
}

// TestDeferredUnlinkKeepsStaging: an unlinked file's staged data is dropped only once the
// unlink is durable; a crash before that brings the file back whole.
func TestDeferredUnlinkKeepsStaging(t *testing.T) {
	e := deferredEnv(t, volume.Config{InlineMax: 1, QuietUpload: time.Hour})
	want := bytes.Repeat([]byte("staged "), 10<<10)
	_, h := e.create(volume.RootIno, "f")
	e.write(h, want, 0)
	if err := h.Flush(ctx); err != nil { // journalled, durable
		t.Fatal(err)
	}
	h.Release()
	if err := e.v.Unlink(ctx, volume.RootIno, "f"); err != nil {
		t.Fatal(err)
	}
	if exists(e, volume.RootIno, "f") {
		t.Fatal("unlinked file still visible")
	}
	e.crash()
	a := must[volume.Attr](t)(e.v.Lookup(ctx, volume.RootIno, "f"))
	h = must[*volume.Handle](t)(e.v.Open(ctx, a.Ino, syscall.O_RDONLY))
	defer h.Release()
	if got := e.read(h, len(want)+1, 0); !bytes.Equal(got, want) {
		t.Errorf("file back after the crash holds %d bytes, want its %d staged bytes", len(got), len(want))
	}
}

// TestFailedChangeKeepsAcked: an operation that fails after changing the open
// transaction rolls back only itself: the changes acknowledged before it are applied
// again and made durable.
func TestFailedChangeKeepsAcked(t *testing.T) {
	e := deferredEnv(t, volume.Config{})
	v0 := must[uint64](t)(e.v.Version())
	for _, name := range []string{"a", "b"} {
		if _, err := e.v.Mkdir(ctx, volume.RootIno, name, 0o755, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	// The caller's variable changes after the chmod returned: applied again, the chmod
	// still sets what it was given.
	da := must[volume.Attr](t)(e.v.Lookup(ctx, volume.RootIno, "a"))
	mode := uint32(0o700)
	if _, err := e.v.Setattr(ctx, da.Ino, volume.SetAttr{Mode: &mode}); err != nil {
		t.Fatal(err)
	}
	mode = 0o711
	_, h := e.create(volume.RootIno, "c")
	h.Release()
	if err := e.v.Unlink(ctx, volume.RootIno, "c"); err != nil {
		t.Fatal(err)
	}
	err := volume.FailingChange(e.v, "half-done")
	if err == nil {
		t.Fatal("the failing change succeeded")
	}
	if volume.HasInodeKey(e.v, "half-done") {
		t.Error("the failed change's write is visible")
	}
	if !exists(e, volume.RootIno, "a") || !exists(e, volume.RootIno, "b") || exists(e, volume.RootIno, "c") {
		t.Fatal("a failed change undid acknowledged ones")
	}
	if a := must[volume.Attr](t)(e.v.Getattr(ctx, da.Ino)); a.Mode&0o7777 != 0o700 {
		t.Errorf("mode %o after the chmod was applied again, want 700", a.Mode&0o7777)
	}
	if v1 := must[uint64](t)(e.v.Version()); v1 == v0 {
		t.Error("the acknowledged changes were not committed after the failure")
	}
	// The rebuilt transaction holds the same inodes: a new file does not reuse them.
	d := must[volume.Attr](t)(e.v.Mkdir(ctx, volume.RootIno, "d", 0o755, 0, 0))
	a := must[volume.Attr](t)(e.v.Lookup(ctx, volume.RootIno, "b"))
	if d.Ino <= a.Ino {
		t.Errorf("new inode %d after %d", d.Ino, a.Ino)
	}
	e.crash()
	if !exists(e, volume.RootIno, "a") || !exists(e, volume.RootIno, "b") || exists(e, volume.RootIno, "c") {
		t.Error("acknowledged changes lost after the failure and a crash")
	}
}

// TestNoopSetattr: a setattr that changes nothing (rsync's fchmod to the mode a file
// was created with) leaves the inode alone, ctime included.
func TestNoopSetattr(t *testing.T) {
	e := newEnv(t, volume.Config{})
	a, h := e.create(volume.RootIno, "f")
	defer h.Release()
	mode := a.Mode & 0o7777
	v0 := must[uint64](t)(e.v.Version())
	b := must[volume.Attr](t)(e.v.Setattr(ctx, a.Ino, volume.SetAttr{Mode: &mode, UID: &a.UID}))
	if v1 := must[uint64](t)(e.v.Version()); v1 != v0 || !b.Ctime.Equal(a.Ctime) {
		t.Errorf("no-op setattr committed (version %d, before %d) or moved ctime (%v, was %v)", v1, v0, b.Ctime, a.Ctime)
	}
	mode = 0o600
	b = must[volume.Attr](t)(e.v.Setattr(ctx, a.Ino, volume.SetAttr{Mode: &mode}))
	if b.Mode&0o7777 != 0o600 || !b.Ctime.After(a.Ctime) && !b.Ctime.Equal(a.Ctime) {
		t.Errorf("chmod: mode %o ctime %v (was %v)", b.Mode&0o7777, b.Ctime, a.Ctime)
	}
}

// TestWindowEnds: with no sync point at all, an acknowledged change commits when its
// window ends, and survives a crash after that.
func TestWindowEnds(t *testing.T) {
	committed := make(chan struct{}, 1)
	volume.SetWindowCommittedHook(func() {
		select {
		case committed <- struct{}{}:
		default:
		}
	})
	// Cleanups run last-in first-out: the hook is reset after the volume is closed.
	t.Cleanup(func() { volume.SetWindowCommittedHook(nil) })
	e := newEnv(t, volume.Config{CommitWindow: time.Millisecond})
	if _, err := e.v.Mkdir(ctx, volume.RootIno, "d", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-committed:
	case <-time.After(time.Minute): // a guard against a hang, not a timing assertion
		t.Fatal("the window never committed")
	}
	e.crash()
	if !exists(e, volume.RootIno, "d") {
		t.Error("a change committed by its window's end lost in a crash")
	}
}
