// Package testdaemon runs `scatter daemon` subprocesses for the integration tests
// (integration and integration/mount): one donor per process, each with its own data
// dir, so that a test can stop one with SIGKILL and start it again over the same dir -
// the same identity and fragment store, on a new port.
package testdaemon

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Daemon is one `scatter daemon` process.
type Daemon struct {
	ID    peer.ID
	Addrs []string // full multiaddrs, from its ready file
	Dir   string   // holds data/ (identity and fragment store), ready and output.log

	cmd  *exec.Cmd
	out  string        // path of its stdout and stderr
	done chan struct{} // closed once the process has been reaped
	err  error         // cmd.Wait's result, set before done is closed
}

// Start runs bin (a scatter binary) as `scatter daemon` over dir, donating quota (e.g.
// "1G"), listening on listen and joining through bootstrap, and returns at once;
// WaitReady waits for it to serve. The command runs through prefix when given (e.g.
// "sh", "-c", script, "sh": the daemon's arguments follow). A cleanup kills the process.
func Start(tb testing.TB, bin, dir, quota, listen string, bootstrap []string, prefix ...string) *Daemon {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	// A restart over the same dir must not find the previous run's ready file.
	if err := os.Remove(filepath.Join(dir, "ready")); err != nil && !os.IsNotExist(err) {
		tb.Fatal(err)
	}
	d := &Daemon{Dir: dir, out: filepath.Join(dir, "output.log"), done: make(chan struct{})}
	args := append(slices.Clone(prefix), bin, "daemon", "-dir", filepath.Join(dir, "data"), "-quota", quota,
		"-listen", listen, "-ready-file", filepath.Join(dir, "ready"))
	for _, b := range bootstrap {
		args = append(args, "-bootstrap", b)
	}
	out, err := os.Create(d.out)
	if err != nil {
		tb.Fatal(err)
	}
	defer out.Close() // the child has its own descriptor
	d.cmd = exec.Command(args[0], args[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = out, out
	if err := d.cmd.Start(); err != nil {
		tb.Fatalf("start daemon: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	tb.Cleanup(d.Kill)
	return d
}

// WaitReady waits until the daemon has written its ready file, or fails if the process
// exits or the deadline passes first. The deadline is no performance assertion: it turns
// a hang into an error carrying the daemon's output.
func (d *Daemon) WaitReady(deadline time.Time) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile(filepath.Join(d.Dir, "ready"))
		if err == nil {
			return d.parseReady(b)
		}
		select {
		case <-d.done:
			return fmt.Errorf("daemon in %s exited before it was ready (%v): %s", d.Dir, d.err, d.Output())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon in %s not ready in time: %s", d.Dir, d.Output())
		}
	}
}

func (d *Daemon) parseReady(b []byte) error {
	for _, line := range strings.Fields(string(b)) {
		a, err := ma.NewMultiaddr(line)
		if err != nil {
			return fmt.Errorf("daemon ready file: %w", err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			return fmt.Errorf("daemon ready file: %w", err)
		}
		d.ID = ai.ID
		d.Addrs = append(d.Addrs, line)
	}
	if d.ID == "" {
		return fmt.Errorf("daemon ready file in %s lists no address", d.Dir)
	}
	return nil
}

// Done is closed once the process has exited and been reaped.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Output returns the end of the daemon's output, for error messages.
func (d *Daemon) Output() string {
	b, _ := os.ReadFile(d.out)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// Kill sends SIGKILL (no chance to say goodbye to anyone) and waits for the process.
func (d *Daemon) Kill() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// CPUTime returns the CPU time the daemon has used so far, from /proc; 0 once it has
// exited.
func (d *Daemon) CPUTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are fields 14 and 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	var ticks int64
	for _, s := range f[11:13] {
		var v int64
		fmt.Sscan(s, &v)
		ticks += v
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}
