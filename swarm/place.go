package swarm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"time"

	"github.com/scatterfs/scatter/chunker"
)

// Defaults of PlaceOptions.
const (
	// DefaultExtra is how many spare PUTs race for the last unfilled slots.
	DefaultExtra = 2
	// DefaultPutTimeout bounds one PUT: a few MiB over a slow home uplink, with margin.
	DefaultPutTimeout = 30 * time.Second
	// DefaultCandidateFactor: Place asks the network for this many candidates per fragment.
	DefaultCandidateFactor = 3
)

// PlaceOptions tunes Place. The zero value gives the defaults.
type PlaceOptions struct {
	// Extra is how many spare PUT attempts may race, on further candidates, for the slots
	// still unfilled once all but Extra fragments are stored (Storj's long-tail
	// cancellation): a slow or hung peer then costs one spare PUT instead of a timeout.
	// 0 means DefaultExtra; a negative value disables spares.
	Extra int
	// Exclude lists peers that must not receive a fragment, e.g. peers already holding a
	// fragment of this chunk when only some fragments are being re-placed.
	Exclude []PeerID
	// Min is the fewest fragments the caller accepts to have placed; 0 means all of them.
	// With 0 < Min < len(frags), running out of candidates after Min successes returns the
	// partial placement with an error wrapping ErrDegraded. A chunk coded k+m stays
	// readable with k fragments; k+1 keeps a margin of one lost peer.
	Min int
	// Timeout bounds each PUT; a PUT that times out is retried on another peer.
	// 0 means DefaultPutTimeout.
	Timeout time.Duration
	// Concurrency is the most PUTs in flight at once; 0 means len(frags) + Extra.
	Concurrency int
	// Candidates is how many peers to ask the network for; 0 means DefaultCandidateFactor
	// per fragment plus len(Exclude).
	Candidates int
}

// PlaceError reports a placement that stored fewer fragments than it was given. It wraps
// ErrDegraded when at least Min were placed (the returned holders are usable), otherwise
// ErrNotEnoughPeers, and in both cases every per-peer failure.
type PlaceError struct {
	Fragments  int         // fragments to place
	Placed     int         // fragments stored on a peer
	Min        int         // fewest accepted
	Candidates int         // usable candidates after filtering
	Failures   []PeerError // every failed PUT, in the order they failed
}

func (e *PlaceError) Error() string {
	head := ErrNotEnoughPeers
	if e.Placed >= e.Min {
		head = ErrDegraded
	}
	s := fmt.Sprintf("%v: %d of %d fragments placed (%d needed) with %d usable candidates",
		head, e.Placed, e.Fragments, e.Min, e.Candidates)
	if len(e.Failures) > 0 {
		s += ": " + summarize(e.Failures)
	}
	return s
}

// Unwrap returns ErrDegraded or ErrNotEnoughPeers, then the per-peer failures.
func (e *PlaceError) Unwrap() []error {
	if e.Placed >= e.Min {
		return unwrapAll(ErrDegraded, e.Failures)
	}
	return unwrapAll(ErrNotEnoughPeers, e.Failures)
}

// Place stores fragment i (frags[i], whose ID is ids[i]) on a peer for every i, each on a
// distinct peer, with a lease until expires, and returns the peer holding each fragment.
//
// Candidates come from net.Candidates(key, …), several per fragment; peers in
// opt.Exclude, duplicates and peers known to lack the space are dropped, and the rest are
// ranked as rankCandidates says. PUTs start on the best candidates, at most
// opt.Concurrency at once. A PUT that fails for any reason (busy, full, unreachable,
// denied, timeout) is retried on the next unused candidate; a peer gets at most one PUT per
// call, so holders stay distinct. Once all but opt.Extra fragments are stored, every slot
// still waiting gets a spare PUT on a further candidate; whichever of the two finishes
// first fills the slot and the other is cancelled.
//
// A PUT that succeeds after its slot was filled left a second copy: Place deletes it
// before returning (it is on a peer that just answered, so this costs one round trip).
// A cancelled PUT whose outcome is unknown is not chased: a donor discards a PUT whose
// stream was cut, and the lease bounds the life of any copy that landed anyway. If Place
// fails it likewise deletes the fragments it did store, since the caller records nothing.
//
// ids[i] must be chunker.FragmentIDOf(frags[i]): donors refuse anything else with
// ErrDenied. Place returns once every fragment is placed or nothing more can be tried, and
// every goroutine it started has ended.
func Place(ctx context.Context, net Network, key []byte, frags [][]byte, ids []chunker.FragmentID,
	expires time.Time, opt PlaceOptions) ([]PeerID, error) {
	n := len(frags)
	switch {
	case n == 0:
		return nil, errors.New("swarm: place: no fragments")
	case len(ids) != n:
		return nil, fmt.Errorf("swarm: place: %d fragments but %d IDs", n, len(ids))
	case opt.Min < 0 || opt.Min > n:
		return nil, fmt.Errorf("swarm: place: minimum %d outside 0..%d", opt.Min, n)
	}
	minPlaced := cmp.Or(opt.Min, n)
	extra := opt.Extra
	switch {
	case extra == 0:
		extra = DefaultExtra
	case extra < 0:
		extra = 0
	}
	timeout := cmp.Or(opt.Timeout, DefaultPutTimeout)
	limit := cmp.Or(opt.Concurrency, n+extra)
	if limit < 1 {
		return nil, fmt.Errorf("swarm: place: concurrency %d", limit)
	}
	want := cmp.Or(opt.Candidates, DefaultCandidateFactor*n+len(opt.Exclude))

	var size int64
	for _, f := range frags {
		size = max(size, int64(len(f)))
	}
	cands, err := net.Candidates(ctx, key, want)
	if err != nil {
		return nil, fmt.Errorf("swarm: place: candidates: %w", err)
	}
	ranked := rankCandidates(cands, opt.Exclude, size)
	if len(ranked) < minPlaced {
		// Not worth storing anything that would have to be deleted again.
		return nil, &PlaceError{Fragments: n, Min: minPlaced, Candidates: len(ranked)}
	}

	p := &placer{
		net: net, frags: frags, ids: ids, expires: expires, timeout: timeout,
		cands:   ranked,
		slots:   make([]placeSlot, n),
		results: make(chan putResult, len(ranked)), // one PUT per candidate at most: never blocks
	}
	holders, err := p.run(ctx, extra, limit, minPlaced)
	p.wg.Wait()
	return holders, err
}

// rankCandidates filters and orders placement candidates. It drops peers in exclude,
// repeated peers, and peers whose reported free space is known (Free >= 0) and smaller
// than size. The rest are ordered by
//
//  1. round-trip latency class: latencies within a factor of two of each other (the same
//     power-of-two bucket of milliseconds) count as equally fast, and peers of unknown
//     latency come after all measured ones: a fragment's holders are read from later, and
//     a fast holder makes both the PUT and every later read cheaper, while finer latency
//     differences are noise;
//  2. known free space before unknown: a peer that answered STAT lately is likely up;
//  3. the network's own order (for the DHT: XOR-closeness to the chunk's key), which
//     keeps placement deterministic and spreads each chunk's fragments over a different
//     part of the key space.
//
// Free space is a filter, not a rank. Ranking by it (most free first) sent a fragment of
// every chunk to the few donors advertising the largest quotas (seen in the 20-donor test:
// three large donors held fragments of all 13 chunks while 6 of 24 got none), so five
// colluding donors advertising huge quotas could hold more than m fragments of every
// chunk and make the whole drive unreadable.
func rankCandidates(cands []Peer, exclude []PeerID, size int64) []Peer {
	seen := make(map[PeerID]bool, len(cands)+len(exclude))
	for _, id := range exclude {
		seen[id] = true
	}
	out := make([]Peer, 0, len(cands))
	for _, c := range cands {
		if c.ID == "" || seen[c.ID] || (c.Free >= 0 && c.Free < size) {
			continue
		}
		seen[c.ID] = true
		out = append(out, c)
	}
	slices.SortStableFunc(out, func(a, b Peer) int {
		return cmp.Or(
			cmp.Compare(latencyClass(a.Latency), latencyClass(b.Latency)),
			cmp.Compare(freeUnknown(a.Free), freeUnknown(b.Free)),
		)
	})
	return out
}

// latencyClass buckets a round trip by powers of two of milliseconds; unknown (0) sorts last.
func latencyClass(d time.Duration) int {
	if d <= 0 {
		return 64
	}
	return bits.Len64(uint64(d / time.Millisecond))
}

// freeUnknown is 1 for a peer whose free space is unknown, 0 otherwise.
func freeUnknown(free int64) int {
	if free < 0 {
		return 1
	}
	return 0
}

type placeSlot struct {
	holder   PeerID        // "" until a PUT succeeded
	inflight []*putAttempt // PUTs running for this slot
}

type putAttempt struct {
	slot      int
	peer      PeerID
	cancel    context.CancelFunc
	cancelled bool // by Place itself: its failure is not the peer's fault
}

type putResult struct {
	a   *putAttempt
	err error
}

// placer is the state of one Place call. Everything but wg and results is owned by the
// goroutine running run.
type placer struct {
	net     Network
	frags   [][]byte
	ids     []chunker.FragmentID
	expires time.Time
	timeout time.Duration

	cands    []Peer
	next     int // first unused candidate
	slots    []placeSlot
	inflight int
	failures []PeerError

	results chan putResult
	wg      sync.WaitGroup // PUT and cleanup goroutines
}

func (p *placer) run(parent context.Context, extra, limit, minPlaced int) ([]PeerID, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	n := len(p.slots)
	pending := make([]int, n) // slots waiting for a PUT, in order
	for i := range pending {
		pending[i] = i
	}
	filled, spares := 0, 0
	var cerr error
loop:
	for {
		for len(pending) > 0 && p.inflight < limit && p.next < len(p.cands) {
			p.start(ctx, pending[0])
			pending = pending[1:]
		}
		// The long tail: once at most extra slots are left, give each slot that has a
		// single PUT running a spare on another candidate.
		if filled >= n-extra {
			for i := range p.slots {
				s := &p.slots[i]
				if s.holder == "" && len(s.inflight) == 1 && spares < extra &&
					p.inflight < limit && p.next < len(p.cands) {
					p.start(ctx, i)
					spares++
				}
			}
		}
		if filled == n || p.inflight == 0 {
			break
		}
		select {
		case r := <-p.results:
			p.inflight--
			s := &p.slots[r.a.slot]
			s.inflight = slices.DeleteFunc(s.inflight, func(a *putAttempt) bool { return a == r.a })
			switch {
			case r.err == nil && s.holder == "":
				s.holder = r.a.peer
				filled++
				for _, other := range s.inflight {
					other.cancelled = true
					other.cancel()
				}
			case r.err == nil:
				p.cleanup(parent, r.a.peer, r.a.slot) // lost the race but stored a copy
			case r.a.cancelled:
				// Cancelled because the slot was filled elsewhere: not a failure.
			default:
				p.failures = append(p.failures, PeerError{Peer: r.a.peer, Index: r.a.slot, Err: r.err})
				if s.holder == "" && len(s.inflight) == 0 {
					pending = append(pending, r.a.slot)
				}
			}
		case <-parent.Done():
			cerr = context.Cause(parent)
			break loop
		}
	}

	// Cancel the stragglers and wait for each to report, so late successes are cleaned up.
	for i := range p.slots {
		for _, a := range p.slots[i].inflight {
			a.cancelled = true
			a.cancel()
		}
	}
	for ; p.inflight > 0; p.inflight-- {
		// Every slot is filled or the call is being abandoned: a success here is a copy
		// nobody will record.
		if r := <-p.results; r.err == nil {
			p.cleanup(parent, r.a.peer, r.a.slot)
		}
	}

	holders := make([]PeerID, n)
	for i, s := range p.slots {
		holders[i] = s.holder
	}
	if cerr != nil {
		p.undo(parent, holders)
		return nil, fmt.Errorf("swarm: place: %w", cerr)
	}
	if filled == n {
		return holders, nil
	}
	perr := &PlaceError{Fragments: n, Placed: filled, Min: minPlaced, Candidates: len(p.cands), Failures: p.failures}
	if filled >= minPlaced {
		return holders, perr
	}
	p.undo(parent, holders)
	return nil, perr
}

// start runs a PUT of fragment slot on the next candidate.
func (p *placer) start(ctx context.Context, slot int) {
	peer := p.cands[p.next].ID
	p.next++
	actx, cancel := context.WithTimeout(ctx, p.timeout)
	a := &putAttempt{slot: slot, peer: peer, cancel: cancel}
	p.slots[slot].inflight = append(p.slots[slot].inflight, a)
	p.inflight++
	p.wg.Go(func() {
		defer cancel()
		err := p.net.Put(actx, peer, p.ids[slot], p.frags[slot], p.expires)
		if err != nil && errors.Is(actx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("put timed out after %v: %w", p.timeout, err)
		}
		p.results <- putResult{a: a, err: err}
	})
}

// cleanup deletes the copy of fragment slot on peer in the background of this call; the
// caller waits for it through wg. Failure is ignored: the lease ends the copy anyway.
func (p *placer) cleanup(parent context.Context, peer PeerID, slot int) {
	if parent.Err() != nil {
		return
	}
	p.wg.Go(func() {
		ctx, cancel := context.WithTimeout(parent, p.timeout)
		defer cancel()
		_ = p.net.Delete(ctx, peer, []chunker.FragmentID{p.ids[slot]})
	})
}

// undo deletes every placed fragment of a failed placement.
func (p *placer) undo(parent context.Context, holders []PeerID) {
	for i, h := range holders {
		if h != "" {
			p.cleanup(parent, h, i)
		}
	}
}
