package integration

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
)

// TestPeers is the end-to-end proof of the peer layer. 20 `scatter daemon` processes on
// loopback TCP and 4 hostile donors in this process form one private DHT; a client node
// bootstrapped through the first daemon finds them all, places 256 MiB (cut, sealed and
// coded 8+4 by pipeline.Store) and reads every byte back. Then:
//
//   - hostile: the 4 in-process donors turn hostile on reads (one corrupts what it
//     serves, one stalls, one answers DENIED, one resets the stream); each is checked to
//     be detected for what it is, and every byte is read again with the hostile holders
//     asked first, so every chunk they hold goes through the bypass;
//
//   - kill: the donors behave again, 4 daemon processes holding 4 fragments of one chunk
//     (and many of others) are killed with SIGKILL, and every byte is read again.
//
//   - restart: one killed daemon restarts from its data directory on a new port, and a new
//     client that knows only the Refs finds it through the DHT, gets each of its
//     fragments, and reads every byte.
//
// The data is never kept: it is regenerated from its seed to compare.
func TestPeers(t *testing.T) {
	const (
		donors = 20
		size   = 256 << 20
		seed   = 3
	)
	begin := time.Now()
	ds := startDaemons(t, donors, "256M")
	boot := ds[0].Addrs
	var hostile []*hostileDonor
	for _, b := range []behaviour{corrupt, stall, deny, reset} {
		hostile = append(hostile, startHostile(t, b, 256<<20, boot))
	}
	_, nw := newClient(t, boot)
	waitCandidates(t, nw, donors+len(hostile))
	t.Logf("%d daemon processes and %d in-process donors up, client sees them all: %v",
		donors, len(hostile), time.Since(begin).Round(time.Millisecond))

	net := &countingNet{Network: nw, spread: true}
	st, err := pipeline.NewStore(net, testKeys(), pipeline.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	start := time.Now()
	refs, err := putStream(ctx, st, plainStream(seed, size), 4)
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	took := time.Since(start)
	t.Logf("placed %d MiB in %d chunks in %v: %.0f MB/s of plaintext, %.0f MB/s of fragments (%d PUTs)",
		size>>20, len(refs), took.Round(time.Millisecond), mbps(size, took), mbps(net.putBytes.Load(), took), net.puts.Load())
	if err := checkDistinct(refs); err != nil {
		t.Fatal(err)
	}
	if k, m := int(refs[0].K), int(refs[0].M); k != chunker.DefaultDataShards || m != chunker.DefaultParityShards {
		t.Fatalf("chunks coded %d+%d, want the defaults %d+%d", k, m, chunker.DefaultDataShards, chunker.DefaultParityShards)
	}
	held := holdersOf(refs)
	for _, h := range hostile {
		if held[h.peer()] == 0 {
			t.Fatalf("the %s donor holds no fragment: the hostile reads would prove nothing", h.behave)
		}
	}
	t.Logf("fragments per holder: %d daemons and %d hostile donors hold %v", donors, len(hostile), counts(held))

	read := func(t *testing.T, st *pipeline.Store, net *countingNet, what string) {
		t.Helper()
		gets, bytes := net.gets.Load(), net.getBytes.Load()
		start := time.Now()
		lat, err := readBack(ctx, st, refs, seed, size, 4)
		if err != nil {
			t.Fatalf("read %s: %v", what, err)
		}
		took := time.Since(start)
		t.Logf("read %s: every byte of %d MiB right in %v, %.0f MB/s of plaintext, %d GETs (%.0f MB/s of fragments); chunk latency p50 %v p99 %v",
			what, size>>20, took.Round(time.Millisecond), mbps(size, took), net.gets.Load()-gets,
			mbps(net.getBytes.Load()-bytes, took), percentile(lat, 50).Round(time.Millisecond), percentile(lat, 99).Round(time.Millisecond))
	}

	if !t.Run("read", func(t *testing.T) { read(t, st, net, "back") }) {
		return
	}

	if !t.Run("hostile", func(t *testing.T) {
		for _, h := range hostile {
			h.on.Store(true)
		}
		defer func() {
			for _, h := range hostile {
				h.on.Store(false)
			}
		}()
		for _, h := range hostile {
			checkDetected(t, nw, h, refs)
		}
		// Ask the hostile holders first: the daemons are "avoided", so they are asked only
		// once a hostile holder has failed (or, for the staller, been hedged).
		var daemons []swarm.PeerID
		for _, d := range ds {
			daemons = append(daemons, swarm.PeerID(d.ID.String()))
		}
		hst, err := pipeline.NewStore(net, testKeys(), pipeline.Config{Fetch: swarm.FetchOptions{Avoid: daemons}})
		if err != nil {
			t.Fatal(err)
		}
		before := make([]int64, len(hostile))
		for i, h := range hostile {
			before[i] = h.gets.Load()
		}
		read(t, hst, net, "with the hostile holders asked first")
		for i, h := range hostile {
			n := h.gets.Load() - before[i]
			t.Logf("the %s donor holds %d fragments and met %d GETs", h.behave, held[h.peer()], n)
			if n == 0 {
				t.Errorf("the %s donor was never asked: its bypass is not shown", h.behave)
			}
		}
	}) {
		return
	}

	var victims []*daemon
	if !t.Run("kill", func(t *testing.T) {
		var chunk int
		victims, chunk = pickVictims(refs, ds, int(refs[0].M))
		if victims == nil {
			t.Fatalf("no chunk has %d fragments on daemon processes", refs[0].M)
		}
		dead := make(map[swarm.PeerID]bool)
		for _, d := range victims {
			d.kill()
			dead[swarm.PeerID(d.ID.String())] = true
		}
		worst, lost := 0, 0
		for _, r := range refs {
			n := 0
			for _, f := range r.Fragments {
				if dead[f.Peer] {
					n++
				}
			}
			worst, lost = max(worst, n), lost+n
		}
		t.Logf("killed %d daemons holding %d fragments, %d of them of chunk %d; the worst chunk lost %d of %d",
			len(victims), lost, refs[0].M, chunk, worst, len(refs[0].Fragments))
		if worst != int(refs[0].M) {
			t.Fatalf("worst chunk lost %d fragments, want exactly m = %d", worst, refs[0].M)
		}
		read(t, st, net, "after the kills")
	}) {
		return
	}

	t.Run("restart", func(t *testing.T) {
		// A killed donor comes back from its data directory on a new port: same peer ID,
		// same fragments. A second client that knows only the Refs (another device of the
		// drive) must find it through the DHT and read from it.
		old := victims[0]
		var live *daemon
		for _, d := range ds {
			if !slices.Contains(victims, d) {
				live = d
				break
			}
		}
		if err := os.Remove(filepath.Join(old.dir, "ready")); err != nil {
			t.Fatal(err)
		}
		back := startDaemon(t, old.dir, "256M", live.Addrs)
		if err := back.waitReady(time.Now().Add(60 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if back.ID != old.ID || slices.Equal(back.Addrs, old.Addrs) {
			t.Fatalf("restarted donor: ID %s at %v, was %s at %v: want the same ID at a new address",
				back.ID, back.Addrs, old.ID, old.Addrs)
		}
		_, nw2 := newClient(t, live.Addrs)
		n := 0
		for _, r := range refs {
			for _, f := range r.Fragments {
				if f.Peer != swarm.PeerID(back.ID.String()) {
					continue
				}
				data, err := nw2.Get(ctx, f.Peer, f.ID)
				if err != nil || chunker.FragmentIDOf(data) != f.ID {
					t.Fatalf("fragment %s from the restarted donor: %d bytes, err %v", f.ID, len(data), err)
				}
				n++
			}
		}
		t.Logf("the restarted donor serves all %d of its fragments to a new client", n)
		net2 := &countingNet{Network: nw2}
		st2, err := pipeline.NewStore(net2, testKeys(), pipeline.Config{})
		if err != nil {
			t.Fatal(err)
		}
		read(t, st2, net2, "by a new client from the Refs alone")
	})
	t.Logf("whole test: %v", time.Since(begin).Round(time.Millisecond))
}

// checkDetected asks h directly for a fragment it holds and checks that the client sees
// the misbehaviour for what it is.
func checkDetected(t *testing.T, nw swarm.Network, h *hostileDonor, refs []pipeline.Ref) {
	t.Helper()
	var id chunker.FragmentID
	found := false
	for _, r := range refs {
		for _, f := range r.Fragments {
			if f.Peer == h.peer() {
				id, found = f.ID, true
			}
		}
	}
	if !found {
		t.Fatalf("the %s donor holds nothing", h.behave)
	}
	ctx := t.Context()
	if h.behave == stall {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Second)
		defer cancel()
	}
	data, err := nw.Get(ctx, h.peer(), id)
	var ok bool
	switch h.behave {
	case corrupt:
		ok = err == nil && chunker.FragmentIDOf(data) != id
	case stall:
		ok = errors.Is(err, context.DeadlineExceeded)
	case deny:
		ok = errors.Is(err, swarm.ErrDenied)
	case reset:
		ok = errors.Is(err, swarm.ErrUnreachable)
	}
	if !ok {
		t.Errorf("the %s donor: GET gave %d bytes, err %v", h.behave, len(data), err)
	} else {
		t.Logf("the %s donor: detected (%d bytes, err %v)", h.behave, len(data), err)
	}
}

// pickVictims returns m daemons that hold fragments of one chunk (the first chunk with m
// fragments on daemons), and that chunk's index.
func pickVictims(refs []pipeline.Ref, ds []*daemon, m int) ([]*daemon, int) {
	byPeer := make(map[swarm.PeerID]*daemon, len(ds))
	for _, d := range ds {
		byPeer[swarm.PeerID(d.ID.String())] = d
	}
	for i, r := range refs {
		var v []*daemon
		for _, f := range r.Fragments {
			if d := byPeer[f.Peer]; d != nil && len(v) < m {
				v = append(v, d)
			}
		}
		if len(v) == m {
			return v, i
		}
	}
	return nil, -1
}

// counts returns the values of m, sorted, for a log line.
func counts(m map[swarm.PeerID]int) []int {
	var out []int
	for _, n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// mbps returns n bytes over d in MB/s (10^6 bytes).
func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }
