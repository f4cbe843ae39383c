package mount_test

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBenchMounted measures the "Mounted drive" figures of docs/benchmarks.md: a sequential
// write (dd bs=1M conv=fsync) and a cold sequential read of a big file through a mount
// served by 12 local donors, beside the same on a plain directory of the same disk, and
// `rsync -a` of Go's whole source tree into each. It only runs with SCATTER_BENCH=1
// (size: SCATTER_BENCH_SIZE, default 2G):
//
//	SCATTER_BENCH=1 go test ./integration/mount -run TestBenchMounted -v -timeout 30m
func TestBenchMounted(t *testing.T) {
	if os.Getenv("SCATTER_BENCH") == "" {
		t.Skip("set SCATTER_BENCH=1 to measure the mounted drive")
	}
	needTool(t, "dd", "rsync")
	size := int64(2 << 30)
	if v := os.Getenv("SCATTER_BENCH_SIZE"); v != "" {
		var err error
		if size, err = parseSize(v); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("load average at start: %s", loadavg())
	plain := t.TempDir()
	src := filepath.Join(t.TempDir(), "src.bin")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, pattern(9, size)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	mb := func(d time.Duration) float64 { return float64(size) / d.Seconds() / 1e6 }
	timed := func(name string, args ...string) time.Duration {
		t.Helper()
		start := time.Now()
		run(t, "", name, args...)
		return time.Since(start)
	}

	// Plain directory: the page cache holds src, as for the mount.
	wPlain := timed("dd", "if="+src, "of="+filepath.Join(plain, "big"), "bs=1M", "conv=fsync", "status=none")
	dropPageCache(t, plain)
	rPlain := timed("dd", "if="+filepath.Join(plain, "big"), "of=/dev/null", "bs=1M", "status=none")
	t.Logf("plain dir: write %.0f MB/s (%v), cold read %.0f MB/s (%v); load %s",
		mb(wPlain), wPlain.Round(time.Millisecond), mb(rPlain), rPlain.Round(time.Millisecond), loadavg())

	d := newDrive(t, "-local-donors", "12")
	d.start()
	samp := sampleDisk(d)
	wMount := timed("dd", "if="+src, "of="+d.path("big"), "bs=1M", "conv=fsync", "status=none")
	samp.done()
	t.Logf("mount, 12 donors, -staging 256M -cache 1G: write %.0f MB/s (%v), peak staging %.0f MiB, cache %.0f MiB; load %s",
		mb(wMount), wMount.Round(time.Millisecond), mib(samp.peakStaging), mib(samp.peakCache), loadavg())

	// Two cold reads: the mount's cache emptied and the donors' files still in the page
	// cache (what a read after a remount costs the client), then the donors' files dropped
	// from the page cache as well (every fragment from the disk).
	for _, donorsCold := range []bool{false, true} {
		d.stop()
		emptyDir(t, d.cacheDir())
		what := "empty cache"
		if donorsCold {
			what = "empty cache, donors' page cache dropped"
			dropPageCache(t, filepath.Join(d.data, "scatter", "drive", "swarm"))
		}
		d.start()
		samp = sampleDisk(d)
		rMount := timed("dd", "if="+d.path("big"), "of=/dev/null", "bs=1M", "status=none")
		samp.done()
		t.Logf("mount: cold read (%s) %.0f MB/s (%v), peak staging %.0f MiB, cache %.0f MiB; load %s",
			what, mb(rMount), rMount.Round(time.Millisecond), mib(samp.peakStaging), mib(samp.peakCache), loadavg())
	}
	d.stop()
	emptyDir(t, d.cacheDir())
	d.start()

	for _, dir := range []string{plain, d.mnt} {
		t.Logf("per operation in %s: %s; load %s", dir, metadataOps(t, dir), loadavg())
	}

	goSrc := filepath.Join(runtime.GOROOT(), "src")
	rsPlain := timed("rsync", "-a", goSrc+"/", filepath.Join(plain, "gosrc")+"/")
	samp = sampleDisk(d)
	rsMount := timed("rsync", "-a", goSrc+"/", d.path("gosrc")+"/")
	samp.done()
	t.Logf("rsync -a of %s: plain dir %.1f s, mount %.1f s (peak staging %.0f MiB, cache %.0f MiB); load %s",
		goSrc, rsPlain.Seconds(), rsMount.Seconds(), mib(samp.peakStaging), mib(samp.peakCache), loadavg())
}

// metadataOps times 300 of each namespace operation a file copy makes, in a new
// directory under dir, and returns the mean time of each.
func metadataOps(t *testing.T, dir string) string {
	t.Helper()
	const n = 300
	dir = filepath.Join(dir, "ops")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := func(p string, i int) string { return filepath.Join(dir, fmt.Sprintf("%s%d", p, i)) }
	data := make([]byte, 1000)
	ops := []struct {
		what string
		op   func(i int) error
	}{
		{"create", func(i int) error {
			f, err := os.OpenFile(name("f", i), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}},
		{"write 1 KB + close", func(i int) error {
			f, err := os.OpenFile(name("f", i), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			if _, err := f.Write(data); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}},
		{"chmod", func(i int) error { return os.Chmod(name("f", i), 0o600) }},
		{"utimes", func(i int) error { return os.Chtimes(name("f", i), time.Unix(1, 0), time.Unix(1, 0)) }},
		{"rename", func(i int) error { return os.Rename(name("f", i), name("g", i)) }},
		{"lstat", func(i int) error { _, err := os.Lstat(name("g", i)); return err }},
		{"unlink", func(i int) error { return os.Remove(name("g", i)) }},
	}
	var out []string
	for _, o := range ops {
		start := time.Now()
		for i := range n {
			if err := o.op(i); err != nil {
				t.Fatalf("%s: %v", o.what, err)
			}
		}
		out = append(out, fmt.Sprintf("%s %.2f ms", o.what, float64(time.Since(start).Microseconds())/1000/n))
	}
	return strings.Join(out, ", ")
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// loadavg returns the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// dropPageCache writes back and evicts the page cache of every file under dir, so the next
// read comes from the disk, without dropping the whole machine's caches.
func dropPageCache(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", p, err)
		}
		return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	})
	if err != nil {
		t.Fatal(err)
	}
}
