// Package compare_test runs the side-by-side benchmark, bench/compare.sh, as a smoke test:
// a 256 MiB file through scatter's mount (12 local donors, k+m = 8+4, staging and cache
// 256 MiB each) and a plain directory. It checks what must hold whatever the machine's
// speed: the file reads back identical from the donors after a cold remount, scatter's
// local disk beyond its donors' stores stays within 300 MiB (sampled every 200 ms), and
// the table is printed. It checks no speed. It needs root and /dev/fuse, and skips
// without them.
//
// Environment: SCATTER_COMPARE_SIZE (default 256M), SCATTER_BIN (a scatter binary to use
// instead of building cmd/scatter).
package compare_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// result is the part of bench/compare's results.json the test checks.
type result struct {
	FS        string  `json:"fs"`
	WriteMBps float64 `json:"write_mbps"`
	ReadMBps  float64 `json:"cold_read_mbps"`
	Verified  bool    `json:"verified"`
	Error     string  `json:"error"`
	Scatter   *struct {
		PeakLocalMax     int64            `json:"peak_local_max_bytes"`
		PeakStagingCache map[string]int64 `json:"peak_staging_cache_bytes"`
		Samples          int              `json:"samples"`
		DiskBound        int64            `json:"disk_bound_bytes"`
		WithinBound      bool             `json:"within_bound"`
		DonorBytes       int64            `json:"donor_store_bytes"`
	} `json:"scatter"`
}

func TestCompareSmoke(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("bench/compare.sh needs Linux")
	}
	if os.Geteuid() != 0 {
		t.Skip("bench/compare.sh needs root: it drops the page cache and mounts FUSE filesystems")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("bench/compare.sh needs /dev/fuse")
	}
	for _, tool := range []string{"dd", "rsync", "ls"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("bench/compare.sh needs %s (apt-get install %s)", tool, tool)
		}
	}
	size := os.Getenv("SCATTER_COMPARE_SIZE")
	if size == "" {
		size = "256M"
	}
	out, work := t.TempDir(), t.TempDir()
	// A part of Go's source tree and 2000 files keep the run short; the full benchmark
	// copies all of it and creates 10,000.
	cmd := exec.Command("sh", "../../bench/compare.sh")
	cmd.Env = append(os.Environ(), "SIZE="+size, "FS=plain,scatter", "OUT="+out, "WORK="+work,
		"FILES=2000", "GOSRC="+filepath.Join(runtime.GOROOT(), "src", "net"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("bench/compare.sh:\n%s", stdout.String())
	if err != nil {
		t.Errorf("bench/compare.sh: %v\nstderr:\n%s", err, stderr.String())
		if b, err := os.ReadFile(filepath.Join(work, "scatter", "scatter.log")); err == nil {
			t.Logf("scatter mount log:\n%s", tailOf(b))
		}
	}
	if !bytes.Contains(stdout.Bytes(), []byte("bytes read back")) {
		t.Errorf("no table in the output")
	}

	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatalf("results: %v", err)
	}
	var res struct {
		Results []result `json:"results"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	seen := map[string]bool{}
	for _, r := range res.Results {
		seen[r.FS] = true
		if r.Error != "" {
			t.Errorf("%s: %s", r.FS, r.Error)
		}
		if !r.Verified {
			t.Errorf("%s: the file read back after a cold remount is not the file written", r.FS)
		}
		if r.WriteMBps <= 0 || r.ReadMBps <= 0 {
			t.Errorf("%s: write or cold read not measured (%v, %v MB/s)", r.FS, r.WriteMBps, r.ReadMBps)
		}
	}
	if !seen["plain"] || !seen["scatter"] {
		t.Fatalf("results for %v, want plain and scatter", seen)
	}
	for _, r := range res.Results {
		s := r.Scatter
		if r.FS != "scatter" {
			continue
		}
		if s == nil {
			t.Fatal("scatter: no mount figures")
		}
		t.Logf("scatter: peak local disk beyond the donors' stores %d bytes (%d samples), staging+cache peaks %v, donors %d bytes",
			s.PeakLocalMax, s.Samples, s.PeakStagingCache, s.DonorBytes)
		// A sampler that never saw staged data watched the wrong place: then the bound
		// below would hold vacuously.
		if s.Samples < 2 || s.PeakStagingCache["write"] == 0 {
			t.Errorf("scatter: %d disk samples, staging+cache peak during the write %d: the sampler saw nothing",
				s.Samples, s.PeakStagingCache["write"])
		}
		if !s.WithinBound || s.PeakLocalMax > s.DiskBound {
			t.Errorf("scatter: peak local disk beyond the donors' stores %d bytes, bound %d", s.PeakLocalMax, s.DiskBound)
		}
		// 8+4 stores 1.5x the data; the donors must hold at least the file.
		if s.DonorBytes < 256<<20 && size == "256M" {
			t.Errorf("scatter: donors' stores hold %d bytes after a 256 MiB write", s.DonorBytes)
		}
	}
}

// tailOf returns the last 100 lines of a log.
func tailOf(b []byte) []byte {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > 100 {
		lines = lines[len(lines)-100:]
	}
	return bytes.Join(lines, []byte("\n"))
}
