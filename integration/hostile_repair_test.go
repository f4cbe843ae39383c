package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/dht"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/upkeep"
)

// TestHostileRepair: with 8 donor processes and three hostile in-process donors on real
// TCP (one serves corrupted fragments, one answers OK to every PUT and stores nothing, one
// never answers a GET), data placed with one hostile holder per chunk reads back correct;
// Check finds the dropped fragments missing and a verifying Check finds the corrupt and
// stalled ones bad (the staller after one audit timeout); all three are the check's
// suspects, and Repair rebuilds them on other peers, and afterwards every chunk has
// all n fragments verified on honest peers and still reads back.
//
// That a DELETE or RENEW signed by another key is rejected is shown elsewhere and not
// repeated here: dht's TestFragmentSignedRequests (forged, replayed and foreign-key
// requests over the wire) and this package's TestLeases (another owner's DELETE to donor
// processes removes nothing).
func TestHostileRepair(t *testing.T) {
	if testing.Short() {
		t.Skip("starts donor processes")
	}
	const (
		seed = 11
		size = 6 << 20
	)
	begin := time.Now()
	ds := startDaemons(t, 8, "1G")
	boot := ds[0].Addrs
	corr := startHostile(t, corrupt, 1<<30, boot)
	stl := startHostile(t, stall, 1<<30, boot)
	drop := startDropper(t, 1<<30, boot)
	_, nw := newClient(t, boot)
	waitCandidates(t, nw, len(ds)+3)
	bad := []swarm.PeerID{corr.peer(), stl.peer(), drop.d.peer()}
	honest := func(p swarm.PeerID) bool { return !slices.Contains(bad, p) }

	// Steer one hostile donor into every chunk, in turn: each then holds some fragments,
	// and no chunk has more than one hostile holder (k+m = 4+2 tolerates two).
	steer := &steerNet{Network: &countingNet{Network: nw, spread: true}, hostile: bad}
	chunking := chunker.Params{Min: 256 << 10, Normal: 512 << 10, Max: 1 << 20}
	st, err := pipeline.NewStore(steer, testKeys(), pipeline.Config{K: 4, M: 2, Chunking: chunking})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	refs, err := putStream(ctx, st, plainStream(seed, size), 4)
	if err != nil {
		t.Fatal(err)
	}
	steer.off.Store(true)
	if err := checkDistinct(refs); err != nil {
		t.Fatal(err)
	}
	held := holdersOf(refs)
	for _, p := range bad {
		if held[p] == 0 {
			t.Fatalf("hostile donor %s holds no fragment: the test would prove nothing", p)
		}
	}
	t.Logf("placed %d chunks; the corrupt, stalling and dropping donors hold %d, %d and %d fragments (%v)",
		len(refs), held[corr.peer()], held[stl.peer()], held[drop.d.peer()], time.Since(begin).Round(time.Millisecond))
	if drop.puts.Load() == 0 {
		t.Fatal("the dropping donor swallowed no PUT")
	}

	corr.on.Store(true)
	stl.on.Store(true)
	// Ask the hostile holders first (the daemons are avoided), so every chunk they hold is
	// read through their misbehaviour; a short GET timeout bounds the staller's cost when
	// hedging has not already bypassed it.
	var daemons []swarm.PeerID
	for _, d := range ds {
		daemons = append(daemons, swarm.PeerID(d.ID.String()))
	}
	rst, err := pipeline.NewStore(nw, testKeys(), pipeline.Config{K: 4, M: 2, Fetch: swarm.FetchOptions{Avoid: daemons, Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readBack(ctx, rst, refs, seed, size, 4); err != nil {
		t.Fatalf("read with hostile holders asked first: %v", err)
	}
	if corr.gets.Load() == 0 || stl.gets.Load() == 0 {
		t.Fatalf("hostile donors not asked: corrupt met %d GETs, stall %d", corr.gets.Load(), stl.gets.Load())
	}

	u := upkeep.New(nw, upkeep.Config{Timeout: 2 * time.Second})
	where := func(p swarm.PeerID) (out []int) { // every fragment held by p, as chunk*n+index
		for i, r := range refs {
			for j, f := range r.Fragments {
				if f.Peer == p {
					out = append(out, i*len(r.Fragments)+j)
				}
			}
		}
		return out
	}
	missing := func(hs []upkeep.Health) (out []int) {
		for i, h := range hs {
			for _, j := range h.Missing {
				out = append(out, i*len(h.Ref.Fragments)+j)
			}
		}
		return out
	}

	// A HAS-only check: the dropper's fragments are missing, every other is there.
	hs, cst, err := u.Check(ctx, refs, upkeep.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := missing(hs), where(drop.d.peer()); !slices.Equal(got, want) || len(cst.Failures) != 0 {
		t.Fatalf("check: missing %v, want the dropper's %v; failures %v", got, want, cst.Failures)
	}
	// The dropper answered HAS but lacks what it accepted: it is no place for rebuilt
	// fragments, and the check says so.
	if d := []swarm.PeerID{drop.d.peer()}; !slices.Equal(cst.Deniers, d) || !slices.Equal(cst.Suspects(), d) {
		t.Fatalf("check: deniers %v, suspects %v; want only the dropper", cst.Deniers, cst.Suspects())
	}

	// A verifying check fetches and hashes every fragment: the corrupt and stalled ones
	// are bad too.
	start := time.Now()
	stlGets := stl.gets.Load()
	hs, cst, err = u.Check(ctx, refs, upkeep.CheckOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Concat(where(corr.peer()), where(stl.peer()), where(drop.d.peer()))
	slices.Sort(want)
	if got := missing(hs); !slices.Equal(got, want) {
		t.Fatalf("verified check: missing %v, want the hostile donors' %v", got, want)
	}
	// The staller costs one audit timeout: its other fragments are not asked for again.
	if !slices.Equal(cst.Liars, []swarm.PeerID{corr.peer()}) || len(cst.Failures) != 1 || cst.Failures[0].Peer != stl.peer() ||
		stl.gets.Load() != stlGets+1 || !sameSet(cst.Suspects(), bad) || cst.Unreadable != 0 {
		t.Fatalf("verified check: liars %v, failures %v, suspects %v (want the corrupt, stalling and dropping donors), "+
			"%d audit GETs to the staller; %+v", cst.Liars, cst.Failures, cst.Suspects(), stl.gets.Load()-stlGets, cst)
	}
	t.Logf("verified check: %d of %d fragments good, %d corrupt, %d not audited after the staller's timeout (%v)",
		cst.Found, cst.Fragments, cst.Corrupt, cst.Unaudited, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	updated, rpst, err := u.RepairAll(ctx, hs, upkeep.RepairOptions{Avoid: cst.Suspects()})
	if err != nil || rpst.Failed != 0 || rpst.Partial != 0 || rpst.Rebuilt != len(want) {
		t.Fatalf("repair: %+v, %v; want %d fragments rebuilt", rpst, err, len(want))
	}
	t.Logf("repair: %d chunks, %d fragments rebuilt in %v", rpst.Repaired, rpst.Rebuilt, time.Since(start).Round(time.Millisecond))
	repaired := slices.Clone(refs)
	for i, r := range repaired {
		if nr, ok := updated[r.ID]; ok {
			repaired[i] = nr
		}
	}
	if err := checkDistinct(repaired); err != nil {
		t.Fatal(err)
	}
	for i, r := range repaired {
		for j, f := range r.Fragments {
			if !honest(f.Peer) {
				t.Fatalf("chunk %d fragment %d still on hostile donor %s", i, j, f.Peer)
			}
		}
	}
	hs, cst, err = u.Check(ctx, repaired, upkeep.CheckOptions{Verify: true})
	if err != nil || cst.Complete != len(repaired) || cst.Found != cst.Fragments || len(cst.Liars) != 0 {
		t.Fatalf("verified check after repair: %+v, %v", cst, err)
	}
	if _, err := readBack(ctx, rst, repaired, seed, size, 4); err != nil {
		t.Fatalf("read after repair: %v", err)
	}
	t.Logf("every chunk has %d verified fragments on honest peers; whole test %v",
		len(repaired[0].Fragments), time.Since(begin).Round(time.Millisecond))
}

// sameSet reports whether a and b hold the same peers, in any order.
func sameSet(a, b []swarm.PeerID) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// steerNet puts one hostile peer first among each chunk's placement candidates, taking
// them in turn chunk after chunk, and hides the other hostile peers; once off, it passes
// candidates through.
type steerNet struct {
	swarm.Network
	hostile []swarm.PeerID
	off     atomic.Bool

	mu   sync.Mutex
	next int                     // guarded by mu
	pick map[string]swarm.PeerID // guarded by mu: the hostile peer given to each key
}

func (s *steerNet) Candidates(ctx context.Context, key []byte, n int) ([]swarm.Peer, error) {
	ps, err := s.Network.Candidates(ctx, key, n+len(s.hostile))
	if err != nil || s.off.Load() {
		return ps, err
	}
	s.mu.Lock()
	if s.pick == nil {
		s.pick = map[string]swarm.PeerID{}
	}
	h, ok := s.pick[string(key)]
	if !ok {
		h = s.hostile[s.next%len(s.hostile)]
		s.next++
		s.pick[string(key)] = h
	}
	s.mu.Unlock()
	out := make([]swarm.Peer, 0, len(ps))
	for _, p := range ps {
		if p.ID == h {
			out = append([]swarm.Peer{p}, out...)
		} else if !slices.Contains(s.hostile, p.ID) {
			out = append(out, p)
		}
	}
	return out[:min(n, len(out))], nil
}

// Fields of a PUT request after the version and op bytes (docs/format.md, "Fragment
// protocol"): id, owner, expires, length.
const putFixed = 32 + 32 + 8 + 4

// dropper is a donor that answers OK to every PUT and stores nothing; other requests
// reach the real server (so HAS truthfully says it lacks what it accepted).
type dropper struct {
	d    *hostileDonor // never switched on: only its server is used
	puts atomic.Int64  // PUTs swallowed
}

func startDropper(tb testing.TB, quota int64, boot []string) *dropper {
	tb.Helper()
	dr := &dropper{d: startHostile(tb, deny, quota, boot)}
	dr.d.node.Host().SetStreamHandler(dht.FragmentProtocol, dr.handle)
	return dr
}

func (dr *dropper) handle(s network.Stream) {
	var head [2 + putFixed]byte
	if _, err := io.ReadFull(s, head[:2]); err != nil {
		s.Reset()
		return
	}
	if head[0] != wireVersion || head[1] != opPut {
		dr.d.serve(&prefixStream{Stream: s, r: io.MultiReader(bytes.NewReader(head[:2]), s)})
		return
	}
	if _, err := io.ReadFull(s, head[2:]); err != nil {
		s.Reset()
		return
	}
	length := binary.BigEndian.Uint32(head[2+putFixed-4:])
	if _, err := io.CopyN(io.Discard, s, int64(length)); err != nil {
		s.Reset()
		return
	}
	dr.puts.Add(1)
	_, _ = s.Write([]byte{statusOK})
	s.Close()
}

// More bytes of the fragment protocol, spelled out as in hostile_test.go.
const (
	opPut    = 1
	statusOK = 0
)
