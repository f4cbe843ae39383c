package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	"github.com/scatterfs/scatter/control"
)

// ctlFlags are the flags of the verbs that talk to a running mount.
type ctlFlags struct {
	configDir string
	dataDir   string
}

func (c *ctlFlags) register(fs *flag.FlagSet) {
	registerConfigDir(fs, &c.configDir)
	fs.StringVar(&c.dataDir, "data", defaultDataDir("drive"), "the mount's state `directory` (as given to scatter mount)")
}

func (c *ctlFlags) client() *control.Client {
	return control.NewClient(filepath.Join(c.dataDir, "control.sock"))
}

// withTimeout bounds ctx by d, the -timeout of a verb that asks a running mount; 0 is
// no bound.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// notRunning rewords control.ErrNotRunning for the user.
func (c *ctlFlags) wrap(err error) error {
	if errors.Is(err, control.ErrNotRunning) {
		return fmt.Errorf("no scatter mount is running on data directory %s (start one with scatter mount DIR)", c.dataDir)
	}
	return err
}

type statusOptions struct {
	ctlFlags
	json    bool
	health  bool
	timeout time.Duration
}

func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	var o statusOptions
	fs := newFlagSet("status", "[flags]", `Ask a running scatter mount for its status: the peers it knows with their
latency and space, what the donors offer and store, uploads pending in staging
(bytes, files, rate, ETA), the read cache, and the drive's health: how many
chunks have all k+m fragments on their holders, fewer (still readable: k
suffice) or fewer than k (unreadable while those holders are away). Health asks
each holder once, with one batched request for all of its fragments.`,
		"scatter status",
		"scatter status -json | jq .pending",
		"scatter status -health=false      # skip the fragment count: quick",
		"scatter status -data /srv/scatter/drive")
	o.ctlFlags.register(fs)
	fs.BoolVar(&o.json, "json", false, "print the status as JSON (the control protocol's Status object)")
	fs.BoolVar(&o.health, "health", true, "count every chunk's fragments on their holders")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "give up after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx, o.timeout)
	defer cancel()
	st, err := o.client().Status(ctx, o.health)
	if err != nil {
		return o.wrap(err)
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(stdout, st)
	return nil
}

func printStatus(w io.Writer, st *control.Status) {
	fmt.Fprintf(w, "Drive mounted on %s (k+m = %d+%d), scatter %s\n", st.Mountpoint, st.K, st.M, st.Version)
	if f := st.Follow; f != nil {
		what := "the drive"
		if f.Share {
			what = "a shared directory of the drive"
		}
		fmt.Fprintf(w, "Read-only: shows %s as of the writer's snapshot %s (record %d); looked for a newer one %v ago\n"+
			"(every %v); %d newer snapshots shown since the mount.\n", what, f.Root, f.Seq,
			time.Since(f.Checked).Round(time.Second), time.Duration(f.IntervalSeconds*float64(time.Second)), f.Swaps)
	}
	if st.LocalDonors > 0 {
		fmt.Fprintf(w, "Local swarm: %d donors in this mount's process, on 127.0.0.1: the data stays on this machine.\n", st.LocalDonors)
	}
	p := st.Pending
	switch {
	case p.Bytes == 0:
		fmt.Fprintln(w, "Pending uploads: none; everything written is on peers.")
	default:
		s := fmt.Sprintf("Pending uploads: %s in %d files (staging holds at most %s)", formatBytes(p.Bytes), p.Files, formatBytes(p.StagingMax))
		if p.RateBPS > 0 {
			s += fmt.Sprintf(", %s/s, about %v left", formatBytes(int64(p.RateBPS)), time.Duration(p.ETASeconds*float64(time.Second)).Round(time.Second))
		} else {
			s += ", not moving"
		}
		fmt.Fprintln(w, s)
	}
	fmt.Fprintf(w, "Uploaded since mount: %s.  Read cache: %s of %s; %d chunks fetched from peers since mount.\n",
		formatBytes(p.Uploaded), formatBytes(st.Cache.Bytes), formatBytes(st.Cache.Max), st.Cache.Fetches)
	fmt.Fprintf(w, "Space: donors offer %s and store %s (all drives); this drive: %s of data as %s of fragments.\n",
		formatBytes(st.Space.Donated), formatBytes(st.Space.Used), formatBytes(st.Space.Logical), formatBytes(st.Space.Drive))
	if h := st.Health; h != nil {
		fmt.Fprintf(w, "Health: %d chunks: %d complete (all %d fragments), %d degraded (readable), %d unreadable; %d of %d fragments found",
			h.Chunks, h.Complete, st.K+st.M, h.Degraded, h.Unreadable, h.Found, h.Fragments)
		if h.Unanswered > 0 {
			fmt.Fprintf(w, "; %d holders did not answer", h.Unanswered)
		}
		fmt.Fprintln(w, ".")
	}
	peers := slices.Clone(st.Peers)
	slices.SortStableFunc(peers, func(a, b control.Peer) int { return cmp.Compare(a.LatencyMS, b.LatencyMS) })
	fmt.Fprintf(w, "Peers (%d):\n", len(peers))
	for _, p := range peers {
		lat := "    ?   "
		if p.LatencyMS > 0 {
			lat = fmt.Sprintf("%6.1f ms", p.LatencyMS)
		}
		if p.Error != "" {
			fmt.Fprintf(w, "  %s  %s  no answer: %s\n", p.ID, lat, p.Error)
			continue
		}
		fmt.Fprintf(w, "  %s  %s  stores %s of %s (%d fragments)\n", p.ID, lat, formatBytes(p.Used), formatBytes(p.Quota), p.Fragments)
	}
}

type syncOptions struct {
	ctlFlags
	timeout time.Duration
}

func runSync(ctx context.Context, args []string, stdout io.Writer) error {
	var o syncOptions
	fs := newFlagSet("sync", "[flags]", `Wait until everything staged in a running scatter mount is on peers, showing
progress: an fsync of the whole drive, files open for writing included. Then
take a snapshot of the drive's metadata (directories, attributes, where each
chunk's fragments are), put it on the peers and publish it as the drive's root
record in the DHT: from then on, a new device with the recovery key mounts the
drive as it is now. Ctrl-C stops waiting; the uploads go on in the mount.`,
		"scatter sync",
		"cp -r ~/photos ~/Scatter/ && scatter sync",
		"scatter sync -timeout 10m || echo 'peers are slow or unreachable'")
	o.ctlFlags.register(fs)
	fs.DurationVar(&o.timeout, "timeout", 0, "give up after this long (0: wait as long as it takes)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx, o.timeout)
	defer cancel()
	bar := newProgressBar(stdout)
	follow := false // a read-only mount answers: nothing to upload, the newest snapshot shown
	err := o.client().Sync(ctx, func(p control.Progress) {
		if follow = follow || p.Follow; !follow {
			bar.update(p)
		}
	})
	bar.done()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("not all staged data reached the peers within %v (see scatter status); it keeps uploading", o.timeout)
		}
		if errors.Is(err, context.Canceled) {
			return errors.New("stopped waiting; the mount keeps uploading")
		}
		return o.wrap(err)
	}
	if follow {
		fmt.Fprintln(stdout, "Read-only mount: it shows the newest snapshot the writer published.")
		return nil
	}
	fmt.Fprintln(stdout, "Everything staged is on peers.\nThe metadata snapshot is published: a new device with the recovery key sees it all.")
	return nil
}
