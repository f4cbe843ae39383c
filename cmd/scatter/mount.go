package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/dht"
	"github.com/scatterfs/scatter/fs"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/volume"
)

type mountOptions struct {
	driveFlags
	dataDir    string
	staging    sizeFlag
	cache      sizeFlag
	k, m       int
	bootstrap  listFlag
	donors     int
	donorQuota sizeFlag
	allowOther bool
	readyFile  string
	verbose    bool
	debugFUSE  bool
	mountpoint string
}

func runMount(ctx context.Context, args []string, stdout io.Writer) error {
	o := mountOptions{staging: 256 << 20, cache: 1 << 30, donorQuota: 1 << 30}
	flags := newFlagSet("mount", "[flags] DIR")
	o.register(flags)
	flags.StringVar(&o.dataDir, "data", defaultDataDir("drive"), "state `directory`: metadata, staging, cache and the local swarm")
	flags.Var(&o.staging, "staging", "most bytes waiting for upload on local disk; writes wait beyond it")
	flags.Var(&o.cache, "cache", "most bytes of the local read cache")
	flags.IntVar(&o.k, "k", chunker.DefaultDataShards, "data fragments per chunk (fixed when the drive is first mounted)")
	flags.IntVar(&o.m, "m", chunker.DefaultParityShards, "parity fragments per chunk: peers that can be lost (fixed at first mount)")
	flags.Var(&o.bootstrap, "bootstrap", "full multiaddr of a peer to join through (repeatable); none starts a local swarm")
	flags.IntVar(&o.donors, "local-donors", 0, "donors of the local swarm when no -bootstrap is given (default k+m+2)")
	flags.Var(&o.donorQuota, "local-quota", "disk each local donor may use")
	flags.BoolVar(&o.allowOther, "allow-other", false, "let other users use the mount")
	flags.StringVar(&o.readyFile, "ready-file", "", "write the mountpoint to this `file` once mounted (for scripts and tests)")
	flags.BoolVar(&o.verbose, "v", false, "verbose logs")
	flags.BoolVar(&o.debugFUSE, "debug-fuse", false, "log every FUSE request")
	// Flags may follow the mountpoint, as in mount(8).
	var positional []string
	rest := args
	for {
		if err := parseFlagsLoose(flags, rest); err != nil {
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
	if fi, err := os.Stat(o.mountpoint); err != nil || !fi.IsDir() {
		return fmt.Errorf("mount point %s is not a directory", o.mountpoint)
	}
	if o.staging < 4<<20 {
		return fmt.Errorf("%w: -staging must be at least 4M", errUsage)
	}
	log := logger(o.verbose)
	slog.SetDefault(log)

	keys, err := o.drive(stdout)
	if err != nil {
		return err
	}
	shape, err := o.settings()
	if err != nil {
		return err
	}

	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i](); err != nil {
				log.Warn("shutdown", "err", err)
			}
		}
	}()

	boot := []string(o.bootstrap)
	if len(boot) == 0 {
		n := o.donors
		if n == 0 {
			n = shape.K + shape.M + 2
		}
		fmt.Fprintf(stdout, "No peers configured: starting a local swarm of %d donors (%s each) on 127.0.0.1.\n"+
			"Your data stays on this machine, in %s. To scatter it over other devices, run\n"+
			"`scatter daemon` on them and mount with -bootstrap <their address>.\n",
			n, formatSize(int64(o.donorQuota)), filepath.Join(o.dataDir, "swarm"))
		local, err := dht.StartLocal(ctx, dht.LocalConfig{
			Dir: filepath.Join(o.dataDir, "swarm"), Donors: n, Quota: int64(o.donorQuota), Logger: log,
		})
		if err != nil {
			return err
		}
		closers = append(closers, local.Close)
		boot = local.Bootstrap()
	}

	node, err := dht.New(ctx, dht.Config{
		DataDir: filepath.Join(o.dataDir, "node"), Bootstrap: boot, Mode: dht.ModeClient,
		Owner: keys.Signing, Logger: log,
	})
	if err != nil {
		return err
	}
	closers = append(closers, node.Close)
	net, err := dht.NewNetwork(node, dht.NetworkConfig{})
	if err != nil {
		return err
	}
	store, err := pipeline.NewStore(net, keys, pipeline.Config{K: shape.K, M: shape.M})
	if err != nil {
		return err
	}
	vol, err := volume.Open(volume.Config{
		Dir: filepath.Join(o.dataDir, "volume"), StagingMax: int64(o.staging), CacheMax: int64(o.cache),
		Logger: log, RootUID: uint32(os.Getuid()), RootGID: uint32(os.Getgid()),
	}, store)
	if err != nil {
		return err
	}
	closers = append(closers, vol.Close)
	srv, err := fs.Mount(o.mountpoint, vol, fs.Options{AllowOther: o.allowOther, Debug: o.debugFUSE, Logger: log})
	if err != nil {
		return fmt.Errorf("mount %s: %w", o.mountpoint, err)
	}
	unmounted := make(chan struct{})
	go func() { srv.Wait(); close(unmounted) }()
	closers = append(closers, func() error {
		select {
		case <-unmounted:
			return nil
		default:
		}
		err := srv.Unmount()
		<-unmounted
		return err
	})
	fmt.Fprintf(stdout, "Mounted the drive on %s (k+m = %d+%d). Stop with Ctrl-C or `umount %s`.\n",
		o.mountpoint, shape.K, shape.M, o.mountpoint)
	if o.readyFile != "" {
		if err := writeFileAtomic(o.readyFile, []byte(o.mountpoint+"\n")); err != nil {
			return err
		}
	}
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "Unmounting…")
	case <-unmounted:
		fmt.Fprintln(stdout, "Unmounted.")
	}
	return nil
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
