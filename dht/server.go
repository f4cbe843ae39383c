package dht

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"golang.org/x/time/rate"

	"github.com/scatterfs/scatter/dht/store"
)

// FragmentService is the libp2p resource-manager service that fragment protocol streams
// are accounted to, so a host can give the protocol its own limits.
const FragmentService = "scatter.fragment"

// ServerConfig configures a Server. Every field has a default for its zero value.
type ServerConfig struct {
	// MaxFragmentSize is the largest fragment accepted by PUT. Default
	// DefaultMaxFragmentSize; keep it at most the store's.
	MaxFragmentSize int
	// MaxBatch is the most IDs one HAS, DELETE or RENEW may carry. Default DefaultMaxBatch.
	MaxBatch int
	// MaxConcurrent is how many requests are served at once; more are answered BUSY.
	// Default 64.
	MaxConcurrent int
	// IdleTimeout bounds the wait for a request's head after the stream opens. Default 10 s.
	IdleTimeout time.Duration
	// IOTimeout bounds a whole request, payloads included. Default 2 min.
	IOTimeout time.Duration
	// ClockSkew is how far a signed request's timestamp may be from the donor's clock.
	// Default 10 min.
	ClockSkew time.Duration
	// Bandwidth caps the fragment payload bytes per second the server reads and writes,
	// shared by all streams; 0 means no cap. Burst is the token bucket's size, default
	// 1 MiB (or Bandwidth if smaller).
	Bandwidth, Burst int
	// ReservePriority is the resource-manager priority of the server's memory
	// reservations: the reservation (and so the request, answered BUSY) fails once the
	// scope is this full. Default network.ReservationPriorityMedium (60%).
	ReservePriority uint8
	// Logger receives unexpected errors. Default: discards.
	Logger *slog.Logger
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.MaxFragmentSize <= 0 {
		c.MaxFragmentSize = DefaultMaxFragmentSize
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 64
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Second
	}
	if c.IOTimeout <= 0 {
		c.IOTimeout = 2 * time.Minute
	}
	if c.ClockSkew <= 0 {
		c.ClockSkew = 10 * time.Minute
	}
	if c.Burst <= 0 {
		c.Burst = 1 << 20
		if c.Bandwidth > 0 {
			c.Burst = min(c.Burst, c.Bandwidth)
		}
	}
	if c.ReservePriority == 0 {
		c.ReservePriority = network.ReservationPriorityMedium
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Server serves a donor's store over the fragment protocol.
type Server struct {
	h      host.Host
	st     *store.Store
	cfg    ServerConfig
	lim    limits
	log    *slog.Logger
	bw     *rate.Limiter // nil: no bandwidth cap
	sem    chan struct{}
	replay *replayCache
	now    func() time.Time

	ctx    context.Context // cancelled by Close; parent of every request's context
	cancel context.CancelFunc

	mu      sync.Mutex // guards the fields below
	closed  bool
	streams map[network.Stream]struct{} // streams being served
	wg      sync.WaitGroup              // handlers in flight
}

// NewServer serves st on h under FragmentProtocol until Close.
func NewServer(h host.Host, st *store.Store, cfg ServerConfig) (*Server, error) {
	if h == nil || st == nil {
		return nil, errors.New("dht: NewServer needs a host and a store")
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		h:       h,
		st:      st,
		cfg:     cfg,
		lim:     limits{maxFragment: cfg.MaxFragmentSize, maxBatch: cfg.MaxBatch},
		log:     cfg.Logger,
		sem:     make(chan struct{}, cfg.MaxConcurrent),
		replay:  newReplayCache(1 << 16),
		now:     time.Now,
		ctx:     ctx,
		cancel:  cancel,
		streams: make(map[network.Stream]struct{}),
	}
	if cfg.Bandwidth > 0 {
		s.bw = rate.NewLimiter(rate.Limit(cfg.Bandwidth), cfg.Burst)
	}
	h.SetStreamHandler(FragmentProtocol, s.handle)
	return s, nil
}

// Close stops serving: it removes the stream handler, resets the streams being served and
// waits for their handlers to return.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.h.RemoveStreamHandler(FragmentProtocol)
	for st := range s.streams {
		st.Reset()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// track registers a stream being served, or reports false once the server is closed.
func (s *Server) track(st network.Stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.streams[st] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(st network.Stream) {
	s.mu.Lock()
	delete(s.streams, st)
	s.mu.Unlock()
	s.wg.Done()
}

// replyError carries the status and message of a failed request back to handle.
type replyError struct {
	st  status
	msg string
}

func (e *replyError) Error() string { return e.st.String() + ": " + e.msg }

func reply(st status, format string, args ...any) error {
	return &replyError{st: st, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) handle(st network.Stream) {
	if !s.track(st) {
		st.Reset()
		return
	}
	defer s.untrack(st)
	if err := st.Scope().SetService(FragmentService); err != nil {
		st.Reset() // the service's stream limit is reached
		return
	}
	start := s.now()
	deadline := start.Add(s.cfg.IOTimeout)
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	defer cancel()

	err := s.serve(ctx, st, start, deadline)
	var re *replyError
	switch {
	case err == nil:
		st.Close()
	case errors.As(err, &re):
		// The answer is written before the request may have been read in full: the
		// client stops writing and resets once it reads the answer.
		if _, werr := st.Write(appendError(nil, re.st, re.msg)); werr != nil {
			st.Reset()
			return
		}
		if re.st == statusInternal {
			s.log.Error("dht: fragment request failed", "peer", st.Conn().RemotePeer(), "err", re.msg)
		}
		st.Close()
	default:
		// Truncated request, timeout, reset: nothing useful can be said on this stream.
		st.Reset()
	}
}

// serve answers one request. It returns nil once an OK response is written, a
// *replyError for an error response, or another error when the stream is unusable.
func (s *Server) serve(ctx context.Context, st network.Stream, start, deadline time.Time) error {
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		return reply(statusBusy, "too many requests")
	}
	st.SetDeadline(minTime(start.Add(s.cfg.IdleTimeout), deadline))
	req, n, err := readRequestHead(st, s.lim)
	if errors.Is(err, errMalformed) {
		return reply(statusBadRequest, "%v", err)
	}
	if err != nil {
		return err
	}
	st.SetDeadline(deadline)
	if req.op == opPut {
		// Refuse early what cannot fit, before the payload crosses the network. A fragment
		// the store already holds costs nothing more (the PUT only extends its lease), so
		// a full donor still takes it.
		_, held := s.st.Size(req.id)
		if free := s.st.Stat().Free(); !held && int64(n) > free {
			return reply(statusFull, "%d bytes free", free)
		}
	}
	// n is bounded by the limits checked in readRequestHead; reserve it before allocating.
	if n > 0 {
		if err := st.Scope().ReserveMemory(n, s.cfg.ReservePriority); err != nil {
			return reply(statusBusy, "memory: %v", err)
		}
		defer st.Scope().ReleaseMemory(n)
	}
	switch req.op {
	case opPut:
		return s.put(ctx, st, &req, n)
	case opGet:
		return s.get(ctx, st, &req)
	case opStat:
		_, err := st.Write(appendStat(nil, s.st.Stat()))
		return err
	}
	if err := readRequestBody(st, &req, n); err != nil {
		return err
	}
	switch req.op {
	case opHas:
		_, err := st.Write(appendHas(nil, s.st.Has(req.ids)))
		return err
	case opDelete, opRenew:
		return s.signed(ctx, st, &req)
	}
	panic(fmt.Sprintf("BUG: dht: op %s passed readRequestHead", req.op))
}

// payloads recycles the servers' fragment payload buffers: every PUT and GET used to
// allocate (and zero) a fresh one, and with the collector that was ~9% of a read's CPU.
// One pool per power-of-two capacity, from 64 KiB up, so a buffer too small for a
// request never stands in the way of one that fits (with one pool, a small buffer at its
// head made nearly every larger request allocate).
var payloads [maxPayloadClass + 1]sync.Pool // of *[]byte; class c holds capacity 64 KiB << c

const (
	minPayloadShift = 16                   // class 0: 64 KiB
	maxPayloadClass = 31 - minPayloadShift // 2 GiB, beyond any MaxFragmentSize (< 2^31)
)

// payloadClass returns the class of the smallest pooled capacity that holds n bytes.
func payloadClass(n int) int {
	if n <= 1<<minPayloadShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minPayloadShift
}

// payload returns a buffer of length n from the pools; give it back with putPayload.
func payload(n int) *[]byte {
	c := payloadClass(n)
	if p, ok := payloads[c].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, 1<<(minPayloadShift+c))
	return &b
}

// putPayload returns a buffer from payload to its pool.
func putPayload(p *[]byte) { payloads[payloadClass(cap(*p))].Put(p) }

func (s *Server) put(ctx context.Context, st network.Stream, req *request, n int) error {
	buf := payload(n)
	defer putPayload(buf)
	data := *buf // the store does not keep it: Put has written it to disk when it returns
	if err := s.transfer(ctx, n, func(off, end int) error {
		_, err := io.ReadFull(st, data[off:end])
		return noEOF(err)
	}); err != nil {
		return err
	}
	if err := s.st.Put(ctx, req.id, req.owner, time.Unix(req.expires, 0), data); err != nil {
		return storeReply(err)
	}
	_, err := st.Write([]byte{byte(statusOK)})
	return err
}

func (s *Server) get(ctx context.Context, st network.Stream, req *request) error {
	n, ok := s.st.Size(req.id)
	if !ok {
		return reply(statusNotFound, "%s", req.id)
	}
	if err := st.Scope().ReserveMemory(n, s.cfg.ReservePriority); err != nil {
		return reply(statusBusy, "memory: %v", err)
	}
	defer st.Scope().ReleaseMemory(n)
	buf := payload(n)
	defer putPayload(buf)
	// The stream copies what it is given before Write returns (yamux frames it into its
	// own buffer), so the buffer can go back to the pool when this returns.
	data, err := s.st.GetInto(ctx, req.id, *buf)
	if err != nil {
		return storeReply(err)
	}
	if _, err := st.Write(appendGetHead(nil, len(data))); err != nil {
		return err
	}
	return s.transfer(ctx, len(data), func(off, end int) error {
		_, err := st.Write(data[off:end])
		return err
	})
}

// transfer moves n payload bytes in pieces through move, paced by the bandwidth limiter.
func (s *Server) transfer(ctx context.Context, n int, move func(off, end int) error) error {
	piece := n
	if s.bw != nil {
		piece = min(s.cfg.Burst, 64<<10)
	}
	for off := 0; off < n; off += piece {
		end := min(off+piece, n)
		if s.bw != nil {
			if err := s.bw.WaitN(ctx, end-off); err != nil {
				return err
			}
		}
		if err := move(off, end); err != nil {
			return err
		}
	}
	return nil
}

// signed serves a DELETE or RENEW after checking its signature and freshness.
//
// Replay: a captured request is only valid within ClockSkew of its timestamp, and within
// that window the replay cache answers a repeat of an executed request OK without
// executing it again. So a replayed DELETE cannot drop a fragment the owner PUT again after
// deleting it, and a replayed RENEW only ever sets a lease the owner asked for.
func (s *Server) signed(ctx context.Context, st network.Stream, req *request) error {
	now := s.now()
	ts := time.Unix(0, req.timestamp)
	if d := now.Sub(ts); d > s.cfg.ClockSkew || d < -s.cfg.ClockSkew {
		return reply(statusDenied, "timestamp %s is %s from the donor's clock", ts.UTC().Format(time.RFC3339), d.Round(time.Second))
	}
	if !req.verify() {
		return reply(statusDenied, "bad signature")
	}
	seen, err := s.replay.check(req.sig, now)
	if err != nil {
		return reply(statusBusy, "%v", err)
	}
	if !seen {
		switch req.op {
		case opDelete:
			_, err = s.st.Delete(ctx, req.owner, req.ids)
		case opRenew:
			_, err = s.st.Renew(ctx, req.owner, req.ids, time.Unix(req.expires, 0))
		}
		if err != nil {
			return storeReply(err)
		}
		s.replay.add(req.sig, ts.Add(s.cfg.ClockSkew))
	}
	_, err = st.Write([]byte{byte(statusOK)})
	return err
}

// storeReply maps a store error to a response.
func storeReply(err error) error {
	switch {
	case errors.Is(err, store.ErrFull):
		return reply(statusFull, "%v", err)
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrCorrupt):
		// A corrupt fragment has been dropped: for the client it is not there.
		return reply(statusNotFound, "%v", err)
	case errors.Is(err, store.ErrMismatch), errors.Is(err, store.ErrTooLarge), errors.Is(err, store.ErrLease):
		return reply(statusBadRequest, "%v", err)
	case errors.Is(err, store.ErrTooManyOwners):
		return reply(statusDenied, "%v", err)
	case errors.Is(err, store.ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return reply(statusBusy, "%v", err)
	}
	return reply(statusInternal, "%v", err)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// replayCache remembers the signatures of executed DELETE and RENEW requests until their
// timestamps leave the accepted window. Only genuine owner signatures enter it, so its size
// is bounded by what owners send within the window; past max entries it refuses (BUSY)
// rather than forget a signature that is still valid.
type replayCache struct {
	mu    sync.Mutex
	max   int
	seen  map[[64]byte]time.Time // signature -> when it leaves the window
	order [][64]byte             // insertion order, for pruning
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: make(map[[64]byte]time.Time)}
}

// check reports whether sig was executed before, pruning entries that have expired.
func (c *replayCache) check(sig [64]byte, now time.Time) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.order) > 0 {
		if until, ok := c.seen[c.order[0]]; ok && until.After(now) {
			break
		}
		delete(c.seen, c.order[0])
		c.order = c.order[1:]
	}
	if _, ok := c.seen[sig]; ok {
		return true, nil
	}
	if len(c.seen) >= c.max {
		return false, errors.New("replay cache full")
	}
	return false, nil
}

func (c *replayCache) add(sig [64]byte, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[sig]; !ok {
		c.order = append(c.order, sig)
	}
	c.seen[sig] = until
}
