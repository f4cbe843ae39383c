package dht

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// Mode says whether a node serves the DHT and stores fragments for others.
type Mode int

const (
	// ModeClient is for pure clients (phones, laptops that donate nothing): the node asks
	// the DHT but does not answer it, and is never a placement candidate. It is the zero
	// value so that a node serves others only when configured to.
	ModeClient Mode = iota
	// ModeServer is for donors: the node answers DHT queries and runs a fragment store.
	ModeServer
)

// String returns "client" or "server".
func (m Mode) String() string {
	switch m {
	case ModeClient:
		return "client"
	case ModeServer:
		return "server"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Default listen addresses: loopback only, an ephemeral port, TCP and QUIC. A node that
// should be reachable from other machines must be given its listen addresses explicitly.
var defaultListenAddrs = []string{
	"/ip4/127.0.0.1/tcp/0",
	"/ip4/127.0.0.1/udp/0/quic-v1",
}

// NAT lists the features that help peers behind NATs. Each one talks to other machines on
// its own initiative (a router, relays, peers dialing back), so all are off by default and
// off in tests.
type NAT struct {
	// AutoNATService answers other peers' reachability checks by dialing them back
	// (AutoNAT v1 service and v2).
	AutoNATService bool
	// HolePunching coordinates direct connections through NATs (DCUtR). It needs Relay.
	HolePunching bool
	// Relay lets the node accept and make relayed connections, and reserve slots on
	// Relays. A relayed connection is limited (2 minutes, 128 KiB) and only carries
	// control traffic: such peers are never placement candidates.
	Relay bool
	// Relays are static relay multiaddrs (with /p2p/) used when Relay is set.
	Relays []string
	// PortMap asks the router for a port mapping (UPnP, NAT-PMP).
	PortMap bool
}

// Limits are the host's fixed resource limits. libp2p's default scales its limits with
// the machine's memory (an eighth of RAM, up to 1 GiB): a donor on a phone or home PC must
// instead have a known ceiling, whatever else runs on the machine. A zero field takes the
// default given in its comment.
type Limits struct {
	// Memory caps what libp2p may reserve in total: stream buffers, yamux receive windows
	// and the fragment protocol's reservations. Default 256 MiB.
	Memory int64
	// PeerMemory caps the reservations of one peer, so one peer cannot starve the rest.
	// Default 32 MiB: a few 4 MiB fragments in flight plus yamux windows.
	PeerMemory int64
	// FD caps file descriptors used by sockets. Default 512.
	FD int
	// Conns caps open connections (hard limit; the connection manager trims well below
	// it). Default 128, of which at most 96 inbound.
	Conns int
	// Streams caps open streams. Default 1024, of which at most 512 inbound.
	Streams int
	// ConnsLow and ConnsHigh are the connection manager's watermarks: above ConnsHigh it
	// closes the least useful connections down to ConnsLow. Defaults 32 and 64.
	ConnsLow, ConnsHigh int
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if l.Memory <= 0 {
		l.Memory = 256 << 20
	}
	if l.PeerMemory <= 0 {
		l.PeerMemory = 32 << 20
	}
	def(&l.FD, 512)
	def(&l.Conns, 128)
	def(&l.Streams, 1024)
	def(&l.ConnsLow, 32)
	def(&l.ConnsHigh, 64)
	return l
}

// resourceManager builds a resource manager with fixed limits. libp2p's per-service,
// per-protocol and per-connection defaults are kept, but scaled for the fixed Memory and
// FD instead of the machine's RAM, and the system, transient and per-peer scopes get
// explicit numbers.
func resourceManager(l Limits) (network.ResourceManager, error) {
	return rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limitConfig(l)))
}

// limitConfig is the concrete limit configuration for l.
func limitConfig(l Limits) rcmgr.ConcreteLimitConfig {
	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	base := scaling.Scale(l.Memory, l.FD)

	inbound := func(total int) rcmgr.LimitVal { return rcmgr.LimitVal(max(total*3/4, 1)) }
	half := func(total int) rcmgr.LimitVal { return rcmgr.LimitVal(max(total/2, 1)) }
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Memory:          rcmgr.LimitVal64(l.Memory),
			FD:              rcmgr.LimitVal(l.FD),
			Conns:           rcmgr.LimitVal(l.Conns),
			ConnsInbound:    inbound(l.Conns),
			ConnsOutbound:   inbound(l.Conns),
			Streams:         rcmgr.LimitVal(l.Streams),
			StreamsInbound:  half(l.Streams),
			StreamsOutbound: half(l.Streams),
		},
		// Transient: connections and streams not yet attached to a peer or protocol
		// (handshakes, multistream negotiation). A quarter of the system limits, so a
		// flood of half-open connections cannot use everything.
		Transient: rcmgr.ResourceLimits{
			Memory:          rcmgr.LimitVal64(l.Memory / 4),
			FD:              rcmgr.LimitVal(max(l.FD/4, 1)),
			Conns:           rcmgr.LimitVal(max(l.Conns/4, 1)),
			ConnsInbound:    rcmgr.LimitVal(max(l.Conns/4, 1)),
			ConnsOutbound:   rcmgr.LimitVal(max(l.Conns/4, 1)),
			Streams:         rcmgr.LimitVal(max(l.Streams/4, 1)),
			StreamsInbound:  rcmgr.LimitVal(max(l.Streams/4, 1)),
			StreamsOutbound: rcmgr.LimitVal(max(l.Streams/4, 1)),
		},
		PeerDefault: rcmgr.ResourceLimits{
			Memory: rcmgr.LimitVal64(l.PeerMemory),
		},
	}
	return partial.Build(base)
}

// tcpFirstRanker is the dial ranker: TCP addresses are dialed first and QUIC ones only
// 250 ms later. One TCP+TLS+yamux stream carries ~1.1 GB/s on this hardware against
// QUIC's ~0.37 GB/s, so when both work TCP should win; libp2p's default ranker prefers
// QUIC.
func tcpFirstRanker(addrs []ma.Multiaddr) []network.AddrDelay {
	var tcpAddrs, rest []ma.Multiaddr
	for _, a := range addrs {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			tcpAddrs = append(tcpAddrs, a)
		} else {
			rest = append(rest, a)
		}
	}
	out := swarm.DefaultDialRanker(tcpAddrs)
	var offset time.Duration
	if len(out) > 0 {
		offset = out[len(out)-1].Delay + 250*time.Millisecond
	}
	for _, d := range swarm.DefaultDialRanker(rest) {
		d.Delay += offset
		out = append(out, d)
	}
	return out
}

// identityFile is the name of the peer identity key in the data directory.
const identityFile = "identity.key"

// loadIdentity returns the Ed25519 identity stored in dir, creating it (mode 0600) on
// first start. The peer ID derives from this key, and manifests record peer IDs, so losing
// it orphans every fragment a donor holds: it is written to a temporary file, synced and
// renamed into place.
func loadIdentity(dir string) (crypto.PrivKey, error) {
	if dir == "" {
		return nil, errors.New("dht: Config.DataDir is empty")
	}
	path := filepath.Join(dir, identityFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		sk, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("dht: identity %s: %w", path, err)
		}
		if sk.Type() != crypto.Ed25519 {
			return nil, fmt.Errorf("dht: identity %s: key type %v, want Ed25519", path, sk.Type())
		}
		return sk, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("dht: identity: %w", err)
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dht: identity: %w", err)
	}
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dht: identity: %w", err)
	}
	b, err = crypto.MarshalPrivateKey(sk)
	if err != nil {
		return nil, fmt.Errorf("dht: identity: %w", err)
	}
	if err := writeFileAtomic(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("dht: identity: %w", err)
	}
	return sk, nil
}

// writeFileAtomic writes b to path through a synced temporary file and a rename, so a
// crash leaves either no file or the whole file.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // best effort: makes the rename durable on Linux
		_ = d.Close()
	}
	return nil
}

// parseAddrInfos parses full multiaddrs (ending in /p2p/<id>) and merges the addresses of
// the same peer.
func parseAddrInfos(addrs []string) ([]peer.AddrInfo, error) {
	mas := make([]ma.Multiaddr, 0, len(addrs))
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("dht: peer address %q: %w", s, err)
		}
		mas = append(mas, a)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(mas...)
	if err != nil {
		return nil, fmt.Errorf("dht: peer addresses: %w", err)
	}
	return infos, nil
}

// newHost builds the libp2p host for cfg (already defaulted) with identity sk. The host
// does not close the resource manager it was given: the caller closes rm after the host.
func newHost(cfg *Config, sk crypto.PrivKey) (_ host.Host, rm network.ResourceManager, _ error) {
	rm, err := resourceManager(cfg.Limits)
	if err != nil {
		return nil, nil, fmt.Errorf("dht: resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(cfg.Limits.ConnsLow, cfg.Limits.ConnsHigh,
		connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("dht: connection manager: %w", err), rm.Close())
	}
	opts := []libp2p.Option{
		libp2p.Identity(sk),
		libp2p.ListenAddrStrings(cfg.ListenAddrs...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		// Order is preference: TLS first, it costs much less CPU than Noise here
		// (Noise is ~29% of a write's CPU); Noise stays for peers without TLS.
		libp2p.Security(tls.ID, tls.New),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.SwarmOpts(swarm.WithDialRanker(tcpFirstRanker)),
		// The node runs its own ping service (node.go) so that mocknet hosts in tests
		// get the same one.
		libp2p.Ping(false),
		libp2p.DisableMetrics(),
	}
	if cfg.NAT.Relay {
		opts = append(opts, libp2p.EnableRelay())
		if len(cfg.NAT.Relays) > 0 {
			relays, err := parseAddrInfos(cfg.NAT.Relays)
			if err != nil {
				return nil, nil, errors.Join(err, rm.Close(), cm.Close())
			}
			opts = append(opts, libp2p.EnableAutoRelayWithStaticRelays(relays))
		}
	} else {
		opts = append(opts, libp2p.DisableRelay())
	}
	if cfg.NAT.HolePunching {
		opts = append(opts, libp2p.EnableHolePunching())
	}
	if cfg.NAT.AutoNATService {
		opts = append(opts, libp2p.EnableNATService(), libp2p.EnableAutoNATv2())
	}
	if cfg.NAT.PortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("dht: host: %w", err), rm.Close(), cm.Close())
	}
	return h, rm, nil
}

// ownerKey checks the owner signing key.
func ownerKey(k ed25519.PrivateKey) error {
	if k != nil && len(k) != ed25519.PrivateKeySize {
		return fmt.Errorf("dht: owner key has %d bytes, want %d", len(k), ed25519.PrivateKeySize)
	}
	return nil
}
