package dht

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
)

// testQuota is a donor's quota in the conformance harnesses: swarmtest wants 2 to 16 MiB.
const testQuota = 8 << 20

// newOwner returns a fresh owner key.
func newOwner(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// mockSwarm is a set of nodes on a libp2p mocknet: in-process hosts joined by links that
// can delay every write by a one-way latency, which real loopback cannot do here (no
// netem).
type mockSwarm struct {
	t     testing.TB
	mn    mocknet.Mocknet
	nodes []*Node
}

func newMockSwarm(t testing.TB) *mockSwarm {
	mn := mocknet.New()
	// Registered first, so it runs after every node's Close.
	t.Cleanup(func() { _ = mn.Close() })
	return &mockSwarm{t: t, mn: mn}
}

// add starts a node on a new mocknet host, linked to every earlier node with the one-way
// latency lat returns for that node (nil: no latency), and bootstraps it from the first
// node.
func (m *mockSwarm) add(cfg Config, lat func(other *Node) time.Duration) *Node {
	t := m.t
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	i := len(m.nodes) + 1
	h, err := m.mn.AddPeer(sk, ma.StringCast(fmt.Sprintf("/ip4/10.0.%d.%d/tcp/4001", i/256, i%256)))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range m.nodes {
		l, err := m.mn.LinkPeers(h.ID(), o.ID())
		if err != nil {
			t.Fatal(err)
		}
		if lat != nil {
			l.SetOptions(mocknet.LinkOptions{Latency: lat(o)})
		}
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	var boot []peer.AddrInfo
	if len(m.nodes) > 0 {
		first := m.nodes[0]
		boot = []peer.AddrInfo{{ID: first.ID(), Addrs: first.host.Addrs()}}
	}
	n, err := start(h, cfg, boot, []func() error{h.Close})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close %s: %v", n.ID(), err)
		}
	})
	if len(boot) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
	}
	m.nodes = append(m.nodes, n)
	return n
}

// kill makes n unreachable, like a stopped process: no link reaches it any more.
func (m *mockSwarm) kill(n *Node) {
	for _, o := range m.nodes {
		if o != n {
			_ = m.mn.UnlinkPeers(n.ID(), o.ID())
		}
	}
	if err := n.Close(); err != nil {
		m.t.Errorf("kill %s: %v", n.ID(), err)
	}
}
