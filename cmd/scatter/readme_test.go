package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/scatterfs/scatter/control"
	"github.com/scatterfs/scatter/internal/mountinfo"
)

// These tests run the built binary as a user would: in a scratch HOME, as subprocesses.

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary builds scatter once per test run.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "scatter-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "scatter")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func needFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root here")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
}

// user is a scratch HOME with its environment.
type user struct {
	t    *testing.T
	home string
	env  []string
}

func newUser(t *testing.T) *user {
	home := t.TempDir()
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "SCATTER_TEST_CHEAP_KDF=1"}
	return &user{t: t, home: home, env: env}
}

// run runs scatter to completion and returns its exit code, stdout and stderr.
func (u *user) run(args ...string) (int, string, string) {
	u.t.Helper()
	cmd := exec.Command(binary(u.t), args...)
	cmd.Env, cmd.Dir = u.env, u.home
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		u.t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// proc is a scatter process running in the background.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer // stdout and stderr, interleaved
	more chan struct{}
	done chan struct{}
	err  error
}

func (u *user) start(args ...string) *proc {
	u.t.Helper()
	p := &proc{t: u.t, more: make(chan struct{}, 1), done: make(chan struct{})}
	p.cmd = exec.Command(binary(u.t), args...)
	p.cmd.Env, p.cmd.Dir = u.env, u.home
	r, w := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		u.t.Fatal(err)
	}
	go func() {
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			p.mu.Lock()
			p.out.WriteString(line)
			p.mu.Unlock()
			select {
			case p.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		p.err = p.cmd.Wait()
		w.Close()
		close(p.done)
	}()
	u.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitFor waits for the process to print a match of re, and returns the match.
func (p *proc) waitFor(re string) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(60 * time.Second)
	for {
		if m := rx.FindStringSubmatch(p.output()); m != nil {
			return m
		}
		select {
		case <-p.more:
		case <-p.done:
			if m := rx.FindStringSubmatch(p.output()); m != nil {
				return m
			}
			p.t.Fatalf("scatter exited (%v) without printing %q:\n%s", p.err, re, p.output())
		case <-deadline:
			p.t.Fatalf("scatter did not print %q in time:\n%s", re, p.output())
		}
	}
}

// stop sends sig and waits for the process to exit; it returns the exit error.
func (p *proc) stop(sig os.Signal) error {
	p.t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(90 * time.Second):
		p.t.Fatalf("scatter did not exit after %v:\n%s", sig, p.output())
	}
	return p.err
}

func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	fstype, err := mountinfo.FSType(dir)
	if err != nil {
		t.Fatal(err)
	}
	return fstype != ""
}

// TestReadme follows README.md's "Try it" as a new user on a fresh machine: the
// documented mount command, with the documented -password-file, starts the local swarm;
// a file written to the mount reads back; scatter sync and scatter status --json report
// it on the peers; SIGTERM unmounts cleanly; a second start (with an empty read cache,
// so the bytes must come from the swarm) finds the file again.
func TestReadme(t *testing.T) {
	needFUSE(t)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, []byte("scatter mount -password-file ~/.config/scatter/passphrase ~/Scatter")) {
		t.Fatal("README.md no longer documents the non-interactive mount command this test runs")
	}
	u := newUser(t)
	mnt := filepath.Join(u.home, "Scatter")
	pwFile := filepath.Join(u.home, ".config", "scatter", "passphrase")
	if err := os.MkdirAll(filepath.Dir(pwFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte("a passphrase for the test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	// A test that fails with the mount up kills scatter: detach the dead mount so the
	// scratch HOME can be removed.
	t.Cleanup(func() {
		if isMounted(t, mnt) {
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	mount := func(extra ...string) *proc {
		return u.start(append([]string{"mount", "-password-file", pwFile}, append(extra, mnt)...)...)
	}

	p := mount()
	p.waitFor(`Mounted the drive on`)
	out := p.output()
	for _, want := range []string{"No drive yet: creating one.", "Recovery key", "starting a local swarm of 14 donors", "Your data stays on this machine"} {
		if !strings.Contains(out, want) {
			t.Errorf("first mount's output lacks %q:\n%s", want, out)
		}
	}
	data := make([]byte, 3<<20+12345) // several chunks, far above the inline limit
	rand.Read(data)
	file := filepath.Join(mnt, "hello.bin")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v, equal %v", err, bytes.Equal(got, data))
	}

	// Refusals while the drive is mounted: one line, exit 1.
	other := filepath.Join(u.home, "other")
	os.Mkdir(other, 0o755)
	code, _, errs := u.run("mount", "-password-file", pwFile, other)
	if code != 1 || !strings.Contains(errs, "is in use by another scatter mount") || strings.Count(errs, "\n") != 1 {
		t.Errorf("second mount of the same data dir: exit %d, %q; want a one-line refusal", code, errs)
	}
	code, _, errs = u.run("mount", "-password-file", pwFile, "-data", filepath.Join(u.home, "d2"), mnt)
	if code != 1 || !strings.Contains(errs, "is in use: a fuse.scatter filesystem is mounted there") || strings.Count(errs, "\n") != 1 {
		t.Errorf("mount on a mounted directory: exit %d, %q; want a one-line refusal", code, errs)
	}

	code, out, errs = u.run("sync")
	if code != 0 || !strings.Contains(out, "Everything staged is on peers.") {
		t.Fatalf("sync: exit %d, %q, %q", code, out, errs)
	}
	code, out, errs = u.run("status", "--json")
	if code != 0 {
		t.Fatalf("status --json: exit %d, %s", code, errs)
	}
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	h := st.Health
	if st.LocalDonors != 14 || len(st.Peers) < st.K+st.M || st.Pending.Bytes != 0 || st.Space.Logical != int64(len(data)) ||
		st.Pending.Uploaded < int64(len(data)) || h == nil || h.Chunks < 1 || h.Complete != h.Chunks || h.Found != h.Fragments {
		t.Fatalf("status after sync does not show the file on the peers:\n%s", out)
	}
	code, out, _ = u.run("status")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("Health: %d chunks: %d complete", h.Chunks, h.Chunks)) {
		t.Errorf("status text: exit %d\n%s", code, out)
	}
	if !bytes.Contains(readme, []byte("scatter check -repair")) {
		t.Error("README.md no longer documents scatter check -repair")
	}
	code, out, errs = u.run("check", "-repair")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d chunks: %d complete, 0 degraded", h.Chunks, h.Chunks)) {
		t.Errorf("check -repair: exit %d\n%s%s", code, out, errs)
	}

	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, p.output())
	}
	if !strings.Contains(p.output(), "Unmounted.") || isMounted(t, mnt) {
		t.Fatalf("not cleanly unmounted:\n%s", p.output())
	}

	// Second start: the same drive and swarm come back. With the read cache emptied the
	// file's bytes must come from the donors. -metrics exercises the Prometheus endpoint.
	os.RemoveAll(filepath.Join(u.home, ".local", "share", "scatter", "drive", "volume", "cache"))
	p = mount("-metrics", "127.0.0.1:0")
	metricsURL := p.waitFor(`Metrics on (http://\S+)`)[1]
	p.waitFor(`Mounted the drive on`)
	if strings.Contains(p.output(), "No drive yet") {
		t.Fatalf("second start created a new drive:\n%s", p.output())
	}
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after restart: %v, equal %v", err, bytes.Equal(got, data))
	}
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`scatter_fragment_bytes_total{op="get"}`, `scatter_fragment_request_seconds_bucket{op="get"`,
		"scatter_chunk_fetches_total", "scatter_staging_bytes", "scatter_cache_bytes", "scatter_cache_hits_total", "scatter_peers_connected",
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if err := p.stop(os.Interrupt); err != nil {
		t.Fatalf("SIGINT: %v\n%s", err, p.output())
	}
	if isMounted(t, mnt) {
		t.Fatal("still mounted after SIGINT")
	}
}

// TestDaemonAndSwarm runs the donor verbs: each serves, prints its address and stops
// cleanly on SIGTERM.
func TestDaemonAndSwarm(t *testing.T) {
	u := newUser(t)
	ready := filepath.Join(u.home, "daemon.addrs")
	d := u.start("daemon", "-dir", filepath.Join(u.home, "donor"), "-quota", "64M", "-ready-file", ready, "-metrics", "127.0.0.1:0")
	url := d.waitFor(`metrics on (http://\S+)`)[1]
	d.waitFor(`scatter donor 12D3KooW\S+, donating 64M`)
	addrs, err := os.ReadFile(ready)
	if err != nil || !strings.Contains(string(addrs), "/ip4/127.0.0.1/tcp/") {
		t.Fatalf("ready file: %q, %v", addrs, err)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte("scatter_peers_routing_table")) {
		t.Errorf("daemon metrics lack the peer gauges:\n%.500s", body)
	}

	// Two donors joining the daemon.
	s := u.start("swarm", "-n", "2", "-quota", "32M", "-dir", filepath.Join(u.home, "swarm"),
		"-ready-file", filepath.Join(u.home, "swarm.addrs"))
	s.waitFor(`2 donors on 127.0.0.1`)
	s.waitFor(`join with: -bootstrap /ip4/127.0.0.1/tcp/\d+/p2p/`)
	for _, p := range []*proc{s, d} {
		if err := p.stop(syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM: %v\n%s", err, p.output())
		}
		if !strings.Contains(p.output(), "stopping") {
			t.Errorf("no clean stop:\n%s", p.output())
		}
	}
}

// The verbs that talk to a mount say clearly when none runs.
func TestStatusSyncNotRunning(t *testing.T) {
	dir := t.TempDir()
	for _, verb := range []string{"status", "sync"} {
		code, _, errs := scatter(t, verb, "-data", dir)
		if code != 1 || !strings.Contains(errs, "no scatter mount is running on data directory") || strings.Count(errs, "\n") != 1 {
			t.Errorf("%s with no mount: exit %d, %q; want one line saying so", verb, code, errs)
		}
	}
	// A mount that answers badly (here: a server that is not scatter) is an error too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := control.NewClient(filepath.Join(dir, "control.sock")).Status(ctx, false); err == nil {
		t.Error("status on a cancelled context succeeded")
	}
}

// TestUnmountFlush: at SIGTERM a mount whose peers cannot take the data (one donor, where
// a chunk needs k+m = 3) waits -flush-timeout with progress, then says the data stays
// staged. The next mount (a local swarm this time) uploads it from the journal.
func TestUnmountFlush(t *testing.T) {
	needFUSE(t)
	u := newUser(t)
	mnt := filepath.Join(u.home, "mnt")
	os.Mkdir(mnt, 0o755)
	t.Cleanup(func() {
		if isMounted(t, mnt) {
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	pw := filepath.Join(u.home, "pw")
	os.WriteFile(pw, []byte("pw"), 0o600)
	ready := filepath.Join(u.home, "donor.addrs")
	d := u.start("daemon", "-dir", filepath.Join(u.home, "donor"), "-quota", "64M", "-ready-file", ready)
	d.waitFor(`scatter donor`)
	addrs, err := os.ReadFile(ready)
	if err != nil {
		t.Fatal(err)
	}
	boot := strings.Fields(string(addrs))[0]

	p := u.start("mount", "-password-file", pw, "-k", "2", "-m", "1", "-bootstrap", boot, "-flush-timeout", "2s", mnt)
	p.waitFor(`Mounted the drive on`)
	data := make([]byte, 1<<20)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(mnt, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, p.output())
	}
	p.waitFor(`Uploading 1\.0 MiB staged in 1 files to peers`)
	p.waitFor(`Stopped waiting: 1\.0 MiB in 1 files stay staged in .*Nothing is lost`)
	if isMounted(t, mnt) {
		t.Fatal("still mounted")
	}
	d.stop(syscall.SIGTERM)

	p = u.start("mount", "-password-file", pw, mnt)
	p.waitFor(`starting a local swarm of 5 donors`)
	p.waitFor(`Mounted the drive on`)
	if code, out, errs := u.run("sync"); code != 0 {
		t.Fatalf("sync: exit %d %s %s", code, out, errs)
	}
	code, out, errs := u.run("status", "-json")
	var st control.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: exit %d %s %s", code, out, errs)
	}
	if st.Pending.Bytes != 0 || st.Health == nil || st.Health.Chunks == 0 || st.Health.Complete != st.Health.Chunks {
		t.Fatalf("the journalled data did not reach the new peers:\n%s", out)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read: %v", err)
	}
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}
