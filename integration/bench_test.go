package integration

import (
	"context"
	"encoding/binary"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
)

// Shape of BenchmarkPeers.
const (
	benchDonors      = 12      // one fragment of every chunk on every donor with k+m = 12
	benchChunk       = 2 << 20 // plaintext per chunk: chunker.DefaultParams.Normal
	benchReadChunks  = 64      // chunks placed once for the read benchmarks: 128 MiB
	benchParallelism = 4       // goroutines per GOMAXPROCS in the parallel benchmarks
)

// BenchmarkPeers measures the whole data path against benchDonors `scatter daemon`
// processes on this machine, from a client node in the test process over loopback TCP:
//
//   - Put: pipeline.Store.Put of distinct 2 MiB chunks from several goroutines (seal,
//     Reed-Solomon 8+4, placement of 12 fragments with long-tail spares);
//   - Get: pipeline.Store.GetSealed of placed chunks from several goroutines (k fastest
//     holders plus a spare, verification, decode; no decryption);
//   - Latency: GetSealed of one chunk at a time.
//
// Throughput is in MB/s (10^6 bytes) of fragment bytes moved, counted at the
// swarm.Network boundary; latency is per chunk, median and p99. client-cores and
// donor-cores are the CPU the client process and all donor processes used, in cores over
// the wall time (the machine has 2); cpu-s/GB is their sum per 10^9 fragment bytes, a
// figure that depends less on what else the machine runs. One call starts the donors;
// -count repeats each sub-benchmark on them:
//
//	go test -run '^$' -bench BenchmarkPeers -benchtime 100x -count 3 -cpuprofile cpu.out ./integration
func BenchmarkPeers(b *testing.B) {
	ds := startDaemons(b, benchDonors, "4G")
	_, nw := newClient(b, ds[0].Addrs)
	waitCandidates(b, nw, len(ds))
	net := &countingNet{Network: nw}
	st, err := pipeline.NewStore(net, testKeys(), pipeline.Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	var seq atomic.Uint64
	src, err := io.ReadAll(plainStream(99, benchChunk))
	if err != nil {
		b.Fatal(err)
	}
	// chunk returns a plaintext chunk no other call has returned, so none deduplicates.
	chunk := func(buf []byte) []byte {
		buf = append(buf[:0], src...)
		binary.LittleEndian.PutUint64(buf, seq.Add(1))
		return buf
	}

	put := func(b *testing.B, st *pipeline.Store, net *countingNet) {
		m := startMeasure(net, ds)
		b.SetParallelism(benchParallelism)
		b.RunParallel(func(pb *testing.PB) {
			var buf []byte
			for pb.Next() {
				buf = chunk(buf)
				if _, err := st.Put(ctx, buf); err != nil {
					b.Error(err)
					return
				}
			}
		})
		m.report(b, nil)
	}
	b.Run("Put", func(b *testing.B) { put(b, st, net) })
	// An experiment, not the data path as built: the same Puts with Candidates answered
	// from a cache refreshed once a second, to show what the DHT lookup per chunk costs.
	b.Run("PutCachedCandidates", func(b *testing.B) {
		cnet := &countingNet{Network: &cachedCandidates{Network: nw, maxAge: time.Second}}
		cst, err := pipeline.NewStore(cnet, testKeys(), pipeline.Config{})
		if err != nil {
			b.Fatal(err)
		}
		put(b, cst, cnet)
	})

	refs := make([]pipeline.Ref, benchReadChunks)
	var buf []byte
	for i := range refs {
		buf = chunk(buf)
		if refs[i], err = st.Put(ctx, buf); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("Get", func(b *testing.B) {
		var (
			next atomic.Int64
			mu   sync.Mutex
			lat  []time.Duration
		)
		m := startMeasure(net, ds)
		b.SetParallelism(benchParallelism)
		b.RunParallel(func(pb *testing.PB) {
			var mine []time.Duration
			for pb.Next() {
				ref := refs[int(next.Add(1))%len(refs)]
				start := time.Now()
				if _, err := st.GetSealed(ctx, ref); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
		m.report(b, lat)
	})

	b.Run("Latency", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		m := startMeasure(net, ds)
		for i := range b.N {
			start := time.Now()
			if _, err := st.GetSealed(ctx, refs[i%len(refs)]); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		m.report(b, lat)
	})
}

// measure holds the counters at the start of a benchmark.
type measure struct {
	net            *countingNet
	ds             []*daemon
	put, get       int64
	cands          int64 // Candidates calls
	candTime       int64 // nanoseconds in Candidates
	start          time.Time
	client, donors time.Duration
	loadAtStart    string
}

func startMeasure(net *countingNet, ds []*daemon) *measure {
	m := &measure{net: net, ds: ds, put: net.putBytes.Load(), get: net.getBytes.Load(),
		cands: net.cands.Load(), candTime: net.candTime.Load(),
		client: processCPU(), donors: donorsCPU(ds), loadAtStart: loadAvg()}
	m.start = time.Now()
	return m
}

// report reports throughput, CPU and, when lat is given, the median and p99 latency.
func (m *measure) report(b *testing.B, lat []time.Duration) {
	b.StopTimer()
	took := time.Since(m.start)
	put, get := m.net.putBytes.Load()-m.put, m.net.getBytes.Load()-m.get
	if put > 0 {
		b.ReportMetric(mbps(put, took), "put-MB/s")
	}
	if get > 0 {
		b.ReportMetric(mbps(get, took), "get-MB/s")
	}
	if n := m.net.cands.Load() - m.cands; n > 0 {
		// Every Put asks for candidates: a DHT lookup and STAT refreshes.
		b.ReportMetric(float64(m.net.candTime.Load()-m.candTime)/float64(n)/1e6, "candidates-ms")
	}
	if lat != nil {
		b.ReportMetric(float64(percentile(lat, 50).Microseconds())/1e3, "p50-ms")
		b.ReportMetric(float64(percentile(lat, 99).Microseconds())/1e3, "p99-ms")
	}
	client, donors := processCPU()-m.client, donorsCPU(m.ds)-m.donors
	b.ReportMetric(client.Seconds()/took.Seconds(), "client-cores")
	b.ReportMetric(donors.Seconds()/took.Seconds(), "donor-cores")
	if moved := put + get; moved > 0 {
		b.ReportMetric((client+donors).Seconds()/(float64(moved)/1e9), "cpu-s/GB")
	}
	b.Logf("b.N %d in %v; load average before %s, after %s", b.N, took.Round(time.Millisecond), m.loadAtStart, loadAvg())
}

// processCPU returns the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func donorsCPU(ds []*daemon) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d.cpuTime()
	}
	return t
}

// loadAvg returns the 1-minute load average, for the log.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// cachedCandidates answers Candidates from the last answer for up to maxAge, whatever the
// key: with as many donors as fragments per chunk every answer is the same set anyway.
type cachedCandidates struct {
	swarm.Network
	maxAge time.Duration

	mu   sync.Mutex
	at   time.Time
	last []swarm.Peer
}

func (c *cachedCandidates) Candidates(ctx context.Context, key []byte, n int) ([]swarm.Peer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil || time.Since(c.at) > c.maxAge {
		ps, err := c.Network.Candidates(ctx, key, n)
		if err != nil {
			return nil, err
		}
		c.last, c.at = ps, time.Now()
	}
	return slices.Clone(c.last[:min(n, len(c.last))]), nil
}
