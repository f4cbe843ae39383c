package integration

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/dht"
	"github.com/scatterfs/scatter/internal/testdaemon"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
)

// scatterBin is the scatter binary TestMain builds once for every test of the package.
var scatterBin string

// binEnv names a prebuilt scatter binary to use instead of building one, so that a
// profiler (bench/peers.sh runs perf) can still read its symbols after the tests.
const binEnv = "SCATTER_INTEGRATION_BIN"

// TestMain builds cmd/scatter into a temporary directory (unless binEnv names a binary),
// runs the tests, and fails the package if a goroutine of the in-process nodes outlives
// the tests.
func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if scatterBin = os.Getenv(binEnv); scatterBin == "" {
		dir, err := os.MkdirTemp("", "scatter-integration-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "integration:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		scatterBin = filepath.Join(dir, "scatter")
		build := exec.Command(goTool(), "build", "-o", scatterBin, "github.com/scatterfs/scatter/cmd/scatter")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "integration: building cmd/scatter:", err)
			return 1
		}
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "integration: goroutines left behind:", err)
			return 1
		}
	}
	return code
}

// goTool returns the go command of the toolchain running the tests.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// quiet is the logger of in-process nodes: warnings and errors only.
var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// tcpLoopback is where every node listens: TCP only, because a QUIC dial to a killed
// peer's port waits out the whole dial timeout (UDP gives no "connection refused").
var tcpLoopback = []string{"/ip4/127.0.0.1/tcp/0"}

// daemon is one `scatter daemon` process (internal/testdaemon, shared with the mount
// tests), with the names this package's tests use.
type daemon struct {
	*testdaemon.Daemon
	dir  string          // = Dir
	done <-chan struct{} // = Done()
}

// startDaemon starts `scatter daemon` in dir, listening on loopback TCP, and returns at
// once; waitReady waits for it to serve. A cleanup kills the process.
func startDaemon(tb testing.TB, dir, quota string, bootstrap []string) *daemon {
	tb.Helper()
	return startDaemonAt(tb, dir, quota, tcpLoopback[0], bootstrap)
}

func (d *daemon) waitReady(deadline time.Time) error { return d.WaitReady(deadline) }
func (d *daemon) output() string                     { return d.Output() }
func (d *daemon) kill()                              { d.Kill() }
func (d *daemon) cpuTime() time.Duration             { return d.CPUTime() }

// startDaemons starts n daemons, the first alone and the rest bootstrapped through it, and
// waits until all serve.
func startDaemons(tb testing.TB, n int, quota string) []*daemon {
	tb.Helper()
	root := tb.TempDir()
	deadline := time.Now().Add(60 * time.Second)
	ds := []*daemon{startDaemon(tb, filepath.Join(root, "d00"), quota, nil)}
	if err := ds[0].waitReady(deadline); err != nil {
		tb.Fatal(err)
	}
	for i := 1; i < n; i++ {
		ds = append(ds, startDaemon(tb, filepath.Join(root, fmt.Sprintf("d%02d", i)), quota, ds[0].Addrs))
	}
	for _, d := range ds[1:] {
		if err := d.waitReady(deadline); err != nil {
			tb.Fatal(err)
		}
	}
	return ds
}

// newClient starts a client-mode node bootstrapped through boot, acting for a fresh owner
// key, and its Network.
func newClient(tb testing.TB, boot []string) (*dht.Node, *dht.Network) {
	tb.Helper()
	_, owner, err := ed25519.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err)
	}
	n, err := dht.New(tb.Context(), dht.Config{
		DataDir: tb.TempDir(), ListenAddrs: tcpLoopback, Bootstrap: boot,
		Mode: dht.ModeClient, Owner: owner, Logger: quiet,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("close client: %v", err)
		}
	})
	nw, err := dht.NewNetwork(n, dht.NetworkConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	return n, nw
}

// waitCandidates polls nw.Candidates until it offers at least want peers: the client has
// found the whole swarm through the DHT.
func waitCandidates(tb testing.TB, nw swarm.Network, want int) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	key := []byte("integration: wait for the swarm")
	for {
		ps, err := nw.Candidates(tb.Context(), key, 4*want)
		if err != nil {
			tb.Fatal(err)
		}
		if len(ps) >= want {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the client sees %d candidates, want %d", len(ps), want)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-tb.Context().Done():
			tb.Fatal(tb.Context().Err())
		}
	}
}

// testKeys returns drive keys from a fixed secret.
func testKeys() *crypt.Keys {
	var s crypt.Secret
	copy(s[:], "scatter integration test secret!")
	return s.Keys()
}

// plainStream returns size pseudo-random bytes from seed: the same seed gives the same
// bytes, so a test keeps only the seed and regenerates the data to compare.
func plainStream(seed uint64, size int64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return io.LimitReader(rand.NewChaCha8(s), size)
}

// countingNet is a swarm.Network that counts the fragment bytes its successful PUTs send
// and GETs receive.
type countingNet struct {
	swarm.Network
	putBytes, getBytes atomic.Int64
	puts, gets         atomic.Int64
	cands              atomic.Int64 // Candidates calls
	candTime           atomic.Int64 // nanoseconds spent in them

	// spread reports every candidate with an unknown latency, so that placement ranks
	// them by free space only and spreads fragments evenly over all donors. On one
	// loopback machine the donors' latency differences are scheduling noise, and
	// placement (which prefers the fastest latency class) would put every fragment on the
	// dozen that happened to answer pings fastest; the tests need fragments on every
	// donor, the hostile ones included.
	spread bool
}

func (c *countingNet) Candidates(ctx context.Context, key []byte, n int) ([]swarm.Peer, error) {
	start := time.Now()
	ps, err := c.Network.Candidates(ctx, key, n)
	c.candTime.Add(int64(time.Since(start)))
	c.cands.Add(1)
	if c.spread {
		for i := range ps {
			ps[i].Latency = 0
		}
	}
	return ps, err
}

func (c *countingNet) Put(ctx context.Context, p swarm.PeerID, id chunker.FragmentID, data []byte, expires time.Time) error {
	err := c.Network.Put(ctx, p, id, data, expires)
	if err == nil {
		c.putBytes.Add(int64(len(data)))
		c.puts.Add(1)
	}
	return err
}

func (c *countingNet) Get(ctx context.Context, p swarm.PeerID, id chunker.FragmentID) ([]byte, error) {
	b, err := c.Network.Get(ctx, p, id)
	if err == nil {
		c.getBytes.Add(int64(len(b)))
		c.gets.Add(1)
	}
	return b, err
}

// putStream cuts r into chunks with st's splitter and stores them with workers Puts at
// once, returning the Refs in stream order.
func putStream(ctx context.Context, st *pipeline.Store, r io.Reader, workers int) ([]pipeline.Ref, error) {
	var (
		mu   sync.Mutex
		refs []pipeline.Ref
	)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	sp := st.Split(r)
	for i := 0; ; i++ {
		b, err := sp.NextBytes()
		if err == io.EOF {
			break
		}
		if err != nil {
			_ = g.Wait()
			return nil, err
		}
		mu.Lock()
		refs = append(refs, pipeline.Ref{})
		mu.Unlock()
		g.Go(func() error {
			ref, err := st.Put(ctx, b)
			if err != nil {
				return fmt.Errorf("chunk %d: %w", i, err)
			}
			mu.Lock()
			refs[i] = ref
			mu.Unlock()
			return nil
		})
		if ctx.Err() != nil {
			break
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return refs, nil
}

// readBack reads every chunk of refs with workers Gets at once and compares the
// plaintext, in order, with the stream regenerated from seed. It returns each chunk's
// read time.
func readBack(ctx context.Context, st *pipeline.Store, refs []pipeline.Ref, seed uint64, size int64, workers int) ([]time.Duration, error) {
	type result struct {
		plain []byte
		took  time.Duration
		err   error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]chan result, len(refs))
	for i := range results {
		results[i] = make(chan result, 1)
	}
	window := make(chan struct{}, workers)
	var wg sync.WaitGroup
	// On every return: cancel first (deferred calls run last-in first-out), so that the
	// scheduler and the reads end, then wait for them.
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() {
		for i, ref := range refs {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				start := time.Now()
				b, err := st.Get(ctx, ref, nil)
				results[i] <- result{b, time.Since(start), err}
			})
		}
	})
	want := plainStream(seed, size)
	buf := make([]byte, 0, chunker.DefaultParams.Max)
	took := make([]time.Duration, len(refs))
	var off int64
	for i, ref := range refs {
		var r result
		select {
		case r = <-results[i]:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		<-window
		if r.err != nil {
			return nil, fmt.Errorf("chunk %d at offset %d: %w", i, off, r.err)
		}
		buf = buf[:ref.Size]
		if _, err := io.ReadFull(want, buf); err != nil {
			return nil, fmt.Errorf("regenerating chunk %d: %w", i, err)
		}
		if !bytes.Equal(r.plain, buf) {
			return nil, fmt.Errorf("chunk %d at offset %d: read %d bytes that differ from the %d written", i, off, len(r.plain), ref.Size)
		}
		off += int64(ref.Size)
		took[i] = r.took
	}
	if n, _ := io.Copy(io.Discard, want); n != 0 || off != size {
		return nil, fmt.Errorf("refs cover %d bytes, the stream has %d", off, size)
	}
	return took, nil
}

// percentile returns the p-th percentile (0..100) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// holdersOf counts the fragments each peer holds across refs.
func holdersOf(refs []pipeline.Ref) map[swarm.PeerID]int {
	m := make(map[swarm.PeerID]int)
	for _, r := range refs {
		for _, f := range r.Fragments {
			m[f.Peer]++
		}
	}
	return m
}

// checkDistinct fails unless every fragment of every ref has a holder and no two fragments
// of a chunk share one.
func checkDistinct(refs []pipeline.Ref) error {
	for i, r := range refs {
		seen := make(map[swarm.PeerID]bool, len(r.Fragments))
		for j, f := range r.Fragments {
			if f.Peer == "" || seen[f.Peer] {
				return fmt.Errorf("chunk %d: fragment %d on %q: holders must be set and distinct", i, j, f.Peer)
			}
			seen[f.Peer] = true
		}
	}
	return nil
}

// startDaemonAt is startDaemon listening on listen, with the command run through prefix
// (e.g. "ip netns exec NAME", which execs the daemon itself, so killing the process kills
// the daemon).
func startDaemonAt(tb testing.TB, dir, quota, listen string, bootstrap []string, prefix ...string) *daemon {
	tb.Helper()
	d := testdaemon.Start(tb, scatterBin, dir, quota, listen, bootstrap, prefix...)
	return &daemon{Daemon: d, dir: d.Dir, done: d.Done()}
}
