package mount_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// followDeadline bounds how long a test waits for a follower to show a change: far above
// the documented delay (a -follow-interval plus a lookup and a restore), so only a change
// that never shows fails, not a slow machine.
const followDeadline = 60 * time.Second

// sync runs `scatter sync` against d's running mount: staged data to the donors, then a
// snapshot published in the root record.
func (d *drive) sync() {
	d.t.Helper()
	runEnv(d.t, []string{"XDG_CONFIG_HOME=" + filepath.Join(d.root, "cfg"), "XDG_DATA_HOME=" + d.data}, d.root, scatterBin, "sync")
}

// waitShown polls check until it returns nil, failing the test at followDeadline. It
// returns how long it took.
func waitShown(t *testing.T, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > followDeadline {
			t.Fatalf("%s: not shown after %v: %v", what, followDeadline, err)
		}
		<-tick.C
	}
}

func hasContent(p string, want []byte) func() error {
	return func() error {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(b, want) {
			return fmt.Errorf("%s: %d bytes, not the %d written", p, len(b), len(want))
		}
		return nil
	}
}

func isGone(p string) func() error {
	return func() error {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %v, want ENOENT", p, err)
		}
		return nil
	}
}

// newFollower prepares a read-only mount of writer's drive on a second device: its own
// config and data dirs, the drive key imported, the same donors.
func newFollower(t *testing.T, writer *drive, sw *swarmProc, interval string, flags ...string) *drive {
	t.Helper()
	key := writer.keyCmd(nil, "export")
	f := newDrive(t, append(append(sw.bootstrapFlags(), "-read-only", "-follow-interval", interval), flags...)...)
	f.keyCmd(key, "import")
	return f
}

// TestFollow: a writer mount and a read-only follower of the same drive on another
// "device" (separate processes and state, the same external donors). After scatter sync
// on the writer, the follower shows each change - new, changed, renamed and deleted
// files and directories - within the documented delay; it refuses writes with EROFS;
// and a second writer is still refused while the first holds the lease.
func TestFollow(t *testing.T) {
	needFUSE(t)
	sw := startSwarm(t, t.TempDir())
	w := newDrive(t, append(sw.bootstrapFlags(), "-staging", "64M")...)
	w.start()
	small, big := []byte("written by the writer\n"), bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB
	if err := os.MkdirAll(w.path("dir/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"small": small, "dir/big": big, "dir/sub/moved": small, "gone": big} {
		if err := os.WriteFile(w.path(name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w.sync()

	f := newFollower(t, w, sw, "300ms")
	f.start()
	for name, b := range map[string][]byte{"small": small, "dir/big": big, "dir/sub/moved": small, "gone": big} {
		if err := hasContent(f.path(name), b)(); err != nil {
			t.Fatalf("the follower at start: %v", err)
		}
	}
	// The follower reads the bytes of a file, the kernel caches them: the change below
	// must still show.
	keepOpen, err := os.Open(f.path("dir/big"))
	if err != nil {
		t.Fatal(err)
	}
	defer keepOpen.Close()

	// Changes on the writer: a file rewritten (same size, new bytes), one grown, one
	// renamed into another directory, one deleted, a directory deleted, a new file.
	big2 := bytes.Repeat([]byte("fedcba9876543210"), 3<<16)
	small2 := append(bytes.Clone(small), "and changed\n"...)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(w.path("dir/big"), big2, 0o644))
	must(os.WriteFile(w.path("small"), small2, 0o644))
	must(os.Rename(w.path("dir/sub/moved"), w.path("moved-here")))
	must(os.Remove(w.path("dir/sub")))
	must(os.Remove(w.path("gone")))
	must(os.WriteFile(w.path("new"), []byte("new on the writer\n"), 0o600))
	w.sync()
	synced := time.Now()
	waitShown(t, "the writer's changes", func() error {
		for _, c := range []func() error{
			hasContent(f.path("dir/big"), big2), hasContent(f.path("small"), small2),
			hasContent(f.path("moved-here"), small), hasContent(f.path("new"), []byte("new on the writer\n")),
			isGone(f.path("dir/sub/moved")), isGone(f.path("dir/sub")), isGone(f.path("gone")),
		} {
			if err := c(); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("the follower showed the changes %v after scatter sync returned on the writer (-follow-interval 300ms)",
		time.Since(synced).Round(time.Millisecond))
	// The file open across the change reads the new version, as the kernel shows it.
	if b, err := os.ReadFile(keepOpen.Name()); err != nil || !bytes.Equal(b, big2) {
		t.Errorf("reopened dir/big: %d bytes, %v", len(b), err)
	}

	// Writes on the follower: EROFS, whatever the call.
	for op, err := range map[string]error{
		"create": os.WriteFile(f.path("x"), []byte("x"), 0o644),
		"write":  func() error { _, err := os.OpenFile(f.path("small"), os.O_WRONLY, 0); return err }(),
		"mkdir":  os.Mkdir(f.path("d"), 0o755),
		"rename": os.Rename(f.path("small"), f.path("small3")),
		"remove": os.Remove(f.path("new")),
		"xattr":  syscall.Setxattr(f.path("new"), "user.x", []byte("1"), 0),
		"chmod":  os.Chmod(f.path("new"), 0o644),
	} {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s on the follower: %v, want EROFS", op, err)
		}
	}
	// scatter sync on the follower looks for the newest snapshot at once; status works.
	must(os.WriteFile(w.path("last"), []byte("last change\n"), 0o644))
	w.sync()
	f.sync()
	if err := hasContent(f.path("last"), []byte("last change\n"))(); err != nil {
		t.Errorf("after scatter sync on the writer, then on the follower: %v", err)
	}
	if out := runEnv(t, []string{"XDG_CONFIG_HOME=" + filepath.Join(f.root, "cfg"), "XDG_DATA_HOME=" + f.data},
		f.root, scatterBin, "status"); !strings.Contains(out, f.mnt) {
		t.Errorf("scatter status on the follower does not name its mount point:\n%s", out)
	}

	// The writer is unaffected by its follower, and no second writer gets in.
	if err := hasContent(w.path("small"), small2)(); err != nil {
		t.Error(err)
	}
	second := newDrive(t, append(sw.bootstrapFlags(), "-staging", "64M")...)
	second.keyCmd(w.keyCmd(nil, "export"), "import")
	if out := second.mountRefused(); !bytes.Contains(out, []byte("mounted for writing on another device")) {
		t.Errorf("a second writer beside a writer and its follower was not refused for the lease:\n%s", out)
	}

	keepOpen.Close()
	f.stop()
	if ents, _ := os.ReadDir(filepath.Join(f.data, "scatter", "drive", "follow")); len(ents) != 0 {
		t.Errorf("the follower left restored snapshots behind: %v", ents)
	}
	w.stop()
}

// TestFollowFigures measures docs/benchmarks.md "Following": the delay from scatter sync
// returning on the writer to the follower showing 1000 new files, at the default
// -follow-interval. Set SCATTER_FOLLOW_FIGURES=1.
func TestFollowFigures(t *testing.T) {
	if os.Getenv("SCATTER_FOLLOW_FIGURES") == "" {
		t.Skip("set SCATTER_FOLLOW_FIGURES=1 to measure")
	}
	needFUSE(t)
	sw := startSwarm(t, t.TempDir())
	w := newDrive(t, append(sw.bootstrapFlags(), "-staging", "64M")...)
	w.start()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(w.path("first"), []byte("1"), 0o644))
	w.sync()
	interval := os.Getenv("SCATTER_FOLLOW_INTERVAL")
	if interval == "" {
		interval = "5s"
	}
	every, err := time.ParseDuration(interval)
	if err != nil {
		t.Fatal(err)
	}
	f := newFollower(t, w, sw, interval, "-log-level", "info")
	f.start()
	const rounds = 5
	for round := range rounds {
		// Rounds take about as long as one another: a pause of a different fifth of the
		// interval each time lands the syncs at different points of the follower's polls,
		// so the figures sample the whole range instead of one phase.
		time.Sleep(time.Duration(round) * every / rounds)
		dir := "batch" + strconv.Itoa(round)
		must(os.Mkdir(w.path(dir), 0o755))
		for i := range 1000 {
			must(os.WriteFile(w.path(filepath.Join(dir, strconv.Itoa(i))), []byte(fmt.Sprintf("file %d of %s\n", i, dir)), 0o644))
		}
		start := time.Now()
		w.sync()
		syncTook := time.Since(start)
		synced := time.Now()
		waitShown(t, dir, func() error {
			ents, err := os.ReadDir(f.path(dir))
			if err != nil {
				return err
			}
			if len(ents) != 1000 {
				return fmt.Errorf("%d of 1000 files", len(ents))
			}
			return hasContent(f.path(filepath.Join(dir, "999")), []byte("file 999 of "+dir+"\n"))()
		})
		shown := time.Since(synced)
		// The follower logs each swap with the time its restore took.
		b, _ := os.ReadFile(f.logPath)
		swap := ""
		if i := bytes.LastIndex(b, []byte("follow: showing a new snapshot")); i >= 0 {
			swap = string(bytes.SplitN(b[i:], []byte("\n"), 2)[0])
		}
		t.Logf("round %d: 1000 new files: scatter sync %v, then shown in the follower %v later (-follow-interval %s); last swap: %s",
			round, syncTook.Round(time.Millisecond), shown.Round(time.Millisecond), interval, swap)
	}
	f.stop()
	w.stop()
}
