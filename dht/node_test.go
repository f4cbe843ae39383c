package dht

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
)

// newTestNode starts a node on loopback with a fresh data dir and closes it at cleanup.
func newTestNode(t *testing.T, mode Mode, bootstrap ...*Node) *Node {
	t.Helper()
	cfg := Config{DataDir: t.TempDir(), Mode: mode}
	for _, b := range bootstrap {
		for _, a := range b.Addrs() {
			cfg.Bootstrap = append(cfg.Bootstrap, a.String())
		}
	}
	return newTestNodeCfg(t, cfg)
}

func newTestNodeCfg(t *testing.T, cfg Config) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	n, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

func TestIdentityPersists(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	n1, err := New(ctx, Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	id := n1.ID()
	if err := n1.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, identityFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("identity file mode %v, want 0600", perm)
	}
	n2, err := New(ctx, Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if n2.ID() != id {
		t.Errorf("peer ID changed across restart: %s, then %s", id, n2.ID())
	}
	pk, err := id.ExtractPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if pk.Type().String() != "Ed25519" {
		t.Errorf("identity key type %v, want Ed25519", pk.Type())
	}

	// Another data dir is another peer.
	n3, err := New(ctx, Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer n3.Close()
	if n3.ID() == id {
		t.Error("two data dirs gave the same peer ID")
	}
}

func TestConfigErrors(t *testing.T) {
	corrupt := t.TempDir()
	if err := os.WriteFile(filepath.Join(corrupt, identityFile), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]Config{
		"no data dir":       {},
		"corrupt identity":  {DataDir: corrupt},
		"bad bootstrap":     {DataDir: t.TempDir(), Bootstrap: []string{"/ip4/127.0.0.1/tcp/1"}},
		"garbage bootstrap": {DataDir: t.TempDir(), Bootstrap: []string{"hello"}},
		"bad listen":        {DataDir: t.TempDir(), ListenAddrs: []string{"/ip4/999.0.0.1/tcp/0"}},
		"short owner":       {DataDir: t.TempDir(), Owner: make([]byte, 7)},
	} {
		t.Run(name, func(t *testing.T) {
			n, err := New(t.Context(), cfg)
			if err == nil {
				n.Close()
				t.Fatal("New succeeded")
			}
			t.Log(err)
		})
	}
}

func TestAddrs(t *testing.T) {
	n := newTestNode(t, ModeServer)
	addrs := n.Addrs()
	var tcp, quic bool
	for _, a := range addrs {
		ai, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if ai.ID != n.ID() {
			t.Errorf("%s names peer %s, want %s", a, ai.ID, n.ID())
		}
		s := a.String()
		tcp = tcp || (strings.Contains(s, "/ip4/127.0.0.1/tcp/") && !strings.Contains(s, "/tcp/0/"))
		quic = quic || strings.Contains(s, "/quic-v1")
	}
	if !tcp || !quic {
		t.Errorf("addresses %v: want loopback TCP and QUIC", addrs)
	}
}

// TestJoin starts servers and a client on loopback TCP, each bootstrapping from the first
// server, and checks that the DHT routing tables fill with the servers and never hold the
// client.
func TestJoin(t *testing.T) {
	first := newTestNode(t, ModeServer)
	servers := []*Node{first}
	for range 3 {
		servers = append(servers, newTestNode(t, ModeServer, first))
	}
	client := newTestNode(t, ModeClient, servers[len(servers)-1])
	if client.DHT().Mode() != kaddht.ModeClient || first.DHT().Mode() != kaddht.ModeServer {
		t.Fatalf("DHT modes: client %v, server %v", client.DHT().Mode(), first.DHT().Mode())
	}

	// A refresh looks up the node's own ID, querying every server of this small network
	// and adding each one that answers to the routing table.
	for _, n := range append(servers, client) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatalf("%s: Bootstrap: %v", n.ID(), err)
		}
		cancel()
	}
	for _, n := range append(servers, client) {
		rt := n.DHT().RoutingTable().ListPeers()
		for _, s := range servers {
			if s != n && !slices.Contains(rt, s.ID()) {
				t.Errorf("%s (%v): routing table %v lacks server %s", n.ID(), n.Mode(), rt, s.ID())
			}
		}
		if slices.Contains(rt, client.ID()) {
			t.Errorf("%s: routing table holds the client %s", n.ID(), client.ID())
		}
	}
}
