package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/routing"
	"golang.org/x/sync/errgroup"

	"github.com/scatterfs/scatter/control"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/root"
	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/volume"
)

// Read-only sharing. `scatter share PATH` asks the running mount to record a share of a
// directory (volume.AddShare), snapshot, and publish the share's record; it prints the
// capability. The mount publishes every active share's record again after each root
// record it publishes (sharer.publish, called from snapshots), so a capability follows
// the writer. `scatter mount -cap CAP DIR` finds the record, restores the subtree alone
// and follows it read-only (runCapMount, on the follower of follow.go).

type shareOptions struct {
	ctlFlags
	list    bool
	revoke  string
	hints   listFlag
	timeout time.Duration
}

const shareAbout = `Share a directory of the running mount read-only, and print its capability:
a text (scatter-cap1:...) that lets its holder mount that directory, and
nothing else of the drive, with scatter mount -cap CAP DIR. The holder's mount
follows your changes: after each metadata snapshot this mount publishes (when
changes settle, at scatter sync and at unmount) it publishes the share's record
again, naming the directory's newest tree.

PATH is a directory inside the mount, or a path relative to the mount's root.
The share follows that directory: moved or replaced, it stops being updated.

The holder learns the directory's names, sizes, times and bytes, and which peers
hold its fragments; nothing outside it. -revoke ID stops updating the share's
record: holders keep what they fetched already (and can keep reading the
snapshot they have as long as its fragments stay on the donors), but never see
a later change.`

func runShare(ctx context.Context, args []string, stdout io.Writer) error {
	var o shareOptions
	flags := newFlagSet("share", "[flags] PATH | -list | -revoke ID", shareAbout,
		"scatter share ~/Scatter/photos/2024",
		"scatter share -hint /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW... photos/2024",
		"scatter share -list",
		"scatter share -revoke 3f9c...")
	o.ctlFlags.register(flags)
	flags.BoolVar(&o.list, "list", false, "list the drive's shares")
	flags.StringVar(&o.revoke, "revoke", "", "stop updating the share with this `ID`")
	flags.Var(&o.hints, "hint", "multiaddr of a peer to write into the capability, for its holder to join through (repeatable)")
	flags.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up after this long")
	if err := parseFlagsLoose(flags, args); err != nil {
		return err
	}
	modes := 0
	for _, set := range []bool{o.list, o.revoke != "", flags.NArg() > 0} {
		if set {
			modes++
		}
	}
	if modes != 1 || flags.NArg() > 1 {
		return fmt.Errorf("%w: give one PATH, or -list, or -revoke ID", errUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	c := o.client()
	switch {
	case o.list:
		list, err := c.Shares(ctx)
		if err != nil {
			return o.wrap(err)
		}
		if len(list) == 0 {
			fmt.Fprintln(stdout, "No shares.")
		}
		for _, s := range list {
			state := "active"
			switch {
			case s.Revoked:
				state = "revoked"
			case s.Error != "":
				state = "not updated: " + s.Error
			case s.Seq > 0:
				state = fmt.Sprintf("active, record %d", s.Seq)
			}
			fmt.Fprintf(stdout, "%s  /%s  (%s)\n    %s\n", s.ID, s.Path, state, s.Cap)
		}
		return nil
	case o.revoke != "":
		s, err := c.Revoke(ctx, o.revoke)
		if err != nil {
			return o.wrap(err)
		}
		fmt.Fprintf(stdout, "Revoked share %s of /%s: its record is no longer updated. Holders keep what they\n"+
			"fetched already, and the snapshot they have while its fragments stay on the donors.\n", s.ID, s.Path)
		return nil
	}
	p := flags.Arg(0)
	// A path that exists here is sent absolute, for the mount to place under its mount
	// point; anything else is taken as relative to the drive's root.
	if abs, err := filepath.Abs(p); err == nil {
		if _, err := os.Stat(abs); err == nil {
			p = abs
		}
	}
	s, err := c.Share(ctx, p)
	if err != nil {
		return o.wrap(err)
	}
	capText := s.Cap
	if len(o.hints.vals) > 0 {
		cp, err := crypt.ParseCap(s.Cap)
		if err != nil {
			return err
		}
		cp.Hints = append(cp.Hints, o.hints.vals...)
		if len(cp.Hints) > crypt.MaxCapHints {
			return fmt.Errorf("%w: at most %d hints", errUsage, crypt.MaxCapHints)
		}
		capText = cp.String()
	}
	fmt.Fprintf(stdout, "Shared /%s read-only (share %s). Its capability:\n\n%s\n\n"+
		"Anyone holding it can read that directory (and nothing else) with\n"+
		"    scatter mount -cap CAP -bootstrap <a donor's address> DIR\n"+
		"Revoke it with scatter share -revoke %s.\n", s.Path, s.ID, capText, s.ID)
	return nil
}

// sharer publishes the drive's share records after its root records.
type sharer struct {
	vol   *volume.Volume
	fetch snapshot.Fetcher // nil if the snapshot store cannot fetch: publishing fails
	keys  *crypt.Keys
	dht   routing.ValueStore
	log   *slog.Logger

	mu   sync.Mutex // guards last
	last map[crypt.ShareID]sharePublished
}

// sharePublished is what was last published for a share.
type sharePublished struct {
	dir crypt.ChunkID // the directory tree's root object
	seq uint64
	at  time.Time
	err error // the last attempt's failure, nil once published
}

func newSharer(vol *volume.Volume, store snapshot.Store, keys *crypt.Keys, dht routing.ValueStore, log *slog.Logger) *sharer {
	f, _ := store.(snapshot.Fetcher)
	return &sharer{vol: vol, fetch: f, keys: keys, dht: dht, log: log, last: map[crypt.ShareID]sharePublished{}}
}

// shareParallel bounds the share records put at once.
const shareParallel = 8

// publish publishes, for the snapshot rootPtr published as root record seq, the record of
// every share not revoked whose directory changed, or whose record is older than
// root.DefaultRepublish. Failures are logged and kept for `scatter share -list`: a share
// is secondary to the drive's own record, and the next publication retries.
func (s *sharer) publish(ctx context.Context, rootPtr snapshot.Ptr, seq uint64) {
	shares, err := s.vol.Shares()
	if err != nil {
		s.log.Warn("share: list shares", "err", err)
		return
	}
	// One fetch per object for all shares: their paths share the root and their ancestors.
	r := snapshot.NewReader(&onceFetcher{f: s.fetch, got: map[crypt.ChunkID]*onceFetch{}})
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(shareParallel)
	for _, sh := range shares {
		if sh.Revoked {
			continue
		}
		g.Go(func() error {
			if err := s.publishOne(gctx, r, rootPtr, seq, sh); err != nil && ctx.Err() == nil {
				s.log.Warn("share: record not published", "share", sh.ID.String(), "path", sh.Path, "err", err)
			}
			return nil
		})
	}
	g.Wait()
}

// onceFetcher fetches each object once for all its callers (one publication's walks).
type onceFetcher struct {
	f   snapshot.Fetcher
	mu  sync.Mutex // guards got
	got map[crypt.ChunkID]*onceFetch
}

type onceFetch struct {
	done   chan struct{} // closed once sealed and err are set
	sealed []byte
	err    error
}

// GetSealed implements snapshot.Fetcher. The snapshot reader does not modify what it gets.
func (o *onceFetcher) GetSealed(ctx context.Context, ref pipeline.Ref) ([]byte, error) {
	o.mu.Lock()
	f, ok := o.got[ref.ID]
	if !ok {
		f = &onceFetch{done: make(chan struct{})}
		o.got[ref.ID] = f
	}
	o.mu.Unlock()
	if !ok {
		f.sealed, f.err = o.f.GetSealed(ctx, ref)
		close(f.done)
	}
	select {
	case <-f.done:
		return f.sealed, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *sharer) publishOne(ctx context.Context, r *snapshot.Reader, rootPtr snapshot.Ptr, seq uint64, sh volume.Share) error {
	if s.fetch == nil {
		return errors.New("BUG: share: the snapshot store cannot fetch objects")
	}
	dir, err := volume.ShareDir(ctx, r, rootPtr, sh)
	if err == nil {
		s.mu.Lock()
		last := s.last[sh.ID]
		s.mu.Unlock()
		if last.err == nil && last.dir == dir.Ref.ID && last.seq <= seq && time.Since(last.at) < root.DefaultRepublish {
			return nil // the holders' newest record already names this tree
		}
		sk := s.keys.Share(sh.ID)
		var rec []byte
		if rec, err = root.EncodeShare(sk, seq, dir, time.Now(), root.DefaultValidity); err == nil {
			err = root.PutNamed(ctx, s.dht, sk.Cap.Public, rec)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		p := s.last[sh.ID]
		p.err = err
		s.last[sh.ID] = p
		return err
	}
	s.last[sh.ID] = sharePublished{dir: dir.Ref.ID, seq: seq, at: time.Now()}
	return nil
}

// info is the control answer for sh.
func (s *sharer) info(sh volume.Share) control.Share {
	s.mu.Lock()
	last := s.last[sh.ID]
	s.mu.Unlock()
	out := control.Share{ID: sh.ID.String(), Path: sh.Path, Cap: s.keys.Share(sh.ID).Cap.String(), Revoked: sh.Revoked}
	if last.err != nil {
		out.Error = last.err.Error()
	} else {
		out.Seq = last.seq
	}
	return out
}

var _ control.ShareHandler = snapControl{}

// Share implements control.ShareHandler: it records the share, snapshots, publishes the
// share's record and answers with its capability.
func (c snapControl) Share(ctx context.Context, p string) (*control.Share, error) {
	rel := filepath.Clean(p)
	if filepath.IsAbs(p) {
		// The mount point as given to scatter mount, relative to this process's directory.
		mnt, err := filepath.Abs(c.mountpoint)
		if err == nil {
			rel, err = filepath.Rel(mnt, p)
		}
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return nil, fmt.Errorf("%s is not inside the mount %s", p, c.mountpoint)
		}
	}
	if rel == "." {
		rel = ""
	}
	sh, err := c.vol.AddShare(ctx, rel)
	if err != nil {
		return nil, err
	}
	// The new share gets its first record from this snapshot's publication; if there was
	// nothing new to publish, from the last snapshot published.
	if err := c.snaps.Now(ctx); err != nil {
		return nil, fmt.Errorf("share %s recorded, but the snapshot was not published (%w): its record goes out "+
			"with the next one", sh.ID, err)
	}
	ptr, ok, err := c.vol.LastSnapshot()
	if err != nil || !ok {
		return nil, fmt.Errorf("share %s recorded, but no snapshot to publish it from: %v", sh.ID, err)
	}
	seq, err := c.vol.SnapshotSeq()
	if err != nil {
		return nil, err
	}
	if err := c.snaps.shares.publishOne(ctx, snapshot.NewReader(c.snaps.shares.fetch), ptr, seq, sh); err != nil {
		return nil, fmt.Errorf("share %s recorded, but its record was not published (%w): it goes out with the "+
			"next snapshot", sh.ID, err)
	}
	out := c.snaps.shares.info(sh)
	return &out, nil
}

// Shares implements control.ShareHandler.
func (c snapControl) Shares(ctx context.Context) ([]control.Share, error) {
	list, err := c.vol.Shares()
	if err != nil {
		return nil, err
	}
	out := make([]control.Share, 0, len(list))
	for _, sh := range list {
		out = append(out, c.snaps.shares.info(sh))
	}
	return out, nil
}

// Revoke implements control.ShareHandler.
func (c snapControl) Revoke(ctx context.Context, id string) (*control.Share, error) {
	sid, err := crypt.ParseShareID(id)
	if err != nil {
		return nil, err
	}
	sh, err := c.vol.RevokeShare(sid)
	if err != nil {
		return nil, err
	}
	out := c.snaps.shares.info(sh)
	return &out, nil
}
