package dht

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/sync/errgroup"

	"github.com/scatterfs/scatter/dht/store"
)

// ProtocolPrefix is the prefix of scatter's DHT protocol, which keeps its DHT apart from
// the public IPFS one: peers speaking /ipfs/kad/1.0.0 never enter our routing tables.
const ProtocolPrefix protocol.ID = "/scatter"

// storeDir is the fragment store's directory in Config.DataDir.
const storeDir = "fragments"

// dhtProtocol is the DHT protocol ID a server-mode peer advertises.
const dhtProtocol = ProtocolPrefix + "/kad/1.0.0"

// Config configures a Node. The zero value of every field but DataDir is usable.
type Config struct {
	// DataDir holds the node's identity key (identity.key, mode 0600, created on first
	// start and reused after: the peer ID must survive restarts because manifests record
	// it) and, for servers, the DHT records put on the node (records.db) and the
	// fragment store. Required.
	DataDir string
	// ListenAddrs are multiaddrs to listen on. Default: loopback only, ephemeral ports,
	// /ip4/127.0.0.1/tcp/0 and /ip4/127.0.0.1/udp/0/quic-v1.
	ListenAddrs []string
	// Bootstrap are full multiaddrs (with /p2p/<id>) of peers to join the DHT through.
	// There are no built-in bootstrap peers: an empty list makes a lone first node.
	Bootstrap []string
	// Mode: ModeServer for donors, ModeClient (the default) for pure clients.
	Mode Mode
	// NAT enables NAT traversal features; all off by default.
	NAT NAT
	// MDNS announces and discovers peers on the local link with multicast DNS. Off by
	// default.
	MDNS bool
	// Limits are the fixed resource limits; zero fields take documented defaults.
	Limits Limits
	// Store configures the fragment store of a server-mode node, in DataDir/fragments.
	// A server with Store.Quota 0 runs no store: it serves the DHT only (a bootstrap
	// node, say) and is never a placement candidate. Ignored in client mode.
	Store store.Config
	// Server configures the fragment protocol server in front of the store.
	Server ServerConfig
	// Owner is the Ed25519 key whose public half the fragment protocol records at PUT
	// and which signs DELETE and RENEW. Needed by NewNetwork; a donor that only serves
	// can leave it nil.
	Owner ed25519.PrivateKey
	// PingInterval is how often connected peers are pinged to refresh their latency
	// estimates. A newly connected peer is pinged at once. Default 30 s.
	PingInterval time.Duration
	// PingTimeout bounds one ping. Default 5 s.
	PingTimeout time.Duration
	// BootstrapTimeout bounds connecting to the bootstrap peers and the first routing
	// table refresh in New. Default 10 s.
	BootstrapTimeout time.Duration
	// Logger receives the node's logs. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if len(c.ListenAddrs) == 0 {
		c.ListenAddrs = defaultListenAddrs
	}
	c.Limits = c.Limits.withDefaults()
	if c.PingInterval <= 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = 5 * time.Second
	}
	if c.BootstrapTimeout <= 0 {
		c.BootstrapTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Node is one scatter peer: a libp2p host, its DHT, a ping loop keeping latency estimates
// fresh and, in server mode, the fragment store and server. It is safe for concurrent use.
type Node struct {
	cfg       Config
	host      host.Host
	dht       *kaddht.IpfsDHT
	bootstrap []peer.AddrInfo
	log       *slog.Logger

	rttMu sync.Mutex
	rtt   map[peer.ID]*rttWindow // guarded by rttMu: recent ping samples of connected peers

	// closers run in order by Close, after the background loops have stopped.
	closers []func() error

	ctx       context.Context // ends when Close starts
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New starts a node: it loads or creates the identity in cfg.DataDir, builds the host and
// the DHT, and joins the DHT through cfg.Bootstrap (bounded by cfg.BootstrapTimeout). A
// bootstrap peer that cannot be reached is logged, not fatal: the DHT keeps retrying the
// bootstrap peers while its routing table is empty, and others may dial this node.
// The caller must Close the node.
func New(ctx context.Context, cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := ownerKey(cfg.Owner); err != nil {
		return nil, err
	}
	bootstrap, err := parseAddrInfos(cfg.Bootstrap)
	if err != nil {
		return nil, err
	}
	sk, err := loadIdentity(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	h, rm, err := newHost(&cfg, sk)
	if err != nil {
		return nil, err
	}
	n, err := start(h, cfg, bootstrap, []func() error{h.Close, rm.Close})
	if err != nil {
		return nil, err
	}
	if cfg.MDNS {
		svc := mdns.NewMdnsService(h, "_scatter._udp", mdnsNotifee{n})
		if err := svc.Start(); err != nil {
			return nil, errors.Join(fmt.Errorf("dht: mdns: %w", err), svc.Close(), n.Close())
		}
		// Stop discovering before the DHT and host go away.
		n.closers = append([]func() error{svc.Close}, n.closers...)
	}
	if len(bootstrap) > 0 {
		bctx, cancel := context.WithTimeout(ctx, cfg.BootstrapTimeout)
		err := n.Bootstrap(bctx)
		cancel()
		if err != nil {
			n.log.Warn("dht: bootstrap", "err", err)
		}
	}
	return n, nil
}

// start puts a node on host h, which is already listening. It starts the DHT, the ping
// service and loop. hostClosers close h and what it depends on; they run last in Close.
// Tests use start directly to put nodes on mocknet hosts.
func start(h host.Host, cfg Config, bootstrap []peer.AddrInfo, hostClosers []func() error) (_ *Node, err error) {
	cfg = cfg.withDefaults()
	n := &Node{
		cfg:       cfg,
		host:      h,
		bootstrap: bootstrap,
		log:       cfg.Logger.With("peer", h.ID().String()),
		closers:   hostClosers,
		rtt:       make(map[peer.ID]*rttWindow),
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.ctx, n.cancel = ctx, cancel
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Close())
		}
	}()

	if cfg.Mode == ModeServer && cfg.Store.Quota > 0 {
		if cfg.Store.Logger == nil {
			cfg.Store.Logger = n.log
		}
		if cfg.Server.Logger == nil {
			cfg.Server.Logger = n.log
		}
		st, err := store.Open(filepath.Join(cfg.DataDir, storeDir), cfg.Store)
		if err != nil {
			return nil, fmt.Errorf("dht: %w", err)
		}
		// The store closes last, once the host can deliver no more requests.
		n.closers = append(n.closers, st.Close)
		srv, err := NewServer(h, st, cfg.Server)
		if err != nil {
			return nil, err
		}
		n.closers = append([]func() error{srv.Close}, n.closers...)
	}

	opts := []kaddht.Option{
		kaddht.ProtocolPrefix(ProtocolPrefix),
		kaddht.Mode(kaddht.ModeClient),
		// Always explicit: the list may be empty, but never the public IPFS peers.
		kaddht.BootstrapPeers(bootstrap...),
	}
	if cfg.Mode == ModeServer {
		// A server keeps the value records put on it (drives' root records) on disk, so
		// a restart does not lose them until each drive republishes.
		recs, err := openRecords(filepath.Join(cfg.DataDir, recordsFile))
		if err != nil {
			return nil, err
		}
		// Closed after the host: kad-dht's handlers may read records until it is gone.
		n.closers = append(n.closers, recs.Close)
		opts = append(opts, kaddht.Mode(kaddht.ModeServer), kaddht.ValueDatastore(recs))
	}
	d, err := kaddht.New(h, opts...)
	if err != nil {
		return nil, fmt.Errorf("dht: kad-dht: %w", err)
	}
	n.dht = d
	n.closers = append([]func() error{d.Close}, n.closers...)

	ping.NewPingService(h)

	// The subscription must be drained promptly: the event bus blocks the emitter (the
	// swarm's notification path) when a subscriber's buffer is full. So one goroutine only
	// collects newly connected peers, another pings.
	sub, err := h.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged), eventbus.BufSize(256))
	if err != nil {
		return nil, fmt.Errorf("dht: event bus: %w", err)
	}
	n.closers = append([]func() error{sub.Close}, n.closers...)
	fresh := newPeerQueue()
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		n.collect(ctx, sub, fresh)
	}()
	go func() {
		defer n.wg.Done()
		n.pingLoop(ctx, fresh)
	}()
	return n, nil
}

// ID returns the node's peer ID.
func (n *Node) ID() peer.ID { return n.host.ID() }

// Host returns the libp2p host.
func (n *Node) Host() host.Host { return n.host }

// DHT returns the Kademlia DHT. Call its methods with a cancellable context: a lookup on a
// context that never ends can leak goroutines.
func (n *Node) DHT() *kaddht.IpfsDHT { return n.dht }

// Mode returns the node's mode.
func (n *Node) Mode() Mode { return n.cfg.Mode }

// Addrs returns the node's listen addresses as full multiaddrs (ending in /p2p/<id>),
// ready to be given to other nodes as Config.Bootstrap.
func (n *Node) Addrs() []ma.Multiaddr {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()})
	if err != nil {
		panic("BUG: dht: host addresses: " + err.Error())
	}
	return addrs
}

// Bootstrap connects to the configured bootstrap peers in parallel and refreshes the
// routing table from them, returning once the refresh is done or ctx ends. It fails only
// when no bootstrap peer could be reached.
func (n *Node) Bootstrap(ctx context.Context) error {
	if len(n.bootstrap) == 0 {
		return nil
	}
	errs := make([]error, len(n.bootstrap))
	var g errgroup.Group
	for i, ai := range n.bootstrap {
		if ai.ID == n.host.ID() {
			continue
		}
		g.Go(func() error {
			if err := n.host.Connect(ctx, ai); err != nil {
				errs[i] = fmt.Errorf("%s: %w", ai.ID, err)
				return nil
			}
			// Connect does not wait for identify when the DHT dialed the peer first.
			n.waitIdentified(ctx, ai.ID)
			// The DHT adds an identified peer to its routing table from its own event
			// loop; add it here too, so the refresh below starts from it for certain.
			if ok, _ := n.host.Peerstore().SupportsProtocols(ai.ID, dhtProtocol); len(ok) > 0 {
				_, _ = n.dht.RoutingTable().TryAddPeer(ai.ID, true, false)
			}
			return nil
		})
	}
	_ = g.Wait()
	if err := errors.Join(errs...); err != nil && len(errs) == countNonNil(errs) {
		return fmt.Errorf("dht: no bootstrap peer reachable: %w", err)
	}
	select {
	case err := <-n.dht.RefreshRoutingTable():
		if err != nil {
			return fmt.Errorf("dht: routing table refresh: %w", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitIdentified waits until identify has run on every connection to p, so that the
// peerstore knows p's protocols, or until ctx ends.
func (n *Node) waitIdentified(ctx context.Context, p peer.ID) {
	ider, ok := n.host.(interface{ IDService() identify.IDService })
	if !ok {
		return
	}
	for _, c := range n.host.Network().ConnsToPeer(p) {
		select {
		case <-ider.IDService().IdentifyWait(c):
		case <-ctx.Done():
			return
		}
	}
}

func countNonNil(errs []error) int {
	k := 0
	for _, err := range errs {
		if err != nil {
			k++
		}
	}
	return k
}

// Close stops the background loops, then the DHT, the fragment server and store, and the
// host, and returns all their errors joined. It is safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		n.wg.Wait()
		var errs []error
		for _, c := range n.closers {
			errs = append(errs, c())
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// peerQueue is a set of peers waiting for their first ping, with a signal channel.
type peerQueue struct {
	mu    sync.Mutex
	peers map[peer.ID]struct{} // guarded by mu
	ready chan struct{}        // holds a token while peers is non-empty
}

func newPeerQueue() *peerQueue {
	return &peerQueue{peers: make(map[peer.ID]struct{}), ready: make(chan struct{}, 1)}
}

func (q *peerQueue) add(p peer.ID) {
	q.mu.Lock()
	q.peers[p] = struct{}{}
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *peerQueue) take() []peer.ID {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]peer.ID, 0, len(q.peers))
	for p := range q.peers {
		out = append(out, p)
	}
	clear(q.peers)
	return out
}

// collect queues every newly connected peer for a ping.
func (n *Node) collect(ctx context.Context, sub event.Subscription, q *peerQueue) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			if ev := e.(event.EvtPeerConnectednessChanged); ev.Connectedness == network.Connected {
				q.add(ev.Peer)
			}
		}
	}
}

// pingLoop pings newly connected peers as they come and all connected peers every
// PingInterval. ping.Ping records each round trip in the peerstore's latency EWMA, which
// is what Latency and placement read.
func (n *Node) pingLoop(ctx context.Context, fresh *peerQueue) {
	t := time.NewTicker(n.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-fresh.ready:
			n.pingPeers(ctx, fresh.take())
		case <-t.C:
			n.forgetDisconnected()
			n.pingPeers(ctx, n.host.Network().Peers())
		}
	}
}

// pingPeers pings peers, eight at a time, and returns when all are done.
func (n *Node) pingPeers(ctx context.Context, peers []peer.ID) {
	var g errgroup.Group
	g.SetLimit(8)
	for _, p := range peers {
		g.Go(func() error {
			if _, err := n.ping(ctx, p); err != nil && ctx.Err() == nil {
				n.log.Debug("dht: ping", "to", p.String(), "err", err)
			}
			return nil
		})
	}
	_ = g.Wait()
}

// pingSamples is how many echoes one ping measures on its stream. The first also carries
// the stream's protocol negotiation and is discarded; the lowest of the rest is recorded.
const pingSamples = 3

// ping measures the round trip to a connected peer (it never dials) over the libp2p ping
// protocol and records it in the peerstore's latency EWMA, which Latency and placement
// read. ping.Ping is not used because it records every echo, the first included: that
// one costs an extra round trip of negotiation, and as the EWMA's first sample it would
// skew the estimate for a long time.
func (n *Node) ping(ctx context.Context, p peer.ID) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(network.WithNoDial(ctx, "ping"), n.cfg.PingTimeout)
	defer cancel()
	s, err := n.host.NewStream(network.WithAllowLimitedConn(ctx, "ping"), p, ping.ID)
	if err != nil {
		return 0, err
	}
	defer s.Reset()
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() }) // unblocks Read on cancel
	defer stop()
	if err := s.Scope().SetService(ping.ServiceName); err != nil {
		return 0, err
	}
	var out, in [ping.PingSize]byte
	var best time.Duration
	for i := range pingSamples {
		_, _ = rand.Read(out[:])
		start := time.Now()
		if _, err := s.Write(out[:]); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(s, in[:]); err != nil {
			return 0, err
		}
		rtt := time.Since(start)
		if in != out {
			return 0, fmt.Errorf("dht: ping %s: wrong echo", p)
		}
		if i > 0 && (best == 0 || rtt < best) {
			best = rtt
		}
	}
	n.host.Peerstore().RecordLatency(p, best)
	n.rttMu.Lock()
	w := n.rtt[p]
	if w == nil {
		w = new(rttWindow)
		n.rtt[p] = w
	}
	w.add(best)
	n.rttMu.Unlock()
	return best, nil
}

// Latency returns the round trip to p: the lowest of the last few ping samples, or the
// peerstore's EWMA when this node has not pinged p; 0 when unknown.
//
// The lowest recent sample, not the EWMA alone: scheduling and queueing only ever add
// delay, so the minimum filters that noise, while the peerstore's EWMA (weight 0.1 for a
// new sample) lets one sample taken under load skew the estimate for many minutes. The
// window is short (rttWindowSize pings), so a lasting change of route shows within it.
func (n *Node) Latency(p peer.ID) time.Duration {
	n.rttMu.Lock()
	w := n.rtt[p]
	var d time.Duration
	if w != nil {
		d = w.min()
	}
	n.rttMu.Unlock()
	if d > 0 {
		return d
	}
	return n.host.Peerstore().LatencyEWMA(p)
}

// forgetDisconnected drops the samples of peers no longer connected, which bounds the
// table by the connection manager's limits.
func (n *Node) forgetDisconnected() {
	n.rttMu.Lock()
	defer n.rttMu.Unlock()
	for p := range n.rtt {
		if n.host.Network().Connectedness(p) != network.Connected {
			delete(n.rtt, p)
		}
	}
}

// rttWindowSize is how many recent ping samples Latency takes the minimum of: two minutes
// of pings at the default interval.
const rttWindowSize = 4

// rttWindow holds a peer's recent round-trip samples.
type rttWindow struct {
	samples [rttWindowSize]time.Duration
	next    int
}

func (w *rttWindow) add(d time.Duration) {
	w.samples[w.next%rttWindowSize] = d
	w.next++
}

func (w *rttWindow) min() time.Duration {
	var m time.Duration
	for _, d := range w.samples[:min(w.next, rttWindowSize)] {
		if d > 0 && (m == 0 || d < m) {
			m = d
		}
	}
	return m
}

// mdnsNotifee connects to peers found by mDNS.
type mdnsNotifee struct{ n *Node }

// HandlePeerFound runs on the mDNS resolver's goroutine, which mdns Close waits for.
func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	if ai.ID == m.n.host.ID() {
		return
	}
	ctx, cancel := context.WithTimeout(m.n.ctx, m.n.cfg.BootstrapTimeout)
	defer cancel()
	if err := m.n.host.Connect(ctx, ai); err != nil {
		m.n.log.Debug("dht: mdns connect", "to", ai.ID.String(), "err", err)
	}
}
