package volume_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/scatterfs/scatter/volume"
	"github.com/scatterfs/scatter/volume/memchunks"
)

var ctx = context.Background()

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type env struct {
	t     *testing.T
	v     *volume.Volume
	store *memchunks.Store
	cfg   volume.Config
}

// testCommitWindow is the CommitWindow of newEnv's volumes: every change durable when it
// returns, as most tests read the last commit (Version, Garbage); TestDeferredCommits
// runs the namespace tests again with a window that never ends by itself.
var testCommitWindow time.Duration = -1

// newEnv opens a volume over an in-memory store with 64 KiB chunks.
func newEnv(t *testing.T, cfg volume.Config) *env {
	t.Helper()
	return newEnvStore(t, memchunks.New(64<<10, 1<<40), cfg)
}

// newEnvStore opens a volume over store.
func newEnvStore(t *testing.T, store *memchunks.Store, cfg volume.Config) *env {
	t.Helper()
	e := &env{t: t, store: store}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.CommitWindow == 0 {
		cfg.CommitWindow = testCommitWindow
	}
	e.cfg = cfg
	e.open()
	t.Cleanup(func() {
		if e.v != nil {
			if err := e.v.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}
	})
	return e
}

func (e *env) open() {
	e.t.Helper()
	v, err := volume.Open(e.cfg, e.store)
	if err != nil {
		e.t.Fatal(err)
	}
	e.v = v
}

func (e *env) reopen() {
	e.t.Helper()
	if err := e.v.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.open()
}

func (e *env) crash() {
	volume.Crash(e.v)
	e.open()
}

func (e *env) create(parent uint64, name string) (volume.Attr, *volume.Handle) {
	e.t.Helper()
	a, h, err := e.v.Create(ctx, parent, name, syscall.O_RDWR|syscall.O_EXCL, 0o644, 0, 0)
	if err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
	return a, h
}

func (e *env) write(h *volume.Handle, p []byte, off int64) {
	e.t.Helper()
	if n, err := h.Write(ctx, p, off); err != nil || n != len(p) {
		e.t.Fatalf("write %d at %d: %d, %v", len(p), off, n, err)
	}
}

func (e *env) read(h *volume.Handle, n int, off int64) []byte {
	e.t.Helper()
	p := make([]byte, n)
	got, err := h.Read(ctx, p, off)
	if err != nil {
		e.t.Fatalf("read %d at %d: %v", n, off, err)
	}
	return p[:got]
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestNamespace(t *testing.T) {
	e := newEnv(t, volume.Config{})
	v := e.v
	d1 := must[volume.Attr](t)(v.Mkdir(ctx, volume.RootIno, "d1", 0o755, 1, 2))
	d2 := must[volume.Attr](t)(v.Mkdir(ctx, volume.RootIno, "d2", 0o755, 1, 2))
	if d1.UID != 1 || d1.GID != 2 || !d1.IsDir() || d1.Nlink != 2 {
		t.Fatalf("mkdir attrs %+v", d1)
	}
	root := must[volume.Attr](t)(v.Getattr(ctx, volume.RootIno))
	if root.Nlink != 4 {
		t.Errorf("root nlink %d, want 4", root.Nlink)
	}
	a, h := e.create(d1.Ino, "f")
	e.write(h, []byte("hello"), 0)
	h.Release()

	check := func(name string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", name, err, want)
		}
	}
	_, _, err := v.Create(ctx, d1.Ino, "f", syscall.O_RDWR|syscall.O_EXCL, 0o644, 0, 0)
	check("create O_EXCL existing", err, volume.ErrExist)
	_, err = v.Mkdir(ctx, d1.Ino, string(bytes.Repeat([]byte("n"), 256)), 0o755, 0, 0)
	check("256-byte name", err, volume.ErrNameTooLong)
	_, err = v.Mkdir(ctx, d1.Ino, string(bytes.Repeat([]byte("n"), 255)), 0o755, 0, 0)
	check("255-byte name", err, nil)
	check("rmdir non-empty", v.Rmdir(ctx, volume.RootIno, "d1"), volume.ErrNotEmpty)
	check("unlink dir", v.Unlink(ctx, volume.RootIno, "d1"), volume.ErrIsDir)
	check("rmdir file", v.Rmdir(ctx, d1.Ino, "f"), volume.ErrNotDir)
	_, err = v.Lookup(ctx, a.Ino, "x")
	check("lookup in file", err, volume.ErrNotDir)

	// Hard links.
	l := must[volume.Attr](t)(v.Link(ctx, a.Ino, d2.Ino, "g"))
	if l.Nlink != 2 || l.Ino != a.Ino {
		t.Errorf("link: %+v", l)
	}
	// Rename across directories over an existing file.
	_, h = e.create(d2.Ino, "victim")
	h.Release()
	check("rename noreplace", v.Rename(ctx, d1.Ino, "f", d2.Ino, "victim", volume.RenameNoReplace), volume.ErrExist)
	check("rename over", v.Rename(ctx, d1.Ino, "f", d2.Ino, "victim", 0), nil)
	if got := must[volume.Attr](t)(v.Lookup(ctx, d2.Ino, "victim")); got.Ino != a.Ino || got.Nlink != 2 {
		t.Errorf("after rename over: %+v", got)
	}
	_, err = v.Lookup(ctx, d1.Ino, "f")
	check("old name gone", err, volume.ErrNotFound)
	// Rename of two links of one file is a no-op.
	check("rename link onto link", v.Rename(ctx, d2.Ino, "g", d2.Ino, "victim", 0), nil)
	// Directories: into own subtree fails, across parents moves link counts.
	sub := must[volume.Attr](t)(v.Mkdir(ctx, d1.Ino, "sub", 0o755, 0, 0))
	check("rename into itself", v.Rename(ctx, volume.RootIno, "d1", sub.Ino, "x", 0), volume.ErrInvalid)
	check("rename dir", v.Rename(ctx, d1.Ino, "sub", d2.Ino, "sub", 0), nil)
	if got := must[volume.Attr](t)(v.Getattr(ctx, d2.Ino)); got.Nlink != 3 {
		t.Errorf("d2 nlink %d, want 3", got.Nlink)
	}
	if got := must[volume.Attr](t)(v.Getattr(ctx, d1.Ino)); got.Nlink != 3 { // "n..." dir remains
		t.Errorf("d1 nlink %d, want 3", got.Nlink)
	}
	check("rename file over dir", v.Rename(ctx, d2.Ino, "g", d2.Ino, "sub", 0), volume.ErrIsDir)
	check("exchange", v.Rename(ctx, d2.Ino, "g", d2.Ino, "sub", volume.RenameExchange), nil)
	if got := must[volume.Attr](t)(v.Lookup(ctx, d2.Ino, "g")); !got.IsDir() {
		t.Errorf("exchange: g is not the directory")
	}
	// A set-group-ID directory passes its group on.
	mode := uint32(0o2775)
	must[volume.Attr](t)(v.Setattr(ctx, d2.Ino, volume.SetAttr{Mode: &mode}))
	sg := must[volume.Attr](t)(v.Mkdir(ctx, d2.Ino, "sg", 0o755, 7, 8))
	if sg.GID != 2 || sg.Mode&syscall.S_ISGID == 0 {
		t.Errorf("setgid dir: child gid %d mode %o", sg.GID, sg.Mode)
	}
	// Symlinks.
	s := must[volume.Attr](t)(v.Symlink(ctx, volume.RootIno, "ln", "d1/f", 0, 0))
	if tgt := must[string](t)(v.Readlink(ctx, s.Ino)); tgt != "d1/f" || s.Size != 4 {
		t.Errorf("readlink %q size %d", tgt, s.Size)
	}
	// Extended attributes.
	check("setxattr", v.SetXattr(ctx, a.Ino, "user.a", []byte("1"), 0), nil)
	check("setxattr create", v.SetXattr(ctx, a.Ino, "user.a", []byte("2"), volume.XattrCreate), volume.ErrExist)
	check("setxattr replace", v.SetXattr(ctx, a.Ino, "user.b", []byte("2"), volume.XattrReplace), volume.ErrNoAttr)
	if got := must[[]byte](t)(v.GetXattr(ctx, a.Ino, "user.a")); string(got) != "1" {
		t.Errorf("getxattr %q", got)
	}
	if got := must[[]string](t)(v.ListXattr(ctx, a.Ino)); fmt.Sprint(got) != "[user.a]" {
		t.Errorf("listxattr %q", got)
	}
	check("removexattr", v.RemoveXattr(ctx, a.Ino, "user.a"), nil)
	_, err = v.GetXattr(ctx, a.Ino, "user.a")
	check("getxattr removed", err, volume.ErrNoAttr)
	// Setattr with nanoseconds survives a reopen.
	mt := time.Unix(1234567890, 123456789)
	mode = 0o600
	must[volume.Attr](t)(v.Setattr(ctx, a.Ino, volume.SetAttr{Mtime: &mt, Mode: &mode}))
	e.reopen()
	got := must[volume.Attr](t)(e.v.Getattr(ctx, a.Ino))
	if !got.Mtime.Equal(mt) || got.Mode != syscall.S_IFREG|0o600 || got.Size != 5 {
		t.Errorf("after reopen: %+v", got)
	}
}

func TestReadDirPaging(t *testing.T) {
	e := newEnv(t, volume.Config{})
	const n = 1000
	mknodAll(t, e.v, volume.RootIno, n)
	seen := map[string]int{}
	removed := map[string]bool{}
	var cookie uint64
	pages := 0
	for {
		page, err := e.v.ReadDir(ctx, volume.RootIno, cookie, 37)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, d := range page {
			seen[d.Name]++
			cookie = d.Cookie
		}
		if pages == 3 {
			// Entries removed and added during the listing do not disturb the others.
			// (Listing order is creation order, which the concurrent mknods mixed: pick
			// 50 entries not listed yet.)
			for i := n - 1; len(removed) < 50; i-- {
				name := fmt.Sprintf("f%05d", i)
				if seen[name] > 0 {
					continue
				}
				if err := e.v.Unlink(ctx, volume.RootIno, name); err != nil {
					t.Fatal(err)
				}
				removed[name] = true
			}
			e.v.Mknod(ctx, volume.RootIno, "late", syscall.S_IFREG, 0, 0, 0)
		}
		pages++
	}
	for i := range n {
		name := fmt.Sprintf("f%05d", i)
		if c, want := seen[name], boolInt(!removed[name]); c != want {
			t.Fatalf("entry %d seen %d times, want %d", i, c, want)
		}
	}
	if seen["late"] != 1 {
		t.Errorf("entry added during listing not seen")
	}
	if len(seen) != n-50+1 {
		t.Errorf("saw %d entries, want %d", len(seen), n-50+1)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// model is a file's expected content: sparse, so huge offsets cost nothing.
type model struct {
	size  int64
	bytes map[int64]byte
}

func (m *model) write(p []byte, off int64) {
	for i, b := range p {
		m.bytes[off+int64(i)] = b
	}
	m.size = max(m.size, off+int64(len(p)))
}

func (m *model) truncate(size int64) {
	for o := range m.bytes {
		if o >= size {
			delete(m.bytes, o)
		}
	}
	m.size = size
}

func (m *model) read(n int, off int64) []byte {
	if off >= m.size {
		return nil
	}
	n = int(min(int64(n), m.size-off))
	p := make([]byte, n)
	for i := range p {
		p[i] = m.bytes[off+int64(i)]
	}
	return p
}

// TestFileModel applies random writes, truncates, syncs and reopens at offsets around
// chunk boundaries and beyond 4 GiB, checking every read against a model.
func TestFileModel(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			e := newEnv(t, volume.Config{InlineMax: 4 << 10, StagingMax: 8 << 20, StreamThreshold: 256 << 10})
			rng := rand.New(rand.NewPCG(seed, 1))
			a, h := e.create(volume.RootIno, "f")
			m := &model{bytes: map[int64]byte{}}
			bases := []int64{0, 60 << 10, 64 << 10, 1 << 20, 5<<30 - 100}
			for step := range 120 {
				base := bases[rng.IntN(len(bases))]
				off := base + int64(rng.IntN(200<<10)) - 100<<10
				off = max(off, 0)
				switch op := rng.IntN(10); {
				case op < 5:
					p := make([]byte, 1+rng.IntN(150<<10))
					for i := range p {
						p[i] = byte(rng.Uint32()) | 1
					}
					e.write(h, p, off)
					m.write(p, off)
				case op < 6:
					sz := max(m.size-int64(rng.IntN(300<<10)), 0)
					if rng.IntN(3) == 0 {
						sz = off
					}
					must[volume.Attr](t)(e.v.Setattr(ctx, a.Ino, volume.SetAttr{Size: &sz}))
					m.truncate(sz)
				case op < 7:
					if err := h.Fsync(ctx); err != nil {
						t.Fatalf("step %d fsync: %v", step, err)
					}
				case op < 8:
					h.Flush(ctx)
					h.Release()
					if rng.IntN(2) == 0 {
						e.reopen()
					}
					h = must[*volume.Handle](t)(e.v.Open(ctx, a.Ino, syscall.O_RDWR))
				default:
					n := 1 + rng.IntN(300<<10)
					if got, want := e.read(h, n, off), m.read(n, off); !bytes.Equal(got, want) {
						t.Fatalf("step %d: read %d at %d: got %d bytes, want %d (first diff %d)", step, n, off, len(got), len(want), firstDiff(got, want))
					}
				}
				if got := must[volume.Attr](t)(e.v.Getattr(ctx, a.Ino)); got.Size != m.size {
					t.Fatalf("step %d: size %d, want %d", step, got.Size, m.size)
				}
			}
			h.Release()
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestUnlinkOpenFile(t *testing.T) {
	e := newEnv(t, volume.Config{})
	a, h := e.create(volume.RootIno, "f")
	data := bytes.Repeat([]byte("x"), 100<<10)
	e.write(h, data, 0)
	if err := e.v.Unlink(ctx, volume.RootIno, "f"); err != nil {
		t.Fatal(err)
	}
	e.write(h, []byte("y"), 0)
	if err := h.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.read(h, len(data), 0); len(got) != len(data) || got[0] != 'y' {
		t.Fatalf("read after unlink: %d bytes", len(got))
	}
	if got := must[volume.Attr](t)(h.Getattr(ctx)); got.Nlink != 0 {
		t.Errorf("nlink %d after unlink", got.Nlink)
	}
	h.Release()
	if _, err := e.v.Getattr(ctx, a.Ino); !errors.Is(err, volume.ErrNotFound) {
		t.Errorf("inode after last release: %v", err)
	}
}

// TestOrphanAfterCrash: an inode unlinked while open is gone after a crash.
func TestOrphanAfterCrash(t *testing.T) {
	e := newEnv(t, volume.Config{})
	a, h := e.create(volume.RootIno, "f")
	e.write(h, []byte("data"), 0)
	h.Flush(ctx)
	if err := e.v.Unlink(ctx, volume.RootIno, "f"); err != nil {
		t.Fatal(err)
	}
	if err := e.v.SyncDir(ctx); err != nil { // the unlink is durable
		t.Fatal(err)
	}
	e.crash()
	if _, err := e.v.Getattr(ctx, a.Ino); !errors.Is(err, volume.ErrNotFound) {
		t.Errorf("orphan after crash: %v", err)
	}
}

func TestInlineSmallFiles(t *testing.T) {
	e := newEnv(t, volume.Config{})
	for i := range 20 {
		_, h := e.create(volume.RootIno, fmt.Sprint(i))
		e.write(h, []byte(fmt.Sprint("content ", i)), 0)
		if err := h.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		h.Release()
	}
	if n := e.v.StagedBytes(); n != 0 {
		t.Errorf("%d bytes staged after closing small files", n)
	}
	e.reopen()
	if _, puts, _ := e.store.Stats(); puts != 0 {
		t.Errorf("%d chunk puts for inline files", puts)
	}
	a := must[volume.Attr](t)(e.v.Lookup(ctx, volume.RootIno, "7"))
	h := must[*volume.Handle](t)(e.v.Open(ctx, a.Ino, syscall.O_RDONLY))
	defer h.Release()
	if got := e.read(h, 100, 0); string(got) != "content 7" {
		t.Errorf("read %q", got)
	}
}

// TestStagingCap streams a file 16 times the staging cap through a slow store and checks
// the cap is never exceeded, then reads the file back.
func TestStagingCap(t *testing.T) {
	const limit = 4 << 20
	e := newEnv(t, volume.Config{StagingMax: limit})
	e.store.SetPutDelay(time.Millisecond)
	_, h := e.create(volume.RootIno, "big")
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20)
	var peak int64
	const total = 64 << 20
	want := make([]byte, 0, total)
	for off := int64(0); off < total; off += int64(len(buf)) {
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		e.write(h, buf, off)
		want = append(want, buf...)
		peak = max(peak, e.v.StagedBytes())
	}
	if peak > limit {
		t.Fatalf("staging reached %d bytes, cap %d", peak, limit)
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	h.Release()
	e.reopen()
	a := must[volume.Attr](t)(e.v.Lookup(ctx, volume.RootIno, "big"))
	h = must[*volume.Handle](t)(e.v.Open(ctx, a.Ino, syscall.O_RDONLY))
	defer h.Release()
	got := e.read(h, total, 0)
	if !bytes.Equal(got, want) {
		t.Fatalf("content differs at %d", firstDiff(got, want))
	}
}

func TestNoSpace(t *testing.T) {
	e := newEnv(t, volume.Config{StagingMax: 4 << 20, WriteWait: 20 * time.Millisecond})
	e.store.SetFailPut(true)
	_, h := e.create(volume.RootIno, "f")
	defer h.Release()
	buf := make([]byte, 1<<20)
	var err error
	for off := int64(0); off < 16<<20 && err == nil; off += 1 << 20 {
		_, err = h.Write(ctx, buf, off)
	}
	if !errors.Is(err, volume.ErrNoSpace) {
		t.Fatalf("write with no peers: %v, want ErrNoSpace", err)
	}
	if n := e.v.StagedBytes(); n > 4<<20 {
		t.Errorf("staged %d above cap", n)
	}
}

// TestCrashReplay: data closed before a crash is uploaded after the restart.
func TestCrashReplay(t *testing.T) {
	e := newEnv(t, volume.Config{})
	e.store.SetFailPut(true) // nothing reaches the peers before the crash
	a, h := e.create(volume.RootIno, "f")
	data := make([]byte, 3<<20+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	e.write(h, data, 0)
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e.write(h, []byte("not flushed"), int64(len(data))) // may be lost
	_, h2 := e.create(volume.RootIno, "never-flushed")
	e.write(h2, data[:100<<10], 0)
	e.crash()
	if des, err := os.ReadDir(filepath.Join(e.cfg.Dir, "staging")); err != nil || len(des) != 1 {
		t.Errorf("staging after replay holds %d files (%v), want only the journalled one", len(des), err)
	}
	e.store.SetFailPut(false)
	got := must[volume.Attr](t)(e.v.Getattr(ctx, a.Ino))
	if got.Size != int64(len(data)) {
		t.Fatalf("size after crash %d, want %d", got.Size, len(data))
	}
	h = must[*volume.Handle](t)(e.v.Open(ctx, a.Ino, syscall.O_RDWR))
	if err := h.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	h.Release()
	if n := e.v.StagedBytes(); n != 0 {
		t.Errorf("%d bytes still staged after fsync", n)
	}
	// Remount with an empty cache: everything comes from the store.
	e.v.Close()
	e.cfg.CacheDir = t.TempDir()
	e.open()
	h = must[*volume.Handle](t)(e.v.Open(ctx, a.Ino, syscall.O_RDONLY))
	defer h.Release()
	if r := e.read(h, len(data)+100, 0); !bytes.Equal(r, data) {
		t.Fatalf("content after replay differs at %d", firstDiff(r, data))
	}
}

func TestUnrecoverableChunk(t *testing.T) {
	e := newEnv(t, volume.Config{})
	a, h := e.create(volume.RootIno, "f")
	e.write(h, make([]byte, 1<<20), 0)
	if err := h.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	h.Release()
	e.store.Lose()
	e.v.Close()
	e.cfg.CacheDir = t.TempDir()
	e.open()
	h = must[*volume.Handle](t)(e.v.Open(ctx, a.Ino, syscall.O_RDONLY))
	defer h.Release()
	if _, err := h.Read(ctx, make([]byte, 4096), 0); !errors.Is(err, volume.ErrIO) {
		t.Fatalf("read of lost chunk: %v, want ErrIO", err)
	}
}

func TestLocks(t *testing.T) {
	e := newEnv(t, volume.Config{})
	_, h1 := e.create(volume.RootIno, "f")
	defer h1.Release()
	a := must[volume.Attr](t)(h1.Getattr(ctx))
	h2 := must[*volume.Handle](t)(e.v.Open(ctx, a.Ino, syscall.O_RDWR))
	w := volume.Lock{Start: 0, End: 99, Type: syscall.F_WRLCK}
	if err := h1.SetLock(ctx, w, false); err != nil {
		t.Fatal(err)
	}
	r := volume.Lock{Start: 50, End: 60, Type: syscall.F_RDLCK}
	if err := h2.SetLock(ctx, r, false); !errors.Is(err, volume.ErrWouldBlock) {
		t.Fatalf("conflicting lock: %v", err)
	}
	if got := h2.GetLock(r); got.Type != syscall.F_WRLCK {
		t.Errorf("getlk type %d", got.Type)
	}
	r.Start = 100
	r.End = 200
	if err := h2.SetLock(ctx, r, false); err != nil {
		t.Errorf("disjoint lock: %v", err)
	}
	done := make(chan error)
	go func() { done <- h2.SetLock(ctx, volume.Lock{Start: 0, End: 10, Type: syscall.F_WRLCK}, true) }()
	h1.Release() // drops h1's locks and wakes the waiter
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h2.Release()
}

// TestStreamCutsAtContent: a file streamed while open is uploaded in jobs, yet every chunk
// boundary is one the splitter chose from the stream's start (no artificial cut where a
// job ended), so no chunk is put twice.
func TestStreamCutsAtContent(t *testing.T) {
	e := newEnv(t, volume.Config{StagingMax: 64 << 20, StreamThreshold: 1 << 20, JobMax: 4 << 20})
	_, h := e.create(volume.RootIno, "s")
	rng := rand.New(rand.NewPCG(5, 6))
	buf := make([]byte, 1<<20)
	const total = 32 << 20
	for off := int64(0); off < total; off += 1 << 20 {
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		e.write(h, buf, off)
	}
	if err := h.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	h.Release()
	chunks, puts, _ := e.store.Stats()
	if chunks != total/(64<<10) || puts != chunks {
		t.Errorf("%d chunks from %d puts, want %d of each", chunks, puts, total/(64<<10))
	}
}

// TestChunkRefs: chunks no extent references any more are listed as garbage, and
// duplicate chunks are counted once per extent.
func TestChunkRefs(t *testing.T) {
	e := newEnv(t, volume.Config{InlineMax: 1})
	block := bytes.Repeat([]byte("a"), 64<<10)
	a, h := e.create(volume.RootIno, "f")
	for i := range int64(4) {
		e.write(h, block, i*int64(len(block))) // four equal chunks: one chunk, four refs
	}
	if err := h.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	refs, garbage, err := volume.ChunkRefs(e.v)
	if err != nil || refs != 4 || garbage != 0 {
		t.Fatalf("after write: refs %d garbage %d err %v", refs, garbage, err)
	}
	e.write(h, []byte("b"), 10) // rewrites the first chunk
	if err := h.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	if refs, garbage, _ = volume.ChunkRefs(e.v); refs != 4 || garbage != 0 {
		t.Fatalf("after rewrite: refs %d garbage %d", refs, garbage)
	}
	sz := int64(64 << 10)
	must[volume.Attr](t)(e.v.Setattr(ctx, a.Ino, volume.SetAttr{Size: &sz}))
	if refs, garbage, _ = volume.ChunkRefs(e.v); refs != 1 || garbage != 1 {
		t.Fatalf("after truncate: refs %d garbage %d", refs, garbage)
	}
	h.Release()
	if err := e.v.Unlink(ctx, volume.RootIno, "f"); err != nil {
		t.Fatal(err)
	}
	if refs, garbage, _ = volume.ChunkRefs(e.v); refs != 0 || garbage != 2 {
		t.Fatalf("after unlink: refs %d garbage %d", refs, garbage)
	}
}

func TestSeekDataHole(t *testing.T) {
	e := newEnv(t, volume.Config{InlineMax: 1})
	_, h := e.create(volume.RootIno, "sparse")
	defer h.Release()
	e.write(h, bytes.Repeat([]byte("d"), 100), 100<<10)
	if err := h.Fsync(ctx); err != nil { // the first region comes from a chunk extent
		t.Fatal(err)
	}
	e.write(h, []byte("staged"), 1<<20) // the second from staging
	e.write(h, []byte("x"), 2<<20-1)
	for _, c := range []struct {
		off    int64
		whence int
		want   int64
		err    error
	}{
		{0, volume.SeekData, 100 << 10, nil},
		{0, volume.SeekHole, 0, nil},
		{100<<10 + 50, volume.SeekHole, 100<<10 + 100, nil},
		{200 << 10, volume.SeekData, 1 << 20, nil},
		{1 << 20, volume.SeekHole, 1<<20 + 6, nil},
		{1<<20 + 6, volume.SeekData, 2<<20 - 1, nil},
		{2<<20 - 1, volume.SeekHole, 2 << 20, nil},
		{2 << 20, volume.SeekData, 0, volume.ErrNoOffset},
	} {
		got, err := h.Seek(ctx, c.off, c.whence)
		if !errors.Is(err, c.err) || (err == nil && got != c.want) {
			t.Errorf("seek(%d, %d) = %d, %v; want %d, %v", c.off, c.whence, got, err, c.want, c.err)
		}
	}
}

// TestQuietUpload: data of a file left open is uploaded once writes stop.
func TestQuietUpload(t *testing.T) {
	e := newEnv(t, volume.Config{QuietUpload: 10 * time.Millisecond, InlineMax: 1})
	gate := make(chan struct{})
	e.store.SetPutGate(gate)
	_, h := e.create(volume.RootIno, "open")
	defer h.Release()
	e.write(h, make([]byte, 100<<10), 0)
	// The send completes only when an upload's Put takes it: no flush, close or fsync
	// asked for one.
	select {
	case gate <- struct{}{}:
	case <-time.After(time.Minute):
		t.Fatal("data of a quiet open file was not uploaded")
	}
	e.store.SetPutGate(nil)
}

func TestRenameCases(t *testing.T) {
	e := newEnv(t, volume.Config{})
	v := e.v
	mk := func(parent uint64, name string) volume.Attr {
		return must[volume.Attr](t)(v.Mkdir(ctx, parent, name, 0o755, 0, 0))
	}
	nlink := func(ino uint64) uint32 { return must[volume.Attr](t)(v.Getattr(ctx, ino)).Nlink }
	a, b := mk(volume.RootIno, "a"), mk(volume.RootIno, "b")
	mk(a.Ino, "x")
	y := mk(b.Ino, "y")
	mk(y.Ino, "inner")
	// Exchange two directories across parents: link counts of the parents stay.
	if err := v.Rename(ctx, a.Ino, "x", b.Ino, "y", volume.RenameExchange); err != nil {
		t.Fatal(err)
	}
	if got := must[volume.Attr](t)(v.Lookup(ctx, a.Ino, "x")); got.Ino != y.Ino {
		t.Errorf("exchange: a/x is %d, want %d", got.Ino, y.Ino)
	}
	if nlink(a.Ino) != 3 || nlink(b.Ino) != 3 {
		t.Errorf("exchange: nlink a %d b %d, want 3 3", nlink(a.Ino), nlink(b.Ino))
	}
	// Exchange a directory with a file across parents.
	f := must[volume.Attr](t)(v.Mknod(ctx, b.Ino, "f", syscall.S_IFREG|0o644, 0, 0, 0))
	if err := v.Rename(ctx, a.Ino, "x", b.Ino, "f", volume.RenameExchange); err != nil {
		t.Fatal(err)
	}
	if nlink(a.Ino) != 2 || nlink(b.Ino) != 4 {
		t.Errorf("exchange dir/file: nlink a %d b %d, want 2 4", nlink(a.Ino), nlink(b.Ino))
	}
	// A directory cannot replace a non-empty one, nor a file.
	if err := v.Rename(ctx, b.Ino, "y", b.Ino, "f", 0); !errors.Is(err, volume.ErrNotEmpty) {
		t.Errorf("rename over a non-empty dir: %v", err)
	}
	if err := v.Rename(ctx, b.Ino, "y", a.Ino, "x", 0); !errors.Is(err, volume.ErrNotDir) {
		t.Errorf("rename a dir over a file: %v", err)
	}
	// Over an empty directory: the replaced one is gone and counts drop.
	mk(a.Ino, "empty")
	if err := v.Rename(ctx, b.Ino, "y", a.Ino, "empty", 0); err != nil {
		t.Fatal(err)
	}
	if nlink(a.Ino) != 3 || nlink(b.Ino) != 3 {
		t.Errorf("rename over empty dir: nlink a %d b %d, want 3 3", nlink(a.Ino), nlink(b.Ino))
	}
	// Exchange needs both names; a missing source is ENOENT.
	if err := v.Rename(ctx, a.Ino, "x", a.Ino, "nothing", volume.RenameExchange); !errors.Is(err, volume.ErrNotFound) {
		t.Errorf("exchange with a missing name: %v", err)
	}
	if err := v.Rename(ctx, a.Ino, "nothing", b.Ino, "z", 0); !errors.Is(err, volume.ErrNotFound) {
		t.Errorf("rename of a missing name: %v", err)
	}
	// Hard links: unlinking one name keeps the inode under the other.
	must[volume.Attr](t)(v.Link(ctx, f.Ino, b.Ino, "f2"))
	if err := v.Unlink(ctx, a.Ino, "x"); err != nil {
		t.Fatal(err)
	}
	if got := must[volume.Attr](t)(v.Lookup(ctx, b.Ino, "f2")); got.Ino != f.Ino || got.Nlink != 1 {
		t.Errorf("after unlinking one link: %+v", got)
	}
	if _, err := v.ReadDir(ctx, f.Ino, 0, 10); !errors.Is(err, volume.ErrNotDir) {
		t.Errorf("readdir of a file: %v", err)
	}
}

// TestConcurrentNamespace: concurrent operations, some failing, share commits and each
// gets its own result.
func TestConcurrentNamespace(t *testing.T) {
	e := newEnv(t, volume.Config{})
	const workers, per = 16, 40
	errs := make(chan error, workers*per)
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range per {
				// Every name is created twice: one of the two must fail with ErrExist.
				name := fmt.Sprintf("f%d", (w/2)*per+i)
				_, err := e.v.Mknod(ctx, volume.RootIno, name, syscall.S_IFREG|0o644, 0, 0, 0)
				errs <- err
			}
		}()
	}
	for range workers {
		<-done
	}
	close(errs)
	var ok, exist int
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, volume.ErrExist):
			exist++
		default:
			t.Fatal(err)
		}
	}
	if ok != workers*per/2 || exist != workers*per/2 {
		t.Errorf("%d created, %d ErrExist; want %d of each", ok, exist, workers*per/2)
	}
	page := must[[]volume.DirEntry](t)(e.v.ReadDir(ctx, volume.RootIno, 0, 10000))
	if len(page) != workers*per/2 {
		t.Errorf("directory holds %d entries, want %d", len(page), workers*per/2)
	}
}

// mknodAll creates files f00000... in dir from several goroutines (sharing commits).
func mknodAll(t *testing.T, v *volume.Volume, dir uint64, n int) {
	t.Helper()
	const workers = 8
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := w; i < n; i += workers {
				if _, err := v.Mknod(ctx, dir, fmt.Sprintf("f%05d", i), syscall.S_IFREG|0o644, 0, 0, 0); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestConcurrentFiles runs several files' random writes, truncates, fsyncs and reads at
// once under a small staging cap (uploads under pressure, commits overlapping writes),
// each checked against its own model, while namespace operations run beside them.
func TestConcurrentFiles(t *testing.T) {
	e := newEnv(t, volume.Config{InlineMax: 4 << 10, StagingMax: 4 << 20, StreamThreshold: 256 << 10, JobMax: 1 << 20})
	e.store.SetPutDelay(100 * time.Microsecond)
	const workers = 4
	errs := make(chan error, workers+1)
	stop := make(chan struct{})
	go func() { // namespace churn
		for i := 0; i < 60; i++ {
			select {
			case <-stop:
				errs <- nil
				return
			default:
			}
			name := fmt.Sprintf("churn%d", i%7)
			if _, err := e.v.Mknod(ctx, volume.RootIno, name, syscall.S_IFREG|0o644, 0, 0, 0); err != nil && !errors.Is(err, volume.ErrExist) {
				errs <- err
				return
			}
			if err := e.v.Rename(ctx, volume.RootIno, name, volume.RootIno, name+"r", 0); err != nil {
				errs <- err
				return
			}
			if err := e.v.Unlink(ctx, volume.RootIno, name+"r"); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			a, h, err := e.v.Create(ctx, volume.RootIno, fmt.Sprint("w", w), syscall.O_RDWR, 0o644, 0, 0)
			if err != nil {
				errs <- err
				return
			}
			defer h.Release()
			m := &model{bytes: map[int64]byte{}}
			for step := range 60 {
				off := int64(rng.IntN(3 << 20))
				switch op := rng.IntN(10); {
				case op < 6:
					p := make([]byte, 1+rng.IntN(256<<10))
					for i := range p {
						p[i] = byte(rng.Uint32()) | 1
					}
					if _, err := h.Write(ctx, p, off); err != nil {
						errs <- err
						return
					}
					m.write(p, off)
				case op < 7:
					sz := int64(rng.IntN(3 << 20))
					if _, err := e.v.Setattr(ctx, a.Ino, volume.SetAttr{Size: &sz}); err != nil {
						errs <- err
						return
					}
					m.truncate(sz)
				case op < 8:
					if err := h.Fsync(ctx); err != nil {
						errs <- err
						return
					}
				default:
					n := 1 + rng.IntN(512<<10)
					p := make([]byte, n)
					got, err := h.Read(ctx, p, off)
					if err != nil {
						errs <- err
						return
					}
					if want := m.read(n, off); !bytes.Equal(p[:got], want) {
						errs <- fmt.Errorf("worker %d step %d: read %d at %d differs at %d", w, step, n, off, firstDiff(p[:got], want))
						return
					}
				}
			}
			if err := h.Fsync(ctx); err != nil {
				errs <- err
				return
			}
			p := make([]byte, m.size+1)
			got, err := h.Read(ctx, p, 0)
			if err != nil || !bytes.Equal(p[:got], m.read(int(m.size)+1, 0)) {
				errs <- fmt.Errorf("worker %d: final content differs (%v)", w, err)
				return
			}
			errs <- nil
		}()
	}
	for range workers {
		<-done
	}
	close(stop)
	for range workers + 1 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := e.v.StagedBytes(); n != 0 {
		t.Errorf("%d bytes staged after every file's fsync", n)
	}
}
