package upkeep

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
)

// Drive is the metadata a Loop keeps alive: the chunk Refs files reference, and the
// garbage list of chunks none does. volume.Volume implements it.
type Drive interface {
	// LiveRefs returns every distinct Ref the drive's files reference (a chunk recorded
	// with different holders by different extents appears once per variant).
	LiveRefs(ctx context.Context) ([]pipeline.Ref, error)
	// UpdateRefs records new Refs (new holders) for chunks, in every extent that
	// references them, in one transaction; chunks no longer referenced are skipped.
	UpdateRefs(ctx context.Context, refs map[crypt.ChunkID]pipeline.Ref) error
	// Garbage returns the Refs of chunks no file references any more and no snapshot
	// of the drive published at or before settled references (a reader restoring or
	// following the drive may still use the snapshots published since).
	Garbage(ctx context.Context, settled time.Time) ([]pipeline.Ref, error)
	// DropGarbage forgets garbage chunks whose fragments were deleted: those of refs
	// still listed with the same Ref. It returns how many it dropped.
	DropGarbage(ctx context.Context, refs []pipeline.Ref) (int, error)
}

// Defaults of LoopConfig.
const (
	DefaultCheckEvery   = time.Hour
	DefaultCollectEvery = 10 * time.Minute
	// DefaultRepairRate bounds background repair to 4 MiB/s of chunks rebuilt: each
	// rebuilt chunk costs k fragment downloads and one upload per missing fragment.
	DefaultRepairRate = 4 << 20
	// DefaultSnapshotGrace is how long a published snapshot protects the chunks it
	// references after a newer one was published: a follower polls the root record and
	// then restores, and a recovering device restores, from the older one meanwhile.
	DefaultSnapshotGrace = 10 * time.Minute
)

// LoopConfig configures a Loop. The zero value gives the defaults.
type LoopConfig struct {
	// RenewEvery is the time between lease renewals; 0 means a quarter of the lease, so
	// a fragment's lease survives three failed rounds in a row.
	RenewEvery time.Duration
	// CheckEvery is the time between background checks (with repair); 0 means
	// DefaultCheckEvery, negative disables them.
	CheckEvery time.Duration
	// CollectEvery is the time between garbage collections; 0 means DefaultCollectEvery,
	// negative disables them.
	CollectEvery time.Duration
	// RepairRate bounds the plaintext bytes per second of chunks the background repairs
	// rebuild; 0 means DefaultRepairRate, negative means unlimited. On-demand runs
	// (Loop.Run) are not limited.
	RepairRate int64
	// RepairBelow makes the background check repair only chunks with fewer than this many
	// fragments found, so a holder away for a while does not cost a rebuild; 0 means
	// every incomplete chunk (k+m).
	RepairBelow int
	// SnapshotGrace: a garbage chunk is collected only once a snapshot that does not
	// reference it was published at least this long ago; 0 means DefaultSnapshotGrace.
	SnapshotGrace time.Duration
	// Guard, if set, is the Guard every Put of the drive goes through; collection waits
	// on it. Without one, collection is skipped: deleting without it could delete
	// fragments a concurrent write just stored.
	Guard *Guard
	// Logger receives one line per background pass; nil means slog.Default().
	Logger *slog.Logger
}

// Loop runs an Upkeep over a Drive in the background: renewals, checks with repair at a
// bounded rate, and garbage collection, each on its own period, one at a time. Run does
// the same on demand. Close stops it.
type Loop struct {
	u       *Upkeep
	d       Drive
	cfg     LoopConfig
	log     *slog.Logger
	limiter *rate.Limiter // nil: unlimited

	run    sync.Mutex // held by each pass: one at a time, background or on demand
	cancel context.CancelFunc
	done   chan struct{}
}

// Start starts a Loop: a renewal, a check and a collection right away (a device that was
// off may have missed rounds), then each on its period.
func Start(u *Upkeep, d Drive, cfg LoopConfig) *Loop {
	cfg.RenewEvery = cmp.Or(cfg.RenewEvery, u.cfg.Lease/4)
	cfg.CheckEvery = cmp.Or(cfg.CheckEvery, DefaultCheckEvery)
	cfg.CollectEvery = cmp.Or(cfg.CollectEvery, DefaultCollectEvery)
	cfg.RepairRate = cmp.Or(cfg.RepairRate, DefaultRepairRate)
	cfg.SnapshotGrace = cmp.Or(cfg.SnapshotGrace, DefaultSnapshotGrace)
	l := &Loop{u: u, d: d, cfg: cfg, log: cmp.Or(cfg.Logger, slog.Default()), done: make(chan struct{})}
	if cfg.RepairRate > 0 {
		// A burst of one default maximum chunk lets any chunk through (WaitN refuses more
		// than the burst; larger chunks are clamped to it).
		l.limiter = rate.NewLimiter(rate.Limit(cfg.RepairRate), 8<<20)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go l.loop(ctx)
	return l
}

// Close stops the background passes, waiting for the one running to end.
func (l *Loop) Close() error {
	l.cancel()
	<-l.done
	return nil
}

func (l *Loop) loop(ctx context.Context) {
	defer close(l.done)
	type task struct {
		every time.Duration
		next  time.Time
		run   func(context.Context) error
		name  string
	}
	now := time.Now()
	tasks := []*task{{every: l.cfg.RenewEvery, next: now, run: l.renew, name: "renew"}}
	if l.cfg.CheckEvery > 0 {
		tasks = append(tasks, &task{every: l.cfg.CheckEvery, next: now, run: l.check, name: "check"})
	}
	if l.cfg.CollectEvery > 0 && l.cfg.Guard != nil {
		tasks = append(tasks, &task{every: l.cfg.CollectEvery, next: now, run: l.collect, name: "collect"})
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		for _, t := range tasks {
			if time.Now().Before(t.next) {
				continue
			}
			if err := t.run(ctx); err != nil && ctx.Err() == nil {
				l.log.Warn("upkeep: "+t.name, "err", err)
			}
			t.next = time.Now().Add(t.every)
		}
		next := tasks[0].next
		for _, t := range tasks[1:] {
			if t.next.Before(next) {
				next = t.next
			}
		}
		timer.Reset(time.Until(next))
	}
}

// renew renews every live fragment's lease.
func (l *Loop) renew(ctx context.Context) error {
	l.run.Lock()
	defer l.run.Unlock()
	refs, err := l.d.LiveRefs(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	st, err := l.u.Renew(ctx, refs, start.Add(l.u.cfg.Lease), nil)
	if err != nil {
		return err
	}
	l.log.Info("upkeep: leases renewed", "peers", st.Peers, "fragments", st.Fragments,
		"renewed", st.Renewed, "failed_peers", len(st.Failures), "took", time.Since(start).Round(time.Millisecond))
	if len(st.Failures) > 0 {
		return fmt.Errorf("renew: %d of %d peers failed, first: %w", len(st.Failures), st.Peers, st.Failures[0])
	}
	return nil
}

// check checks every chunk and repairs those below RepairBelow, at RepairRate.
func (l *Loop) check(ctx context.Context) error {
	rep, err := l.pass(ctx, true, false, l.cfg.RepairBelow, l.pace, nil)
	if err != nil {
		return err
	}
	c := rep.Check
	args := []any{"chunks", c.Chunks, "complete", c.Complete, "degraded", c.Degraded,
		"unreadable", c.Unreadable, "unanswered_peers", len(c.Failures), "denied_fragments", c.Denied,
		"suspects", len(c.Suspects())}
	if r := rep.Repair; r != nil {
		args = append(args, "repaired", r.Repaired, "partial", r.Partial, "failed", r.Failed, "fragments_rebuilt", r.Rebuilt,
			"found_failing", len(r.Suspects))
	}
	l.log.Info("upkeep: checked", args...)
	return nil
}

func (l *Loop) pace(ctx context.Context, n int) error {
	if l.limiter == nil {
		return nil
	}
	return l.limiter.WaitN(ctx, min(max(n, 1), l.limiter.Burst()))
}

// Report is the outcome of Run.
type Report struct {
	Check  CheckStats
	Repair *RepairStats // nil when not asked to repair, or nothing needed it
}

// Run checks every chunk of the drive now (verify: also fetch and hash every fragment)
// and, with repair, rebuilds every incomplete chunk's missing fragments and records the
// new holders; progress is called as it goes. It waits for a background pass in progress.
func (l *Loop) Run(ctx context.Context, repair, verify bool, progress func(Progress)) (Report, error) {
	return l.pass(ctx, repair, verify, 0, nil, progress)
}

func (l *Loop) pass(ctx context.Context, repair, verify bool, below int, pace func(context.Context, int) error, progress func(Progress)) (Report, error) {
	l.run.Lock()
	defer l.run.Unlock()
	var rep Report
	refs, err := l.d.LiveRefs(ctx)
	if err != nil {
		return rep, err
	}
	hs, cst, err := l.u.Check(ctx, refs, CheckOptions{Verify: verify, Progress: progress})
	rep.Check = cst
	if err != nil || !repair {
		return rep, err
	}
	var todo []Health
	for _, h := range hs {
		n := len(h.Ref.Fragments)
		if !h.Complete() && (below <= 0 || below > n || h.Found < below) {
			todo = append(todo, h)
		}
	}
	if len(todo) == 0 {
		return rep, nil
	}
	refsOut, rst, err := l.u.RepairAll(ctx, todo, RepairOptions{Avoid: cst.Suspects(), Pace: pace, Progress: progress})
	rep.Repair = &rst
	// Record what was placed even when the run was cut short: those fragments are on
	// their new holders now, and only the metadata can tell readers so.
	if len(refsOut) > 0 {
		uctx := ctx
		if err != nil {
			var cancel context.CancelFunc
			uctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
		}
		if uerr := l.d.UpdateRefs(uctx, refsOut); uerr != nil {
			return rep, errors.Join(err, fmt.Errorf("recording repaired chunks: %w", uerr))
		}
	}
	return rep, err
}

// collect deletes the fragments of garbage chunks and forgets the chunks.
func (l *Loop) collect(ctx context.Context) error {
	l.run.Lock()
	defer l.run.Unlock()
	garbage, err := l.d.Garbage(ctx, time.Now().Add(-l.cfg.SnapshotGrace))
	if err != nil || len(garbage) == 0 {
		return err
	}
	ids := make([]crypt.ChunkID, len(garbage))
	for i, r := range garbage {
		ids[i] = r.ID
	}
	held, release := l.cfg.Guard.hold(ids)
	defer release()
	byID := make(map[crypt.ChunkID]pipeline.Ref, len(garbage))
	for _, r := range garbage {
		byID[r.ID] = r
	}
	todo := make([]pipeline.Ref, 0, len(held))
	for _, id := range held {
		todo = append(todo, byID[id])
	}
	done, st, err := l.u.Collect(ctx, todo, nil)
	if err != nil {
		return err
	}
	drop := make([]pipeline.Ref, 0, len(done))
	for _, id := range done {
		drop = append(drop, byID[id])
	}
	n, err := l.d.DropGarbage(ctx, drop)
	if err != nil {
		return err
	}
	l.log.Info("upkeep: garbage collected", "chunks", n, "waiting", len(garbage)-n,
		"fragments", st.Fragments, "peers", st.Peers, "failed_peers", len(st.Failures))
	return nil
}
