package dht

import (
	"bytes"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/dht/store"
	"github.com/scatterfs/scatter/swarm"
)

// TestQUIC moves fragments between hosts that have only QUIC in common.
func TestQUIC(t *testing.T) {
	quicOnly := []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	donor := newTestNodeCfg(t, Config{DataDir: t.TempDir(), ListenAddrs: quicOnly, Mode: ModeServer,
		Store: store.Config{Quota: testQuota}})
	var boot []string
	for _, a := range donor.Addrs() {
		boot = append(boot, a.String())
	}
	client := newTestNodeCfg(t, Config{DataDir: t.TempDir(), ListenAddrs: quicOnly, Owner: newOwner(t),
		Bootstrap: boot})
	nw, err := NewNetwork(client, NetworkConfig{})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("scatter over quic "), 60000)
	id := chunker.FragmentIDOf(data)
	p := swarm.PeerID(donor.ID().String())
	if err := nw.Put(t.Context(), p, id, data, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := nw.Get(t.Context(), p, id)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get: err %v, equal %v", err, bytes.Equal(got, data))
	}
	for _, c := range client.Host().Network().ConnsToPeer(donor.ID()) {
		if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_QUIC_V1); err != nil {
			t.Errorf("connection over %s, want QUIC", c.RemoteMultiaddr())
		}
	}
}
