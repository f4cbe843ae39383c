package fs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/volume"
	"github.com/scatterfs/scatter/volume/memchunks"
)

// follow is a writer volume (no mount) and a read-only mount of its snapshots.
type follow struct {
	t      *testing.T
	w      *volume.Volume
	chunks *memchunks.Store
	objs   *memchunks.Objects
	live   *Live
	mnt    string
}

func newFollow(t *testing.T) *follow {
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		t.Skip("FUSE tests need root and /dev/fuse")
	}
	var s crypt.Secret
	s[0] = 9
	f := &follow{t: t, chunks: memchunks.New(64<<10, 1<<40), objs: memchunks.NewObjects(s.Keys())}
	w, err := volume.Open(volume.Config{Dir: t.TempDir(), InlineMax: 1, Logger: quietLog}, f.chunks)
	if err != nil {
		t.Fatal(err)
	}
	f.w = w
	t.Cleanup(func() { w.Close() })
	return f
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// restore snapshots the writer and opens the snapshot as a new volume.
func (f *follow) restore() *volume.Volume {
	f.t.Helper()
	if err := f.w.SyncAll(ctx); err != nil {
		f.t.Fatal(err)
	}
	root, _, err := f.w.Snapshot(ctx, f.objs, f.objs.Keys)
	if err != nil {
		f.t.Fatal(err)
	}
	cfg := volume.Config{Dir: f.t.TempDir(), Logger: quietLog}
	if err := volume.Restore(ctx, cfg, snapshot.NewReader(f.objs), root); err != nil {
		f.t.Fatal(err)
	}
	v, err := volume.Open(cfg, f.chunks)
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}

func (f *follow) write(name string, data []byte) {
	f.t.Helper()
	a, err := f.w.Lookup(ctx, volume.RootIno, name)
	var h *volume.Handle
	if errors.Is(err, volume.ErrNotFound) {
		_, h, err = f.w.Create(ctx, volume.RootIno, name, syscall.O_RDWR, 0o644, 0, 0)
	} else if err == nil {
		h, err = f.w.Open(ctx, a.Ino, syscall.O_RDWR|syscall.O_TRUNC)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := h.Write(ctx, data, 0); err != nil {
		f.t.Fatal(err)
	}
	if err := h.Release(); err != nil {
		f.t.Fatal(err)
	}
}

func (f *follow) mount(v *volume.Volume) {
	f.t.Helper()
	f.live = NewLive(v)
	f.mnt = f.t.TempDir()
	// An hour of attribute and entry caching: what the test sees after a swap is
	// what Swap's invalidation dropped, never a timeout running out.
	srv, err := MountLive(f.mnt, f.live, Options{ReadOnly: true, Timeout: time.Hour, Logger: quietLog})
	if err != nil {
		v.Close()
		f.t.Skipf("FUSE mount unavailable here: %v", err)
	}
	f.t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			f.t.Errorf("unmount: %v", err)
		}
		if err := f.live.Volume().Close(); err != nil {
			f.t.Errorf("close volume: %v", err)
		}
	})
}

func content(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7/5)
	}
	return b
}

// TestLiveSwap follows a writer through changes, renames and deletions with a swap of
// the served volume each time, under a mount that caches names and attributes for an
// hour: every change shows at once, an open file reads the new version, one deleted
// while open its own, and the old volume is idle once that one is closed.
func TestLiveSwap(t *testing.T) {
	f := newFollow(t)
	a, b, c := content(200<<10, 1), content(3000, 2), content(100<<10, 3)
	f.write("a", a)
	f.write("b", b)
	f.write("c", c)
	d, err := f.w.Mkdir(ctx, volume.RootIno, "dir", 0o755, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.w.Mkdir(ctx, d.Ino, "inner", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	f.mount(f.restore())
	p := func(n string) string { return filepath.Join(f.mnt, n) }
	if _, err := os.Stat(p("dir/inner")); err != nil {
		t.Fatal(err)
	}
	for n, want := range map[string][]byte{"a": a, "b": b, "c": c} {
		if got, err := os.ReadFile(p(n)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %s: %d bytes, %v", n, len(got), err)
		}
	}
	old, err := os.Open(p("a")) // stays open across the swap
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldB, err := os.Open(p("b")) // open across the swap that deletes it
	if err != nil {
		t.Fatal(err)
	}
	defer oldB.Close()
	a2 := content(150<<10, 9)
	f.write("a", a2)
	if err := f.w.Unlink(ctx, volume.RootIno, "b"); err != nil {
		t.Fatal(err)
	}
	if err := f.w.Rename(ctx, volume.RootIno, "c", volume.RootIno, "c2", 0); err != nil {
		t.Fatal(err)
	}
	f.write("new", []byte("new file"))
	if err := f.w.Rename(ctx, volume.RootIno, "dir", volume.RootIno, "dir2", 0); err != nil {
		t.Fatal(err)
	}
	prev, idle := f.live.Swap(ctx, f.restore())
	if _, err := os.Stat(p("dir")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat of renamed dir: %v, want ENOENT", err)
	}
	if _, err := os.Stat(p("dir2/inner")); err != nil {
		t.Errorf("the renamed directory's child: %v", err)
	}
	if ents, err := os.ReadDir(p("dir2/inner/..")); err != nil || len(ents) != 1 || ents[0].Name() != "inner" {
		t.Errorf("listing dir2/inner/..: %v, %v", ents, err)
	}
	if kids := f.live.root.Children(); kids["dir"] != nil {
		t.Errorf("the filesystem's tree still has the renamed directory under its old name")
	}

	if got, err := os.ReadFile(p("a")); err != nil || !bytes.Equal(got, a2) {
		t.Errorf("a after the swap: %d bytes, %v; want the writer's %d", len(got), err, len(a2))
	}
	if _, err := os.Stat(p("b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat of deleted b: %v, want ENOENT", err)
	}
	if _, err := os.Stat(p("c")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat of renamed c: %v, want ENOENT", err)
	}
	if got, err := os.ReadFile(p("c2")); err != nil || !bytes.Equal(got, c) {
		t.Errorf("c2: %d bytes, %v", len(got), err)
	}
	if got, err := os.ReadFile(p("new")); err != nil || string(got) != "new file" {
		t.Errorf("new: %q, %v", got, err)
	}
	// The file opened before the swap reads the new version, as the kernel's page
	// cache and size for its inode do; the deleted one opened before reads its own.
	got, err := io.ReadAll(old)
	if err != nil || !bytes.Equal(got, a2) {
		t.Errorf("file open across the swap: %d bytes, %v; want the new version's %d", len(got), err, len(a2))
	}
	if got, err := io.ReadAll(oldB); err != nil || !bytes.Equal(got, b) {
		t.Errorf("file deleted while open: %d bytes, %v; want its %d", len(got), err, len(b))
	}
	select {
	case <-idle:
		t.Fatal("old volume idle while a file opened on it is open")
	default:
	}
	old.Close()
	oldB.Close()
	<-idle // the kernel's RELEASE of the deleted file drops the last reference
	if err := prev.Close(); err != nil {
		t.Error(err)
	}
	if got, err := os.ReadFile(p("a")); err != nil || !bytes.Equal(got, a2) {
		t.Errorf("a with the old volume closed: %d bytes, %v", len(got), err)
	}

	// A swap with nothing open leaves the old volume idle at once.
	prev, idle = f.live.Swap(ctx, f.restore())
	<-idle
	if err := prev.Close(); err != nil {
		t.Error(err)
	}
}

// TestReadOnly: a read-only mount refuses every change with EROFS, the kernel's or
// the filesystem's, and still reads.
func TestReadOnly(t *testing.T) {
	f := newFollow(t)
	f.write("f", []byte("data"))
	if _, err := f.w.Mkdir(ctx, volume.RootIno, "d", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	f.mount(f.restore())
	p := func(n string) string { return filepath.Join(f.mnt, n) }
	checks := map[string]error{
		"create":   func() error { _, err := os.Create(p("x")); return err }(),
		"open rw":  func() error { _, err := os.OpenFile(p("f"), os.O_RDWR, 0); return err }(),
		"truncate": os.Truncate(p("f"), 0),
		"mkdir":    os.Mkdir(p("e"), 0o755),
		"rename":   os.Rename(p("f"), p("g")),
		"unlink":   os.Remove(p("f")),
		"rmdir":    os.Remove(p("d")),
		"chmod":    os.Chmod(p("f"), 0o600),
		"symlink":  os.Symlink("f", p("s")),
		"link":     os.Link(p("f"), p("l")),
		"setxattr": syscall.Setxattr(p("f"), "user.x", []byte("1"), 0),
	}
	for op, err := range checks {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", op, err)
		}
	}
	if got, err := os.ReadFile(p("f")); err != nil || string(got) != "data" {
		t.Errorf("read: %q, %v", got, err)
	}
}

// The filesystem refuses changes itself, for mounts where the kernel does not know it
// is read-only (fusermount): the node methods, called directly.
func TestReadOnlyNodes(t *testing.T) {
	n := &node{m: &mnt{ro: true, log: quietLog}, ino: volume.RootIno}
	if _, e := n.Mkdir(ctx, "x", 0o755, nil); e != syscall.EROFS {
		t.Errorf("mkdir: %v", e)
	}
	if _, _, _, e := n.Create(ctx, "x", 0, 0o644, nil); e != syscall.EROFS {
		t.Errorf("create: %v", e)
	}
	if _, _, e := n.Open(ctx, syscall.O_WRONLY); e != syscall.EROFS {
		t.Errorf("open for writing: %v", e)
	}
	if _, _, e := n.Open(ctx, syscall.O_RDONLY|syscall.O_TRUNC); e != syscall.EROFS {
		t.Errorf("open with O_TRUNC: %v", e)
	}
	if e := n.Unlink(ctx, "x"); e != syscall.EROFS {
		t.Errorf("unlink: %v", e)
	}
	if e := n.Setxattr(ctx, "user.x", nil, 0); e != syscall.EROFS {
		t.Errorf("setxattr: %v", e)
	}
}

// TestLiveSwapUnderReads swaps volumes while readers read, list and stat through the
// mount: no request fails, every byte read is one a version of the file held, and every
// volume swapped out becomes idle (the test closes each one once it is).
func TestLiveSwapUnderReads(t *testing.T) {
	f := newFollow(t)
	const size = 256 << 10
	version := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, size) }
	f.write("f", version(0))
	f.mount(f.restore())
	p := filepath.Join(f.mnt, "f")

	stop := make(chan struct{})
	errs := make(chan error, 3)
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				var err error
				switch r {
				case 0:
					var b []byte
					if b, err = os.ReadFile(p); err == nil {
						for _, c := range b {
							if c < 'a' || c > 'a'+20 {
								err = fmt.Errorf("byte %q is no version's", c)
								break
							}
						}
					}
				case 1:
					_, err = os.ReadDir(f.mnt)
				case 2:
					_, err = os.Stat(p)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	type retired struct {
		v    *volume.Volume
		idle <-chan struct{}
	}
	var old []retired
	for i := 1; i <= 20; i++ {
		f.write("f", version(i))
		prev, idle := f.live.Swap(ctx, f.restore())
		old = append(old, retired{prev, idle})
	}
	close(stop)
	wg.Wait()
	for _, o := range old {
		<-o.idle // the readers' last RELEASEs, which the kernel sends after close(2)
		if err := o.v.Close(); err != nil {
			t.Error(err)
		}
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, version(20)) {
		t.Errorf("after the swaps: %d bytes, %v", len(got), err)
	}
}

// A volume in use (Live.Use) is not idle when a swap replaces it, and becomes idle
// once the use ends; a swap of an unused volume leaves it idle at once. No mount needed.
func TestLiveUse(t *testing.T) {
	open := func() *volume.Volume {
		v, err := volume.Open(volume.Config{Dir: t.TempDir(), Logger: quietLog}, memchunks.New(64<<10, 1<<30))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		return v
	}
	v1, v2, v3 := open(), open(), open()
	l := NewLive(v1)
	var idle <-chan struct{}
	err := l.Use(func(v *volume.Volume) error {
		if v != v1 {
			t.Fatal("Use got another volume than the one served")
		}
		var prev *volume.Volume
		prev, idle = l.Swap(ctx, v2)
		if prev != v1 || l.Volume() != v2 {
			t.Fatal("Swap did not replace the volume")
		}
		select {
		case <-idle:
			t.Error("the volume in use is idle")
		default:
		}
		return errors.New("passed through")
	})
	if err == nil || err.Error() != "passed through" {
		t.Errorf("Use returned %v", err)
	}
	select {
	case <-idle:
	default:
		t.Error("the swapped-out volume is not idle once its use ended")
	}
	_, idle = l.Swap(ctx, v3)
	select {
	case <-idle:
	default:
		t.Error("an unused volume swapped out is not idle at once")
	}
}
