package swarm_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/swarm/memnet"
)

// TestMain fails the package if any test leaves a goroutine behind: Place and Fetch
// promise that none outlives the call.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const owner = "owner"

// fragments returns n random fragments of size bytes and their IDs.
func fragments(seed uint64, n, size int) ([][]byte, []chunker.FragmentID) {
	r := rand.New(rand.NewPCG(seed, 1))
	frags := make([][]byte, n)
	ids := make([]chunker.FragmentID, n)
	for i := range frags {
		frags[i] = make([]byte, size)
		for j := range frags[i] {
			frags[i][j] = byte(r.Uint32())
		}
		ids[i] = chunker.FragmentIDOf(frags[i])
	}
	return frags, ids
}

// world returns a world of n peers p0…p(n-1), each with quota bytes, and a Net on it from a
// node outside the world.
func world(n int, quota int64) (*memnet.World, *memnet.Net, []swarm.PeerID) {
	w := memnet.NewWorld()
	ids := w.AddPeers("p", n, quota)
	return w, w.Net("self", owner), ids
}

// stored returns how many fragments all of peers store together.
func stored(t *testing.T, net swarm.Network, peers []swarm.PeerID) int64 {
	t.Helper()
	var total int64
	for _, p := range peers {
		st, err := net.Stat(context.Background(), p)
		if err != nil {
			t.Fatalf("Stat %s: %v", p, err)
		}
		total += st.Fragments
	}
	return total
}

// spread gives peer i a one-way delay growing linearly from lo to hi over the peers.
func spread(w *memnet.World, peers []swarm.PeerID, lo, hi time.Duration) {
	for i, p := range peers {
		w.SetDelay(p, lo+time.Duration(i)*(hi-lo)/time.Duration(max(len(peers)-1, 1)))
	}
}

func requests(w *memnet.World, peers []swarm.PeerID, op memnet.Op) map[swarm.PeerID]int {
	m := make(map[swarm.PeerID]int)
	for _, p := range peers {
		if n := w.Requests(p, op); n > 0 {
			m[p] = n
		}
	}
	return m
}

func peerName(i int) swarm.PeerID { return swarm.PeerID(fmt.Sprintf("p%d", i)) }
