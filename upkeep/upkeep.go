package upkeep

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
)

// Defaults of Config.
const (
	// DefaultLease is the lease Renew and Repair ask for when Config.Lease is 0: the
	// same as a fresh PUT's (pipeline.DefaultLease).
	DefaultLease = pipeline.DefaultLease
	// DefaultConcurrency is how many peers are asked at once.
	DefaultConcurrency = 8
	// DefaultRepairs is how many chunks are rebuilt at once: each holds k fragments and
	// its rebuilt ones in memory.
	DefaultRepairs = 2
	// DefaultMaxBatch is the most fragment IDs in one HAS, DELETE or RENEW request: the
	// fragment protocol's limit (docs/format.md, "Fragment protocol").
	DefaultMaxBatch = 65536
	// DefaultTimeout bounds one HAS, DELETE, RENEW or audit GET.
	DefaultTimeout = 30 * time.Second
)

// Errors of this package.
var (
	// ErrUnrecoverable: fewer than k fragments of a chunk could be fetched and verified,
	// so it cannot be rebuilt now (its holders may come back).
	ErrUnrecoverable = errors.New("upkeep: chunk unrecoverable now")
	// ErrBadRef: a Ref that cannot describe a chunk (shape, fragment count).
	ErrBadRef = errors.New("upkeep: malformed chunk ref")
)

// Config configures an Upkeep. The zero value gives the defaults.
type Config struct {
	// Lease is how long from now Renew and Repair lease fragments for; 0 means DefaultLease.
	Lease time.Duration
	// Concurrency is the most peers asked at once; 0 means DefaultConcurrency.
	Concurrency int
	// Repairs is the most chunks rebuilt at once; 0 means DefaultRepairs.
	Repairs int
	// MaxBatch is the most IDs per HAS, DELETE or RENEW request; 0 means DefaultMaxBatch.
	MaxBatch int
	// Timeout bounds each HAS, DELETE, RENEW and audit GET; 0 means DefaultTimeout.
	Timeout time.Duration
	// Place and Fetch tune the placement of rebuilt fragments and the fetch of the good
	// ones (see swarm). Place.Exclude is replaced by the chunk's current holders.
	Place swarm.PlaceOptions
	Fetch swarm.FetchOptions
}

// Upkeep checks, repairs, renews and collects fragments over a swarm.Network, whose owner
// key signs DELETE and RENEW. It is safe for concurrent use.
type Upkeep struct {
	net swarm.Network
	cfg Config

	mu     sync.Mutex
	coders map[[2]uint8]*chunker.Coder // guarded by mu: one per k+m shape met
}

// New returns an Upkeep over net.
func New(net swarm.Network, cfg Config) *Upkeep {
	cfg.Lease = cmp.Or(cfg.Lease, DefaultLease)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, DefaultConcurrency)
	cfg.Repairs = cmp.Or(cfg.Repairs, DefaultRepairs)
	cfg.MaxBatch = cmp.Or(cfg.MaxBatch, DefaultMaxBatch)
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	return &Upkeep{net: net, cfg: cfg, coders: map[[2]uint8]*chunker.Coder{}}
}

// Lease returns the lease length Renew and Repair ask for.
func (u *Upkeep) Lease() time.Duration { return u.cfg.Lease }

func (u *Upkeep) coder(r *pipeline.Ref) (*chunker.Coder, error) {
	if len(r.Fragments) != int(r.K)+int(r.M) {
		return nil, fmt.Errorf("%w: chunk %s has %d fragments for %d+%d", ErrBadRef, r.ID, len(r.Fragments), r.K, r.M)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	key := [2]uint8{r.K, r.M}
	if c := u.coders[key]; c != nil {
		return c, nil
	}
	c, err := chunker.NewCoder(int(r.K), int(r.M))
	if err != nil {
		return nil, fmt.Errorf("%w: chunk %s: %w", ErrBadRef, r.ID, err)
	}
	u.coders[key] = c
	return c, nil
}

// Progress reports how far an operation is: Done of Total steps (peers asked, or chunks
// rebuilt), and for repair the plaintext bytes of the chunks rebuilt so far.
type Progress struct {
	Phase string // "check", "repair", "renew" or "collect"
	Done  int
	Total int
	Bytes int64
}

// reporter calls a progress function, never concurrently.
type reporter struct {
	mu    sync.Mutex
	fn    func(Progress)
	p     Progress
	bytes int64
}

func newReporter(fn func(Progress), phase string, total int) *reporter {
	r := &reporter{fn: fn, p: Progress{Phase: phase, Total: total}}
	r.step(0, 0)
	return r
}

func (r *reporter) step(n int, bytes int64) {
	if r.fn == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.p.Done += n
	r.p.Bytes += bytes
	r.fn(r.p)
}

// PeerError is the failure of the requests to one peer.
type PeerError struct {
	Peer swarm.PeerID
	Err  error
}

func (e PeerError) Error() string { return fmt.Sprintf("peer %s: %v", e.Peer, e.Err) }

// Unwrap returns the request's error.
func (e PeerError) Unwrap() error { return e.Err }

// Health is what Check found for one chunk.
type Health struct {
	Ref pipeline.Ref
	// Found is how many fragments their recorded holders confirmed (with CheckOptions.Verify:
	// and returned bytes that hash to the fragment's ID).
	Found int
	// Missing lists, ascending, the indexes of the other fragments: no holder, a holder
	// that said it lacks it or did not answer, or (verified) returned bad bytes or none,
	// or stopped answering audits before this one.
	Missing []int
}

// Complete reports whether every fragment was found.
func (h *Health) Complete() bool { return len(h.Missing) == 0 }

// Readable reports whether at least k fragments were found.
func (h *Health) Readable() bool { return h.Found >= int(h.Ref.K) }

// CheckStats sums a Check.
type CheckStats struct {
	Chunks     int // chunks checked
	Complete   int // with every fragment found
	Degraded   int // missing some, still readable
	Unreadable int // fewer than k found
	Fragments  int // fragments the Refs record
	Found      int // of those, confirmed
	Denied     int // fragments their recorded holder said it does not hold
	Corrupt    int // audited fragments whose bytes did not match, or that were refused (Verify only)
	Unaudited  int // confirmed fragments not audited: their holder stopped answering GETs (Verify only)
	// Failures lists the holders that did not answer, the HAS or (Verify) an audit GET:
	// after a holder's first unanswered audit its other fragments count as missing for
	// this check, without waiting for each in turn.
	Failures []PeerError
	// Deniers lists the holders that said they lack fragments recorded on them: they
	// acknowledged the PUTs (or a repair's) and lost or dropped the fragments since.
	Deniers []swarm.PeerID
	// Liars lists the holders that served bad bytes, or none, for a fragment they said
	// they hold (Verify only).
	Liars []swarm.PeerID
}

// Suspects returns the peers that failed this check, each once, sorted: those that did
// not answer, lost fragments or lied about them. Repairs should not place fragments on
// them.
func (s *CheckStats) Suspects() []swarm.PeerID {
	out := slices.Concat(s.Liars, s.Deniers)
	for _, f := range s.Failures {
		out = append(out, f.Peer)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// CheckOptions tunes Check.
type CheckOptions struct {
	// Verify also fetches every fragment a holder confirmed and hashes it: a holder that
	// answers HAS but serves bad bytes, or none, is found. It moves every fragment over
	// the network, so it is for an audit, not for the background loop. A holder that
	// does not answer an audit GET within Config.Timeout is not asked for its other
	// fragments in this check: they count as missing.
	Verify bool
	// Progress, if set, is called as holders are done (never concurrently).
	Progress func(Progress)
}

// location is fragment frag of refs[chunk].
type location struct{ chunk, frag int }

// Check counts the fragments of refs on their recorded holders, with one HAS request per
// holder (per MaxBatch fragments) whatever the number of chunks, and returns one Health per
// ref, in order. Holders are asked Concurrency at a time, each with its audits (Verify) one
// after the other. A holder that fails to answer counts as lacking all its fragments and is
// listed in the stats' failures; so does one that stops answering audit GETs, from that
// GET on. The error is ctx's, or ErrBadRef for a malformed Ref.
func (u *Upkeep) Check(ctx context.Context, refs []pipeline.Ref, opt CheckOptions) ([]Health, CheckStats, error) {
	st := CheckStats{Chunks: len(refs)}
	byPeer := map[swarm.PeerID][]location{}
	for i := range refs {
		r := &refs[i]
		if len(r.Fragments) != int(r.K)+int(r.M) || r.K == 0 {
			return nil, st, fmt.Errorf("%w: chunk %s has %d fragments for %d+%d", ErrBadRef, r.ID, len(r.Fragments), r.K, r.M)
		}
		for j, f := range r.Fragments {
			st.Fragments++
			if f.Peer != "" {
				byPeer[f.Peer] = append(byPeer[f.Peer], location{i, j})
			}
		}
	}
	found := make([][]bool, len(refs))
	for i := range refs {
		found[i] = make([]bool, len(refs[i].Fragments))
	}
	var mu sync.Mutex // guards st's counters and failures; found cells are written by one peer's goroutine each
	rep := newReporter(opt.Progress, "check", len(byPeer))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(u.cfg.Concurrency)
	for _, p := range slices.Sorted(maps.Keys(byPeer)) {
		locs := byPeer[p]
		g.Go(func() error {
			defer rep.step(1, 0)
			ids := make([]chunker.FragmentID, len(locs))
			for i, l := range locs {
				ids[i] = refs[l.chunk].Fragments[l.frag].ID
			}
			has, err := u.has(gctx, p, ids)
			if err != nil {
				mu.Lock()
				st.Failures = append(st.Failures, PeerError{p, err})
				mu.Unlock()
				return nil
			}
			var denied, corrupt, unaudited int
			var silent error // the audit GET this holder did not answer
			for i, l := range locs {
				switch {
				case !has[i]:
					denied++
					continue
				case !opt.Verify:
				case silent != nil:
					unaudited++ // one timeout per holder and check, not one per fragment
					continue
				default:
					good, err := u.audit(gctx, p, ids[i])
					if err != nil {
						silent = err
						unaudited++
						continue
					}
					if !good {
						corrupt++
						continue
					}
				}
				found[l.chunk][l.frag] = true
			}
			mu.Lock()
			defer mu.Unlock()
			st.Denied += denied
			st.Corrupt += corrupt
			st.Unaudited += unaudited
			if denied > 0 {
				st.Deniers = append(st.Deniers, p)
			}
			if corrupt > 0 {
				st.Liars = append(st.Liars, p)
			}
			if silent != nil {
				st.Failures = append(st.Failures, PeerError{p, fmt.Errorf("audit: %w", silent)})
			}
			return nil
		})
	}
	g.Wait() // the goroutines return no error
	if err := ctx.Err(); err != nil {
		return nil, st, err
	}
	out := make([]Health, len(refs))
	for i := range refs {
		h := Health{Ref: refs[i]}
		for j, ok := range found[i] {
			if ok {
				h.Found++
			} else {
				h.Missing = append(h.Missing, j)
			}
		}
		st.Found += h.Found
		switch {
		case h.Complete():
			st.Complete++
		case h.Readable():
			st.Degraded++
		default:
			st.Unreadable++
		}
		out[i] = h
	}
	slices.SortFunc(st.Failures, func(a, b PeerError) int { return cmp.Compare(a.Peer, b.Peer) })
	slices.Sort(st.Liars)
	slices.Sort(st.Deniers)
	return out, st, nil
}

// has asks p about ids in batches of at most MaxBatch.
func (u *Upkeep) has(ctx context.Context, p swarm.PeerID, ids []chunker.FragmentID) ([]bool, error) {
	out := make([]bool, 0, len(ids))
	for batch := range slices.Chunk(ids, u.cfg.MaxBatch) {
		rctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
		has, err := u.net.Has(rctx, p, batch)
		cancel()
		if err != nil {
			return nil, err
		}
		if len(has) != len(batch) {
			return nil, fmt.Errorf("HAS of %d fragments answered with %d: %w", len(batch), len(has), swarm.ErrDenied)
		}
		out = append(out, has...)
	}
	return out, nil
}

// audit fetches fragment id from p and reports whether the bytes hash to id. A holder
// that answers without the bytes (not found, refused, corrupt) fails the audit; one that
// does not answer (timeout, unreachable, busy) returns the error.
func (u *Upkeep) audit(ctx context.Context, p swarm.PeerID, id chunker.FragmentID) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	b, err := u.net.Get(rctx, p, id)
	switch {
	case err == nil:
		return chunker.FragmentIDOf(b) == id, nil
	case errors.Is(err, swarm.ErrNotFound), errors.Is(err, swarm.ErrDenied), errors.Is(err, swarm.ErrCorrupt):
		return false, nil
	}
	return false, err
}

// Repair rebuilds the fragments h lists as missing and places them on new peers, distinct
// from each other, from every current holder of the chunk and from the peers in avoid
// (those a check found failing, CheckStats.Suspects), leased for Config.Lease.
// It fetches k good fragments from the other holders, the avoided ones last (any holder
// that returns bad bytes or none meanwhile is replaced too), regenerates the missing ones byte for byte (no decryption)
// and returns the chunk's new Ref: h.Ref with the rebuilt fragments' new holders, in a new
// Fragments slice. If only some could be placed, the Ref records those and the error wraps
// swarm.ErrDegraded; if fewer than k fragments could be fetched the error wraps
// ErrUnrecoverable and the Ref is h.Ref. A complete chunk is returned unchanged.
//
// The fragments it replaces stay on their old holders until their leases end: no one
// renews them any more.
func (u *Upkeep) Repair(ctx context.Context, h Health, avoid []swarm.PeerID) (pipeline.Ref, error) {
	return u.repair(ctx, h, newSuspects(avoid))
}

// suspects is the set of peers a pass found failing: its check's, and those its repairs
// find serving bad bytes, none, or not answering. Every repair of the pass avoids them,
// also those a concurrent repair found. It is safe for concurrent use.
type suspects struct {
	mu    sync.Mutex
	set   map[swarm.PeerID]bool // guarded by mu
	found []swarm.PeerID        // guarded by mu: added by repairs, in order
}

func newSuspects(ps []swarm.PeerID) *suspects {
	s := &suspects{set: map[swarm.PeerID]bool{}}
	for _, p := range ps {
		s.set[p] = true
	}
	return s
}

func (s *suspects) add(p swarm.PeerID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.set[p] {
		s.set[p] = true
		s.found = append(s.found, p)
	}
}

// list returns the suspects, sorted.
func (s *suspects) list() []swarm.PeerID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.set))
}

func (u *Upkeep) repair(ctx context.Context, h Health, sus *suspects) (pipeline.Ref, error) {
	ref := h.Ref
	coder, err := u.coder(&ref)
	if err != nil {
		return ref, err
	}
	n, k := len(ref.Fragments), int(ref.K)
	missing := make([]bool, n)
	for _, i := range h.Missing {
		if i < 0 || i >= n {
			return ref, fmt.Errorf("%w: chunk %s: missing fragment %d of %d", ErrBadRef, ref.ID, i, n)
		}
		missing[i] = true
	}
	holders := make([]swarm.Holder, 0, n)
	for i, f := range ref.Fragments {
		if !missing[i] && f.Peer != "" {
			holders = append(holders, swarm.Holder{Index: i, ID: f.ID, Peer: f.Peer})
		}
	}
	if len(holders) == n {
		return ref, nil
	}
	rec := &recorder{Network: u.net, sus: sus}
	fopt := u.cfg.Fetch
	fopt.Avoid = slices.Concat(fopt.Avoid, sus.list())
	frags, err := swarm.Fetch(ctx, rec, holders, k, fopt)
	if err != nil {
		if errors.Is(err, swarm.ErrNotEnoughFragments) {
			return ref, fmt.Errorf("upkeep: repair chunk %s: %w: %w", ref.ID, ErrUnrecoverable, err)
		}
		return ref, fmt.Errorf("upkeep: repair chunk %s: %w", ref.ID, err)
	}
	for _, i := range rec.corrupt(ref.Fragments) {
		missing[i] = true // a holder that served bad bytes or none loses its fragment too
	}
	frags = append(frags, make([][]byte, n-len(frags))...)
	ids := make([]chunker.FragmentID, n)
	var want []int
	exclude := slices.Grow(sus.list(), n) // now: with what concurrent repairs found since
	for i, f := range ref.Fragments {
		ids[i] = f.ID
		if missing[i] {
			want = append(want, i)
			frags[i] = nil
		}
		if f.Peer != "" && !slices.Contains(exclude, f.Peer) {
			exclude = append(exclude, f.Peer)
		}
	}
	regen, _, err := coder.Regenerate(ref.ID, ids, frags, want)
	if err != nil {
		return ref, fmt.Errorf("upkeep: repair chunk %s: %w", ref.ID, err)
	}
	wantIDs := make([]chunker.FragmentID, len(want))
	for j, i := range want {
		wantIDs[j] = ids[i]
	}
	opt := u.cfg.Place
	opt.Exclude = exclude
	opt.Min = 1 // every fragment placed is a gain; the rest waits for the next round
	peers, err := swarm.Place(ctx, u.net, ref.ID[:], regen, wantIDs, time.Now().Add(u.cfg.Lease), opt)
	if err != nil && !errors.Is(err, swarm.ErrDegraded) {
		return h.Ref, fmt.Errorf("upkeep: repair chunk %s: %w", ref.ID, err)
	}
	ref.Fragments = slices.Clone(ref.Fragments)
	for j, i := range want {
		if peers[j] != "" {
			ref.Fragments[i].Peer = peers[j]
		}
	}
	if err != nil {
		return ref, fmt.Errorf("upkeep: repair chunk %s: %w", ref.ID, err)
	}
	return ref, nil
}

// recorder is a Network that notes which holders returned bytes that do not match the
// fragment asked for, or said they have none: swarm.Fetch skips them, Repair replaces
// their fragments too, and they join the pass's suspects. So do holders that did not
// answer in time (swarm.Fetch's own timeout), though their fragments may be fine.
type recorder struct {
	swarm.Network
	sus *suspects
	mu  sync.Mutex
	bad map[chunker.FragmentID][]swarm.PeerID // guarded by mu
}

func (r *recorder) Get(ctx context.Context, p swarm.PeerID, id chunker.FragmentID) ([]byte, error) {
	b, err := r.Network.Get(ctx, p, id)
	switch {
	case err == nil && chunker.FragmentIDOf(b) != id, errors.Is(err, swarm.ErrNotFound):
		r.mu.Lock()
		if r.bad == nil {
			r.bad = map[chunker.FragmentID][]swarm.PeerID{}
		}
		r.bad[id] = append(r.bad[id], p)
		r.mu.Unlock()
		r.sus.add(p)
	case err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, swarm.ErrBusy):
		// Timed out or unreachable; a cancelled GET is one Fetch no longer needed, and a
		// busy holder is overloaded, not failing.
		r.sus.add(p)
	}
	return b, err
}

// corrupt returns the indexes of frags whose holder served bad bytes.
func (r *recorder) corrupt(frags []pipeline.Fragment) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for i, f := range frags {
		if slices.Contains(r.bad[f.ID], f.Peer) {
			out = append(out, i)
		}
	}
	return out
}

// RepairStats sums a RepairAll.
type RepairStats struct {
	Chunks   int   // chunks that needed repair
	Repaired int   // of those, now with every fragment placed
	Partial  int   // with some rebuilt fragments placed, not all
	Failed   int   // unrecoverable now, or nothing could be placed
	Rebuilt  int   // fragments rebuilt and placed
	Bytes    int64 // plaintext bytes of the chunks repaired (fully or partly)
	Errors   []error
	// Suspects lists, sorted, the peers beyond RepairOptions.Avoid that the repairs found
	// serving bad bytes, none, or not answering: the rest of the run placed nothing on them.
	Suspects []swarm.PeerID
}

// maxRepairErrors bounds the errors a RepairAll keeps.
const maxRepairErrors = 16

// RepairOptions tunes RepairAll.
type RepairOptions struct {
	// Avoid lists peers that get no rebuilt fragment (CheckStats.Suspects); peers the
	// repairs find failing are added to it for the rest of the run.
	Avoid []swarm.PeerID
	// Pace, if set, is called before each chunk with its plaintext size and may block (a
	// rate limit); its error ends the run.
	Pace func(ctx context.Context, bytes int) error
	// Progress, if set, is called after each chunk (never concurrently).
	Progress func(Progress)
}

// RepairAll repairs every chunk of hs that is not complete, Config.Repairs at a time, and
// returns the new Refs of the chunks that changed, by chunk ID. The error is ctx's or
// Pace's; per-chunk failures are in the stats.
func (u *Upkeep) RepairAll(ctx context.Context, hs []Health, opt RepairOptions) (map[crypt.ChunkID]pipeline.Ref, RepairStats, error) {
	var todo []Health
	for _, h := range hs {
		if !h.Complete() {
			todo = append(todo, h)
		}
	}
	st := RepairStats{Chunks: len(todo)}
	out := map[crypt.ChunkID]pipeline.Ref{}
	var mu sync.Mutex
	rep := newReporter(opt.Progress, "repair", len(todo))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(u.cfg.Repairs)
	var paceErr error
	sus := newSuspects(opt.Avoid)
	for _, h := range todo {
		if opt.Pace != nil {
			if paceErr = opt.Pace(gctx, int(h.Ref.Size)); paceErr != nil {
				break
			}
		}
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			ref, err := u.repair(gctx, h, sus)
			placed := 0
			for i, f := range ref.Fragments {
				if f.Peer != h.Ref.Fragments[i].Peer {
					placed++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if placed > 0 {
				out[ref.ID] = ref
				st.Rebuilt += placed
				st.Bytes += int64(ref.Size)
			}
			switch {
			case err == nil:
				st.Repaired++
			case placed > 0:
				st.Partial++
			default:
				st.Failed++
			}
			if err != nil && len(st.Errors) < maxRepairErrors {
				st.Errors = append(st.Errors, err)
			}
			rep.step(1, int64(ref.Size))
			return nil
		})
	}
	g.Wait()
	st.Suspects = slices.Sorted(slices.Values(sus.found))
	if err := ctx.Err(); err != nil {
		return out, st, err
	}
	return out, st, paceErr
}

// RenewStats sums a Renew.
type RenewStats struct {
	Peers     int // peers asked
	Fragments int // fragment leases asked for
	Requests  int // RENEW requests sent
	Renewed   int // fragment leases the peers accepted
	Failures  []PeerError
}

// Renew extends to expires the leases of every fragment of refs on its holder: the
// fragments are grouped by peer and each peer gets one signed RENEW per MaxBatch IDs. A
// peer that fails is listed in the stats (its fragments may lapse if it keeps failing
// until their leases end; Check then counts them missing and Repair replaces them). The
// error is ctx's.
func (u *Upkeep) Renew(ctx context.Context, refs []pipeline.Ref, expires time.Time, progress func(Progress)) (RenewStats, error) {
	byPeer := groupByPeer(refs)
	st := RenewStats{Peers: len(byPeer)}
	res := u.perPeer(ctx, byPeer, "renew", progress, func(ctx context.Context, p swarm.PeerID, batch []chunker.FragmentID) error {
		return u.net.Renew(ctx, p, batch, expires)
	})
	for _, p := range slices.Sorted(maps.Keys(res)) {
		r := res[p]
		st.Fragments += len(byPeer[p])
		st.Requests += r.requests
		st.Renewed += r.sent
		if r.err != nil {
			st.Failures = append(st.Failures, PeerError{p, r.err})
		}
	}
	return st, ctx.Err()
}

// peerResult is what perPeer did for one peer.
type peerResult struct {
	sent, requests int   // IDs in batches that succeeded; requests made
	err            error // the first failure; no batch is sent after it
}

// perPeer sends each peer's IDs in batches of at most MaxBatch, one request per batch
// bounded by Timeout, Concurrency peers at a time, stopping a peer at its first failure.
// It reports one progress step per peer done, as stage.
func (u *Upkeep) perPeer(ctx context.Context, byPeer map[swarm.PeerID][]chunker.FragmentID, stage string,
	progress func(Progress), send func(context.Context, swarm.PeerID, []chunker.FragmentID) error) map[swarm.PeerID]peerResult {
	res := make(map[swarm.PeerID]peerResult, len(byPeer))
	var mu sync.Mutex
	rep := newReporter(progress, stage, len(byPeer))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(u.cfg.Concurrency)
	for _, p := range slices.Sorted(maps.Keys(byPeer)) {
		g.Go(func() error {
			defer rep.step(1, 0)
			var r peerResult
			for batch := range slices.Chunk(byPeer[p], u.cfg.MaxBatch) {
				rctx, cancel := context.WithTimeout(gctx, u.cfg.Timeout)
				err := send(rctx, p, batch)
				cancel()
				r.requests++
				if err != nil {
					r.err = err
					break
				}
				r.sent += len(batch)
			}
			mu.Lock()
			res[p] = r
			mu.Unlock()
			return nil
		})
	}
	g.Wait()
	return res
}

// groupByPeer returns the distinct fragment IDs of refs on each holder.
func groupByPeer(refs []pipeline.Ref) map[swarm.PeerID][]chunker.FragmentID {
	seen := map[swarm.PeerID]map[chunker.FragmentID]struct{}{}
	byPeer := map[swarm.PeerID][]chunker.FragmentID{}
	for _, r := range refs {
		for _, f := range r.Fragments {
			if f.Peer == "" {
				continue
			}
			s := seen[f.Peer]
			if s == nil {
				s = map[chunker.FragmentID]struct{}{}
				seen[f.Peer] = s
			}
			if _, dup := s[f.ID]; dup {
				continue
			}
			s[f.ID] = struct{}{}
			byPeer[f.Peer] = append(byPeer[f.Peer], f.ID)
		}
	}
	return byPeer
}

// CollectStats sums a Collect.
type CollectStats struct {
	Chunks    int // garbage chunks given
	Collected int // chunks done (see Collect)
	Peers     int // holders asked
	Fragments int // fragments asked to be deleted
	Failures  []PeerError
}

// Collect deletes the fragments of garbage (chunks no file references any more) from their
// holders, with one signed DELETE per peer per MaxBatch IDs, and returns the chunks that
// are done: every holder either acknowledged or is unreachable (its copy is no longer
// renewed, so its lease frees the space). A chunk with a holder that failed otherwise
// (busy, ctx) is not done; the caller keeps it for a later round. The error is ctx's.
//
// The caller must make sure no one is writing the same chunks again (see Guard): a
// DELETE cannot tell an old copy of a fragment from a new PUT of the same bytes.
func (u *Upkeep) Collect(ctx context.Context, garbage []pipeline.Ref, progress func(Progress)) ([]crypt.ChunkID, CollectStats, error) {
	byPeer := groupByPeer(garbage)
	st := CollectStats{Chunks: len(garbage), Peers: len(byPeer)}
	res := u.perPeer(ctx, byPeer, "collect", progress, u.net.Delete)
	if err := ctx.Err(); err != nil {
		return nil, st, err
	}
	failed := map[swarm.PeerID]bool{}
	for _, p := range slices.Sorted(maps.Keys(res)) {
		r := res[p]
		st.Fragments += len(byPeer[p])
		if r.err != nil {
			st.Failures = append(st.Failures, PeerError{p, r.err})
			// An unreachable holder's copy is no longer renewed: its lease frees it.
			if !errors.Is(r.err, swarm.ErrUnreachable) {
				failed[p] = true
			}
		}
	}
	var done []crypt.ChunkID
	for _, r := range garbage {
		ok := true
		for _, f := range r.Fragments {
			if failed[f.Peer] {
				ok = false
				break
			}
		}
		if ok {
			done = append(done, r.ID)
		}
	}
	st.Collected = len(done)
	return done, st, nil
}
