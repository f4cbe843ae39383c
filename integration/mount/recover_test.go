package mount_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// swarmProc is a `scatter swarm` subprocess: external donors on 127.0.0.1.
type swarmProc struct {
	t      *testing.T
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File
	addrs  []string
}

// startSwarm runs `scatter swarm -n 14` over dir and waits for its ready file. A second
// start over the same dir brings back the same donors (identities, fragments and DHT
// records), on new ports.
func startSwarm(t *testing.T, dir string) *swarmProc {
	t.Helper()
	ready := filepath.Join(dir, "ready")
	os.Remove(ready)
	log, err := os.OpenFile(filepath.Join(dir, "swarm.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(scatterBin, "swarm", "-n", "14", "-dir", filepath.Join(dir, "donors"), "-quota", "256M", "-ready-file", ready)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "cfg"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &swarmProc{t: t, dir: dir, cmd: cmd, exited: make(chan struct{}), log: log}
	go func() { cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.stop)
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(ready); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			s.addrs = strings.Fields(string(b))
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("scatter swarm exited before it was ready; log in %s", log.Name())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("scatter swarm not ready after %v", readyTimeout)
		}
	}
}

// stop ends the swarm with SIGTERM, as a donor machine shutting down would.
func (s *swarmProc) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.t.Errorf("scatter swarm still running %v after SIGTERM: killing it", stopTimeout)
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.log.Close()
}

// bootstrapFlags names a few of the swarm's donors to join through.
func (s *swarmProc) bootstrapFlags() []string {
	var out []string
	for _, a := range s.addrs[:min(3, len(s.addrs))] {
		out = append(out, "-bootstrap", a)
	}
	return out
}

// keyCmd runs `scatter key <args>` with the drive's config dir and passphrase.
func (d *drive) keyCmd(stdin []byte, args ...string) []byte {
	d.t.Helper()
	cmd := exec.Command(scatterBin, append(append([]string{"key"}, args...), "-password-file", filepath.Join(d.root, "pw"))...)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(d.root, "cfg"), "SCATTER_TEST_CHEAP_KDF=1")
	cmd.Stdin = bytes.NewReader(stdin)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		d.t.Fatalf("scatter key %s: %v\n%s", strings.Join(args, " "), err, errb.Bytes())
	}
	return out
}

// TestRecover writes a tree into a drive whose donors are a separate process, unmounts,
// restarts the donors, and mounts the drive on a "new device" - a fresh config dir holding
// only the imported recovery key and an empty data dir: the mount finds the root record
// in the DHT, rebuilds the metadata from the snapshot, and shows the same tree: names,
// bytes, modes, owners, times, symlinks, hard links and xattrs.
func TestRecover(t *testing.T) {
	needFUSE(t)
	sw := startSwarm(t, t.TempDir())
	// Coded 4+2, not the default 8+4: the new device must adopt the drive's coding.
	old := newDrive(t, append(sw.bootstrapFlags(), "-staging", "64M", "-k", "4", "-m", "2")...)
	old.start()
	root := old.path("t")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// Over a thousand small files (1,020) in a few directories, some inline, some one
	// chunk.
	seed := uint64(1)
	for i := range 12 {
		dir := filepath.Join(root, fmt.Sprintf("d%02d", i), "sub")
		must(os.MkdirAll(dir, 0o755))
		for j := range 85 {
			seed++
			size := int64(seed*977) % (48 << 10) // across the 32 KiB inline limit
			name := filepath.Join(dir, fmt.Sprintf("f%03d", j))
			if j%3 == 0 {
				name = filepath.Join(filepath.Dir(dir), fmt.Sprintf("g%03d", j))
			}
			must(writeFile(name, seed, size, nil))
		}
	}
	// Multi-chunk files.
	must(os.MkdirAll(filepath.Join(root, "big"), 0o700))
	must(writeFile(filepath.Join(root, "big", "nine"), 901, 9<<20+17, nil))
	must(writeFile(filepath.Join(root, "big", "five"), 902, 5<<20+3, nil))
	// Links, xattrs, owners, modes.
	must(os.Link(filepath.Join(root, "big", "five"), filepath.Join(root, "five-again")))
	must(os.Link(filepath.Join(root, "d00", "g000"), filepath.Join(root, "d01", "g000-link")))
	must(os.Symlink("big/nine", filepath.Join(root, "to-nine")))
	must(os.Symlink("/nowhere/at/all", filepath.Join(root, "dangling")))
	must(unix.Setxattr(filepath.Join(root, "big", "nine"), "user.kind", []byte("large"), 0))
	must(unix.Setxattr(filepath.Join(root, "d03"), "user.dir", []byte("a directory's"), 0))
	must(unix.Setxattr(filepath.Join(root, "d05", "sub", "f001"), "user.empty", nil, 0))
	must(os.Lchown(filepath.Join(root, "d02", "sub", "f004"), 1234, 5678))
	must(os.Chmod(filepath.Join(root, "d04", "sub", "f002"), 0o600))
	must(os.Chmod(filepath.Join(root, "d04", "g003"), os.ModeSetuid|0o755))
	must(os.Chmod(filepath.Join(root, "d06"), 0o750))
	// Distinct nanosecond mtimes, deepest first so a directory's comes after its contents.
	var names []string
	must(filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		names = append(names, p)
		return err
	}))
	sort.SliceStable(names, func(i, j int) bool { return strings.Count(names[i], "/") > strings.Count(names[j], "/") })
	for i, p := range names {
		ts := unix.NsecToTimespec(int64(1_500_000_000+i*997)*1e9 + int64(i*7919+3))
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	}
	before := snapshot(t, root)
	if len(before) < 1000 {
		t.Fatalf("the tree has %d names, want at least 1000", len(before))
	}

	// Unmount: the flush puts staged data on the donors, then the final snapshot is
	// published (no fsync or sync before: the unmount alone must be enough).
	old.stop()
	if b, _ := os.ReadFile(old.logPath); !bytes.Contains(b, []byte("Metadata snapshot published")) {
		t.Errorf("the unmount did not say it published the snapshot")
	}
	recoveryKey := old.keyCmd(nil, "export")

	// The donors restart (their DHT records come back from disk), on new ports.
	sw.stop()
	sw = startSwarm(t, sw.dir)

	// A new device: the recovery key in a fresh config dir, an empty data dir.
	fresh := newDrive(t, append(sw.bootstrapFlags(), "-staging", "64M")...)
	fresh.keyCmd(recoveryKey, "import")
	fresh.start()
	b, _ := os.ReadFile(fresh.logPath)
	i := bytes.Index(b, []byte("Recovered the drive's metadata from the network"))
	if i < 0 {
		t.Fatalf("the new device did not recover the drive")
	}
	t.Log(string(bytes.SplitN(b[i:], []byte("\n"), 2)[0]))
	if set, err := os.ReadFile(filepath.Join(fresh.data, "scatter", "drive", "settings.json")); err != nil ||
		!bytes.Contains(set, []byte(`{"k":4,"m":2}`)) {
		t.Errorf("the new device's settings: %s, %v; want the drive's coding 4+2", set, err)
	}
	after := snapshot(t, fresh.path("t"))
	if !reflect.DeepEqual(before, after) {
		n := 0
		for _, p := range unionKeys(before, after) {
			if b, a := before[p], after[p]; !reflect.DeepEqual(b, a) {
				if n++; n <= 20 {
					t.Errorf("%s differs on the new device:\n before %+v\n after  %+v", p, b, a)
				}
			}
		}
		t.Errorf("%d of %d names differ", n, len(before))
	}
	t.Logf("recovered %d names", len(after))
}
