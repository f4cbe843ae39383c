// Package mount_test runs scatter's must-show filesystem tests through the real binary: TestMain
// builds cmd/scatter once, and each test mounts a drive in a subprocess (`scatter mount`
// with its embedded local swarm on 127.0.0.1), waits for the ready file, drives the mount
// with ordinary programs and system calls, and unmounts it in t.Cleanup - by SIGTERM, then
// a lazy unmount and SIGKILL if that fails, so no stale mount outlives a test.
//
// Environment:
//
//	SCATTER_BIN=path test this scatter binary instead of building cmd/scatter
//	SCATTER_RACE=1   build the binary with -race (several times slower)
//	SCATTER_BIG=512M size of TestBigFile's file (default 2G)
//	SCATTER_FULL=0   TestRsync copies a subset of $(go env GOROOT)/src, not all of it
//	SCATTER_BENCH=1  run TestBenchMounted, the figures of docs/benchmarks.md "Mounted drive"
package mount_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scatterfs/scatter/internal/mountinfo"
)

// scatterBin is the binary TestMain builds for every test of the package.
var scatterBin string

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "scatter-mount-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "mount tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if scatterBin = os.Getenv("SCATTER_BIN"); scatterBin != "" {
		return m.Run()
	}
	scatterBin = filepath.Join(dir, "scatter")
	args := []string{"build", "-o", scatterBin}
	if os.Getenv("SCATTER_RACE") != "" {
		args = append(args, "-race")
	}
	build := exec.Command(goTool(), append(args, "github.com/scatterfs/scatter/cmd/scatter")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "mount tests: building cmd/scatter:", err)
		return 1
	}
	return m.Run()
}

// goTool returns the go command of the toolchain running the tests.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Bounds on the subprocess. They are not performance assertions: they only turn a hang into
// a failure with the subprocess's log instead of the package timeout's goroutine dump.
const (
	readyTimeout = 2 * time.Minute
	stopTimeout  = 2 * time.Minute
)

// drive is one scatter drive (its own config and data dirs) and the `scatter mount`
// subprocess serving it, if any.
type drive struct {
	t     *testing.T
	root  string   // temporary dir holding everything below
	mnt   string   // mount point
	data  string   // $XDG_DATA_HOME
	flags []string // extra mount flags

	logPath string
	log     *os.File
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	exitErr error
	runs    int
}

// needFUSE skips the test where FUSE mounts are impossible.
func needFUSE(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("mount tests need Linux")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("mount tests need /dev/fuse")
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			t.Skip("mount tests need root or fusermount3")
		}
	}
}

// newDrive prepares a drive with the given extra `scatter mount` flags; start mounts it.
// The cleanup unmounts it and, if the test failed, prints the subprocess's log.
func newDrive(t *testing.T, flags ...string) *drive {
	t.Helper()
	needFUSE(t)
	root := t.TempDir()
	d := &drive{t: t, root: root, mnt: filepath.Join(root, "mnt"), data: filepath.Join(root, "data"), flags: flags,
		logPath: filepath.Join(root, "scatter.log")}
	for _, p := range []string{d.mnt, d.data, filepath.Join(root, "cfg")} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "pw"), []byte("integration passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	d.log = f
	// Registered before t.TempDir's own cleanup runs (cleanups run last-in first-out), so
	// the mount is gone before the temporary dir is removed.
	t.Cleanup(func() {
		if d.running() {
			d.stop()
		}
		d.forceUnmount()
		if t.Failed() {
			d.dumpLog()
		}
		d.log.Close()
	})
	return d
}

// volumeDir is the drive's local state: meta.db, staging/ and cache/.
func (d *drive) volumeDir() string { return filepath.Join(d.data, "scatter", "drive", "volume") }

func (d *drive) stagingDir() string { return filepath.Join(d.volumeDir(), "staging") }
func (d *drive) cacheDir() string   { return filepath.Join(d.volumeDir(), "cache") }

// path returns the name of rel inside the mount.
func (d *drive) path(rel string) string { return filepath.Join(d.mnt, rel) }

// start runs `scatter mount` and returns once the ready file names the mount point and the
// kernel lists the mount.
func (d *drive) start() {
	t := d.t
	t.Helper()
	if d.running() {
		t.Fatal("BUG: drive already running")
	}
	ready := filepath.Join(d.root, "ready")
	os.Remove(ready)
	d.runs++
	fmt.Fprintf(d.log, "=== run %d: scatter mount %s\n", d.runs, strings.Join(d.flags, " "))
	args := append([]string{"mount", "-password-file", filepath.Join(d.root, "pw"), "-ready-file", ready}, d.flags...)
	cmd := exec.Command(scatterBin, append(args, d.mnt)...)
	cmd.Env = append(os.Environ(),
		"XDG_CONFIG_HOME="+filepath.Join(d.root, "cfg"),
		"XDG_DATA_HOME="+d.data,
		"SCATTER_TEST_CHEAP_KDF=1",
	)
	cmd.Stdout, cmd.Stderr = d.log, d.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start scatter mount: %v", err)
	}
	d.cmd, d.exited, d.exitErr = cmd, make(chan struct{}), nil
	go func(done chan struct{}) { d.exitErr = cmd.Wait(); close(done) }(d.exited)

	// A bounded poll: the ready file is the binary's only signal.
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(ready); err == nil && strings.TrimSpace(string(b)) == d.mnt && mounted(d.mnt) {
			return
		}
		select {
		case <-d.exited:
			t.Fatalf("scatter mount exited before it was ready: %v", d.exitErr)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("scatter mount not ready after %v", readyTimeout)
		}
	}
}

func (d *drive) running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// stop unmounts cleanly (SIGTERM), checks the process exits with status 0 and leaves no
// mount behind. If it does not exit in time, it is killed and the test fails.
func (d *drive) stop() {
	t := d.t
	t.Helper()
	if !d.running() {
		t.Fatal("BUG: drive not running")
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(stopTimeout):
		t.Errorf("scatter mount still running %v after SIGTERM: killing it", stopTimeout)
		d.kill()
		return
	}
	if d.exitErr != nil {
		t.Errorf("scatter mount exited with %v after SIGTERM", d.exitErr)
	}
	if mounted(d.mnt) {
		t.Errorf("%s still mounted after scatter mount exited", d.mnt)
		d.forceUnmount()
	}
}

// kill ends the subprocess with SIGKILL, as a crash would, and removes the stale mount
// the kernel keeps (every access would fail with ENOTCONN).
func (d *drive) kill() {
	d.t.Helper()
	d.cmd.Process.Kill()
	<-d.exited
	d.forceUnmount()
}

// forceUnmount lazily detaches the mount point if it is still mounted.
func (d *drive) forceUnmount() {
	if !mounted(d.mnt) {
		return
	}
	for _, c := range [][]string{{"umount", "-l", d.mnt}, {"fusermount3", "-u", "-z", d.mnt}, {"fusermount", "-u", "-z", d.mnt}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			d.t.Logf("%s: %v: %s", strings.Join(c, " "), err, bytes.TrimSpace(out))
			continue
		}
		if !mounted(d.mnt) {
			return
		}
	}
	d.t.Errorf("could not unmount %s", d.mnt)
}

// dumpLog prints the tail of the subprocess's stdout and stderr.
func (d *drive) dumpLog() {
	const keep = 150
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		d.t.Logf("log: %v", err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > keep {
		d.t.Logf("scatter mount log (%s), last %d of %d lines:", d.logPath, keep, len(lines))
		lines = lines[len(lines)-keep:]
	} else {
		d.t.Logf("scatter mount log (%s):", d.logPath)
	}
	for _, l := range lines {
		d.t.Log("  " + l)
	}
}

// mounted reports whether dir is a mount point.
func mounted(dir string) bool { return mountinfo.Mounted(dir) }

// diskUse returns the bytes allocated on disk (st_blocks) by the files under dir: what a
// sparse staging file really costs, which its size does not tell.
func diskUse(dir string) (int64, error) {
	n, _, err := diskUseFiles(dir)
	return n, err
}

// diskUseFiles is diskUse that also counts the files. Files may come and go during the
// walk: one that vanished costs nothing.
func diskUseFiles(dir string) (bytes int64, files int, err error) {
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if e.IsDir() {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			bytes += st.Blocks * 512
			files++
		}
		return nil
	})
	return bytes, files, err
}

// emptyDir removes everything inside dir, keeping dir.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs a command, failing the test with its output if it fails, and returns stdout.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	return runEnv(t, nil, dir, name, args...)
}

// runEnv is run with extra environment variables.
func runEnv(t *testing.T, env []string, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, tail(out.String()), tail(errb.String()))
	}
	return out.String()
}

// tail returns the last lines of s, enough to explain a failure.
func tail(s string) string {
	const keep = 60
	lines := strings.Split(s, "\n")
	if len(lines) > keep {
		lines = append([]string{fmt.Sprintf("[… %d lines]", len(lines)-keep)}, lines[len(lines)-keep:]...)
	}
	return strings.Join(lines, "\n")
}

func needTool(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s is not installed (apt-get install %s)", n, n)
		}
	}
}
