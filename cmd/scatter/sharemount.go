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

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/root"
	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/upkeep"
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

func (s *shareSource) next(ctx context.Context) (snapshot.Ptr, uint64, error) {
	rec, err := root.GetShare(ctx, s.dht, s.cap, s.seen)
	if err != nil {
		return snapshot.Ptr{}, 0, err
	}
	if rec.Seq > s.seen {
		if err := writeFileAtomic(s.seqFile, []byte(strconv.FormatUint(rec.Seq, 10)+"\n")); err != nil {
			return snapshot.Ptr{}, 0, err
		}
		s.seen = rec.Seq
	}
	s.last = rec
	return rec.Dir, rec.Seq, nil
}

// runCapMount is `scatter mount -cap CAP DIR`: the shared directory, restored from its
// share record alone (no drive key), mounted read-only and followed, with a control
// socket for scatter status and sync as a follower's.
func runCapMount(ctx context.Context, o *mountOptions, stdout io.Writer, log *slog.Logger) error {
	c, err := crypt.ParseCap(strings.TrimSpace(o.capText))
	if err != nil {
		return fmt.Errorf("%w: -cap: %v", errUsage, err)
	}
	boot := o.bootstrap.vals
	if len(boot) == 0 {
		boot = c.Hints
	}
	if len(boot) == 0 {
		return errNoBootstrap("a -cap mount joins the drive's swarm through its donors, and the capability names none")
	}
	if o.dataDir == defaultDataDir("drive") {
		// Each share gets its own state, apart from any drive of this user.
		sum := sha256.Sum256(c.Public)
		o.dataDir = defaultDataDir("share-" + hex.EncodeToString(sum[:6]))
	}
	var closers []func() error
	defer runClosers(&closers, log)
	if err := o.prepare(&closers); err != nil {
		return err
	}

	// The holder has no drive key. Its node still needs an owner key (it never puts a
	// fragment) and the pipeline a codec (it only fetches and decodes: chunks are opened
	// with the keys of the share's snapshot): a throwaway key serves both.
	throwaway, err := crypt.NewSecret()
	if err != nil {
		return err
	}
	keys := throwaway.Keys()
	node, net, m, err := o.join(ctx, boot, keys.Storage, &closers, log)
	if err != nil {
		return err
	}
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
	return followMount(ctx, o, followControl{f: f, share: true, base: mountControl{
		mountpoint: o.mountpoint, dataDir: o.dataDir, cacheMax: int64(o.cache), key: c.Public,
		shape: driveSettings{K: int(src.last.Dir.Ref.K), M: int(src.last.Dir.Ref.M)},
		net:   net, m: m, up: upkeep.New(net, upkeep.Config{Lease: o.lease}),
	}}, node, &closers, "the shared directory", stdout, log)
}
