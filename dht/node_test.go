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
	ma "github.com/multiformats/go-multiaddr"
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

// TestLimits checks that the resource limits are the documented fixed numbers, not scaled
// with this machine's memory, and that a Limits field overrides its default.
func TestLimits(t *testing.T) {
	c := limitConfig(Limits{}.withDefaults()).ToPartialLimitConfig()
	for name, got := range map[string][2]int64{
		"system memory":    {int64(c.System.Memory), 256 << 20},
		"system conns":     {int64(c.System.Conns), 128},
		"system inbound":   {int64(c.System.ConnsInbound), 96},
		"system streams":   {int64(c.System.Streams), 1024},
		"system FD":        {int64(c.System.FD), 512},
		"transient conns":  {int64(c.Transient.Conns), 32},
		"transient memory": {int64(c.Transient.Memory), 64 << 20},
		"peer memory":      {int64(c.PeerDefault.Memory), 32 << 20},
	} {
		if got[0] != got[1] {
			t.Errorf("%s = %d, want %d", name, got[0], got[1])
		}
	}
	small := limitConfig(Limits{Memory: 64 << 20, Conns: 16}.withDefaults()).ToPartialLimitConfig()
	if small.System.Memory != 64<<20 || small.System.Conns != 16 {
		t.Errorf("overridden limits: memory %d, conns %d", small.System.Memory, small.System.Conns)
	}
}

// TestDialRanker checks that TCP addresses are dialed before QUIC ones.
func TestDialRanker(t *testing.T) {
	addrs := []ma.Multiaddr{
		ma.StringCast("/ip4/192.0.2.1/udp/4001/quic-v1"),
		ma.StringCast("/ip4/192.0.2.1/tcp/4001"),
		ma.StringCast("/ip4/127.0.0.1/udp/4001/quic-v1"),
		ma.StringCast("/ip4/127.0.0.1/tcp/4001"),
	}
	var lastTCP, firstQUIC time.Duration = -1, time.Hour
	for _, d := range tcpFirstRanker(addrs) {
		if _, err := d.Addr.ValueForProtocol(ma.P_TCP); err == nil {
			lastTCP = max(lastTCP, d.Delay)
		} else {
			firstQUIC = min(firstQUIC, d.Delay)
		}
	}
	if lastTCP < 0 || firstQUIC == time.Hour || firstQUIC <= lastTCP {
		t.Errorf("last TCP dial at %v, first QUIC dial at %v: want every TCP dial first", lastTCP, firstQUIC)
	}
}
