package swarm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/scatterfs/scatter/chunker"
)

// Defaults of FetchOptions.
const (
	// DefaultSpares is how many requests Fetch runs beyond the k it needs.
	DefaultSpares = 1
	// DefaultGetTimeout bounds one GET.
	DefaultGetTimeout = 30 * time.Second
	// AdaptiveHedgeSlack is added to an adaptive hedge delay, so scheduling noise on a
	// busy device does not start needless requests.
	AdaptiveHedgeSlack = 10 * time.Millisecond
)

// Holder says that Peer holds fragment Index of a chunk, whose ID is ID: one entry of a
// chunk's manifest.
type Holder struct {
	Index int
	ID    chunker.FragmentID
	Peer  PeerID
}

// FetchOptions tunes Fetch. The zero value gives the defaults.
type FetchOptions struct {
	// Spares is how many requests run beyond the k needed, so one slow or failing holder
	// does not cost a full round trip more. 0 means DefaultSpares; negative means none.
	Spares int
	// Timeout bounds each GET; a GET that times out counts as failed and the next holder
	// is asked. 0 means DefaultGetTimeout.
	Timeout time.Duration
	// Hedge decides when a request that has not answered yet gets company: one more
	// holder is asked beside it, without giving up on it, and the first k verified
	// fragments win. With a positive Hedge that happens after Hedge. With 0 it adapts: a
	// request is hedged after twice its holder's round trip plus the longest transfer time
	// seen in this call (reply time minus round trip, learnt from the first verified
	// reply), plus AdaptiveHedgeSlack; a stalled holder then costs about two ordinary
	// replies instead of a Timeout. Negative disables hedging.
	Hedge time.Duration
	// Avoid lists peers believed dead; their holders are asked only after all the others.
	Avoid []PeerID
}

// FetchError reports a Fetch that could not verify k fragments.
type FetchError struct {
	Want     int         // fragments needed (k)
	Verified int         // fragments fetched and verified
	Holders  int         // holders given, of distinct fragments or not
	Failures []PeerError // every failed request, in the order they failed
}

func (e *FetchError) Error() string {
	s := fmt.Sprintf("%v: %d of %d fragments verified from %d holders",
		ErrNotEnoughFragments, e.Verified, e.Want, e.Holders)
	if len(e.Failures) > 0 {
		s += ": " + summarize(e.Failures)
	}
	return s
}

// Unwrap returns ErrNotEnoughFragments, then the per-peer failures (so errors.Is(err,
// ErrCorrupt) says whether some holder returned bad bytes).
func (e *FetchError) Unwrap() []error { return unwrapAll(ErrNotEnoughFragments, e.Failures) }

// RankHolders returns holders in the order Fetch asks them: peers in avoid last; then by
// net.Latency, lowest first, with unmeasured peers after all measured ones; ties keep the
// given order (so a caller listing data fragments before parity ones, which decode without
// reconstruction, keeps that preference among equals). holders is not modified.
func RankHolders(net Network, holders []Holder, avoid []PeerID) []Holder {
	type ranked struct {
		h       Holder
		avoided bool
		rtt     time.Duration
	}
	rs := make([]ranked, len(holders))
	for i, h := range holders {
		rs[i] = ranked{h: h, avoided: slices.Contains(avoid, h.Peer), rtt: net.Latency(h.Peer)}
		if rs[i].rtt <= 0 {
			rs[i].rtt = 1<<63 - 1
		}
	}
	slices.SortStableFunc(rs, func(a, b ranked) int {
		if a.avoided != b.avoided {
			if a.avoided {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.rtt, b.rtt)
	})
	out := make([]Holder, len(rs))
	for i, r := range rs {
		out[i] = r.h
	}
	return out
}

// Fetch fetches k distinct fragments of a chunk from its holders and returns them by
// index: the result has 1 + the largest Index among holders entries, nil where a fragment
// was not fetched (pad it to the chunk's k+m for Reed-Solomon).
//
// It asks the holders in RankHolders order, k plus opt.Spares at once, one request per
// fragment index at a time. Every reply is checked against its Holder.ID; a mismatch
// counts as a failure wrapping ErrCorrupt, like any error or a GET exceeding opt.Timeout,
// and the next holder is asked. As soon as k fragments verified the other requests are
// cancelled and Fetch returns, once every goroutine it started has ended.
//
// When the holders run out first it returns what it verified with a *FetchError wrapping
// ErrNotEnoughFragments; when ctx ends, what it verified with ctx's error.
func Fetch(ctx context.Context, net Network, holders []Holder, k int, opt FetchOptions) ([][]byte, error) {
	if k <= 0 {
		return nil, fmt.Errorf("swarm: fetch: k = %d", k)
	}
	top := -1
	for _, h := range holders {
		if h.Index < 0 {
			return nil, fmt.Errorf("swarm: fetch: holder %s with fragment index %d", h.Peer, h.Index)
		}
		top = max(top, h.Index)
	}
	out := make([][]byte, top+1)
	distinct := make(map[int]bool, len(holders))
	for _, h := range holders {
		distinct[h.Index] = true
	}
	if len(distinct) < k {
		// Not worth a single request.
		return out, &FetchError{Want: k, Holders: len(holders)}
	}
	spares := opt.Spares
	switch {
	case spares == 0:
		spares = DefaultSpares
	case spares < 0:
		spares = 0
	}
	f := &fetcher{
		net:      net,
		timeout:  cmp.Or(opt.Timeout, DefaultGetTimeout),
		hedge:    opt.Hedge,
		holders:  RankHolders(net, holders, opt.Avoid),
		out:      out,
		done:     make([]bool, top+1),
		asked:    make([]bool, len(holders)),
		inflight: make([]int, top+1),
		results:  make(chan getResult, len(holders)), // one request per holder at most: never blocks
	}
	err := f.run(ctx, k, k+spares)
	f.wg.Wait()
	return out, err
}

type getRequest struct {
	h         Holder
	started   time.Time
	rtt       time.Duration // net.Latency at start; 0 unknown
	hedged    bool          // a hedge was started for it already
	cancel    context.CancelFunc
	cancelled bool // by Fetch itself
}

type getResult struct {
	r    *getRequest
	data []byte // verified
	err  error
}

// fetcher is the state of one Fetch call. Everything but wg and results is owned by the
// goroutine running run.
type fetcher struct {
	net     Network
	timeout time.Duration
	hedge   time.Duration
	holders []Holder // ranked

	maxRTT    time.Duration // largest known round trip of the holders asked
	xfer      time.Duration // longest reply time beyond the round trip, once xferKnown
	xferKnown bool

	out      [][]byte // by index
	done     []bool   // by index: verified
	asked    []bool   // by position in holders
	inflight []int    // requests running, by index
	active   []*getRequest
	verified int
	failures []PeerError

	results chan getResult
	wg      sync.WaitGroup
}

func (f *fetcher) run(parent context.Context, k, target int) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	// One timer for the earliest hedge deadline; a nil channel when hedging is off.
	var hedgeC <-chan time.Time
	var timer *time.Timer
	if f.hedge >= 0 {
		timer = time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
		hedgeC = timer.C
	}

	var err error
loop:
	for {
		for f.verified+len(f.active) < target && f.start(ctx) {
		}
		if f.verified >= k {
			break
		}
		if len(f.active) == 0 {
			err = &FetchError{Want: k, Verified: f.verified, Holders: len(f.holders), Failures: f.failures}
			break
		}
		if timer != nil {
			f.armHedge(timer)
		}
		select {
		case res := <-f.results:
			f.finish(res)
		case <-hedgeC:
			// Every request past its hedge deadline gets one more holder beside it.
			now := time.Now()
			for _, r := range f.active {
				if at, ok := f.hedgeAt(r); ok && !r.hedged && !now.Before(at) {
					r.hedged = true
					target++
				}
			}
		case <-parent.Done():
			err = fmt.Errorf("swarm: fetch: %w", context.Cause(parent))
			break loop
		}
	}

	for _, r := range f.active {
		r.cancelled = true
		r.cancel()
	}
	for len(f.active) > 0 {
		// Results of cancelled requests are dropped, even verified ones: with k in hand
		// they are not needed, and on ctx's end the caller is gone.
		res := <-f.results
		f.active = slices.DeleteFunc(f.active, func(r *getRequest) bool { return r == res.r })
	}
	return err
}

// hedgeAt returns when r is to be hedged, if that is known yet.
func (f *fetcher) hedgeAt(r *getRequest) (time.Time, bool) {
	if f.hedge > 0 {
		return r.started.Add(f.hedge), true
	}
	if !f.xferKnown {
		return time.Time{}, false
	}
	rtt := cmp.Or(r.rtt, f.maxRTT)
	return r.started.Add(2*(rtt+f.xfer) + AdaptiveHedgeSlack), true
}

// armHedge sets timer to the earliest hedge deadline among unhedged requests, or stops it.
func (f *fetcher) armHedge(timer *time.Timer) {
	var first time.Time
	for _, r := range f.active {
		if at, ok := f.hedgeAt(r); ok && !r.hedged && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	if first.IsZero() {
		timer.Stop()
		return
	}
	timer.Reset(max(time.Until(first), 0))
}

// start asks the best holder not asked yet whose fragment is neither verified nor being
// fetched, and reports whether there was one.
func (f *fetcher) start(ctx context.Context) bool {
	for i, h := range f.holders {
		if f.asked[i] || f.done[h.Index] || f.inflight[h.Index] > 0 {
			continue
		}
		f.asked[i] = true
		f.inflight[h.Index]++
		rctx, cancel := context.WithTimeout(ctx, f.timeout)
		r := &getRequest{h: h, started: time.Now(), rtt: f.net.Latency(h.Peer), cancel: cancel}
		f.maxRTT = max(f.maxRTT, r.rtt)
		f.active = append(f.active, r)
		f.wg.Go(func() {
			defer cancel()
			data, err := f.net.Get(rctx, h.Peer, h.ID)
			switch {
			case err != nil && errors.Is(rctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
				err = fmt.Errorf("get timed out after %v: %w", f.timeout, err)
			case err == nil && chunker.FragmentIDOf(data) != h.ID:
				// Hashed here, on the request's goroutine, so replies verify in parallel.
				data, err = nil, fmt.Errorf("reply of %d bytes does not hash to %s: %w", len(data), h.ID, ErrCorrupt)
			}
			f.results <- getResult{r: r, data: data, err: err}
		})
		return true
	}
	return false
}

// finish records the outcome of one request.
func (f *fetcher) finish(res getResult) {
	r := res.r
	f.active = slices.DeleteFunc(f.active, func(a *getRequest) bool { return a == r })
	f.inflight[r.h.Index]--
	switch {
	case res.err == nil:
		f.xfer = max(f.xfer, time.Since(r.started)-r.rtt)
		f.xferKnown = true
		if !f.done[r.h.Index] {
			f.done[r.h.Index] = true
			f.out[r.h.Index] = res.data
			f.verified++
		}
	case !r.cancelled:
		f.failures = append(f.failures, PeerError{Peer: r.h.Peer, Index: r.h.Index, Err: res.err})
	}
}
