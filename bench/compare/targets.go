package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A target is one filesystem under test: a directory the benchmark writes into, and how to
// make its next read cold.
type target interface {
	// name is the column heading.
	name() string
	// setup prepares the filesystem's storage and mounts it; dir is valid afterwards.
	setup(ctx context.Context) error
	dir() string
	// settle waits until what was written is where the filesystem keeps it for good (rclone
	// uploads after close); it is not timed.
	settle(ctx context.Context) error
	// cold unmounts, empties the filesystem's own caches, drops the kernel's, and mounts
	// again, so the next read comes from the backing store.
	cold(ctx context.Context) error
	// teardown unmounts and removes the filesystem's storage.
	teardown(ctx context.Context) error
}

// mountTimeout bounds waiting for a mount to appear; a hang becomes an error, not a
// measurement.
const mountTimeout = 2 * time.Minute

// plainFS is a directory on the same disk: the baseline.
type plainFS struct{ root string }

func (p *plainFS) name() string                   { return "plain" }
func (p *plainFS) dir() string                    { return p.root }
func (p *plainFS) setup(context.Context) error    { return os.MkdirAll(p.root, 0o700) }
func (p *plainFS) settle(context.Context) error   { return nil }
func (p *plainFS) cold(context.Context) error     { return dropCaches() }
func (p *plainFS) teardown(context.Context) error { return os.RemoveAll(p.root) }

// gocryptfsFS is gocryptfs (Debian's package) over a cipher directory on the same disk.
type gocryptfsFS struct {
	root, cipher, mnt, pw, log string
	srv                        *server
}

func newGocryptfs(root string) *gocryptfsFS {
	return &gocryptfsFS{root: root, cipher: filepath.Join(root, "cipher"), mnt: filepath.Join(root, "mnt"),
		pw: filepath.Join(root, "pw"), log: filepath.Join(root, "gocryptfs.log")}
}

func (g *gocryptfsFS) name() string { return "gocryptfs" }
func (g *gocryptfsFS) dir() string  { return g.mnt }

func (g *gocryptfsFS) setup(ctx context.Context) error {
	for _, d := range []string{g.cipher, g.mnt} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if err := os.WriteFile(g.pw, []byte("benchmark passphrase\n"), 0o600); err != nil {
		return err
	}
	if err := run(ctx, "gocryptfs", "-init", "-q", "-extpass", "cat "+g.pw, g.cipher); err != nil {
		return err
	}
	return g.mount()
}

func (g *gocryptfsFS) mount() error {
	srv, err := startServer(g.log, nil, "gocryptfs", "-fg", "-q", "-nosyslog", "-extpass", "cat "+g.pw, g.cipher, g.mnt)
	if err != nil {
		return err
	}
	g.srv = srv
	return waitMounted(g.mnt, srv.exited, mountTimeout)
}

func (g *gocryptfsFS) unmount() error {
	if g.srv == nil {
		return nil
	}
	err := unmount(g.mnt)
	err = errors.Join(err, g.srv.wait(time.Minute))
	g.srv = nil
	return err
}

func (g *gocryptfsFS) settle(context.Context) error { return nil }

func (g *gocryptfsFS) cold(context.Context) error {
	if err := g.unmount(); err != nil {
		return err
	}
	if err := dropCaches(); err != nil {
		return err
	}
	return g.mount()
}

func (g *gocryptfsFS) teardown(context.Context) error {
	return errors.Join(g.unmount(), os.RemoveAll(g.cipher))
}

// rcloneFS is an rclone crypt remote over a local directory, mounted with
// --vfs-cache-mode writes (Debian's package). Its remote control API, on loopback, tells
// when uploads are done.
type rcloneFS struct {
	root, remote, cache, mnt, conf, log string
	rcAddr                              string
	srv                                 *server
}

func newRclone(root string) *rcloneFS {
	return &rcloneFS{root: root, remote: filepath.Join(root, "remote"), cache: filepath.Join(root, "cache"),
		mnt: filepath.Join(root, "mnt"), conf: filepath.Join(root, "rclone.conf"), log: filepath.Join(root, "rclone.log")}
}

func (r *rcloneFS) name() string { return "rclone crypt" }
func (r *rcloneFS) dir() string  { return r.mnt }

func (r *rcloneFS) setup(ctx context.Context) error {
	for _, d := range []string{r.remote, r.cache, r.mnt} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// The crypt remote's password must be stored obscured (rclone obscure), as rclone
	// config would write it.
	out, err := exec.CommandContext(ctx, "rclone", "obscure", "benchmark passphrase").Output()
	if err != nil {
		return fmt.Errorf("rclone obscure: %w", err)
	}
	conf := fmt.Sprintf("[bench]\ntype = crypt\nremote = %s\npassword = %s\n", r.remote, strings.TrimSpace(string(out)))
	if err := os.WriteFile(r.conf, []byte(conf), 0o600); err != nil {
		return err
	}
	return r.mount()
}

func (r *rcloneFS) mount() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	r.rcAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	srv, err := startServer(r.log, nil, "rclone", "mount", "bench:", r.mnt, "--config", r.conf,
		"--cache-dir", r.cache, "--vfs-cache-mode", "writes",
		"--rc", "--rc-addr", r.rcAddr, "--rc-no-auth", "--log-level", "ERROR")
	if err != nil {
		return err
	}
	r.srv = srv
	return waitMounted(r.mnt, srv.exited, mountTimeout)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// settle waits until rclone's write-back has uploaded everything to the remote: files
// are uploaded after close (--vfs-write-back, 5 s), not by fsync.
func (r *rcloneFS) settle(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	for {
		var st struct {
			DiskCache struct {
				UploadsInProgress int `json:"uploadsInProgress"`
				UploadsQueued     int `json:"uploadsQueued"`
			} `json:"diskCache"`
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+r.rcAddr+"/vfs/stats", bytes.NewReader([]byte("{}")))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("rclone rc vfs/stats: %w", err)
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("rclone rc vfs/stats: %w", err)
		}
		if st.DiskCache.UploadsInProgress == 0 && st.DiskCache.UploadsQueued == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rclone uploads not done: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (r *rcloneFS) unmount(ctx context.Context) error {
	if r.srv == nil {
		return nil
	}
	err := r.settle(ctx)
	err = errors.Join(err, unmount(r.mnt), r.srv.wait(time.Minute))
	r.srv = nil
	return err
}

func (r *rcloneFS) cold(ctx context.Context) error {
	if err := r.unmount(ctx); err != nil {
		return err
	}
	if err := emptyDir(r.cache); err != nil {
		return err
	}
	if err := dropCaches(); err != nil {
		return err
	}
	return r.mount()
}

func (r *rcloneFS) teardown(ctx context.Context) error {
	return errors.Join(r.unmount(ctx), os.RemoveAll(r.remote), os.RemoveAll(r.cache))
}

// scatterFS is `scatter mount` with its embedded local swarm, run from a binary.
type scatterFS struct {
	bin, root, data, cfg, mnt, pw, ready, log string
	flags                                     []string

	srv     *server
	peakRSS int64 // highest VmHWM over the runs so far
}

func newScatter(bin, root string, flags []string) *scatterFS {
	return &scatterFS{bin: bin, root: root, data: filepath.Join(root, "data"), cfg: filepath.Join(root, "cfg"),
		mnt: filepath.Join(root, "mnt"), pw: filepath.Join(root, "pw"), ready: filepath.Join(root, "ready"),
		log: filepath.Join(root, "scatter.log"), flags: flags}
}

func (s *scatterFS) name() string     { return "scatter" }
func (s *scatterFS) dir() string      { return s.mnt }
func (s *scatterFS) cacheDir() string { return filepath.Join(s.data, "volume", "cache") }

func (s *scatterFS) setup(context.Context) error {
	for _, d := range []string{s.data, s.cfg, s.mnt} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if err := os.WriteFile(s.pw, []byte("benchmark passphrase\n"), 0o600); err != nil {
		return err
	}
	return s.mount()
}

// mount starts `scatter mount` and returns once its ready file names the mount point.
func (s *scatterFS) mount() error {
	os.Remove(s.ready)
	args := append([]string{"mount", "-password-file", s.pw, "-ready-file", s.ready, "-data", s.data, "-config", s.cfg}, s.flags...)
	// A cheap key derivation only shortens each mount's start; nothing measured depends on it.
	srv, err := startServer(s.log, []string{"SCATTER_TEST_CHEAP_KDF=1"}, s.bin, append(args, s.mnt)...)
	if err != nil {
		return err
	}
	s.srv = srv
	deadline := time.Now().Add(mountTimeout)
	for {
		if b, err := os.ReadFile(s.ready); err == nil && strings.TrimSpace(string(b)) == s.mnt && mounted(s.mnt) {
			return nil
		}
		select {
		case <-srv.exited:
			return fmt.Errorf("scatter mount exited before it was ready (%v); log: %s", srv.err, s.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("scatter mount not ready after %v; log: %s", mountTimeout, s.log)
		}
	}
}

func (s *scatterFS) pid() int { return s.srv.pid() }

// unmount stops the mount with SIGTERM (a clean unmount that flushes staging), keeping
// its peak RSS first.
func (s *scatterFS) unmount() error {
	if s.srv == nil {
		return nil
	}
	if rss, err := procPeakRSS(s.pid()); err == nil {
		s.peakRSS = max(s.peakRSS, rss)
	}
	s.srv.cmd.Process.Signal(syscall.SIGTERM)
	err := s.srv.wait(5 * time.Minute)
	s.srv = nil
	return errors.Join(err, unmount(s.mnt))
}

func (s *scatterFS) settle(context.Context) error { return nil }

// cold remounts with an empty chunk cache, after dropping the kernel's caches (the donors'
// fragment files included).
func (s *scatterFS) cold(context.Context) error {
	if err := s.unmount(); err != nil {
		return err
	}
	if err := emptyDir(s.cacheDir()); err != nil {
		return err
	}
	if err := dropCaches(); err != nil {
		return err
	}
	return s.mount()
}

func (s *scatterFS) teardown(context.Context) error {
	return errors.Join(s.unmount(), os.RemoveAll(s.data))
}

// emptyDir removes everything inside dir, keeping dir; a missing dir is empty.
func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
