package dht

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/dht/store"
	"github.com/scatterfs/scatter/swarm"
)

// tcpSwarm starts donors (server mode with a store) on loopback TCP, all bootstrapped
// through the first.
func tcpSwarm(t *testing.T, donors int) []*Node {
	t.Helper()
	var nodes []*Node
	for range donors {
		nodes = append(nodes, tcpNode(t, nodes, Config{Mode: ModeServer, Store: store.Config{Quota: testQuota}}))
	}
	return nodes
}

// tcpNode starts a node on loopback TCP bootstrapped through nodes[0], if any.
func tcpNode(t *testing.T, nodes []*Node, cfg Config) *Node {
	t.Helper()
	cfg.DataDir = t.TempDir()
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	if len(nodes) > 0 {
		for _, a := range nodes[0].Addrs() {
			cfg.Bootstrap = append(cfg.Bootstrap, a.String())
		}
	}
	return newTestNodeCfg(t, cfg)
}

func newTestNetwork(t *testing.T, n *Node) *Network {
	t.Helper()
	nw, err := NewNetwork(n, NetworkConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return nw
}

// TestCandidates checks on real hosts that Candidates returns the donors and only them:
// not itself, not client-mode peers, not a DHT server without a store; nearest to the key
// first, each with its free space and, once pinged, its latency.
func TestCandidates(t *testing.T) {
	donors := tcpSwarm(t, 4)
	dhtOnly := tcpNode(t, donors, Config{Mode: ModeServer})
	other := tcpNode(t, donors, Config{Mode: ModeClient})
	client := tcpNode(t, donors, Config{Mode: ModeClient, Owner: newOwner(t)})
	nw := newTestNetwork(t, client)

	// A donor acting as a client too: it must never be its own candidate.
	selfDonor := tcpNode(t, donors, Config{Mode: ModeServer, Owner: newOwner(t), Store: store.Config{Quota: testQuota}})
	selfNet := newTestNetwork(t, selfDonor)

	var want []peer.ID
	for _, d := range donors {
		want = append(want, d.ID())
	}
	for _, key := range [][]byte{[]byte("chunk one"), []byte("chunk two"), {0xff}} {
		got, err := nw.Candidates(t.Context(), key, 100)
		if err != nil {
			t.Fatal(err)
		}
		var ids []peer.ID
		for _, c := range got {
			id, err := peer.Decode(string(c.ID))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
			if c.Free != testQuota {
				t.Errorf("candidate %s: Free %d, want the whole quota %d", c.ID, c.Free, testQuota)
			}
		}
		for _, bad := range []*Node{client, other, dhtOnly} {
			if slices.Contains(ids, bad.ID()) {
				t.Errorf("Candidates returned %s (%v mode, store: %v)", bad.ID(), bad.Mode(), bad != dhtOnly)
			}
		}
		for _, d := range append(donors, selfDonor) {
			if !slices.Contains(ids, d.ID()) {
				t.Errorf("Candidates %v lacks donor %s", ids, d.ID())
			}
		}
		for i := 1; i < len(ids); i++ {
			if kb.Closer(ids[i], ids[i-1], string(key)) {
				t.Errorf("Candidates for %q not nearest first: %v", key, ids)
			}
		}

		mine, err := selfNet.Candidates(t.Context(), key, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range mine {
			if c.ID == swarm.PeerID(selfDonor.ID().String()) {
				t.Errorf("a donor's own Candidates returned itself")
			}
		}
	}

	if got, err := nw.Candidates(t.Context(), []byte("k"), 2); err != nil || len(got) != 2 {
		t.Errorf("Candidates(n=2) = %v, %v; want 2 peers", got, err)
	}
	if _, err := nw.Candidates(t.Context(), nil, 2); err == nil {
		t.Error("Candidates with an empty key succeeded")
	}

	// Latency comes from the ping loop; ping now rather than wait for it.
	client.pingPeers(t.Context(), []peer.ID{donors[0].ID()})
	p := swarm.PeerID(donors[0].ID().String())
	if nw.Latency(p) <= 0 {
		t.Errorf("Latency of a pinged peer = %v", nw.Latency(p))
	}
	if got, _ := nw.Candidates(t.Context(), []byte("chunk one"), 100); !slices.ContainsFunc(got, func(c swarm.Peer) bool {
		return c.ID == p && c.Latency == nw.Latency(p)
	}) {
		t.Errorf("Candidates do not carry the measured latency of %s: %v", p, got)
	}
	if nw.Latency("not a peer ID") != 0 {
		t.Error("Latency of a malformed peer ID is not 0")
	}
}

// TestFindPeerFallback checks that a request reaches a peer whose address this node has
// forgotten, or knows only in a stale form, through the DHT's peer routing: manifests
// record only peer IDs.
func TestFindPeerFallback(t *testing.T) {
	donors := tcpSwarm(t, 4)
	client := tcpNode(t, donors, Config{Mode: ModeClient, Owner: newOwner(t)})
	nw := newTestNetwork(t, client)
	target := donors[3]
	p := swarm.PeerID(target.ID().String())
	data := bytes.Repeat([]byte{7}, 3000)
	id := chunker.FragmentIDOf(data)
	if err := nw.Put(t.Context(), p, id, data, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	forget := func(stale ...ma.Multiaddr) {
		h := client.Host()
		if err := h.Network().ClosePeer(target.ID()); err != nil {
			t.Fatal(err)
		}
		h.Peerstore().ClearAddrs(target.ID())
		h.Peerstore().AddAddrs(target.ID(), stale, peerstore.PermanentAddrTTL)
		if len(h.Peerstore().Addrs(target.ID())) != len(stale) {
			t.Fatal("the peerstore still knows the target's addresses")
		}
	}

	forget()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	got, err := nw.Get(ctx, p, id)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get from a peer with no known address: err %v", err)
	}
	if len(client.Host().Peerstore().Addrs(target.ID())) == 0 {
		t.Error("the target's addresses were not learned")
	}

	// A stale address: a port nobody listens on any more.
	forget(ma.StringCast("/ip4/127.0.0.1/tcp/1"))
	if _, err := nw.Stat(ctx, p); err != nil {
		t.Fatalf("Stat of a peer known at a stale address: %v", err)
	}
}
