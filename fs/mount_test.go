package fs

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/scatterfs/scatter/volume"
)

var ctx = context.Background()

// TestLargeFileStaging writes a file 8 times the staging cap through the mount, at
// offsets past 4 GiB, and reads it back after dropping the kernel's cache.
func TestLargeFileStaging(t *testing.T) {
	const limit = 8 << 20
	mnt, v, _ := mount(t, volume.Config{StagingMax: limit})
	p := filepath.Join(mnt, "big")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	want := make([]byte, 64<<20)
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	const base = 5 << 30
	var peak int64
	for off := 0; off < len(want); off += 1 << 20 {
		if _, err := f.WriteAt(want[off:off+1<<20], base+int64(off)); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, v.StagedBytes())
	}
	if peak > limit {
		t.Errorf("staging peaked at %d, cap %d", peak, limit)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Size() != base+int64(len(want)) {
		t.Fatalf("stat: %v %v", fi, err)
	}
	f, err = os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, base); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("content differs")
	}
	if off, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_DATA); err != nil || off != base {
		t.Errorf("SEEK_DATA from 0: %d, %v; want %d", off, err, base)
	}
	if off, err := unix.Seek(int(f.Fd()), base+10, unix.SEEK_HOLE); err != nil || off != base+int64(len(want)) {
		t.Errorf("SEEK_HOLE: %d, %v; want end of file", off, err)
	}
	hole := make([]byte, 4096)
	if _, err := f.ReadAt(hole, 1<<32); err != nil || !bytes.Equal(hole, make([]byte, 4096)) {
		t.Fatalf("hole: %v", err)
	}
}

func TestMmapSharedWrite(t *testing.T) {
	mnt, _, _ := mount(t, volume.Config{})
	p := filepath.Join(mnt, "m")
	if err := os.WriteFile(p, make([]byte, 3<<16), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, 3<<16, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	copy(m[70000:], "mapped write")
	if err := unix.Msync(m, unix.MS_SYNC); err != nil {
		t.Fatal(err)
	}
	unix.Munmap(m)
	f.Close()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(got[70000:70012]) != "mapped write" {
		t.Fatalf("mapped write lost: %q", got[70000:70012])
	}
}

func TestStatfsAndPermissions(t *testing.T) {
	mnt, _, _ := mount(t, volume.Config{})
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	// memchunks reports 1 TiB free.
	if free := st.Bavail * uint64(st.Bsize); free != 1<<40 {
		t.Errorf("statfs free %d, want 1 TiB", free)
	}
	if st.Namelen != 255 {
		t.Errorf("namelen %d", st.Namelen)
	}
	p := filepath.Join(mnt, "f")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	var s syscall.Stat_t
	if err := syscall.Stat(p, &s); err != nil || s.Uid != 1234 || s.Gid != 5678 || s.Mode&0o777 != 0o600 {
		t.Fatalf("stat after chown: %+v %v", s, err)
	}
	ts := []unix.Timespec{{Sec: 100, Nsec: 123456789}, {Sec: 200, Nsec: 987654321}}
	if err := unix.UtimesNano(p, ts); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(p, &s); err != nil || s.Mtim.Sec != 200 || s.Mtim.Nsec != 987654321 {
		t.Fatalf("utimens: %+v %v", s.Mtim, err)
	}
	long := filepath.Join(mnt, string(bytes.Repeat([]byte("a"), 255)))
	if err := os.WriteFile(long, nil, 0o644); err != nil {
		t.Errorf("255-byte name: %v", err)
	}
	if err := os.WriteFile(long+"b", nil, 0o644); !os.IsNotExist(err) && !isErrno(err, syscall.ENAMETOOLONG) {
		t.Errorf("256-byte name: %v", err)
	}
}

func isErrno(err error, e syscall.Errno) bool {
	pe, ok := err.(*os.PathError)
	return ok && pe.Err == e
}

// TestBigDirectory lists a directory of many entries through the kernel.
func TestBigDirectory(t *testing.T) {
	mnt, v, _ := mount(t, volume.Config{})
	d, err := v.Mkdir(ctx, volume.RootIno, "d", 0o755, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			for i := w; i < n; i += 8 {
				if _, err := v.Mknod(ctx, d.Ino, fmt.Sprintf("entry-%06d", i), syscall.S_IFREG|0o644, 0, 0, 0); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	names, err := os.ReadDir(filepath.Join(mnt, "d"))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != n {
		t.Fatalf("listed %d entries, want %d", len(names), n)
	}
}

// TestPermissions: the kernel enforces modes and ownership (default_permissions) for
// other users, as on a local filesystem.
func TestPermissions(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not installed")
	}
	mnt, _, _ := mountOpts(t, volume.Config{}, Options{AllowOther: true})
	os.Chmod(mnt, 0o755)
	os.Chmod(filepath.Dir(mnt), 0o755) // the test's temporary directory
	// The mount point's parents must be searchable by the other user.
	for d := filepath.Dir(mnt); d != "/"; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			t.Skipf("%s is not searchable by other users", d)
		}
	}
	os.WriteFile(filepath.Join(mnt, "secret"), []byte("s"), 0o600)
	os.WriteFile(filepath.Join(mnt, "public"), []byte("p"), 0o644)
	as := func(args ...string) error {
		return exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--"}, args...)...).Run()
	}
	if err := as("cat", filepath.Join(mnt, "public")); err != nil {
		t.Errorf("other user cannot read a 0644 file: %v", err)
	}
	if err := as("cat", filepath.Join(mnt, "secret")); err == nil {
		t.Error("other user read a 0600 file")
	}
	if err := as("touch", filepath.Join(mnt, "new")); err == nil {
		t.Error("other user created a file in a 0755 directory it does not own")
	}
}

// TestFsyncDir: fsync(2) of a directory reaches the volume's DirSync hook, and its error
// comes back to the caller.
func TestFsyncDir(t *testing.T) {
	var calls atomic.Int32
	var fail atomic.Bool
	mnt, _, _ := mount(t, volume.Config{DirSync: func(context.Context) error {
		calls.Add(1)
		if fail.Load() {
			return volume.ErrNoSpace
		}
		return nil
	}})
	d, err := os.Open(mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatalf("fsync of the root directory: %v", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("DirSync called %d times, want 1", n)
	}
	fail.Store(true)
	if err := d.Sync(); !isErrno(err, syscall.ENOSPC) {
		t.Errorf("fsync with a failing hook: %v, want ENOSPC", err)
	}
}
