package dht

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/dht/store"
	"github.com/scatterfs/scatter/swarm"
)

// recordingNet is a swarm.Network that records which peers were asked for fragments.
type recordingNet struct {
	swarm.Network
	mu   sync.Mutex
	gets []swarm.PeerID // guarded by mu
}

func (r *recordingNet) Get(ctx context.Context, p swarm.PeerID, id chunker.FragmentID) ([]byte, error) {
	r.mu.Lock()
	r.gets = append(r.gets, p)
	r.mu.Unlock()
	return r.Network.Get(ctx, p, id)
}

func (r *recordingNet) take() []swarm.PeerID {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.gets
	r.gets = nil
	return out
}

// Read test geometry: RS(8,4) fragments of 64 KiB (a 512 KiB chunk) over 30 donors whose
// one-way delays from the reader spread evenly over 2-120 ms.
const (
	readDonors = 30
	readK      = 8
	readM      = 4
	readFrag   = 64 << 10
)

// readSwarm is the reader's world: donors, the reader's Network and each donor's one-way
// delay from the reader.
type readSwarm struct {
	reader *Network
	delay  map[swarm.PeerID]time.Duration
	writer *Network
	node   *Node // the reader's node
}

func newReadSwarm(t *testing.T) *readSwarm {
	m := newMockSwarm(t)
	delays := make([]time.Duration, readDonors)
	for i := range delays {
		delays[i] = 2*time.Millisecond + time.Duration(i)*(118*time.Millisecond)/(readDonors-1)
	}
	mrand.Shuffle(len(delays), func(i, j int) { delays[i], delays[j] = delays[j], delays[i] })

	rs := &readSwarm{delay: make(map[swarm.PeerID]time.Duration)}
	var donors []*Node
	for i := range readDonors {
		n := m.add(Config{Mode: ModeServer, Store: store.Config{Quota: 64 << 20}}, nil)
		donors = append(donors, n)
		rs.delay[swarm.PeerID(n.ID().String())] = delays[i]
	}
	// The writer is another device, equally near every donor: placement does not favour
	// the reader's fast donors, so the holders spread over the reader's delays.
	wn := m.add(Config{Mode: ModeClient, Owner: newOwner(t)}, nil)
	// The reader sees donor i across a link with delays[i] each way.
	rn := m.add(Config{Mode: ModeClient, Owner: newOwner(t)}, func(o *Node) time.Duration {
		return rs.delay[swarm.PeerID(o.ID().String())]
	})
	rs.writer, rs.reader, rs.node = newTestNetwork(t, wn), newTestNetwork(t, rn), rn

	// Connect the reader to every donor and measure each round trip once (the ping loop
	// would do it on its own, but a test must not wait for it).
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var ids []peer.ID
	for _, d := range donors {
		if err := rn.host.Connect(ctx, peer.AddrInfo{ID: d.ID(), Addrs: d.host.Addrs()}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID())
	}
	rn.pingPeers(ctx, ids)
	return rs
}

// place writes one chunk's k+m random fragments with swarm.Place from the writer and
// returns the manifest's holders.
func (rs *readSwarm) place(t *testing.T, seq int) []swarm.Holder {
	t.Helper()
	frags := make([][]byte, readK+readM)
	ids := make([]chunker.FragmentID, len(frags))
	for i := range frags {
		frags[i] = make([]byte, readFrag)
		_, _ = rand.Read(frags[i])
		ids[i] = chunker.FragmentIDOf(frags[i])
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	peers, err := swarm.Place(ctx, rs.writer, fmt.Appendf(nil, "chunk %d", seq), frags, ids,
		time.Now().Add(time.Hour), swarm.PlaceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	holders := make([]swarm.Holder, len(peers))
	for i, p := range peers {
		holders[i] = swarm.Holder{Index: i, ID: ids[i], Peer: p}
	}
	return holders
}

// TestFetchFastest is the read path's must-show on libp2p: 30 donors at 2-120 ms from the
// reader, a chunk placed by swarm.Place, and swarm.Fetch over Network asks the holders with
// the lowest measured latency (k plus one spare, and more in the same order only if
// hedging kicks in) and no one else. With -short off it also
// measures the median time to read a chunk with Fetch, with exactly the k truly fastest
// holders and with k random holders (logged, not asserted; see docs/benchmarks.md).
func TestFetchFastest(t *testing.T) {
	rs := newReadSwarm(t)
	holders := rs.place(t, 0)
	rec := &recordingNet{Network: rs.reader}

	// Fetch asks the k+1 lowest-latency holders at once (swarm.DefaultSpares) and, when
	// one is slow to answer (adaptive hedging; this machine is shared and loaded), the
	// next ones in the same order: what it asked is always a prefix of the ranking.
	ranked := k1Fastest(rs.reader, holders, len(holders))
	for round := range 3 {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		got, err := swarm.Fetch(ctx, rec, holders, readK, swarm.FetchOptions{})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if n := countNonEmpty(got); n < readK {
			t.Fatalf("Fetch returned %d fragments, want %d", n, readK)
		}
		asked := rec.take()
		if len(asked) < readK+swarm.DefaultSpares || len(asked) > len(ranked) ||
			!sameSet(asked, ranked[:len(asked)]) {
			t.Fatalf("round %d: Fetch asked %v, want the %d or more lowest-latency holders, in order %v",
				round, rs.describe(asked), readK+swarm.DefaultSpares, rs.describe(ranked))
		}
		if len(asked) > readK+swarm.DefaultSpares {
			t.Logf("round %d: %d hedged requests", round, len(asked)-readK-swarm.DefaultSpares)
		}
	}
	// The measured order is the configured one, give or take scheduling noise: log it.
	t.Logf("holders by measured latency: %v", rs.describe(ranked))

	if testing.Short() {
		return
	}
	const reads = 15
	var chunks [][]swarm.Holder
	for i := range reads {
		chunks = append(chunks, rs.place(t, i+1))
	}
	measure := func(read func(ctx context.Context, hs []swarm.Holder) error) time.Duration {
		var ds []time.Duration
		for _, hs := range chunks {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			start := time.Now()
			err := read(ctx, hs)
			ds = append(ds, time.Since(start))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	fetch := measure(func(ctx context.Context, hs []swarm.Holder) error {
		_, err := swarm.Fetch(ctx, rs.reader, hs, readK, swarm.FetchOptions{})
		return err
	})
	fastest := measure(func(ctx context.Context, hs []swarm.Holder) error {
		hs = slices.Clone(hs)
		slices.SortFunc(hs, func(a, b swarm.Holder) int { return int(rs.delay[a.Peer] - rs.delay[b.Peer]) })
		return rs.getAll(ctx, hs[:readK])
	})
	random := measure(func(ctx context.Context, hs []swarm.Holder) error {
		hs = slices.Clone(hs)
		mrand.Shuffle(len(hs), func(i, j int) { hs[i], hs[j] = hs[j], hs[i] })
		return rs.getAll(ctx, hs[:readK])
	})
	t.Logf("median time to read a chunk (RS(%d,%d), %d KiB fragments, %d reads): Fetch %v, exactly the %d fastest %v, %d random %v",
		readK, readM, readFrag>>10, reads, fetch.Round(time.Millisecond), readK, fastest.Round(time.Millisecond),
		readK, random.Round(time.Millisecond))
}

// getAll fetches every holder's fragment in parallel and returns when all have arrived.
func (rs *readSwarm) getAll(ctx context.Context, hs []swarm.Holder) error {
	errs := make([]error, len(hs))
	var wg sync.WaitGroup
	for i, h := range hs {
		wg.Go(func() {
			b, err := rs.reader.Get(ctx, h.Peer, h.ID)
			if err == nil && chunker.FragmentIDOf(b) != h.ID {
				err = swarm.ErrCorrupt
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// describe lists peers with their configured one-way delays.
func (rs *readSwarm) describe(ps []swarm.PeerID) []string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s…(%v/%v)", p[len(p)-6:], rs.delay[p].Round(time.Millisecond), rs.reader.Latency(p).Round(time.Millisecond)))
	}
	return out
}

// k1Fastest returns the n holders' peers with the lowest measured latency on nw.
func k1Fastest(nw swarm.Network, holders []swarm.Holder, n int) []swarm.PeerID {
	var ps []swarm.PeerID
	for _, h := range holders {
		ps = append(ps, h.Peer)
	}
	rtt := func(p swarm.PeerID) time.Duration {
		if d := nw.Latency(p); d > 0 {
			return d
		}
		return time.Hour // unmeasured: last, as swarm.RankHolders does
	}
	slices.SortStableFunc(ps, func(a, b swarm.PeerID) int { return int(rtt(a) - rtt(b)) })
	return ps[:n]
}

func sameSet(a, b []swarm.PeerID) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func countNonEmpty(frags [][]byte) int {
	n := 0
	for _, f := range frags {
		if f != nil {
			n++
		}
	}
	return n
}
