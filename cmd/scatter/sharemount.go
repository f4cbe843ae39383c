package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/routing"
	"golang.org/x/sys/unix"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/dht"
	"github.com/scatterfs/scatter/fs"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/root"
	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/volume"
)

// shareSource is the followSource of a capability: the shared directory's tree in the
// newest share record. It remembers the record it returned last, for the restore, and
// refuses records older than one seen (replays), also across restarts: the highest
// sequence is kept in seqFile. The follower calls it and the restore one at a time.
type shareSource struct {
	dht     routing.ValueStore
	cap     crypt.Cap
	seqFile string
	seen    uint64 // highest sequence seen, also by an earlier run
	last    root.ShareRecord
}

func newShareSource(dht routing.ValueStore, c crypt.Cap, seqFile string) (*shareSource, error) {
	s := &shareSource{dht: dht, cap: c, seqFile: seqFile}
	b, err := os.ReadFile(seqFile)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if s.seen, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil {
		return nil, fmt.Errorf("%s: %w", seqFile, err)
	}
	return s, nil
}

func (s *shareSource) next(ctx context.Context) (snapshot.Ptr, error) {
	rec, err := root.GetShare(ctx, s.dht, s.cap, s.seen)
	if err != nil {
		return snapshot.Ptr{}, err
	}
	if rec.Seq > s.seen {
		if err := writeFileAtomic(s.seqFile, []byte(strconv.FormatUint(rec.Seq, 10)+"\n")); err != nil {
			return snapshot.Ptr{}, err
		}
		s.seen = rec.Seq
	}
	s.last = rec
	return rec.Dir, nil
}

// runCapMount is `scatter mount -cap CAP DIR`: the shared directory, restored from its
// share record alone (no drive key), mounted read-only and followed. closers run when
// runMount returns.
func runCapMount(ctx context.Context, o *mountOptions, stdout io.Writer, log *slog.Logger) (err error) {
	c, err := crypt.ParseCap(strings.TrimSpace(o.capText))
	if err != nil {
		return fmt.Errorf("%w: -cap: %v", errUsage, err)
	}
	boot := o.bootstrap.vals
	if len(boot) == 0 {
		boot = c.Hints
	}
	if len(boot) == 0 {
		return fmt.Errorf("%w: a -cap mount joins the drive's swarm through -bootstrap (the capability has no hints)", errUsage)
	}
	if o.dataDir == defaultDataDir("drive") {
		// Each share gets its own state, apart from any drive of this user.
		sum := sha256.Sum256(c.Public)
		o.dataDir = defaultDataDir("share-" + hex.EncodeToString(sum[:6]))
	}
	if err := checkMountpoint(o.mountpoint); err != nil {
		return err
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return err
	}
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			if cerr := closers[i](); cerr != nil {
				log.Warn("shutdown", "err", cerr)
			}
		}
	}()
	unlock, err := lockDataDir(o.dataDir)
	if err != nil {
		return err
	}
	closers = append(closers, unlock)

	// The holder has no drive key. Its node still needs an owner key (it never puts a
	// fragment) and the pipeline a codec (it only fetches and decodes: chunks are opened
	// with the keys of the share's snapshot): a throwaway key serves both.
	throwaway, err := crypt.NewSecret()
	if err != nil {
		return err
	}
	keys := throwaway.Keys()
	node, err := dht.New(ctx, dht.Config{
		DataDir: filepath.Join(o.dataDir, "node"), Bootstrap: boot, Mode: dht.ModeClient,
		Owner: keys.Storage, Logger: log,
	})
	if err != nil {
		return err
	}
	closers = append(closers, node.Close)
	dnet, err := dht.NewNetwork(node, dht.NetworkConfig{})
	if err != nil {
		return err
	}
	m := newMeters()
	net := &meteredNetwork{Network: dnet, m: m}
	cache, err := volume.OpenCache(volume.Config{Dir: o.dataDir, CacheDir: filepath.Join(o.dataDir, "cache"), CacheMax: int64(o.cache)})
	if err != nil {
		return err
	}
	src, err := newShareSource(node.DHT(), c, filepath.Join(o.dataDir, "share-seq"))
	if err != nil {
		return err
	}
	var store *pipeline.Store // made at the first restore: the record's pointer says the drive's k+m
	volCfg := func(dir string) volume.Config {
		return volume.Config{Dir: dir, StagingMax: 4 << 20, Logger: log, RootUID: uint32(os.Getuid()), RootGID: uint32(os.Getgid())}
	}
	fmt.Fprintln(stdout, "Read-only share: looking for its record in the network…")
	start := time.Now()
	f, err := startFollower(ctx, followConfig{
		Dir:      filepath.Join(o.dataDir, "follow"),
		Interval: o.followEvery,
		Source:   src.next,
		Restore: func(ctx context.Context, dir string, p snapshot.Ptr) error {
			if store == nil {
				var err error
				if store, err = pipeline.NewStore(net, keys, pipeline.Config{K: int(p.Ref.K), M: int(p.Ref.M)}); err != nil {
					return err
				}
			}
			return volume.RestoreShare(ctx, volCfg(dir), snapshot.NewReader(store), p, src.last.Time)
		},
		Open: func(dir string) (*volume.Volume, error) {
			return volume.OpenShare(volCfg(dir), &meteredChunks{Store: store, m: m}, cache)
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	closers = append(closers, f.Close)
	fmt.Fprintf(stdout, "Restored the shared directory (share record %d) in %v.\n", src.last.Seq, time.Since(start).Round(time.Millisecond))
	m.nodeGauges(node)
	if o.metrics != "" {
		stop, addr, err := m.serve(o.metrics)
		if err != nil {
			return err
		}
		closers = append(closers, stop)
		fmt.Fprintf(stdout, "Metrics on http://%s/metrics\n", addr)
	}

	srv, err := fs.MountLive(o.mountpoint, f.Live(), fs.Options{ReadOnly: true, AllowOther: o.allowOther, Debug: o.debugFUSE, Logger: log})
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
		if err := srv.Unmount(); err != nil {
			return errors.Join(err, unix.Unmount(o.mountpoint, unix.MNT_DETACH))
		}
		<-unmounted
		return nil
	})
	f.Run()
	fmt.Fprintf(stdout, "Mounted the shared directory read-only on %s, following the writer every %v.\n"+
		"Stop with Ctrl-C or `umount %s`.\n", o.mountpoint, o.followEvery, o.mountpoint)
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
	fmt.Fprintln(stdout, "Unmounted.")
	return nil
}
