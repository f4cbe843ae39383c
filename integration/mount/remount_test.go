package mount_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// entry is what TestRemount compares of one name in a tree.
type entry struct {
	Mode     uint32 // st_mode: type and permission bits, setuid included
	UID, GID uint32
	Size     int64
	Mtime    int64 // nanoseconds
	Nlink    uint64
	SHA256   string            // regular files
	Target   string            // symlinks
	Xattrs   map[string]string // user.* attributes
	LinkedTo string            // the first name (in walk order) of the same inode
}

// snapshot describes every name under root, relative to it.
func snapshot(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	firstName := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		e := entry{Mode: st.Mode, UID: st.Uid, GID: st.Gid, Size: st.Size, Mtime: st.Mtim.Nano(), Nlink: uint64(st.Nlink)}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("read %s: %w", rel, err)
			}
			e.SHA256 = fmt.Sprintf("%x", h.Sum(nil))
			if first, ok := firstName[st.Ino]; ok {
				e.LinkedTo = first
			} else {
				firstName[st.Ino] = rel
			}
		case unix.S_IFLNK:
			if e.Target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		if e.Xattrs, err = xattrs(p); err != nil {
			return fmt.Errorf("xattrs of %s: %w", rel, err)
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot of %s: %v", root, err)
	}
	return out
}

// xattrs returns the extended attributes of p (not following a symlink).
func xattrs(p string) (map[string]string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	var m map[string]string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if m == nil {
			m = map[string]string{}
		}
		m[name] = string(v[:vn])
	}
	return m, nil
}

// TestRemount builds a tree of every kind of entry in the mount - empty, inline, just
// over the inline limit, multi-chunk and sparse files, symlinks (relative, absolute,
// dangling), hard links, xattrs, owners, modes with setuid, nanosecond mtimes on files,
// links and directories - checks it against what was made, fsyncs it (so the bytes are on
// the donors, not in staging), unmounts, empties the cache, mounts again, and compares
// everything again.
func TestRemount(t *testing.T) {
	d := newDrive(t, "-staging", "64M", "-cache", "64M")
	d.start()
	root := d.path("t")

	type file struct {
		name string
		size int64
		mode os.FileMode
	}
	files := []file{
		{"empty", 0, 0o644},
		{"tiny", 13, 0o600},
		{"inline-edge", 32 << 10, 0o644},
		{"over-inline", 32<<10 + 1, 0o644},
		{"small", 64 << 10, 0o640},
		{"exec", 1000, 0o755},
		{"setuid", 2000, os.ModeSetuid | 0o755},
		{"readonly", 3000, 0o444},
		{"hard-a", 300 << 10, 0o644},
		{"sub/medium", 900 << 10, 0o644},
		{"sub/multi", 9<<20 + 17, 0o600},
		{"sub/deeper/last", 5, 0o644},
	}
	dirs := []struct {
		name string
		mode os.FileMode
	}{{".", 0o755}, {"sub", 0o700}, {"sub/deeper", 0o755}, {"empty-dir", 0o750}}
	for _, dd := range dirs {
		if err := os.MkdirAll(filepath.Join(root, dd.name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range files {
		p := filepath.Join(root, f.name)
		if err := writeFile(p, uint64(100+i), f.size, nil); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// A sparse file: data, a 4 MiB hole, data.
	sparse := filepath.Join(root, "sparse")
	sf, err := os.Create(sparse)
	must(err)
	_, err = sf.WriteAt([]byte("head"), 0)
	must(err)
	_, err = sf.WriteAt([]byte("tail"), 4<<20+3)
	must(err)
	must(sf.Close())

	must(os.Link(filepath.Join(root, "hard-a"), filepath.Join(root, "sub", "hard-b")))
	must(os.Link(filepath.Join(root, "tiny"), filepath.Join(root, "tiny-link")))
	must(os.Symlink("sub/medium", filepath.Join(root, "link-rel")))
	must(os.Symlink("nowhere/at/all", filepath.Join(root, "link-dangling")))
	must(os.Symlink("/etc/hostname", filepath.Join(root, "link-abs")))
	must(os.Symlink("../tiny", filepath.Join(root, "sub", "link-up")))

	big := strings.Repeat("x", 4000)
	for _, x := range []struct{ name, attr, value string }{
		{"small", "user.color", "blue"},
		{"small", "user.second", "two"},
		{"sub/multi", "user.big", big},
		{"tiny", "user.empty", ""},
		{"sub", "user.dir", "yes"},
		{"hard-a", "user.shared", "by both names"},
	} {
		must(unix.Setxattr(filepath.Join(root, x.name), x.attr, []byte(x.value), 0))
	}
	must(os.Lchown(filepath.Join(root, "small"), 1234, 5678))
	must(os.Lchown(filepath.Join(root, "link-rel"), 42, 43))
	for _, f := range files {
		// Chmod after writing: umask would clear bits at creation.
		must(os.Chmod(filepath.Join(root, f.name), f.mode))
	}
	for _, dd := range dirs {
		must(os.Chmod(filepath.Join(root, dd.name), dd.mode))
	}

	// Distinct nanosecond mtimes on everything, deepest first so that setting a
	// directory's time comes after the last change inside it.
	var names []string
	must(filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		names = append(names, p)
		return err
	}))
	sort.Slice(names, func(i, j int) bool { return strings.Count(names[i], "/") > strings.Count(names[j], "/") })
	// Hard links share one inode, so one time: the last set through any of its names.
	inoOf, inoTime := map[string]uint64{}, map[uint64]int64{}
	for i, p := range names {
		ns := int64(1_600_000_000+i*1000)*1e9 + int64(i*7919+1)
		ts := unix.NsecToTimespec(ns)
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
		var st unix.Stat_t
		must(unix.Lstat(p, &st))
		rel, _ := filepath.Rel(root, p)
		inoOf[rel], inoTime[st.Ino] = st.Ino, ns
	}
	mtimes := map[string]int64{}
	for rel, ino := range inoOf {
		mtimes[rel] = inoTime[ino]
	}

	before := snapshot(t, root)
	if len(before) != len(mtimes) {
		t.Errorf("the tree has %d names; %d were made", len(before), len(mtimes))
	}
	for p, ns := range mtimes {
		if before[p].Mtime != ns {
			t.Errorf("%s: mtime %d, set to %d", p, before[p].Mtime, ns)
		}
	}
	// What was made, checked against the request and not only against itself later.
	for i, f := range files {
		e := before[f.name]
		want := sha256.New()
		io.Copy(want, pattern(uint64(100+i), f.size))
		if e.Size != f.size || e.SHA256 != fmt.Sprintf("%x", want.Sum(nil)) || os.FileMode(e.Mode&0o7777) != modeBits(f.mode) {
			t.Errorf("%s: size %d mode %o; want size %d mode %o and the written bytes", f.name, e.Size, e.Mode&0o7777, f.size, modeBits(f.mode))
		}
	}
	if e := before["sub/hard-b"]; e.LinkedTo != "hard-a" || e.Nlink != 2 || e.Xattrs["user.shared"] == "" {
		t.Errorf("hard link sub/hard-b: %+v; want linked to hard-a, nlink 2, sharing its xattr", e)
	}
	if e := before["sparse"]; e.Size != 4<<20+7 {
		t.Errorf("sparse: size %d", e.Size)
	}
	if e := before["link-dangling"]; e.Target != "nowhere/at/all" || e.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("link-dangling: %+v", e)
	}
	if e := before["small"]; e.UID != 1234 || e.GID != 5678 || e.Xattrs["user.color"] != "blue" {
		t.Errorf("small: %+v", e)
	}
	if e := before["sub/multi"]; e.Xattrs["user.big"] != big {
		t.Errorf("sub/multi lost its 4000-byte xattr")
	}
	if e, ok := before["tiny"].Xattrs["user.empty"]; !ok || e != "" {
		t.Errorf("tiny: empty xattr missing")
	}

	// fsync every file and directory: afterwards the data is on the donors.
	for p, e := range before {
		if e.Mode&unix.S_IFMT == unix.S_IFLNK {
			continue
		}
		f, err := os.Open(filepath.Join(root, p))
		must(err)
		if err := f.Sync(); err != nil {
			t.Errorf("fsync %s: %v", p, err)
		}
		f.Close()
	}
	if n, err := diskUse(d.stagingDir()); err != nil || n != 0 {
		t.Errorf("after fsync of every file the staging dir holds %d bytes (%v)", n, err)
	}

	d.stop()
	emptyDir(t, d.cacheDir())
	d.start()
	after := snapshot(t, root)
	if !reflect.DeepEqual(before, after) {
		for _, p := range unionKeys(before, after) {
			if b, a := before[p], after[p]; !reflect.DeepEqual(b, a) {
				t.Errorf("%s changed across the remount:\n before %+v\n after  %+v", p, b, a)
			}
		}
	}
}

// modeBits converts Go's setuid/setgid/sticky flags to the st_mode bits.
func modeBits(m os.FileMode) os.FileMode {
	out := m.Perm()
	if m&os.ModeSetuid != 0 {
		out |= syscall.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		out |= syscall.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		out |= syscall.S_ISVTX
	}
	return out
}

func unionKeys(a, b map[string]entry) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}
