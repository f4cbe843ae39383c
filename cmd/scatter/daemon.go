package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/delegate"
	"github.com/scatterfs/scatter/dht"
	"github.com/scatterfs/scatter/dht/store"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/upkeep"
)

type daemonOptions struct {
	configDir string
	dir       string
	quota     sizeFlag
	bandwidth sizeFlag
	listen    listFlag
	bootstrap listFlag
	readyFile string
	metrics   string
	logFlags
	repair repairFlags
}

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag struct {
	vals []string
	// replace makes the next Set drop the values set so far: a value from the command
	// line replaces, rather than adds to, a list from the config file or environment.
	replace bool
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }
func (l *listFlag) Set(v string) error {
	if l.replace {
		l.vals, l.replace = nil, false
	}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			l.vals = append(l.vals, s)
		}
	}
	return nil
}

// registerConfigDir registers -config for verbs that read only config.toml from it.
func registerConfigDir(fs *flag.FlagSet, dir *string) {
	fs.StringVar(dir, "config", defaultConfigDir(), "configuration `directory` (holds config.toml)")
}

func defaultDataDir(sub string) string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "scatter", sub)
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "scatter", sub)
	}
	return filepath.Join(".scatter", sub)
}

func runDaemon(ctx context.Context, args []string, stdout io.Writer) error {
	o := daemonOptions{quota: 10 << 30}
	fs := newFlagSet("daemon", "[flags]", `Donate disk space: run a donor node that stores other drives' fragments (only
ciphertext: it cannot read them) up to -quota, and serves the DHT. It prints its
address; mounts and other donors join through it with -bootstrap. Runs until
SIGINT or SIGTERM. See docs/operations.md for a systemd unit.

With -repair FILE (from scatter repair-cap on the drive's owner) it also keeps
that drive's fragments alive while the owner's devices are off: it reads the
drive's repair manifest, checks every chunk, rebuilds missing fragments onto
other donors at -repair-rate, renews every lease, and publishes what it moved
for the owner's mount to merge. It never deletes and cannot read the drive.`,
		"scatter daemon -quota 50G -listen /ip4/0.0.0.0/tcp/4001",
		"scatter daemon -quota 20G -bandwidth 5M -bootstrap /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...",
		"scatter daemon -dir /var/lib/scatter -ready-file /run/scatter/addrs -metrics 127.0.0.1:9464",
		"scatter daemon -quota 20G -repair ~/repair.cap -bootstrap /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...")
	registerConfigDir(fs, &o.configDir)
	o.logFlags.register(fs)
	fs.StringVar(&o.dir, "dir", defaultDataDir("donor"), "data `directory`: identity key and fragment store")
	fs.Var(&o.quota, "quota", "most disk space to donate (e.g. 500M, 20G)")
	fs.Var(&o.bandwidth, "bandwidth", "cap on fragment bytes per second served and received (e.g. 10M); 0 for none")
	fs.Var(&o.listen, "listen", "multiaddr to listen on (repeatable; default /ip4/127.0.0.1/tcp/0)")
	fs.Var(&o.bootstrap, "bootstrap", "full multiaddr of a peer to join through (repeatable)")
	fs.StringVar(&o.readyFile, "ready-file", "", "write the node's addresses to this `file` once it serves (for scripts and tests)")
	fs.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics on this `address` (e.g. 127.0.0.1:9464)")
	o.repair.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := o.repair.check(); err != nil {
		return err
	}
	log, err := o.logFlags.setup()
	if err != nil {
		return err
	}
	if o.quota <= 0 {
		return fmt.Errorf("%w: -quota must be above 0", errUsage)
	}
	if o.bandwidth > 1<<31-1 {
		return fmt.Errorf("%w: -bandwidth above 2G/s", errUsage)
	}
	var rcap *crypt.RepairCap
	if o.repair.file != "" {
		c, err := readRepairCap(o.repair.file)
		if err != nil {
			return err
		}
		rcap = &c
	}
	cfg := dht.Config{
		DataDir:     o.dir,
		ListenAddrs: o.listen.vals,
		Bootstrap:   o.bootstrap.vals,
		Mode:        dht.ModeServer,
		Store:       store.Config{Quota: int64(o.quota), Logger: log},
		Server:      dht.ServerConfig{Bandwidth: int(o.bandwidth), Logger: log},
		Logger:      log,
	}
	if rcap != nil {
		cfg.Owner = rcap.Storage // the repairer's requests act for the drive's fragment owner
	}
	n, err := dht.New(ctx, cfg)
	if err != nil {
		return err
	}
	stopRepair := func() {}
	if rcap != nil {
		if stopRepair, err = o.repair.start(n, *rcap, o.dir, log); err != nil {
			return errors.Join(err, n.Close())
		}
		// Deferred too for the early returns below; the loop stops before the node closes.
		defer stopRepair()
		fmt.Fprintf(stdout, "repairing the drive of repair capability %s (lease %v, check every %v)\n",
			o.repair.file, o.repair.lease, o.repair.checkEvery)
	}
	if o.metrics != "" {
		m := newMeters()
		m.nodeGauges(n)
		stop, addr, err := m.serve(o.metrics)
		if err != nil {
			return errors.Join(err, n.Close())
		}
		defer stop()
		fmt.Fprintf(stdout, "metrics on http://%s/metrics\n", addr)
	}
	addrs := multiaddrLines(n)
	if o.readyFile != "" {
		if err := writeFileAtomic(o.readyFile, []byte(strings.Join(addrs, "\n")+"\n")); err != nil {
			return errors.Join(err, n.Close())
		}
	}
	fmt.Fprintf(stdout, "scatter donor %s, donating %s in %s\n", n.ID(), formatSize(int64(o.quota)), o.dir)
	for _, a := range addrs {
		fmt.Fprintln(stdout, "  ", a)
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping")
	stopRepair()
	return n.Close()
}

func multiaddrLines(n *dht.Node) []string {
	var out []string
	for _, a := range n.Addrs() {
		out = append(out, a.String())
	}
	return out
}

// writeFileAtomic writes data to path through a temporary file and a rename, so a reader
// polling for path never sees it half written.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

var _ flag.Value = (*listFlag)(nil)

// repairFlags are the daemon's settings for delegated repair (package delegate).
type repairFlags struct {
	file       string
	lease      time.Duration
	renewEvery time.Duration
	checkEvery time.Duration
	rate       sizeFlag
}

// defaultRepairCheckEvery is how often a repairer checks the drive: more often than a
// mount (upkeep.DefaultCheckEvery), since keeping the drive whole is all it does.
const defaultRepairCheckEvery = 10 * time.Minute

func (r *repairFlags) register(fs *flag.FlagSet) {
	r.rate = upkeep.DefaultRepairRate
	fs.StringVar(&r.file, "repair", "", "keep alive the drive of this repair capability `file` (scatter repair-cap; mode 0600)")
	fs.DurationVar(&r.lease, "repair-lease", pipeline.DefaultLease, "lease the repairer asks for when it renews or rebuilds fragments")
	fs.DurationVar(&r.renewEvery, "repair-renew-every", 0, "time between renewals of every fragment's lease (default a quarter of -repair-lease)")
	fs.DurationVar(&r.checkEvery, "repair-check-every", defaultRepairCheckEvery, "time between checks with repair of every chunk")
	fs.Var(&r.rate, "repair-rate", "most bytes per second of chunks the repairer rebuilds")
}

func (r *repairFlags) check() error {
	if r.file == "" {
		return nil
	}
	switch {
	case r.lease < time.Second:
		return fmt.Errorf("%w: -repair-lease must be at least 1s", errUsage)
	case r.renewEvery < 0 || r.renewEvery >= r.lease:
		return fmt.Errorf("%w: -repair-renew-every must be shorter than -repair-lease", errUsage)
	case r.checkEvery <= 0:
		return fmt.Errorf("%w: -repair-check-every must be positive", errUsage)
	case r.rate <= 0:
		return fmt.Errorf("%w: -repair-rate must be positive", errUsage)
	}
	return nil
}

// start runs the repairer on node n, whose Config.Owner is c.Storage: an upkeep loop
// over the drive's repair manifest, with no garbage collection. stop ends it.
// The highest manifest and log sequences seen are kept in dataDir/repair-state.
func (r *repairFlags) start(n *dht.Node, c crypt.RepairCap, dataDir string, log *slog.Logger) (stop func(), err error) {
	nw, err := dht.NewNetwork(n, dht.NetworkConfig{})
	if err != nil {
		return nil, err
	}
	rep, err := delegate.NewRepairer(n.DHT(), nw, c, delegate.RepairerConfig{
		Pages: pipeline.Config{Lease: r.lease}, Logger: log, StateFile: filepath.Join(dataDir, "repair-state"),
	})
	if err != nil {
		return nil, err
	}
	u := upkeep.New(nw, upkeep.Config{Lease: r.lease})
	loop := upkeep.Start(u, rep.Drive(), upkeep.LoopConfig{
		RenewEvery: r.renewEvery, CheckEvery: r.checkEvery, CollectEvery: -1, RepairRate: int64(r.rate), Logger: log,
	})
	var once sync.Once
	return func() { once.Do(func() { _ = loop.Close() }) }, nil
}
