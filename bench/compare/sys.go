package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/scatterfs/scatter/internal/mountinfo"
)

// parseSize reads sizes such as 256M, 4G or 10G (powers of 1024; a bare number is bytes).
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "IB")
	t = strings.TrimSuffix(t, "B")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q (want e.g. 256M, 4G)", s)
	}
	return n * mult, nil
}

// formatMiB prints bytes in MiB, or GiB from 10 GiB on.
func formatMiB(n int64) string {
	if n >= 10<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It is 100 on every
// Linux architecture Go supports (the kernel fixes it for user space).
const clockTicks = 100

// parseStatCPU returns utime+stime in seconds from the contents of /proc/PID/stat. The
// command name (field 2) is in parentheses and may hold spaces and parentheses itself, so
// fields are counted from the last ')'.
func parseStatCPU(stat []byte) (float64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("proc stat: no ')' after the command name")
	}
	// After ')': field 3 (state) is at index 0, so utime (field 14) is at 11, stime at 12.
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields after the command name, want at least 13", len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("proc stat: utime/stime: %w", err)
	}
	return float64(u+s) / clockTicks, nil
}

// procCPU returns the CPU seconds (user + system) a process has used so far.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// procPeakRSS returns a process's peak resident set size (VmHWM) in bytes.
func procPeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("proc status: odd VmHWM line %q", l)
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			return n << 10, err
		}
	}
	return 0, errors.New("proc status: no VmHWM")
}

// loadavg returns the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// dropCaches writes dirty pages back and drops the whole machine's page cache, dentries and
// inodes, so the next read of anything comes from the disk (or the FUSE server).
func dropCaches() error {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return fmt.Errorf("drop caches (needs root): %w", err)
	}
	return nil
}

// mounted reports whether dir is a mount point.
func mounted(dir string) bool { return mountinfo.Mounted(dir) }

// diskUse returns the bytes allocated on disk (st_blocks) by the files under dir, skipping
// the subtrees named in skip: what sparse staging files really cost, which their sizes do
// not tell. Files may come and go during the walk: one that vanished costs nothing.
func diskUse(dir string, skip ...string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() {
			for _, s := range skip {
				if p == s {
					return filepath.SkipDir
				}
			}
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	return n, err
}

// waitMounted polls until dir is a mount point, the process behind it exits, or the
// timeout passes. The mount point is the only signal gocryptfs -fg and rclone mount give.
func waitMounted(dir string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !mounted(dir) {
		select {
		case <-exited:
			return fmt.Errorf("the process serving %s exited before it was mounted", dir)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not mounted after %v", dir, timeout)
		}
	}
	return nil
}

// server is a long-running subprocess (a FUSE server), waited for by one goroutine.
type server struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been waited for
	err    error         // cmd.Wait's error, set before exited closes
}

// startServer starts name args with stdout and stderr appended to logPath.
func startServer(logPath string, env []string, name string, args ...string) (*server, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "=== %s %s\n", name, strings.Join(args, " "))
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{cmd: cmd, exited: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		log.Close()
		close(s.exited)
	}()
	return s, nil
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// wait waits up to timeout for the process to exit; after that it kills it and says so.
func (s *server) wait(timeout time.Duration) error {
	select {
	case <-s.exited:
		return s.err
	case <-time.After(timeout):
		s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("%s did not exit within %v: killed", s.cmd.Path, timeout)
	}
}

// unmount detaches dir (fusermount -u, then a lazy umount if that fails).
func unmount(dir string) error {
	var errs []error
	for _, c := range [][]string{{"fusermount3", "-u", dir}, {"fusermount", "-u", dir}, {"umount", dir}, {"umount", "-l", dir}} {
		if !mounted(dir) {
			return nil
		}
		if _, err := exec.LookPath(c[0]); err != nil {
			continue
		}
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w: %s", strings.Join(c, " "), err, bytes.TrimSpace(out)))
		}
	}
	if mounted(dir) {
		return errors.Join(append(errs, fmt.Errorf("could not unmount %s", dir))...)
	}
	return nil
}

// run runs a command to completion, returning its combined output in the error if it fails.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tailLines(string(out), 20))
	}
	return nil
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// diskSampler records the peak disk use of a scatter data directory, beyond the donors'
// stores, sampled every period, per phase of the benchmark.
type diskSampler struct {
	data, swarm, staging, cache string

	mu      sync.Mutex
	phase   string           // guarded by mu
	peak    map[string]int64 // guarded by mu: peak of everything but the donors' stores, per phase
	peakSC  map[string]int64 // guarded by mu: peak of staging + cache, per phase
	samples int              // guarded by mu
	err     error            // guarded by mu

	stop chan struct{}
	done chan struct{}
}

func startDiskSampler(data string, period time.Duration) *diskSampler {
	s := &diskSampler{
		data: data, swarm: filepath.Join(data, "swarm"),
		staging: filepath.Join(data, "volume", "staging"), cache: filepath.Join(data, "volume", "cache"),
		phase: "start", peak: map[string]int64{}, peakSC: map[string]int64{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			all, err1 := diskUse(s.data, s.swarm)
			st, err2 := diskUse(s.staging)
			ca, err3 := diskUse(s.cache)
			s.mu.Lock()
			if err := errors.Join(err1, err2, err3); err != nil && s.err == nil {
				s.err = err
			}
			s.samples++
			s.peak[s.phase] = max(s.peak[s.phase], all)
			s.peakSC[s.phase] = max(s.peakSC[s.phase], st+ca)
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *diskSampler) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

// finish stops sampling and returns the peaks per phase.
func (s *diskSampler) finish() (peak, peakSC map[string]int64, samples int, err error) {
	close(s.stop)
	<-s.done
	return s.peak, s.peakSC, s.samples, s.err
}
