// Command compare measures scatter's mounted drive side by side with the filesystems a user
// would otherwise pick: a plain directory on the same disk, gocryptfs, and an rclone crypt
// mount with --vfs-cache-mode writes. For each it times a sequential write of one big file
// (dd bs=1M conv=fsync), a cold sequential read of it after dropping the caches (for scatter
// also with an emptied chunk cache, by a remount), a warm read right after, rsync -a of Go's
// source tree, and creating then `ls -l` of many empty files; it checks that the file reads
// back identical (SHA-256, after another cold remount). For scatter it also samples, every
// -sample period, the local disk the mount uses beyond its donors' stores (staging, cache,
// metadata), and records the mount process's peak RSS and CPU seconds per GB written and
// read. It prints one table with ratios to the plain directory and writes the figures as
// JSON.
//
// It needs root (it drops the machine's page cache and mounts FUSE filesystems) and is run
// by bench/compare.sh, which installs gocryptfs and rclone and builds scatter:
//
//	bench/compare.sh                          # SIZE=4G, plain, scatter, gocryptfs, rclone
//	SIZE=10G FS=plain,scatter bench/compare.sh
//
// The exit status is 1 if a file read back differs, scatter's local disk went beyond
// -disk-bound, or a step failed.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// options are the command's flags.
type options struct {
	size       int64
	fs         []string
	work       string
	out        string
	scatterBin string
	goSrc      string
	files      int
	donors     int
	k, m       int
	staging    int64
	cache      int64
	diskBound  int64
	sample     time.Duration
	perf       bool
	keep       bool
}

// result holds one filesystem's figures. Zero means not measured.
type result struct {
	FS            string  `json:"fs"`
	WriteMBps     float64 `json:"write_mbps"`
	ColdReadMBps  float64 `json:"cold_read_mbps"`
	WarmReadMBps  float64 `json:"warm_read_mbps"`
	RsyncSeconds  float64 `json:"rsync_seconds"`
	CreateSeconds float64 `json:"create_seconds"`
	LsSeconds     float64 `json:"ls_seconds"`
	Verified      bool    `json:"verified"` // the file read back after a cold remount has the SHA-256 written
	Error         string  `json:"error,omitempty"`
	Load          string  `json:"load_before"` // load average when this filesystem's run started

	Scatter *scatterFigures `json:"scatter,omitempty"`
}

// scatterFigures are what only scatter's mount reports.
type scatterFigures struct {
	// Peak local disk (allocated blocks) of the data directory except the donors' stores
	// (swarm/): staging, cache, metadata, DHT state. Per phase; the maximum over the
	// phases of the big file (write, reads, check), which DiskBound limits.
	PeakLocal        map[string]int64 `json:"peak_local_bytes"`
	PeakLocalMax     int64            `json:"peak_local_max_bytes"`
	PeakStagingCache map[string]int64 `json:"peak_staging_cache_bytes"`
	Samples          int              `json:"samples"`
	DiskBound        int64            `json:"disk_bound_bytes"`
	WithinBound      bool             `json:"within_bound"`
	DonorBytes       int64            `json:"donor_store_bytes"` // the donors' stores after the big file was written
	PeakRSS          int64            `json:"peak_rss_bytes"`    // VmHWM of the mount process (embedded donors included)
	CPUWrite         float64          `json:"cpu_s_per_gb_write"`
	CPURead          float64          `json:"cpu_s_per_gb_cold_read"`
	CPURsync         float64          `json:"cpu_s_rsync"` // CPU seconds of the mount during the rsync
	CPUFiles         float64          `json:"cpu_s_files"` // and while creating the files
}

// bigFilePhases are the phases in which only the big file is in the mount: the disk bound
// applies to them. The rsync and the many files add metadata that is not staging or cache.
var bigFilePhases = []string{"write", "cold read", "warm read", "verify"}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := runAll(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	f := flag.NewFlagSet("compare", flag.ContinueOnError)
	size := f.String("size", "4G", "size of the big file (K, M, G: powers of 1024)")
	fsList := f.String("fs", "plain,scatter,gocryptfs,rclone", "filesystems to measure, in this order")
	f.StringVar(&o.work, "work", "", "work directory on the disk to measure (default: a new one in $TMPDIR)")
	f.StringVar(&o.out, "out", "", "directory for results.json, logs and profiles (default: the work directory)")
	f.StringVar(&o.scatterBin, "scatter", "", "the scatter binary (required for -fs scatter)")
	f.StringVar(&o.goSrc, "gosrc", "", "the tree to rsync (default: $(go env GOROOT)/src)")
	f.IntVar(&o.files, "files", 10000, "empty files to create and list")
	f.IntVar(&o.donors, "donors", 12, "scatter's local donors")
	f.IntVar(&o.k, "k", 8, "scatter's data fragments per chunk")
	f.IntVar(&o.m, "m", 4, "scatter's parity fragments per chunk")
	staging := f.String("staging", "256M", "scatter's -staging")
	cache := f.String("cache", "256M", "scatter's -cache")
	bound := f.String("disk-bound", "300M", "most local disk scatter may use beyond its donors' stores")
	f.DurationVar(&o.sample, "sample", 200*time.Millisecond, "how often to sample scatter's local disk use")
	f.BoolVar(&o.perf, "perf", false, "perf record the scatter mount during the write and the cold read (into -out)")
	f.BoolVar(&o.keep, "keep", false, "keep the work directory")
	if err := f.Parse(args); err != nil {
		return nil, err
	}
	if f.NArg() != 0 {
		return nil, fmt.Errorf("unexpected arguments %q", f.Args())
	}
	var errs []error
	for _, p := range []struct {
		s   string
		dst *int64
	}{{*size, &o.size}, {*staging, &o.staging}, {*cache, &o.cache}, {*bound, &o.diskBound}} {
		n, err := parseSize(p.s)
		errs = append(errs, err)
		*p.dst = n
	}
	for _, name := range strings.Split(*fsList, ",") {
		switch name = strings.TrimSpace(name); name {
		case "plain", "scatter", "gocryptfs", "rclone":
			o.fs = append(o.fs, name)
		case "":
		default:
			errs = append(errs, fmt.Errorf("unknown filesystem %q (plain, scatter, gocryptfs, rclone)", name))
		}
	}
	if len(o.fs) == 0 {
		errs = append(errs, errors.New("-fs names no filesystem"))
	}
	for _, name := range o.fs {
		if name == "scatter" && o.scatterBin == "" {
			errs = append(errs, errors.New("-fs scatter needs -scatter BINARY"))
		}
	}
	if o.files < 1 || o.donors < 1 || o.k < 1 || o.m < 0 || o.sample <= 0 {
		errs = append(errs, errors.New("-files, -donors, -k and -sample must be positive, -m not negative"))
	}
	return o, errors.Join(errs...)
}

// runAll measures every filesystem and prints the table. ok is false if a check failed.
func runAll(ctx context.Context, o *options) (ok bool, err error) {
	if os.Geteuid() != 0 {
		return false, errors.New("needs root: it drops the page cache (/proc/sys/vm/drop_caches) and mounts FUSE filesystems")
	}
	if o.goSrc == "" {
		out, err := exec.Command("go", "env", "GOROOT").Output()
		if err != nil {
			return false, fmt.Errorf("go env GOROOT (or give -gosrc): %w", err)
		}
		o.goSrc = filepath.Join(strings.TrimSpace(string(out)), "src")
	}
	if o.work == "" {
		if o.work, err = os.MkdirTemp("", "scatter-compare-"); err != nil {
			return false, err
		}
	} else if err := os.MkdirAll(o.work, 0o700); err != nil {
		return false, err
	}
	if !o.keep {
		defer os.RemoveAll(o.work)
	}
	if o.out == "" {
		o.out = o.work
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return false, err
	}
	b := &bench{o: o, src: filepath.Join(o.work, "src.bin"), loadStart: loadavg()}
	logf("SIZE=%s into %s; load average %s", formatMiB(o.size), o.work, b.loadStart)
	if b.srcSum, err = writePattern(b.src, o.size); err != nil {
		return false, fmt.Errorf("writing the source file: %w", err)
	}
	var results []*result
	for _, name := range o.fs {
		if ctx.Err() != nil {
			break
		}
		root := filepath.Join(o.work, name)
		var t target
		switch name {
		case "plain":
			t = &plainFS{root: root}
		case "gocryptfs":
			t = newGocryptfs(root)
		case "rclone":
			t = newRclone(root)
		case "scatter":
			t = newScatter(o.scatterBin, root, b.scatterFlags())
		}
		results = append(results, b.measure(ctx, t))
	}
	b.loadEnd = loadavg()
	ok = b.printTable(os.Stdout, results)
	j, err := json.MarshalIndent(map[string]any{
		"size": o.size, "k": o.k, "m": o.m, "donors": o.donors, "staging": o.staging, "cache": o.cache,
		"files": o.files, "gosrc": o.goSrc, "load_start": b.loadStart, "load_end": b.loadEnd,
		"results": results, "ok": ok,
	}, "", "  ")
	if err != nil {
		return false, err
	}
	return ok, os.WriteFile(filepath.Join(o.out, "results.json"), append(j, '\n'), 0o644)
}

type bench struct {
	o                  *options
	src                string
	srcSum             [sha256.Size]byte
	loadStart, loadEnd string
}

// scatterFlags are the mount's flags: the donors get room for 1.5x the big file and the
// source tree, with margin.
func (b *bench) scatterFlags() []string {
	o := b.o
	perDonor := (o.size*int64(o.k+o.m)/int64(o.k))/int64(o.donors)*5/4 + 512<<20
	perDonor = max(perDonor, 1<<30)
	return []string{
		"-local-donors", strconv.Itoa(o.donors), "-k", strconv.Itoa(o.k), "-m", strconv.Itoa(o.m),
		"-staging", strconv.FormatInt(o.staging, 10), "-cache", strconv.FormatInt(o.cache, 10),
		"-local-quota", strconv.FormatInt(perDonor, 10),
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// writePattern writes n deterministic pseudo-random bytes (incompressible, not
// deduplicable) to path and returns their SHA-256.
func writePattern(path string, n int64) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Create(path)
	if err != nil {
		return sum, err
	}
	h := sha256.New()
	_, err = io.CopyBuffer(io.MultiWriter(f, h), io.LimitReader(rand.NewChaCha8([32]byte{'c', 'o', 'm', 'p', 'a', 'r', 'e'}), n), make([]byte, 1<<20))
	if err := errors.Join(err, f.Close()); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// measure runs every step on one filesystem. A failed step ends its run, recorded in
// Error; the other filesystems are still measured.
func (b *bench) measure(ctx context.Context, t target) *result {
	r := &result{FS: t.name(), Load: loadavg()}
	logf("%s: setting up; load average %s", t.name(), r.Load)
	if err := t.setup(ctx); err != nil {
		r.Error = "setup: " + err.Error()
		logf("%s: %s", t.name(), r.Error)
		t.teardown(ctx)
		return r
	}
	sc, _ := t.(*scatterFS)
	var samp *diskSampler
	if sc != nil {
		samp = startDiskSampler(sc.data, b.o.sample)
		r.Scatter = &scatterFigures{DiskBound: b.o.diskBound}
	}
	err := b.steps(ctx, t, r, sc, samp)
	err = errors.Join(err, t.teardown(ctx))
	if sc != nil {
		peak, peakSC, n, serr := samp.finish()
		err = errors.Join(err, serr)
		f := r.Scatter
		f.PeakLocal, f.PeakStagingCache, f.Samples, f.PeakRSS = peak, peakSC, n, sc.peakRSS
		for _, p := range bigFilePhases {
			f.PeakLocalMax = max(f.PeakLocalMax, peak[p])
		}
		f.WithinBound = f.PeakLocalMax <= b.o.diskBound && n > 0
		logf("scatter: peak local disk beyond the donors' stores %s (%d samples) by phase %v; peak RSS %s",
			formatMiB(f.PeakLocalMax), n, mibMap(peak), formatMiB(f.PeakRSS))
	}
	if err != nil {
		r.Error = err.Error()
		logf("%s: %s", t.name(), r.Error)
	}
	return r
}

func mibMap(m map[string]int64) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = formatMiB(v)
	}
	return out
}

func (b *bench) steps(ctx context.Context, t target, r *result, sc *scatterFS, samp *diskSampler) error {
	o, name, dir := b.o, t.name(), t.dir()
	phase := func(p string) {
		if samp != nil {
			samp.setPhase(p)
		}
	}
	mbps := func(d time.Duration) float64 { return float64(o.size) / d.Seconds() / 1e6 }
	// cpu returns the mount process's CPU seconds so far (0 for the others).
	cpu := func() float64 {
		if sc == nil {
			return 0
		}
		c, err := procCPU(sc.pid())
		if err != nil {
			logf("scatter: reading CPU time: %v", err)
		}
		return c
	}
	big := filepath.Join(dir, "big")

	// Sequential write, the source in the page cache (as it would be for every filesystem).
	if err := readAll(b.src); err != nil {
		return err
	}
	phase("write")
	c0, stopPerf := cpu(), b.perfStart(sc, "write")
	d, err := timed(ctx, "dd", "if="+b.src, "of="+big, "bs=1M", "conv=fsync", "status=none")
	stopPerf()
	if err != nil {
		return err
	}
	r.WriteMBps = mbps(d)
	if sc != nil {
		r.Scatter.CPUWrite = (cpu() - c0) / (float64(o.size) / 1e9)
	}
	logf("%s: write %.0f MB/s (%v); load %s", name, r.WriteMBps, d.Round(time.Millisecond), loadavg())
	if err := t.settle(ctx); err != nil {
		return err
	}
	if sc != nil {
		r.Scatter.DonorBytes, _ = diskUse(filepath.Join(sc.data, "swarm"))
	}

	// Cold read, then warm read.
	phase("cold read")
	if err := t.cold(ctx); err != nil {
		return fmt.Errorf("remount for the cold read: %w", err)
	}
	c0, stopPerf = cpu(), b.perfStart(sc, "read")
	d, err = timed(ctx, "dd", "if="+big, "of=/dev/null", "bs=1M", "status=none")
	stopPerf()
	if err != nil {
		return err
	}
	r.ColdReadMBps = mbps(d)
	if sc != nil {
		r.Scatter.CPURead = (cpu() - c0) / (float64(o.size) / 1e9)
	}
	phase("warm read")
	dw, err := timed(ctx, "dd", "if="+big, "of=/dev/null", "bs=1M", "status=none")
	if err != nil {
		return err
	}
	r.WarmReadMBps = mbps(dw)
	logf("%s: cold read %.0f MB/s (%v), warm read %.0f MB/s (%v); load %s", name,
		r.ColdReadMBps, d.Round(time.Millisecond), r.WarmReadMBps, dw.Round(time.Millisecond), loadavg())

	// The bytes, read back after another cold remount: for scatter, from the donors.
	phase("verify")
	if err := t.cold(ctx); err != nil {
		return fmt.Errorf("remount for the check: %w", err)
	}
	sum, err := fileSHA256(big)
	if err != nil {
		return err
	}
	r.Verified = sum == b.srcSum
	if !r.Verified {
		logf("%s: THE FILE READ BACK DIFFERS from what was written (sha256 %x, want %x)", name, sum, b.srcSum)
	}
	if err := os.Remove(big); err != nil {
		return err
	}

	// rsync of a source tree, read from the page cache.
	if err := readTree(o.goSrc); err != nil {
		return err
	}
	phase("rsync")
	c0 = cpu()
	d, err = timed(ctx, "rsync", "-a", o.goSrc+"/", filepath.Join(dir, "gosrc")+"/")
	if err != nil {
		return err
	}
	r.RsyncSeconds = d.Seconds()
	if sc != nil {
		r.Scatter.CPURsync = cpu() - c0
	}
	logf("%s: rsync -a %s: %.2f s; load %s", name, o.goSrc, r.RsyncSeconds, loadavg())
	if err := t.settle(ctx); err != nil {
		return err
	}

	// Many empty files: create them one after another, then ls -l.
	phase("files")
	fdir := filepath.Join(dir, "files")
	if err := os.Mkdir(fdir, 0o755); err != nil {
		return err
	}
	c0, start := cpu(), time.Now()
	for i := range o.files {
		f, err := os.OpenFile(filepath.Join(fdir, fmt.Sprintf("f%05d", i)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			err = f.Close()
		}
		if err != nil {
			return err
		}
	}
	r.CreateSeconds = time.Since(start).Seconds()
	d, err = timed(ctx, "ls", "-l", fdir)
	if err != nil {
		return err
	}
	r.LsSeconds = d.Seconds()
	if sc != nil {
		r.Scatter.CPUFiles = cpu() - c0
	}
	logf("%s: %d files created in %.2f s, ls -l %.2f s; load %s", name, o.files, r.CreateSeconds, r.LsSeconds, loadavg())
	phase("end")
	return t.settle(ctx)
}

// timed runs a command with its stdout discarded and returns how long it took.
func timed(ctx context.Context, name string, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var errb strings.Builder
	cmd.Stderr = &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tailLines(errb.String(), 20))
	}
	return d, nil
}

// perfStart records the scatter mount with perf (call graphs) until the returned function
// is called, if -perf is set.
func (b *bench) perfStart(sc *scatterFS, what string) (stop func()) {
	if !b.o.perf || sc == nil {
		return func() {}
	}
	out := filepath.Join(b.o.out, "perf-"+what+".data")
	cmd := exec.Command("perf", "record", "-q", "-g", "-F", "499", "-p", strconv.Itoa(sc.pid()), "-o", out)
	if err := cmd.Start(); err != nil {
		logf("perf record: %v", err)
		return func() {}
	}
	// perf needs a moment to attach to every thread; a few ms of the run go unsampled.
	time.Sleep(200 * time.Millisecond)
	return func() {
		// perf record ends on SIGINT, writing its file; its exit status says only that.
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}
}

// readAll reads a file to the end, to bring it into the page cache.
func readAll(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyBuffer(io.Discard, f, make([]byte, 1<<20))
	return err
}

// readTree reads every regular file under dir, to bring the tree into the page cache.
func readTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		return readAll(p)
	})
}

func fileSHA256(path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// printTable prints the figures with ratios to the plain directory, and the checks;
// it reports whether every check passed.
func (b *bench) printTable(w io.Writer, results []*result) (ok bool) {
	o := b.o
	ok = true
	var plain *result
	for _, r := range results {
		if r.FS == "plain" {
			plain = r
		}
	}
	fmt.Fprintf(w, "\nscatter side by side: %s file, %d files, rsync of %s; scatter k+m = %d+%d, %d local donors, -staging %s -cache %s\n",
		formatMiB(o.size), o.files, o.goSrc, o.k, o.m, o.donors, formatMiB(o.staging), formatMiB(o.cache))
	fmt.Fprintf(w, "load average: %s at the start, %s at the end (2 cores; ratios are to the plain directory)\n\n", b.loadStart, b.loadEnd)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t", r.FS)
	}
	fmt.Fprintln(tw)
	row := func(label, unit string, get func(*result) float64) {
		fmt.Fprintf(tw, "%s\t", label)
		for _, r := range results {
			v := get(r)
			switch {
			case v == 0:
				fmt.Fprint(tw, "-\t")
			case plain == nil || plain == r || get(plain) == 0:
				fmt.Fprintf(tw, "%s\t", fmtFigure(v, unit))
			default:
				fmt.Fprintf(tw, "%s (%.2fx)\t", fmtFigure(v, unit), v/get(plain))
			}
		}
		fmt.Fprintln(tw)
	}
	row("sequential write, MB/s", "MB/s", func(r *result) float64 { return r.WriteMBps })
	row("cold read, MB/s", "MB/s", func(r *result) float64 { return r.ColdReadMBps })
	row("warm read, MB/s", "MB/s", func(r *result) float64 { return r.WarmReadMBps })
	row(fmt.Sprintf("rsync -a %s, s", filepath.Join(filepath.Base(filepath.Dir(o.goSrc)), filepath.Base(o.goSrc))), "s", func(r *result) float64 { return r.RsyncSeconds })
	row(fmt.Sprintf("create %d files, s", o.files), "s", func(r *result) float64 { return r.CreateSeconds })
	row(fmt.Sprintf("ls -l %d files, s", o.files), "s", func(r *result) float64 { return r.LsSeconds })
	fmt.Fprint(tw, "bytes read back\t")
	for _, r := range results {
		s := "identical"
		if !r.Verified {
			s, ok = "DIFFER", false
			if r.WriteMBps == 0 || r.ColdReadMBps == 0 {
				s = "not checked"
			}
		}
		fmt.Fprintf(tw, "%s\t", s)
	}
	fmt.Fprintln(tw)
	tw.Flush()
	for _, r := range results {
		if r.Error != "" {
			ok = false
			fmt.Fprintf(w, "\n%s FAILED: %s\n", r.FS, r.Error)
		}
		f := r.Scatter
		if f == nil {
			continue
		}
		verdict := "ok"
		if !f.WithinBound {
			verdict, ok = "EXCEEDED", false
		}
		fmt.Fprintf(w, "\nscatter: peak local disk beyond the donors' stores with the big file %s (bound %s: %s; %d samples every %v); by phase:",
			formatMiB(f.PeakLocalMax), formatMiB(f.DiskBound), verdict, f.Samples, o.sample)
		for _, p := range append(bigFilePhases, "rsync", "files") {
			if v, have := f.PeakLocal[p]; have {
				fmt.Fprintf(w, " %s %s (staging+cache %s);", p, formatMiB(v), formatMiB(f.PeakStagingCache[p]))
			}
		}
		fmt.Fprintf(w, "\nscatter: donors' stores %s after the write (%.2fx the file); peak RSS of the mount %s (its %d donors run in the same process)\n",
			formatMiB(f.DonorBytes), float64(f.DonorBytes)/float64(o.size), formatMiB(f.PeakRSS), o.donors)
		fmt.Fprintf(w, "scatter: CPU of the mount process (donors included) %.1f s per GB written, %.1f s per GB read cold; %.1f s during the rsync, %.1f s creating and listing the files\n",
			f.CPUWrite, f.CPURead, f.CPURsync, f.CPUFiles)
	}
	return ok
}

func fmtFigure(v float64, unit string) string {
	if unit == "s" && v < 10 {
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	if unit == "s" {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}
