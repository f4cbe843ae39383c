package main

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/dht"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/volume"
)

// Metrics are measured from the outside of the packages that do the work, by decorators
// with the same interface (as restic stacks its backends): meteredNetwork around the
// swarm.Network the pipeline uses, meteredChunks around the pipeline.Store the volume
// uses. The status verb reads the same counters.

// meters holds the process's Prometheus metrics.
type meters struct {
	reg *prometheus.Registry

	fragBytes   *prometheus.CounterVec   // op: put, get
	fragReqs    *prometheus.CounterVec   // op, result
	fragSeconds *prometheus.HistogramVec // op

	chunkPutBytes prometheus.Counter
	chunkPuts     prometheus.Counter
	chunkFetches  prometheus.Counter
	chunkFetchErr prometheus.Counter

	uploaded atomic.Int64 // plaintext bytes put, for status (counters cannot be read back cheaply)
	fetches  atomic.Int64
	rate     rateMeter
}

func newMeters() *meters {
	m := &meters{reg: prometheus.NewRegistry()}
	m.fragBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scatter_fragment_bytes_total", Help: "Fragment bytes sent (op=put) and received (op=get) to and from peers.",
	}, []string{"op"})
	m.fragReqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scatter_fragment_requests_total", Help: "Fragment protocol requests by operation and result.",
	}, []string{"op", "result"})
	m.fragSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "scatter_fragment_request_seconds", Help: "Latency of fragment protocol requests, by operation.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms .. 16 s
	}, []string{"op"})
	m.chunkPutBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "scatter_upload_bytes_total", Help: "Plaintext bytes of chunks stored on peers.",
	})
	m.chunkPuts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "scatter_chunks_uploaded_total", Help: "Chunks stored on peers.",
	})
	m.chunkFetches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "scatter_chunk_fetches_total", Help: "Chunks fetched from peers (read cache misses and prefetches).",
	})
	m.chunkFetchErr = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "scatter_chunk_fetch_errors_total", Help: "Chunk fetches that failed.",
	})
	m.reg.MustRegister(m.fragBytes, m.fragReqs, m.fragSeconds, m.chunkPutBytes, m.chunkPuts, m.chunkFetches, m.chunkFetchErr)
	return m
}

// gauge registers a gauge read from f at each scrape.
func (m *meters) gauge(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// volumeGauges registers the staging and cache gauges of v.
func (m *meters) volumeGauges(v *volume.Volume, stagingMax, cacheMax int64) {
	m.gauge("scatter_staging_bytes", "Bytes staged and not yet on peers.", func() float64 {
		b, _ := v.Pending()
		return float64(b)
	})
	m.gauge("scatter_staging_files", "Files holding staged bytes.", func() float64 {
		_, f := v.Pending()
		return float64(f)
	})
	m.gauge("scatter_staging_limit_bytes", "Staging cap (-staging).", func() float64 { return float64(stagingMax) })
	m.gauge("scatter_cache_bytes", "Bytes in the read cache.", func() float64 { return float64(v.CacheUsed()) })
	m.gauge("scatter_cache_limit_bytes", "Read cache cap (-cache).", func() float64 { return float64(cacheMax) })
	m.counter("scatter_cache_hits_total", "Chunk reads served by the read cache.", func() float64 {
		h, _ := v.CacheStats()
		return float64(h)
	})
	m.counter("scatter_cache_misses_total", "Chunk reads the read cache could not serve (fetched from peers).", func() float64 {
		_, mi := v.CacheStats()
		return float64(mi)
	})
}

func (m *meters) counter(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// serve serves the metrics (and the Go and libp2p metrics of the default registry) on
// addr until the returned closer is called.
func (m *meters) serve(addr string) (func() error, string, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{m.reg, prometheus.DefaultGatherer}, promhttp.HandlerOpts{}))
	return serveHTTP("-metrics", addr, mux)
}

// result names an error's class for the result label.
func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, swarm.ErrNotFound):
		return "not_found"
	case errors.Is(err, swarm.ErrBusy):
		return "busy"
	case errors.Is(err, swarm.ErrFull):
		return "full"
	case errors.Is(err, swarm.ErrUnreachable):
		return "unreachable"
	case errors.Is(err, swarm.ErrDenied):
		return "denied"
	case errors.Is(err, swarm.ErrCorrupt):
		return "corrupt"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled" // mostly long-tail cancellation: the request was not needed
	}
	return "error"
}

// meteredNetwork is a swarm.Network that counts and times the requests of another.
type meteredNetwork struct {
	swarm.Network
	m *meters
}

var _ swarm.Network = (*meteredNetwork)(nil)

func (n *meteredNetwork) observe(op string, start time.Time, err error) {
	n.m.fragReqs.WithLabelValues(op, result(err)).Inc()
	if err == nil {
		n.m.fragSeconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	}
}

func (n *meteredNetwork) Put(ctx context.Context, p swarm.PeerID, id chunker.FragmentID, data []byte, expires time.Time) error {
	start := time.Now()
	err := n.Network.Put(ctx, p, id, data, expires)
	n.observe("put", start, err)
	if err == nil {
		n.m.fragBytes.WithLabelValues("put").Add(float64(len(data)))
	}
	return err
}

func (n *meteredNetwork) Get(ctx context.Context, p swarm.PeerID, id chunker.FragmentID) ([]byte, error) {
	start := time.Now()
	b, err := n.Network.Get(ctx, p, id)
	n.observe("get", start, err)
	n.m.fragBytes.WithLabelValues("get").Add(float64(len(b)))
	return b, err
}

func (n *meteredNetwork) Has(ctx context.Context, p swarm.PeerID, ids []chunker.FragmentID) ([]bool, error) {
	start := time.Now()
	has, err := n.Network.Has(ctx, p, ids)
	n.observe("has", start, err)
	return has, err
}

func (n *meteredNetwork) Delete(ctx context.Context, p swarm.PeerID, ids []chunker.FragmentID) error {
	start := time.Now()
	err := n.Network.Delete(ctx, p, ids)
	n.observe("delete", start, err)
	return err
}

func (n *meteredNetwork) Renew(ctx context.Context, p swarm.PeerID, ids []chunker.FragmentID, expires time.Time) error {
	start := time.Now()
	err := n.Network.Renew(ctx, p, ids, expires)
	n.observe("renew", start, err)
	return err
}

func (n *meteredNetwork) Stat(ctx context.Context, p swarm.PeerID) (swarm.Stat, error) {
	start := time.Now()
	st, err := n.Network.Stat(ctx, p)
	n.observe("stat", start, err)
	return st, err
}

// meteredChunks is a volume.Chunks that counts the chunks another stores and fetches.
type meteredChunks struct {
	*pipeline.Store
	m *meters
}

var _ volume.Chunks = (*meteredChunks)(nil)

func (c *meteredChunks) Put(ctx context.Context, plain []byte) (pipeline.Ref, error) {
	ref, err := c.Store.Put(ctx, plain)
	if err == nil {
		c.m.chunkPuts.Inc()
		c.m.chunkPutBytes.Add(float64(len(plain)))
		c.m.uploaded.Add(int64(len(plain)))
		c.m.rate.add(time.Now(), int64(len(plain)))
	}
	return ref, err
}

func (c *meteredChunks) GetSealed(ctx context.Context, ref pipeline.Ref) ([]byte, error) {
	b, err := c.Store.GetSealed(ctx, ref)
	c.m.chunkFetches.Inc()
	c.m.fetches.Add(1)
	if err != nil {
		c.m.chunkFetchErr.Inc()
	}
	return b, err
}

// rateMeter estimates a recent byte rate from per-second buckets, with no goroutine.
type rateMeter struct {
	mu      sync.Mutex
	buckets [rateWindow]int64 // guarded by mu: bytes added in second sec[i]
	sec     [rateWindow]int64 // guarded by mu: the Unix second bucket i counts
}

// rateWindow is the seconds the rate averages over.
const rateWindow = 10

func (r *rateMeter) add(now time.Time, n int64) {
	s := now.Unix()
	i := s % rateWindow
	r.mu.Lock()
	if r.sec[i] != s {
		r.sec[i], r.buckets[i] = s, 0
	}
	r.buckets[i] += n
	r.mu.Unlock()
}

// bps returns the bytes per second over the last rateWindow whole seconds.
func (r *rateMeter) bps(now time.Time) float64 {
	s := now.Unix()
	var sum int64
	r.mu.Lock()
	for i := range r.sec {
		if age := s - r.sec[i]; age >= 1 && age <= rateWindow {
			sum += r.buckets[i]
		}
	}
	r.mu.Unlock()
	return float64(sum) / rateWindow
}

// nodeGauges registers n's peer counts.
func (m *meters) nodeGauges(n *dht.Node) {
	m.gauge("scatter_peers_connected", "Peers with an open connection.", func() float64 {
		return float64(len(n.Host().Network().Peers()))
	})
	m.gauge("scatter_peers_routing_table", "Peers in the DHT routing table.", func() float64 {
		return float64(n.DHT().RoutingTable().Size())
	})
}
