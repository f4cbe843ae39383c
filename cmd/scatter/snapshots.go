package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/scatterfs/scatter/control"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/root"
	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/volume"
)

// The mount keeps the drive's metadata in the network: a snapshot (package snapshot,
// through volume.Snapshot) whenever changes settle, on fsync(2) of a directory, on
// `scatter sync` and at unmount, each published as the drive's root record (package
// root). A fresh device with only the drive key finds the root through the DHT and
// rebuilds its metadata store from it (recoverDrive).

// snapshotConfig tunes when snapshots are taken; zero fields take the defaults below.
type snapshotConfig struct {
	// Quiet: a snapshot is taken once the metadata store saw no commit for this long.
	Quiet time.Duration
	// MaxDelay: under constant changes, a snapshot is taken at least this often.
	MaxDelay time.Duration
	// Poll is how often the metadata store's version is read to notice changes.
	Poll time.Duration
	// UploadWait bounds how long a settled snapshot waits for staged data to reach the
	// peers first (what is still staged then appears as last uploaded).
	UploadWait time.Duration
	// FinalWait bounds the snapshot at unmount.
	FinalWait time.Duration
	// Writer is this device's name in the writer lease (its DHT node's peer ID); ""
	// publishes records with no lease, republished every root.DefaultRepublish.
	Writer string
	// Lease is how long a published record holds the writer lease. It is renewed every
	// Lease/3 (a record with a fresh lease, under the next sequence number), so two
	// renewals may fail before another device could take the drive over.
	Lease time.Duration
}

func (c snapshotConfig) withDefaults() snapshotConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Quiet, 2*time.Second)
	def(&c.MaxDelay, 30*time.Second)
	def(&c.Poll, 500*time.Millisecond)
	def(&c.UploadWait, time.Minute)
	def(&c.FinalWait, 30*time.Second)
	def(&c.Lease, defaultWriterLease)
	return c
}

// defaultWriterLease is how long a writer's record holds the drive: long enough that
// renewals (every 5 min) cost little, short enough that after a crash another device
// may write the drive a quarter of an hour later without -force-takeover.
const defaultWriterLease = 15 * time.Minute

// maxSnapshotBackoff bounds the wait between failed snapshot runs.
const maxSnapshotBackoff = 5 * time.Minute

// errSnapshotsClosed is returned by Now once Close has started.
var errSnapshotsClosed = errors.New("snapshots: closed")

// snapshots is the mount's supervised snapshot component. Its loop polls the metadata
// store and snapshots once changes settle; Now snapshots on request (sync, directory
// fsync); Close stops the loop and takes a final snapshot if anything is unpublished.
type snapshots struct {
	vol   *volume.Volume
	store snapshot.Store
	keys  *crypt.Keys
	pub   *root.Publisher
	cfg   snapshotConfig
	log   *slog.Logger
	out   io.Writer // the user's messages (the final snapshot at unmount)

	mu        sync.Mutex   // serialises snapshot-and-publish runs; guards published, root
	published []byte       // marshalled root pointer last published; nil before the first
	root      snapshot.Ptr // the root pointer last published
	deleg     *delegation  // the repair manifest and log (delegate.go); nil without a libp2p DHT
	shares    *sharer      // read-only shares' records (share.go), published after the root's

	ctx     context.Context // ends when Close starts: runs outlive the requests that ask for them
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	reqMu   sync.Mutex // guards closing, so no run is added to wg once Close waits
	closing bool
	once    sync.Once
}

// startSnapshots starts the snapshot component of a mounted volume, publishing through
// dht. seenSeq is the sequence of a root record the drive was just recovered from (0 if
// none): it is recorded so that older records are refused as replays and the next
// publication goes above it.
func startSnapshots(vol *volume.Volume, store snapshot.Store, keys *crypt.Keys, dht routing.ValueStore,
	seenSeq uint64, cfg snapshotConfig, log *slog.Logger, out io.Writer) (*snapshots, error) {
	if seenSeq > 0 {
		if err := vol.SetSnapshotSeq(seenSeq); err != nil {
			return nil, err
		}
	}
	s := &snapshots{
		vol: vol, store: store, keys: keys, cfg: cfg.withDefaults(), log: log, out: out,
		pub: root.NewPublisher(dht, keys, vol, 0, 0),
	}
	s.deleg = startDelegation(vol, keys, dht, log)
	s.shares = newSharer(vol, store, keys, dht, log)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.loop()
	}()
	go func() {
		defer s.wg.Done()
		if s.cfg.Writer == "" {
			s.pub.Run(s.ctx, func(err error) { s.log.Warn("snapshot: republish root record", "err", err) })
			return
		}
		s.renewLoop()
	}()
	return s, nil
}

// renewLoop publishes the last published root again with a fresh writer lease every
// cfg.Lease/3 until the component closes. Each renewal is a new sequence number: the
// newest record is always the one with the highest, as readers and donors select it.
func (s *snapshots) renewLoop() {
	t := time.NewTicker(s.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if err := s.renew(s.ctx); err != nil && s.ctx.Err() == nil {
			s.log.Warn("snapshot: renew writer lease", "err", err)
		}
	}
}

// renew publishes the last published root with a fresh lease; before the first
// publication there is nothing to renew (the first run publishes with a lease).
func (s *snapshots) renew(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.published == nil {
		return nil
	}
	seq, err := s.pub.Publish(ctx, s.payload(s.root, true))
	if err != nil {
		return fmt.Errorf("root record %d: %w", seq, err)
	}
	s.log.Debug("writer lease renewed", "seq", seq)
	s.shares.publish(ctx, s.root, seq) // refreshes records older than root.DefaultRepublish
	return nil
}

// payload is the root record's payload for ptr: this device as the writer, holding the
// lease for cfg.Lease from now, or (hold false, at unmount) releasing it.
func (s *snapshots) payload(ptr snapshot.Ptr, hold bool) root.Payload {
	p := root.Payload{Root: ptr, Writer: s.cfg.Writer}
	if hold && s.cfg.Writer != "" {
		p.LeaseExpiry = time.Now().Add(s.cfg.Lease)
	}
	return p
}

// loop snapshots when changes settle: after cfg.Quiet with no commit, or cfg.MaxDelay
// after the first unsnapshotted change. The first run comes at once, so every mount
// publishes (the root record may have expired while the drive was offline).
func (s *snapshots) loop() {
	tick := time.NewTicker(s.cfg.Poll)
	defer tick.Stop()
	var (
		lastVer    uint64
		lastChange time.Time // when the version last moved
		dirtySince time.Time // first change not yet in a snapshot; zero when clean
		retryAt    time.Time // after a failed run, no other before this
		backoff    time.Duration
	)
	now := time.Now()
	dirtySince, lastChange = now.Add(-s.cfg.MaxDelay), now.Add(-s.cfg.Quiet)
	for {
		settled := time.Since(lastChange) >= s.cfg.Quiet || time.Since(dirtySince) >= s.cfg.MaxDelay
		if !dirtySince.IsZero() && settled && time.Now().After(retryAt) {
			if err := s.run(s.ctx, true, true); err != nil {
				if s.ctx.Err() != nil {
					return
				}
				// Peers unreachable, say: try again later, less and less often.
				backoff = min(max(2*backoff, s.cfg.Quiet), maxSnapshotBackoff)
				retryAt = time.Now().Add(backoff)
				s.log.Warn("snapshot", "err", err, "retry_in", backoff)
			} else {
				dirtySince, backoff = time.Time{}, 0
			}
			// The snapshot's own bookkeeping commits too: start from after it. A change
			// that committed while the run took its snapshot moved the version too, and
			// would be missed (until the next change) if only the version were looked
			// at: the store says whether the snapshot holds everything.
			if v, err := s.vol.Version(); err == nil {
				lastVer = v
			}
			if dirtySince.IsZero() {
				if changed, err := s.vol.SnapshotChanged(); err != nil || changed {
					dirtySince, lastChange = time.Now(), time.Now()
				}
			}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		v, err := s.vol.Version()
		if err != nil {
			s.log.Warn("snapshot: metadata version", "err", err)
			continue
		}
		if v == lastVer {
			continue
		}
		lastVer, lastChange = v, time.Now()
		if dirtySince.IsZero() {
			if changed, err := s.vol.SnapshotChanged(); err != nil || changed {
				dirtySince = lastChange
			}
		}
	}
}

// Now takes a snapshot of the metadata as it is (data still staged appears as last
// uploaded: callers that want it in call SyncAll first) and publishes it, unless the
// last published snapshot is current. It returns once published, or when ctx ends (the
// run goes on then, and Close waits for it).
func (s *snapshots) Now(ctx context.Context) error {
	done := make(chan error, 1)
	s.reqMu.Lock()
	if s.closing {
		s.reqMu.Unlock()
		return errSnapshotsClosed
	}
	s.wg.Add(1)
	s.reqMu.Unlock()
	go func() {
		defer s.wg.Done()
		done <- s.run(s.ctx, false, true)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run snapshots and publishes, once at a time. With waitUploads it first waits up to
// cfg.UploadWait for staged data to reach the peers. With hold the record holds the
// writer lease; without (at unmount) it releases it, and is published even if the
// snapshot is the one already published.
func (s *snapshots) run(ctx context.Context, waitUploads, hold bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if waitUploads {
		uctx, cancel := context.WithTimeout(ctx, s.cfg.UploadWait)
		err := s.vol.SyncAll(uctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Info("snapshot: staged data not all uploaded; snapshotting what is", "err", err)
		}
	}
	changed, err := s.vol.SnapshotChanged()
	if err != nil {
		return err
	}
	ptr, ok, err := s.vol.LastSnapshot()
	if err != nil {
		return err
	}
	if changed || !ok {
		start := time.Now()
		var st snapshot.Stats
		if ptr, st, err = s.vol.Snapshot(ctx, s.store, s.keys); err != nil {
			return err
		}
		s.log.Debug("snapshot taken", "objects", st.Objects, "uploaded", st.Uploaded,
			"uploaded_bytes", st.UploadedBytes, "took", time.Since(start))
	}
	b, err := ptr.MarshalBinary()
	if err != nil {
		return err
	}
	if bytes.Equal(b, s.published) && (hold || s.cfg.Writer == "") {
		return nil
	}
	seq, err := s.pub.Publish(ctx, s.payload(ptr, hold))
	if err != nil {
		return fmt.Errorf("publish root record %d: %w", seq, err)
	}
	s.published, s.root = b, ptr
	s.deleg.kick() // a new snapshot: merge the repair log, publish the repair manifest
	s.shares.publish(ctx, ptr, seq)
	s.log.Debug("root record published", "seq", seq, "root", ptr.Ref.ID.String())
	// Garbage this snapshot no longer references may go once readers had time to move on.
	if err := s.vol.SnapshotPublished(ptr, time.Now()); err != nil {
		s.log.Warn("snapshot: record publication for garbage collection", "err", err)
	}
	return nil
}

// Close stops the loop, waits for runs in flight, then takes a final snapshot (bounded by
// cfg.FinalWait) if anything is not published yet and publishes it releasing the writer
// lease, and says so on out.
func (s *snapshots) Close() error {
	var err error
	s.once.Do(func() {
		s.reqMu.Lock()
		s.closing = true
		s.reqMu.Unlock()
		s.cancel()
		s.wg.Wait()
		s.deleg.Close()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.FinalWait)
		defer cancel()
		if err = s.run(ctx, false, false); err != nil {
			fmt.Fprintf(s.out, "Could not publish the metadata snapshot (%v): another device recovering the\n"+
				"drive now sees it as it was at the last snapshot published. The next mount publishes it.\n", err)
			err = fmt.Errorf("snapshot at unmount: %w", err)
			return
		}
		seq, _ := s.vol.SnapshotSeq()
		fmt.Fprintf(s.out, "Metadata snapshot published (root record %d).\n", seq)
	})
	return err
}

// snapControl is the mount's control handler with sync extended: once everything staged
// is on the peers, a snapshot is taken and published.
type snapControl struct {
	*mountControl
	snaps *snapshots
}

// Sync implements control.Handler.
func (c snapControl) Sync(ctx context.Context, progress func(control.Progress)) error {
	if err := c.mountControl.Sync(ctx, progress); err != nil {
		return err
	}
	if err := c.snaps.Now(ctx); err != nil {
		return fmt.Errorf("data on peers, but metadata snapshot not published: %w", err)
	}
	return nil
}

// Recovery attempts: the lookup is repeated while the answer may be an artefact of a
// routing table still filling up.
const recoverAttempts = 4

// recoverBackoff is the pause between lookups (a variable for tests).
var recoverBackoff = 2 * time.Second

// recoverDrive rebuilds the metadata store in cfg.Dir from the drive's newest snapshot
// when there is none yet (a fresh device with only the drive key). It returns the root
// record used, the zero Record (sequence 0) when nothing was restored: the store exists,
// the drive was created just now, or the DHT holds no root record for it (a drive never
// published: it starts empty). Any other failure is an error: the mount must not start
// an empty drive over one that exists in the network.
func recoverDrive(ctx context.Context, dht routing.ValueStore, fetch snapshot.Fetcher, keys *crypt.Keys,
	cfg volume.Config, created bool, stdout io.Writer, log *slog.Logger) (root.Record, error) {
	if _, err := os.Stat(filepath.Join(cfg.Dir, "meta.db")); err == nil || created {
		return root.Record{}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return root.Record{}, err
	}
	fmt.Fprintln(stdout, "No local metadata: looking for the drive's root record in the network…")
	var (
		rec      root.Record
		err      error
		notFound int
	)
	for attempt := 1; ; attempt++ {
		rec, err = root.Get(ctx, dht, keys, 0)
		if err == nil {
			break
		}
		if errors.Is(err, root.ErrNotFound) {
			// Two answers in a row: the DHT was asked, not a half-filled table.
			if notFound++; notFound == 2 {
				fmt.Fprintln(stdout, "The network holds no root record for this drive: starting it empty.")
				return root.Record{}, nil
			}
		} else {
			notFound = 0
		}
		if errors.Is(err, root.ErrInvalid) || attempt == recoverAttempts {
			break
		}
		log.Info("recover: root record lookup", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return root.Record{}, ctx.Err()
		case <-time.After(recoverBackoff):
		}
	}
	if err != nil {
		return root.Record{}, fmt.Errorf("cannot find this drive's root record in the network (%w); refusing to start an empty drive "+
			"that could hide the existing one: check -bootstrap and that donors are up, then mount again", err)
	}
	start := time.Now()
	if err := volume.Restore(ctx, cfg, snapshot.NewReader(fetch), rec.Root); err != nil {
		return root.Record{}, fmt.Errorf("cannot rebuild the metadata from the drive's snapshot (root record %d): %w", rec.Seq, err)
	}
	fmt.Fprintf(stdout, "Recovered the drive's metadata from the network (root record %d) in %v.\n",
		rec.Seq, time.Since(start).Round(time.Millisecond))
	return rec, nil
}
