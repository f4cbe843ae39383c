package mount_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pattern returns n deterministic pseudo-random bytes named by seed: incompressible, not
// deduplicable, and regenerated instead of stored.
func pattern(seed uint64, n int64) io.Reader {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return io.LimitReader(rand.NewChaCha8(s), n)
}

// parseSize reads sizes like 512M or 2G (powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

// diskSampler records the peak disk use (allocated blocks) of a drive's staging and cache
// directories, sampled every 100 ms until stopped.
type diskSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	// Written by the sampling goroutine, read after wg.Wait.
	peakStaging, peakCache int64
	// Slack allowed at each peak: 4 KiB per file seen then (see the cap checks).
	stagingFiles, cacheFiles int
	// peakIslands is the most bytes seen in stranded blocks of staging files: see islands.
	peakIslands int64
	samples     int
	err         error
}

func sampleDisk(d *drive) *diskSampler {
	s := &diskSampler{stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			st, sf, err1 := diskUseFiles(d.stagingDir())
			ca, cf, err2 := diskUseFiles(d.cacheDir())
			if err := firstErr(err1, err2); err != nil {
				s.err = err
				return
			}
			isl, err := islands(d.stagingDir())
			if err != nil {
				s.err = err
				return
			}
			s.samples++
			s.peakIslands = max(s.peakIslands, isl)
			if st > s.peakStaging {
				s.peakStaging, s.stagingFiles = st, sf
			}
			if ca > s.peakCache {
				s.peakCache, s.cacheFiles = ca, cf
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *diskSampler) done() { close(s.stop); s.wg.Wait() }

// islands returns the bytes of the data segments (SEEK_DATA to SEEK_HOLE) of at most one
// 4 KiB block in the staging files under dir, leaving out each file's last segment (the
// write front). A sequential writer in 1 MiB writes stages large ranges; single blocks left
// allocated behind the front are blocks that uploads failed to free. Unlike the peak of
// disk use, which exceeds the cap only if a sample lands while staging is full, their
// number grows with the bytes written, so a leak shows at every sample late in the write.
func islands(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		var segs [][2]int64
		for off := int64(0); ; {
			start, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
			if err != nil { // ENXIO: no data after off
				break
			}
			end, err := unix.Seek(int(f.Fd()), start, unix.SEEK_HOLE)
			if err != nil {
				break
			}
			segs = append(segs, [2]int64{start, end})
			off = end
		}
		f.Close()
		for i, sg := range segs {
			if i < len(segs)-1 && sg[1]-sg[0] <= 4096 {
				total += sg[1] - sg[0]
			}
		}
	}
	return total, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// stagingSlack is how far above -staging the staging directory's allocated blocks may go.
// The cap counts the 4 KiB blocks that hold staged bytes, and every other block is punched
// out of the sparse staging file (before the budget shrinks), so only the file system's
// own blocks (the extent tree of a fragmented file) can exceed it. 16 blocks leave room for
// those; a bigger excess means the cap is not enforced.
const stagingSlack = 16 << 12

// TestBigFile streams a big pseudo-random file into a mount whose staging is capped at
// 64 MiB with `dd bs=1M conv=fsync`, sampling the staging directory's disk use during the
// write: it must stay within the cap. After fsync nothing may remain staged. The file must
// then read back identical after a remount with an emptied cache - every byte from the
// donors - while the cache stays within its own cap. Size: SCATTER_BIG (default 2G; ~85 s here under load).
func TestBigFile(t *testing.T) {
	needTool(t, "dd")
	size := int64(2 << 30)
	if v := os.Getenv("SCATTER_BIG"); v != "" {
		var err error
		if size, err = parseSize(v); err != nil {
			t.Fatalf("SCATTER_BIG: %v", err)
		}
	}
	const stagingMax, cacheMax = 64 << 20, 256 << 20
	d := newDrive(t, "-staging", "64M", "-cache", "256M")
	d.start()

	want := sha256.New()
	dd := exec.Command("dd", "of="+d.path("big"), "bs=1M", "iflag=fullblock", "conv=fsync", "status=none")
	dd.Stdin = io.TeeReader(pattern(1, size), want)
	dd.Stderr = os.Stderr
	samp := sampleDisk(d)
	start := time.Now()
	err := dd.Run()
	took := time.Since(start)
	samp.done()
	if err != nil {
		t.Fatalf("dd into the mount: %v", err)
	}
	if samp.err != nil {
		t.Fatalf("sampling staging: %v", samp.err)
	}
	t.Logf("wrote %d MiB in %v (%.0f MB/s); staging peak %.1f MiB (%d files) over %d samples, stranded blocks %d KiB, cache peak %.1f MiB",
		size>>20, took.Round(time.Millisecond), float64(size)/took.Seconds()/1e6,
		float64(samp.peakStaging)/(1<<20), samp.stagingFiles, samp.samples, samp.peakIslands>>10, float64(samp.peakCache)/(1<<20))
	// Known bug, reported: the check is kept and the test skipped at its end (after every
	// other check ran) when only this fails; set stagingLeakFixed once volume is fixed.
	var stagingBug []string
	if samp.peakStaging > stagingMax+stagingSlack {
		stagingBug = append(stagingBug, fmt.Sprintf("staging used %d bytes of disk at its peak; cap %d + slack %d",
			samp.peakStaging, stagingMax, stagingSlack))
	}
	if samp.peakIslands > stagingSlack {
		stagingBug = append(stagingBug, fmt.Sprintf("%d bytes of single 4 KiB blocks stayed allocated behind the write front",
			samp.peakIslands))
	}
	if stagingLeakFixed {
		for _, msg := range stagingBug {
			t.Error(msg)
		}
	}
	if samp.peakStaging == 0 {
		t.Errorf("staging never held a byte in %d samples: the sampler watched the wrong place", samp.samples)
	}
	if n, err := diskUse(d.stagingDir()); err != nil || n != 0 {
		t.Errorf("after fsync the staging dir holds %d bytes (%v); fsync returns once data is on the peers", n, err)
	}
	fi, err := os.Stat(d.path("big"))
	if err != nil || fi.Size() != size {
		t.Fatalf("stat: %v, size %d; want %d", err, fi.Size(), size)
	}

	d.stop()
	emptyDir(t, d.cacheDir())
	d.start()
	f, err := os.Open(d.path("big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := sha256.New()
	samp = sampleDisk(d)
	start = time.Now()
	n, err := io.CopyBuffer(got, f, make([]byte, 1<<20))
	took = time.Since(start)
	samp.done()
	if err != nil || n != size {
		t.Fatalf("read back %d bytes: %v; want %d", n, err, size)
	}
	t.Logf("read back cold in %v (%.0f MB/s); cache peak %.1f MiB (%d files)",
		took.Round(time.Millisecond), float64(size)/took.Seconds()/1e6, float64(samp.peakCache)/(1<<20), samp.cacheFiles)
	if string(got.Sum(nil)) != string(want.Sum(nil)) {
		t.Fatalf("the file read back after a cold remount differs from what dd wrote")
	}
	// The cache bound counts bytes; each file may round up to one more 4 KiB block.
	if slack := int64(samp.cacheFiles) << 12; samp.peakCache > cacheMax+slack {
		t.Errorf("cache used %d bytes of disk at its peak; cap %d + slack %d", samp.peakCache, cacheMax, slack)
	}
	if len(stagingBug) > 0 {
		t.Skip("BUG: volume/writeback.go punches each uploaded range out of the staging file " +
			"unaligned (FALLOC_FL_PUNCH_HOLE on [r.off, r.end) when an upload commits); the 4 KiB block " +
			"shared by two adjacent uploaded ranges is never freed (each punch only zeroes its part), so " +
			"a file's staging disk use grows by one block per upload job beyond the cap until the whole " +
			"file is uploaded: " + strings.Join(stagingBug, "; "))
	}
}

// stagingLeakFixed turns the staging cap check of TestBigFile back into a failure.
const stagingLeakFixed = true
