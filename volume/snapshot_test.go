package volume_test

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"reflect"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/volume"
	"github.com/scatterfs/scatter/volume/memchunks"
)

// snapStore keeps snapshot objects sealed with the drive's keys.
type snapStore = memchunks.Objects

func newSnapStore() *snapStore {
	var s crypt.Secret
	s[0] = 7
	return memchunks.NewObjects(s.Keys())
}

// node is what a test compares of one path.
type node struct {
	Attr    volume.Attr
	Xattrs  map[string]string
	Content []byte
	Target  string
}

// dump reads the whole tree of v through its public API.
func dump(t *testing.T, v *volume.Volume) map[string]node {
	t.Helper()
	out := map[string]node{}
	var walk func(ino uint64, p string)
	walk = func(ino uint64, p string) {
		a := must[volume.Attr](t)(v.Getattr(ctx, ino))
		// Times of files still loaded come from memory with a monotonic reading.
		a.Atime, a.Mtime, a.Ctime = a.Atime.Round(0), a.Mtime.Round(0), a.Ctime.Round(0)
		n := node{Attr: a, Xattrs: map[string]string{}}
		for _, name := range must[[]string](t)(v.ListXattr(ctx, ino)) {
			n.Xattrs[name] = string(must[[]byte](t)(v.GetXattr(ctx, ino, name)))
		}
		switch a.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			h := must[*volume.Handle](t)(v.Open(ctx, ino, syscall.O_RDONLY))
			buf := make([]byte, a.Size)
			got, err := h.Read(ctx, buf, 0)
			if err != nil || int64(got) != a.Size {
				t.Fatalf("%s: read %d of %d: %v", p, got, a.Size, err)
			}
			n.Content = buf
			h.Release()
		case syscall.S_IFLNK:
			n.Target = must[string](t)(v.Readlink(ctx, ino))
		case syscall.S_IFDIR:
			for _, e := range must[[]volume.DirEntry](t)(v.ReadDir(ctx, ino, 0, 1<<20)) {
				walk(e.Ino, path.Join(p, e.Name))
			}
		}
		out[p] = n
	}
	walk(volume.RootIno, "/")
	return out
}

// fill writes a tree with every kind of file into e's volume.
func fill(t *testing.T, e *env) {
	v := e.v
	d := must[volume.Attr](t)(v.Mkdir(ctx, volume.RootIno, "dir", 0o750, 1000, 100))
	sub := must[volume.Attr](t)(v.Mkdir(ctx, d.Ino, "sub", 0o2775, 1000, 100))
	must[volume.Attr](t)(v.Mkdir(ctx, volume.RootIno, "empty-dir", 0o700, 0, 0))
	files := map[string][]byte{
		"empty":  {},
		"small":  []byte("small inline file\n"),
		"big":    bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16+5), // several 64 KiB chunks
		"sparse": nil,
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var bigIno uint64
	for _, name := range names {
		a, h := e.create(d.Ino, name)
		if name == "sparse" {
			e.write(h, []byte("tail"), 5<<20)
		} else if len(files[name]) > 0 {
			e.write(h, files[name], 0)
		}
		if err := h.Fsync(ctx); err != nil {
			t.Fatal(err)
		}
		h.Release()
		if name == "big" {
			bigIno = a.Ino
		}
	}
	for i := range 300 {
		_, h := e.create(sub.Ino, fmt.Sprintf("f%03d", i))
		e.write(h, []byte(fmt.Sprintf("file %d\n", i)), 0)
		h.Release()
	}
	must[volume.Attr](t)(v.Symlink(ctx, d.Ino, "link", "sub/f001", 1000, 100))
	must[volume.Attr](t)(v.Link(ctx, bigIno, sub.Ino, "hardlink-to-big"))
	if err := v.SetXattr(ctx, bigIno, "user.tag", []byte("value"), 0); err != nil {
		t.Fatal(err)
	}
	if err := v.SetXattr(ctx, d.Ino, "user.dir", []byte{}, 0); err != nil {
		t.Fatal(err)
	}
	must[volume.Attr](t)(v.Mknod(ctx, d.Ino, "fifo", syscall.S_IFIFO|0o644, 0, 0, 0))
	mt := time.Unix(1600000000, 123456789)
	must[volume.Attr](t)(v.Setattr(ctx, d.Ino, volume.SetAttr{Mtime: &mt, Atime: &mt}))
	if err := v.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotRestore(t *testing.T) {
	e := newEnv(t, volume.Config{})
	fill(t, e)
	st := newSnapStore()
	if changed, err := e.v.SnapshotChanged(); err != nil || !changed {
		t.Fatalf("SnapshotChanged before any snapshot = %v, %v", changed, err)
	}
	root, stats, err := e.v.Snapshot(ctx, st, st.Keys)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first snapshot: %+v", stats)
	if changed, err := e.v.SnapshotChanged(); err != nil || changed {
		t.Fatalf("SnapshotChanged after a snapshot = %v, %v", changed, err)
	}
	want := dump(t, e.v)

	// Restore into an empty directory, over the same data chunks.
	cfg := volume.Config{Dir: t.TempDir(), Logger: quiet}
	if err := volume.Restore(ctx, cfg, snapshot.NewReader(st), root); err != nil {
		t.Fatal(err)
	}
	if err := volume.Restore(ctx, cfg, snapshot.NewReader(st), root); err != volume.ErrRestoreExists {
		t.Fatalf("second restore into the same directory: %v", err)
	}
	v2, err := volume.Open(cfg, e.store)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	got := dump(t, v2)
	if len(got) != len(want) {
		t.Fatalf("restored %d paths, want %d", len(got), len(want))
	}
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s missing after restore", p)
			continue
		}
		if !reflect.DeepEqual(g.Attr, w.Attr) || !reflect.DeepEqual(g.Xattrs, w.Xattrs) || !bytes.Equal(g.Content, w.Content) || g.Target != w.Target {
			t.Errorf("%s differs:\n got %+v\nwant %+v", p, g.Attr, w.Attr)
		}
	}

	// The restored volume is a working drive: new files get new inode numbers, the hard
	// link shares its inode, and a snapshot of the unchanged tree uploads nothing.
	root2, stats2, err := v2.Snapshot(ctx, st, st.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if stats2.Uploaded > 1 { // the root object carries the snapshot time
		t.Errorf("snapshot of the restored, unchanged tree uploaded %d objects", stats2.Uploaded)
	}
	_ = root2
	a := must[volume.Attr](t)(v2.Mkdir(ctx, volume.RootIno, "new", 0o755, 0, 0))
	if a.Ino <= want["/dir/sub/f299"].Attr.Ino {
		t.Errorf("new inode %d reuses a restored number", a.Ino)
	}
	if got["/dir/big"].Attr.Ino != got["/dir/sub/hardlink-to-big"].Attr.Ino || got["/dir/big"].Attr.Nlink != 2 {
		t.Errorf("hard link lost: %+v vs %+v", got["/dir/big"].Attr, got["/dir/sub/hardlink-to-big"].Attr)
	}
}

// A change to one file uploads only its directory's page and the pages above it.
func TestSnapshotIncremental(t *testing.T) {
	e := newEnv(t, volume.Config{})
	fill(t, e)
	st := newSnapStore()
	_, first, err := e.v.Snapshot(ctx, st, st.Keys)
	if err != nil {
		t.Fatal(err)
	}
	sub := must[volume.Attr](t)(e.v.Lookup(ctx, must[volume.Attr](t)(e.v.Lookup(ctx, volume.RootIno, "dir")).Ino, "sub"))
	f := must[volume.Attr](t)(e.v.Lookup(ctx, sub.Ino, "f150"))
	h := must[*volume.Handle](t)(e.v.Open(ctx, f.Ino, syscall.O_RDWR))
	e.write(h, []byte("changed"), 0)
	h.Release()
	if err := e.v.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	if changed, _ := e.v.SnapshotChanged(); !changed {
		t.Fatal("SnapshotChanged false after a write")
	}
	_, s, err := e.v.Snapshot(ctx, st, st.Keys)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first %+v, after one change %+v", first, s)
	// sub's page (and its index if it has pages), dir, the top directory and the root.
	if s.Uploaded < 4 || s.Uploaded > 6 || s.Objects != first.Objects {
		t.Errorf("one change uploaded %d objects of %d", s.Uploaded, s.Objects)
	}
}

// TestVersionAndSyncDir: Version grows with commits, and SyncDir is the DirSync hook.
func TestVersionAndSyncDir(t *testing.T) {
	calls := 0
	hookErr := fmt.Errorf("hook failed")
	e := newEnv(t, volume.Config{DirSync: func(context.Context) error {
		calls++
		return hookErr
	}})
	v0 := must[uint64](t)(e.v.Version())
	if v1 := must[uint64](t)(e.v.Version()); v1 != v0 {
		t.Errorf("Version moved without a commit: %d, then %d", v0, v1)
	}
	if _, err := e.v.Mkdir(ctx, volume.RootIno, "d", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	if v1 := must[uint64](t)(e.v.Version()); v1 <= v0 {
		t.Errorf("Version after a mkdir %d, before %d", v1, v0)
	}
	if err := e.v.SyncDir(ctx); err != hookErr || calls != 1 {
		t.Errorf("SyncDir: %v after %d calls, want the hook's error after 1", err, calls)
	}
	plain := newEnv(t, volume.Config{})
	if err := plain.v.SyncDir(ctx); err != nil {
		t.Errorf("SyncDir without a hook: %v", err)
	}
}

// TestSnapshotSeqIsNoChange: recording a root record sequence (as publishing does) is not
// a change a snapshot must pick up, and does not hide a real one.
func TestSnapshotSeqIsNoChange(t *testing.T) {
	e := newEnv(t, volume.Config{})
	st := newSnapStore()
	if _, _, err := e.v.Snapshot(ctx, st, st.Keys); err != nil {
		t.Fatal(err)
	}
	if err := e.v.SetSnapshotSeq(5); err != nil {
		t.Fatal(err)
	}
	if changed := must[bool](t)(e.v.SnapshotChanged()); changed {
		t.Error("SnapshotChanged after recording a sequence")
	}
	if seq := must[uint64](t)(e.v.SnapshotSeq()); seq != 5 {
		t.Errorf("SnapshotSeq %d, want 5", seq)
	}
	if _, err := e.v.Mkdir(ctx, volume.RootIno, "d", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.v.SetSnapshotSeq(6); err != nil {
		t.Fatal(err)
	}
	if changed := must[bool](t)(e.v.SnapshotChanged()); !changed {
		t.Error("SnapshotChanged false after a mkdir and a sequence")
	}
}

// TestSnapshotHoldsPendingChanges: a change acknowledged but still inside its commit
// window is in the next snapshot (the final snapshot at unmount must not miss it).
func TestSnapshotHoldsPendingChanges(t *testing.T) {
	e := deferredEnv(t, volume.Config{})
	st := newSnapStore()
	must[volume.Attr](t)(e.v.Mkdir(ctx, volume.RootIno, "late", 0o755, 0, 0))
	root, _, err := e.v.Snapshot(ctx, st, st.Keys)
	if err != nil {
		t.Fatal(err)
	}
	cfg := volume.Config{Dir: t.TempDir(), Logger: quiet}
	if err := volume.Restore(ctx, cfg, snapshot.NewReader(st), root); err != nil {
		t.Fatal(err)
	}
	v2, err := volume.Open(cfg, e.store)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if _, err := v2.Lookup(ctx, volume.RootIno, "late"); err != nil {
		t.Fatalf("a directory made just before the snapshot is not in it: %v", err)
	}
}
