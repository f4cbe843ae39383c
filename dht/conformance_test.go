// The swarmtest conformance suite on libp2p: mocknet hosts and real TCP hosts on loopback.

package dht

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/scatterfs/scatter/dht/store"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/swarm/swarmtest"
)

// conformanceNet builds the swarmtest harness on nodes made by add: donors (server mode
// with a store), a DHT-only server (no store: never a candidate), and two client-mode
// nodes acting for owners A and B. kill stops a node.
func conformanceNet(t *testing.T, peers int, add func(Config) *Node, kill func(*Node)) swarmtest.Harness {
	var h swarmtest.Harness
	byID := make(map[swarm.PeerID]*Node)
	for range peers {
		n := add(Config{Mode: ModeServer, Store: store.Config{Quota: testQuota}})
		id := swarm.PeerID(n.ID().String())
		byID[id] = n
		h.Peers = append(h.Peers, id)
	}
	add(Config{Mode: ModeServer}) // serves the DHT, stores nothing

	newNet := func(owner ed25519.PrivateKey) (*Node, *Network) {
		n := add(Config{Mode: ModeClient, Owner: owner})
		nw, err := NewNetwork(n, NetworkConfig{})
		if err != nil {
			t.Fatal(err)
		}
		return n, nw
	}
	self, a := newNet(newOwner(t))
	other, b := newNet(newOwner(t))
	h.Net, h.Other = a, b
	h.Self = swarm.PeerID(self.ID().String())
	h.Clients = []swarm.PeerID{swarm.PeerID(other.ID().String())}

	h.Kill = func(p swarm.PeerID) { kill(byID[p]) }
	h.Hang = func(p swarm.PeerID) {
		release := make(chan struct{})
		// Registered after the node's cleanup, so it runs first: the handlers end
		// before the host closes.
		t.Cleanup(func() { close(release) })
		byID[p].host.SetStreamHandler(FragmentProtocol, func(s network.Stream) {
			<-release
			_ = s.Reset()
		})
	}
	return h
}

// TestConformanceMocknet runs the swarm.Network conformance suite on mocknet hosts with a
// millisecond of one-way latency on every link.
func TestConformanceMocknet(t *testing.T) {
	swarmtest.Run(t, func(t *testing.T, peers int) swarmtest.Harness {
		m := newMockSwarm(t)
		add := func(cfg Config) *Node {
			return m.add(cfg, func(*Node) time.Duration { return time.Millisecond })
		}
		return conformanceNet(t, peers, add, m.kill)
	})
}

// TestConformanceTCP runs the swarm.Network conformance suite on real hosts over loopback
// TCP, each with its own identity, store and DHT, joined through the first one. The hosts
// listen on TCP only: a QUIC dial to a killed peer's port waits out the whole dial timeout
// (UDP gives no "connection refused"), which would make Unreachable slow for no gain.
// TestQUIC covers QUIC.
func TestConformanceTCP(t *testing.T) {
	swarmtest.Run(t, func(t *testing.T, peers int) swarmtest.Harness {
		var first *Node
		add := func(cfg Config) *Node {
			cfg.DataDir = t.TempDir()
			cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
			if first != nil {
				for _, a := range first.Addrs() {
					cfg.Bootstrap = append(cfg.Bootstrap, a.String())
				}
			}
			n := newTestNodeCfg(t, cfg)
			if first == nil {
				first = n
			}
			return n
		}
		kill := func(n *Node) {
			if err := n.Close(); err != nil {
				t.Errorf("kill %s: %v", n.ID(), err)
			}
		}
		return conformanceNet(t, peers, add, kill)
	})
}
