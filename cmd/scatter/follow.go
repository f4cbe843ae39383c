package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/scatterfs/scatter/control"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/dht"
	"github.com/scatterfs/scatter/fs"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/root"
	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/upkeep"
	"github.com/scatterfs/scatter/volume"
)

// A read-only follower (`scatter mount -read-only`) shows a drive that another device
// writes. It never writes the drive: no writer lease, no snapshots, no upkeep, nothing
// published. It polls a source of snapshot roots; when the root changes it restores that
// snapshot's metadata into a fresh directory, opens it and swaps it in under the mounted
// filesystem (fs.Live). The source and the restore are functions, so a share (a
// capability naming a subtree) plugs in its own.

// followSource returns the root of the newest snapshot the follower should show and the
// sequence of the record that names it. It is called by one goroutine at a time.
type followSource func(ctx context.Context) (snapshot.Ptr, uint64, error)

// followRestore builds the metadata store of the snapshot p in dir, an empty directory
// (volume.Restore).
type followRestore func(ctx context.Context, dir string, p snapshot.Ptr) error

// followOpen opens the volume restored in dir (volume.OpenShared over the follower's
// one cache).
type followOpen func(dir string) (*volume.Volume, error)

// defaultFollowInterval is how often a follower asks for the newest root by default. The
// delay from a writer's published snapshot to the follower showing it is at most this
// plus the lookup and the restore.
const defaultFollowInterval = 5 * time.Second

// followConfig configures a follower; zero fields take the defaults.
type followConfig struct {
	// Dir holds one numbered directory per restored snapshot (Dir/<n>); its contents
	// are the follower's own and removed at start. Required.
	Dir string
	// Interval is the wait between polls of Source; default defaultFollowInterval.
	Interval time.Duration
	Source   followSource
	Restore  followRestore
	Open     followOpen
	Logger   *slog.Logger
}

// follower keeps a fs.Live showing the newest snapshot of a drive. Start it with
// startFollower, mount its Live, then Run it; Close it after the unmount.
type follower struct {
	cfg  followConfig
	log  *slog.Logger
	live *fs.Live

	mu      sync.Mutex // guards the fields below; held by a whole check
	cur     snapshot.Ptr
	seq     uint64 // of the record Source answered last
	curDir  string
	next    int       // number of the next restore directory
	checked time.Time // when Source last answered
	swaps   int

	ctx     context.Context // ends at Close: restores and retirements stop
	cancel  context.CancelFunc
	retired sync.WaitGroup // volumes swapped out, waiting to be idle
	loop    sync.WaitGroup
	once    sync.Once
}

// startFollower clears cfg.Dir, restores the snapshot cfg.Source names now and opens
// it: the returned follower's Live serves it. It retries a failing Source up to
// recoverAttempts times, recoverBackoff apart (a routing table still filling up).
func startFollower(ctx context.Context, cfg followConfig) (*follower, error) {
	if cfg.Dir == "" || cfg.Source == nil || cfg.Restore == nil || cfg.Open == nil {
		return nil, errors.New("BUG: follower: incomplete config")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = defaultFollowInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// Restores of an earlier run are stale: nothing serves them now.
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return nil, fmt.Errorf("follow: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("follow: %w", err)
	}
	f := &follower{cfg: cfg, log: cfg.Logger}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	var (
		p   snapshot.Ptr
		seq uint64
		err error
	)
	for attempt := 1; ; attempt++ {
		if p, seq, err = cfg.Source(ctx); err == nil || attempt == recoverAttempts || errors.Is(err, root.ErrInvalid) {
			break
		}
		f.log.Info("follow: root record lookup", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			f.cancel()
			return nil, ctx.Err()
		case <-time.After(recoverBackoff):
		}
	}
	if err != nil {
		f.cancel()
		return nil, fmt.Errorf("follow: cannot find the drive's newest snapshot (%w): check -bootstrap, "+
			"that donors are up and that the writing device has published (scatter sync there)", err)
	}
	v, dir, err := f.restore(ctx, p)
	if err != nil {
		f.cancel()
		return nil, err
	}
	f.live, f.cur, f.seq, f.curDir, f.checked = fs.NewLive(v), p, seq, dir, time.Now()
	return f, nil
}

// Live is what to mount: it serves the newest snapshot restored.
func (f *follower) Live() *fs.Live { return f.live }

// Run polls cfg.Source every cfg.Interval in the background until Close, swapping in
// each new snapshot. Failures are logged and retried at the next poll: the mount keeps
// showing the last snapshot restored.
func (f *follower) Run() {
	f.loop.Add(1)
	go func() {
		defer f.loop.Done()
		t := time.NewTicker(f.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-f.ctx.Done():
				return
			case <-t.C:
			}
			if _, err := f.Check(f.ctx); err != nil && f.ctx.Err() == nil {
				f.log.Warn("follow: newest snapshot not shown", "err", err)
			}
		}
	}()
}

// Check asks the source for the newest root once and, if it is not the one shown,
// restores it and swaps it in. It reports whether it swapped.
func (f *follower) Check(ctx context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.ctx.Err(); err != nil {
		return false, err
	}
	p, seq, err := f.cfg.Source(ctx)
	if err != nil {
		return false, err
	}
	f.seq, f.checked = seq, time.Now()
	// The snapshot's root object, not the record's sequence: a writer's lease renewals
	// publish the same root under new sequence numbers. Equal chunk IDs are equal
	// contents (the ID is a keyed hash of the plaintext).
	if p.Ref.ID == f.cur.Ref.ID {
		return false, nil
	}
	start := time.Now()
	v, dir, err := f.restore(ctx, p)
	if err != nil {
		return false, err
	}
	old, idle := f.live.Swap(ctx, v)
	oldDir := f.curDir
	f.cur, f.curDir = p, dir
	f.swaps++
	f.log.Info("follow: showing a new snapshot", "root", p.Ref.ID.String(), "took", time.Since(start))
	f.retired.Add(1)
	go func() {
		defer f.retired.Done()
		// Open files move to the new volume at their next request, or stay while the new
		// snapshot lacks them; at Close, after the unmount, nothing uses the old one.
		select {
		case <-idle:
		case <-f.ctx.Done():
		}
		if err := f.drop(old, oldDir); err != nil {
			f.log.Warn("follow: drop an old snapshot", "dir", oldDir, "err", err)
		}
	}()
	return true, nil
}

// restore restores p into the next numbered directory and opens it.
func (f *follower) restore(ctx context.Context, p snapshot.Ptr) (*volume.Volume, string, error) {
	dir := filepath.Join(f.cfg.Dir, strconv.Itoa(f.next))
	f.next++
	if err := f.cfg.Restore(ctx, dir, p); err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("follow: restore snapshot %s: %w", p.Ref.ID, err)
	}
	v, err := f.cfg.Open(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("follow: open snapshot %s: %w", p.Ref.ID, err)
	}
	return v, dir, nil
}

// drop closes a snapshot's volume and removes its directory.
func (f *follower) drop(v *volume.Volume, dir string) error {
	return errors.Join(v.Close(), os.RemoveAll(dir))
}

// followStatus is what a follower shows and since when.
type followStatus struct {
	Shown   snapshot.Ptr // root of the snapshot shown
	Seq     uint64       // sequence of the record the source answered last
	Checked time.Time    // when the source last answered
	Swaps   int          // snapshots swapped in since the start
}

// Status returns what the follower shows now.
func (f *follower) Status() followStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return followStatus{Shown: f.cur, Seq: f.seq, Checked: f.checked, Swaps: f.swaps}
}

// Close stops polling, closes every volume (call it after the unmount: nothing may use
// them any more) and removes the restore directories.
func (f *follower) Close() error {
	var err error
	f.once.Do(func() {
		f.cancel()
		f.loop.Wait()
		f.retired.Wait()
		f.mu.Lock()
		defer f.mu.Unlock()
		err = f.drop(f.live.Volume(), f.curDir)
	})
	return err
}

// rootSource is the followSource of a whole drive: the root of its newest root record
// in the DHT. Records older than one seen before are refused as replays.
func rootSource(dht routing.ValueStore, keys *crypt.Keys) followSource {
	var seen uint64 // highest sequence seen; the follower calls one at a time
	return func(ctx context.Context) (snapshot.Ptr, uint64, error) {
		rec, err := root.Get(ctx, dht, keys, seen)
		if err != nil {
			return snapshot.Ptr{}, 0, err
		}
		seen = rec.Seq
		return rec.Root, rec.Seq, nil
	}
}

// restoreFrom is the followRestore of a drive whose objects fetch reads.
func restoreFrom(fetch snapshot.Fetcher, log *slog.Logger) followRestore {
	return func(ctx context.Context, dir string, p snapshot.Ptr) error {
		return volume.Restore(ctx, volume.Config{Dir: dir, Logger: log}, snapshot.NewReader(fetch), p)
	}
}

// followDeps are what runMount set up before it branches to runFollow.
type followDeps struct {
	keys  *crypt.Keys
	node  *dht.Node
	net   swarm.Network
	store *pipeline.Store
	m     *meters
	shape driveSettings
}

// runFollow is `scatter mount -read-only`: it restores the drive's newest snapshot, mounts
// it read-only and follows the writer until a signal or an unmount. closers are run by
// runMount on return.
func runFollow(ctx context.Context, o *mountOptions, d followDeps, closers *[]func() error, stdout io.Writer, log *slog.Logger) error {
	// One cache for every snapshot's volume: a swap refetches nothing that did not change.
	cache, err := volume.OpenCache(volume.Config{Dir: o.dataDir, CacheDir: filepath.Join(o.dataDir, "cache"), CacheMax: int64(o.cache)})
	if err != nil {
		return err
	}
	chunks := &meteredChunks{Store: d.store, m: d.m}
	fmt.Fprintln(stdout, "Read-only: looking for the drive's newest snapshot in the network…")
	start := time.Now()
	f, err := startFollower(ctx, followConfig{
		Dir:      filepath.Join(o.dataDir, "follow"),
		Interval: o.followEvery,
		Source:   rootSource(d.node.DHT(), d.keys),
		Restore:  restoreFrom(d.store, log),
		Open: func(dir string) (*volume.Volume, error) {
			return volume.OpenShared(volume.Config{
				Dir: dir, StagingMax: 4 << 20, Logger: log, RootUID: uint32(os.Getuid()), RootGID: uint32(os.Getgid()),
			}, chunks, cache)
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	*closers = append(*closers, f.Close)
	fmt.Fprintf(stdout, "Restored the drive's newest snapshot (%s) in %v.\n", f.Status().Shown.Ref.ID, time.Since(start).Round(time.Millisecond))
	return followMount(ctx, o, followControl{f: f, base: mountControl{
		mountpoint: o.mountpoint, dataDir: o.dataDir, shape: d.shape, cacheMax: int64(o.cache),
		key: d.keys.Public, net: d.net, m: d.m, up: upkeep.New(d.net, upkeep.Config{Lease: o.lease}),
	}}, d.node, closers, "the drive", stdout, log)
}

// followMount is what runFollow and runCapMount share once ctl's follower has restored
// its first snapshot: metrics, the control socket (ctl answers scatter status and
// sync), the read-only mount of the follower's Live, following, and the wait for a
// signal or an unmount. what names what is mounted, for the user.
func followMount(ctx context.Context, o *mountOptions, ctl followControl, node *dht.Node,
	closers *[]func() error, what string, stdout io.Writer, log *slog.Logger) error {
	f := ctl.f
	if err := o.serveMetrics(ctl.base.m, node, closers, stdout); err != nil {
		return err
	}
	srv, err := control.Listen(filepath.Join(o.dataDir, "control.sock"), &ctl, log)
	if err != nil {
		return err
	}
	*closers = append(*closers, srv.Close)
	fsrv, err := fs.MountLive(o.mountpoint, f.Live(), fs.Options{ReadOnly: true, AllowOther: o.allowOther, Debug: o.debugFUSE, Logger: log})
	if err != nil {
		return fmt.Errorf("mount %s: %w", o.mountpoint, err)
	}
	f.Run()
	status := "scatter status"
	if o.dataDir != defaultDataDir("drive") {
		status += " -data " + o.dataDir
	}
	err = serveMount(ctx, fsrv, o, closers, stdout, fmt.Sprintf(
		"Mounted %s read-only on %s, following the writer every %v.\n"+
			"`%s` shows what it shows; stop with Ctrl-C or `umount %s`.\n",
		what, o.mountpoint, o.followEvery, status, o.mountpoint))
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "Unmounted.")
	return nil
}

// followControl answers a follower's control socket: status as a mount's (of the
// snapshot shown) with what it follows, sync as "look for the newest snapshot now", no
// check.
type followControl struct {
	f     *follower
	base  mountControl // vol unset: each call uses the volume shown then
	share bool         // a share's mount (scatter mount -cap)
}

var _ control.Handler = (*followControl)(nil)

// errFollowerCheck is the follower's answer to scatter check.
var errFollowerCheck = errors.New("a read-only mount neither checks nor repairs: run scatter check on the writing device")

// Status implements control.Handler.
func (c *followControl) Status(ctx context.Context, health bool) (st *control.Status, err error) {
	err = c.f.Live().Use(func(v *volume.Volume) error {
		mc := c.base
		mc.vol = v
		st, err = mc.Status(ctx, health)
		return err
	})
	if err != nil {
		return nil, err
	}
	fst := c.f.Status()
	st.Follow = &control.Follow{
		Share: c.share, Root: fst.Shown.Ref.ID.String(), Seq: fst.Seq, Checked: fst.Checked, Swaps: fst.Swaps,
		IntervalSeconds: c.f.cfg.Interval.Seconds(),
	}
	return st, nil
}

// Sync implements control.Handler: on a follower it looks for the writer's newest
// snapshot at once and shows it, instead of waiting for the next poll.
func (c *followControl) Sync(ctx context.Context, progress func(control.Progress)) error {
	progress(control.Progress{Follow: true})
	_, err := c.f.Check(ctx)
	return err
}

// Check implements control.Handler.
func (c *followControl) Check(ctx context.Context, repair, verify bool, progress func(control.Step)) (*control.CheckResult, error) {
	return nil, errFollowerCheck
}
