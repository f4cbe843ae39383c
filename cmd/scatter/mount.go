package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/control"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/dht"
	"github.com/scatterfs/scatter/fs"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/upkeep"
	"github.com/scatterfs/scatter/volume"
)

type mountOptions struct {
	driveFlags
	logFlags
	upkeepFlags
	dataDir      string
	staging      sizeFlag
	cache        sizeFlag
	k, m         int
	bootstrap    listFlag
	donors       int
	donorQuota   sizeFlag
	allowOther   bool
	readyFile    string
	debugFUSE    bool
	metrics      string
	pprof        string // -pprof: loopback address for net/http/pprof (pprof.go)
	flushTimeout time.Duration
	writerLease  time.Duration
	takeover     bool
	readOnly     bool
	followEvery  time.Duration
	capText      string // -cap: mount a read-only share instead (sharemount.go)
	mountpoint   string
}

const mountAbout = `Mount the drive on DIR and serve it until SIGINT (Ctrl-C) or SIGTERM, or until
DIR is unmounted. The first mount creates the drive (a new drive key under your
passphrase; the recovery key is printed once) and fixes its k+m.

With no -bootstrap peers it starts a local swarm of donors in this process, on
127.0.0.1 only: the data then stays on this machine, under the data directory.
To scatter it over other devices, run scatter daemon there and mount with
-bootstrap <address>.

close(2) returns once data is staged on local disk and journalled; fsync(2), and
scatter sync for the whole drive, return once it is on peers. At a clean
unmount the mount waits up to -flush-timeout for staged data to reach peers,
showing progress; what is still staged then (peers unreachable, say) stays
journalled in the data directory and uploads at the next mount: nothing is lost.
A second Ctrl-C stops waiting. While it runs, scatter status, sync and check
talk to it through a socket in the data directory.

In the background the mount keeps its fragments alive: it renews their leases
(one signed request per donor, every -renew-every), checks every chunk's
fragments and rebuilds missing ones onto new donors (every -check-every, at
most -repair-rate), and deletes the fragments of chunks no file references
any more (every -collect-every).

One device writes a drive at a time: the mount holds a writer lease in the
drive's root record (renewed every third of -writer-lease, released at a clean
unmount) and refuses to start while another device holds it, naming that device
and when its lease ends. After a crash, the lease ends -writer-lease later.
-force-takeover mounts anyway: dangerous, as both devices then publish their own
tree and the last published wins, dropping the other's changes.

-read-only follows the drive instead: any number of other devices with the drive
key may mount it read-only while one writes. A follower takes no lease and
publishes nothing; it checks the drive's root record every -follow-interval
and shows each snapshot the writer published (at most a -follow-interval plus
the time to fetch the snapshot's metadata after the writer's scatter sync, or
after its changes settle). Files open across a change read the new version; one
the writer deleted stays readable until closed.`

func runMount(ctx context.Context, args []string, stdout io.Writer) error {
	o := mountOptions{staging: 256 << 20, cache: 1 << 30, donorQuota: 1 << 30}
	flags := newFlagSet("mount", "[flags] DIR", mountAbout,
		"mkdir -p ~/Scatter && scatter mount ~/Scatter",
		"scatter mount -password-file ~/.config/scatter/passphrase ~/Scatter",
		"scatter mount -k 4 -m 2 -staging 1G ~/Scatter          # k+m at the first mount",
		"scatter mount -bootstrap /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW... ~/Scatter",
		"scatter mount -metrics 127.0.0.1:9464 -ready-file /run/scatter.ready ~/Scatter")
	o.driveFlags.register(flags)
	o.logFlags.register(flags)
	o.upkeepFlags.register(flags)
	flags.StringVar(&o.dataDir, "data", defaultDataDir("drive"), "state `directory`: metadata, staging, cache, control socket and the local swarm")
	flags.Var(&o.staging, "staging", "most bytes waiting for upload on local disk; writes wait beyond it")
	flags.Var(&o.cache, "cache", "most bytes of the local read cache")
	flags.IntVar(&o.k, "k", chunker.DefaultDataShards, "data fragments per chunk (fixed when the drive is first mounted)")
	flags.IntVar(&o.m, "m", chunker.DefaultParityShards, "parity fragments per chunk: peers that can be lost (fixed at first mount)")
	flags.Var(&o.bootstrap, "bootstrap", "full multiaddr of a peer to join through (repeatable); none starts a local swarm")
	flags.IntVar(&o.donors, "local-donors", 0, "donors of the local swarm when no -bootstrap is given (default k+m+2)")
	flags.Var(&o.donorQuota, "local-quota", "disk each local donor may use")
	flags.BoolVar(&o.allowOther, "allow-other", false, "let other users use the mount")
	flags.StringVar(&o.readyFile, "ready-file", "", "write the mountpoint to this `file` once mounted (for scripts and tests)")
	flags.BoolVar(&o.debugFUSE, "debug-fuse", false, "log every FUSE request")
	flags.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics on this `address` (e.g. 127.0.0.1:9464)")
	flags.StringVar(&o.pprof, "pprof", "", "serve Go profiles (net/http/pprof) on this loopback `address` (e.g. 127.0.0.1:6060)")
	flags.DurationVar(&o.flushTimeout, "flush-timeout", time.Minute, "at unmount, how long to wait for staged data to reach peers (0: do not wait)")
	flags.DurationVar(&o.writerLease, "writer-lease", defaultWriterLease, "how long the writer lease lasts without renewal (renewed every third of it)")
	flags.BoolVar(&o.takeover, "force-takeover", false, "mount for writing even while another device holds the writer lease (dangerous: the last to publish wins)")
	flags.BoolVar(&o.readOnly, "read-only", false, "follow the drive read-only while another device writes it (needs -bootstrap, here or in config.toml)")
	flags.DurationVar(&o.followEvery, "follow-interval", defaultFollowInterval, "with -read-only, how often to look for the writer's newest snapshot")
	flags.StringVar(&o.capText, "cap", "", "mount, read-only and followed, the shared directory this `capability` (from scatter share) opens; no drive key needed")
	if err := applyLayers(flags, args); err != nil {
		return err
	}
	// Flags may follow the mountpoint, as in mount(8).
	var positional []string
	rest := args
	for {
		if err := parseArgs(flags, rest); err != nil {
			return err
		}
		if flags.NArg() == 0 {
			break
		}
		positional = append(positional, flags.Arg(0))
		rest = flags.Args()[1:]
	}
	if len(positional) != 1 {
		return fmt.Errorf("%w: want exactly one mount point", errUsage)
	}
	o.mountpoint = positional[0]
	if o.staging < 4<<20 {
		return fmt.Errorf("%w: -staging must be at least 4M", errUsage)
	}
	if o.flushTimeout < 0 {
		return fmt.Errorf("%w: -flush-timeout is negative", errUsage)
	}
	if o.writerLease < 3*time.Second {
		return fmt.Errorf("%w: -writer-lease must be at least 3s", errUsage)
	}
	if err := o.upkeepFlags.check(); err != nil {
		return err
	}
	if o.readOnly && o.takeover {
		return fmt.Errorf("%w: -read-only takes no writer lease: drop -force-takeover", errUsage)
	}
	if o.readOnly && o.capText == "" && len(o.bootstrap.vals) == 0 {
		// A local swarm would hold no other device's drive.
		return errNoBootstrap("-read-only follows a drive through its donors")
	}
	if o.followEvery < 100*time.Millisecond {
		return fmt.Errorf("%w: -follow-interval must be at least 100ms", errUsage)
	}
	log, err := o.logFlags.setup()
	if err != nil {
		return err
	}
	if o.capText != "" {
		return runCapMount(ctx, &o, stdout, log)
	}
	var closers []func() error
	defer runClosers(&closers, log)
	if err := o.prepare(&closers); err != nil {
		return err
	}
	if err := o.servePprof(&closers, stdout); err != nil {
		return err
	}

	_, keyErr := os.Stat(o.keyFile())
	created := errors.Is(keyErr, os.ErrNotExist) // a new drive has nothing to recover
	if created && o.readOnly {
		return fmt.Errorf("no drive key in %s: a read-only mount follows an existing drive; "+
			"import its key first (scatter key import)", o.keyFile())
	}
	keys, err := o.drive(stdout)
	if err != nil {
		return err
	}
	shape, err := o.settings()
	if err != nil {
		return err
	}

	boot, localDonors := o.bootstrap.vals, 0
	if len(boot) == 0 {
		localDonors = o.donors
		if localDonors == 0 {
			localDonors = shape.K + shape.M + 2
		}
		fmt.Fprintf(stdout, "No peers configured: starting a local swarm of %d donors (%s each) on 127.0.0.1.\n"+
			"Your data stays on this machine, in %s. To scatter it over other devices, run\n"+
			"`scatter daemon` on them and mount with -bootstrap <their address>.\n",
			localDonors, formatSize(int64(o.donorQuota)), filepath.Join(o.dataDir, "swarm"))
		local, err := dht.StartLocal(ctx, dht.LocalConfig{
			Dir: filepath.Join(o.dataDir, "swarm"), Donors: localDonors, Quota: int64(o.donorQuota), Logger: log,
		})
		if err != nil {
			return err
		}
		closers = append(closers, local.Close)
		boot = local.Bootstrap()
	}

	node, net, m, err := o.join(ctx, boot, keys.Storage, &closers, log)
	if err != nil {
		return err
	}
	store, err := pipeline.NewStore(net, keys, pipeline.Config{K: shape.K, M: shape.M, Lease: o.lease})
	if err != nil {
		return err
	}
	if o.readOnly {
		return runFollow(ctx, &o, followDeps{keys: keys, node: node, net: net, store: store, m: m, shape: shape},
			&closers, stdout, log)
	}
	guard := upkeep.NewGuard(0)
	writer := node.ID().String()
	_, metaErr := os.Stat(filepath.Join(o.dataDir, "volume", "meta.db"))
	if !created && metaErr != nil {
		// A fresh device: no recovery while another device writes the drive.
		if err := checkWriter(ctx, node.DHT(), keys, writer, 0, o.takeover, time.Now(), stdout, log); err != nil {
			return err
		}
	}
	recovered, err := recoverDrive(ctx, node.DHT(), store, keys, volume.Config{Dir: filepath.Join(o.dataDir, "volume")},
		created, stdout, log)
	if err != nil {
		return err
	}
	seenSeq := recovered.Seq
	if seenSeq > 0 {
		// A fresh device codes new data as the drive does, not with this device's
		// defaults: the snapshot's objects were put with the drive's k+m.
		if shape, err = o.adoptShape(driveSettings{K: int(recovered.Root.Ref.K), M: int(recovered.Root.Ref.M)}); err != nil {
			return err
		}
		if store, err = pipeline.NewStore(net, keys, pipeline.Config{K: shape.K, M: shape.M, Lease: o.lease}); err != nil {
			return err
		}
	}
	var snaps *snapshots // started below, before the mount: fsync of a directory snapshots
	vol, err := volume.Open(volume.Config{
		Dir: filepath.Join(o.dataDir, "volume"), StagingMax: int64(o.staging), CacheMax: int64(o.cache),
		Logger: log, RootUID: uint32(os.Getuid()), RootGID: uint32(os.Getgid()),
		DirSync: func(ctx context.Context) error { return snaps.Now(ctx) },
	}, &guardedChunks{Chunks: &meteredChunks{Store: store, m: m}, g: guard})
	if err != nil {
		return err
	}
	closers = append(closers, vol.Close)
	if metaErr == nil {
		seen, err := vol.SnapshotSeq()
		if err != nil {
			return err
		}
		if err := checkWriter(ctx, node.DHT(), keys, writer, seen, o.takeover, time.Now(), stdout, log); err != nil {
			return err
		}
	}
	if snaps, err = startSnapshots(vol, store, keys, node.DHT(), seenSeq,
		snapshotConfig{Writer: writer, Lease: o.writerLease}, log, stdout); err != nil {
		return err
	}
	closers = append(closers, snaps.Close)
	up := upkeep.New(net, upkeep.Config{Lease: o.lease})
	loop := upkeep.Start(up, vol, upkeep.LoopConfig{
		RenewEvery: o.renewEvery, CheckEvery: o.checkEvery, CollectEvery: o.collectEvery,
		RepairRate: int64(o.repairRate), RepairBelow: o.repairBelow, Guard: guard, Logger: log,
	})
	closers = append(closers, loop.Close)
	m.volumeGauges(vol, int64(o.staging), int64(o.cache))
	if err := o.serveMetrics(m, node, &closers, stdout); err != nil {
		return err
	}
	ctl, err := control.Listen(filepath.Join(o.dataDir, "control.sock"), snapControl{snaps: snaps, mountControl: &mountControl{
		mountpoint: o.mountpoint, dataDir: o.dataDir, shape: shape, localDonors: localDonors,
		stagingMax: int64(o.staging), cacheMax: int64(o.cache), key: keys.Public, net: net, vol: vol, m: m,
		up: up, loop: loop,
	}}, log)
	if err != nil {
		return err
	}
	closers = append(closers, ctl.Close)

	srv, err := fs.Mount(o.mountpoint, vol, fs.Options{AllowOther: o.allowOther, Debug: o.debugFUSE, Logger: log})
	if err != nil {
		return fmt.Errorf("mount %s: %w", o.mountpoint, err)
	}
	if err := serveMount(ctx, srv, &o, &closers, stdout, fmt.Sprintf(
		"Mounted the drive on %s (k+m = %d+%d). `scatter status` shows peers and uploads;\n"+
			"stop with Ctrl-C or `umount %s`.\n", o.mountpoint, shape.K, shape.M, o.mountpoint)); err != nil {
		return err
	}
	flushStaged(vol, m, stdout, o.flushTimeout, filepath.Join(o.dataDir, "volume"))
	_ = snaps.Close() // the final snapshot, after the flush; it tells the user how it went
	fmt.Fprintln(stdout, "Unmounted.")
	return nil
}

// errNoBootstrap is the usage error of a mount that needs peers to join and has none:
// it says every way to name them.
func errNoBootstrap(why string) error {
	return fmt.Errorf("%w: %s: give -bootstrap <donor multiaddr>, or bootstrap = [\"<multiaddr>\"] "+
		"in the [mount] table of config.toml, or $SCATTER_BOOTSTRAP", errUsage, why)
}

// runClosers runs closers in reverse order, logging their errors: the shutdown of
// whatever a mount had started when it returns.
func runClosers(closers *[]func() error, log *slog.Logger) {
	for i := len(*closers) - 1; i >= 0; i-- {
		if err := (*closers)[i](); err != nil {
			log.Warn("shutdown", "err", err)
		}
	}
}

// prepare checks the mount point, creates the data directory and locks it for this
// process; the unlock is added to closers.
func (o *mountOptions) prepare(closers *[]func() error) error {
	if err := checkMountpoint(o.mountpoint); err != nil {
		return err
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return err
	}
	unlock, err := lockDataDir(o.dataDir)
	if err != nil {
		return err
	}
	*closers = append(*closers, unlock)
	return nil
}

// join starts the mount's DHT node, a client joining through boot with owner as its
// fragment owner key, and returns it with its Network metered by m; closers get the
// node's Close.
func (o *mountOptions) join(ctx context.Context, boot []string, owner ed25519.PrivateKey, closers *[]func() error,
	log *slog.Logger) (*dht.Node, *meteredNetwork, *meters, error) {
	node, err := dht.New(ctx, dht.Config{
		DataDir: filepath.Join(o.dataDir, "node"), Bootstrap: boot, Mode: dht.ModeClient,
		Owner: owner, Logger: log,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	*closers = append(*closers, node.Close)
	dnet, err := dht.NewNetwork(node, dht.NetworkConfig{})
	if err != nil {
		return nil, nil, nil, err
	}
	m := newMeters()
	return node, &meteredNetwork{Network: dnet, m: m}, m, nil
}

// serveMetrics adds the node's gauges to m and, with -metrics, serves them; closers get
// the server's stop.
func (o *mountOptions) serveMetrics(m *meters, node *dht.Node, closers *[]func() error, stdout io.Writer) error {
	m.nodeGauges(node)
	if o.metrics == "" {
		return nil
	}
	stop, addr, err := m.serve(o.metrics)
	if err != nil {
		return err
	}
	*closers = append(*closers, stop)
	fmt.Fprintf(stdout, "Metrics on http://%s/metrics\n", addr)
	return nil
}

// serveMount waits while srv, mounted on o.mountpoint, serves: it prints banner, writes
// -ready-file, and returns at a signal (after unmounting, retrying while busy) or when
// the mount point is unmounted from outside. closers get an unmount for an early return
// (a failure before or during the wait).
func serveMount(ctx context.Context, srv *fuse.Server, o *mountOptions, closers *[]func() error, stdout io.Writer, banner string) error {
	unmounted := make(chan struct{})
	go func() { srv.Wait(); close(unmounted) }()
	*closers = append(*closers, func() error {
		select {
		case <-unmounted:
			return nil
		default:
		}
		// Only on an early return: the signal path below unmounts first.
		if err := srv.Unmount(); err != nil {
			return errors.Join(err, unix.Unmount(o.mountpoint, unix.MNT_DETACH))
		}
		<-unmounted
		return nil
	})
	fmt.Fprint(stdout, banner)
	if o.readyFile != "" {
		if err := writeFileAtomic(o.readyFile, []byte(o.mountpoint+"\n")); err != nil {
			return err
		}
	}
	select {
	case <-ctx.Done():
		fmt.Fprintf(stdout, "Unmounting %s…\n", o.mountpoint)
		if err := unmountBusy(srv, o.mountpoint, unmounted, stdout); err != nil {
			fmt.Fprintln(stdout, err)
		}
	case <-unmounted:
		fmt.Fprintf(stdout, "%s was unmounted.\n", o.mountpoint)
	}
	return nil
}

// unmountBusy unmounts the FUSE server, retrying while the mount point is busy (a
// process has a file or its working directory there); a second signal detaches it
// lazily instead (processes still using it then get errors once this process exits).
func unmountBusy(srv *fuse.Server, dir string, unmounted <-chan struct{}, stdout io.Writer) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	told := false
	for {
		err := srv.Unmount()
		if err == nil {
			<-unmounted
			return nil
		}
		if !told {
			fmt.Fprintf(stdout, "%s is busy (%v): close the files open there and leave the directory;\n"+
				"waiting. Ctrl-C again detaches it now.\n", dir, err)
			told = true
		}
		select {
		case <-sig:
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("detach %s: %w", dir, err)
			}
			return fmt.Errorf("detached %s: processes still using it get errors once scatter exits", dir)
		case <-unmounted:
			return nil
		case <-time.After(time.Second):
		}
	}
}

// flushStaged waits up to timeout for the data staged in vol to reach the peers, showing
// progress; a signal stops the wait. What is left stays journalled for the next mount.
func flushStaged(vol *volume.Volume, m *meters, stdout io.Writer, timeout time.Duration, dir string) {
	bytes, files := vol.Pending()
	if bytes == 0 {
		return
	}
	if timeout == 0 {
		fmt.Fprintf(stdout, "%s in %d files stay staged in %s and upload at the next mount.\n", formatBytes(bytes), files, dir)
		return
	}
	fmt.Fprintf(stdout, "Uploading %s staged in %d files to peers (waiting up to %v; Ctrl-C stops waiting)…\n",
		formatBytes(bytes), files, timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-sig:
			cancel()
		case <-stop:
		}
	}()
	bar := newProgressBar(stdout)
	err := syncVolume(ctx, vol, m, bar.update)
	bar.done()
	if err == nil {
		fmt.Fprintln(stdout, "All staged data is on peers.")
		return
	}
	bytes, files = vol.Pending()
	fmt.Fprintf(stdout, "Stopped waiting: %s in %d files stay staged in %s. Nothing is lost: the data is journalled\n"+
		"and uploads at the next mount. If this keeps happening, the peers are unreachable or full (see scatter status).\n",
		formatBytes(bytes), files, dir)
}

// drive opens the drive's keys, creating the drive first if this config has none: the
// first `scatter mount` needs no separate `scatter init`.
func (o *mountOptions) drive(stdout io.Writer) (*crypt.Keys, error) {
	s, err := o.openSecret()
	if errors.Is(err, errNoDrive) {
		if s, err = crypt.NewSecret(); err != nil {
			return nil, err
		}
		fmt.Fprintln(stdout, "No drive yet: creating one.")
		if err := o.writeSecret(s, kdfParams()); err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "Created a drive; its key is in %s, protected by your passphrase.\n\n", o.keyFile())
		printRecoveryKey(stdout, s)
	} else if err != nil {
		return nil, err
	}
	return s.Keys(), nil
}

// driveSettings are what a drive fixes at its first mount: chunks already written are
// coded k+m and stay readable only with the same shape.
type driveSettings struct {
	K int `json:"k"`
	M int `json:"m"`
}

// settings reads the drive's settings from the data dir, writing them from the flags at
// the first mount, and refuses flags that contradict them.
// adoptShape records the coding of a drive recovered from the network as this data dir's
// settings, refusing -k/-m flags that contradict it.
func (o *mountOptions) adoptShape(drive driveSettings) (driveSettings, error) {
	if _, err := chunker.NewCoder(drive.K, drive.M); err != nil {
		return drive, fmt.Errorf("the drive's snapshot names coding k+m = %d+%d: %w", drive.K, drive.M, err)
	}
	if (o.k != chunker.DefaultDataShards || o.m != chunker.DefaultParityShards) && (o.k != drive.K || o.m != drive.M) {
		return drive, fmt.Errorf("this drive is coded k+m = %d+%d; -k and -m cannot change it", drive.K, drive.M)
	}
	b, _ := json.Marshal(drive)
	return drive, writeFileAtomic(filepath.Join(o.dataDir, "settings.json"), append(b, '\n'))
}

func (o *mountOptions) settings() (driveSettings, error) {
	path := filepath.Join(o.dataDir, "settings.json")
	want := driveSettings{K: o.k, M: o.m}
	if _, err := chunker.NewCoder(want.K, want.M); err != nil {
		return want, fmt.Errorf("%w: -k %d -m %d: %v", errUsage, o.k, o.m, err)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
			return want, err
		}
		b, _ := json.Marshal(want)
		return want, writeFileAtomic(path, append(b, '\n'))
	}
	if err != nil {
		return want, err
	}
	var have driveSettings
	if err := json.Unmarshal(b, &have); err != nil {
		return want, fmt.Errorf("%s: %w", path, err)
	}
	if _, err := chunker.NewCoder(have.K, have.M); err != nil {
		return want, fmt.Errorf("%s: %w", path, err)
	}
	if have != want && (o.k != chunker.DefaultDataShards || o.m != chunker.DefaultParityShards) {
		return have, fmt.Errorf("this drive is coded k+m = %d+%d; -k and -m cannot change it", have.K, have.M)
	}
	return have, nil
}
