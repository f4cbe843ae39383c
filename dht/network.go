package dht

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/sync/errgroup"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/swarm"
)

var _ swarm.Network = (*Network)(nil)

// NetworkConfig configures a Network. Zero fields take the defaults in their comments.
type NetworkConfig struct {
	// Client configures the fragment protocol client.
	Client ClientConfig
	// LookupTimeout bounds the DHT lookup in Candidates. On timeout Candidates uses what
	// the lookup found so far and the routing table. Default 10 s.
	LookupTimeout time.Duration
	// DialTimeout bounds a dial to a peer's known addresses. Default 5 s.
	DialTimeout time.Duration
	// FindPeerTimeout bounds the DHT peer lookup made when a peer's addresses are unknown
	// or stale. Default 10 s.
	FindPeerTimeout time.Duration
	// Backoff is how long requests to a peer that could not be reached fail at once
	// with ErrUnreachable, instead of each paying the dial and lookup timeouts again (a
	// QUIC dial to a dead address waits out DialTimeout). Default 30 s.
	Backoff time.Duration
	// StatMaxAge is how long a peer's STAT answer stands for its free space in
	// Candidates. Older answers are refreshed when the peer is a candidate again.
	// Default 1 minute.
	StatMaxAge time.Duration
	// StatTimeout bounds the STAT refreshes of one Candidates call; a peer that does not
	// answer in time gets Free -1 (unknown). Default 2 s.
	StatTimeout time.Duration
	// LookupInterval is the shortest time between two DHT lookups made because the
	// routing table could not fill a Candidates request. Default 30 s.
	LookupInterval time.Duration
}

func (c NetworkConfig) withDefaults() NetworkConfig {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.LookupTimeout, 10*time.Second)
	def(&c.DialTimeout, 5*time.Second)
	def(&c.FindPeerTimeout, 10*time.Second)
	def(&c.Backoff, 30*time.Second)
	def(&c.StatMaxAge, time.Minute)
	def(&c.StatTimeout, 2*time.Second)
	def(&c.LookupInterval, 30*time.Second)
	return c
}

// Network is swarm.Network on a Node: candidates come from the DHT, latency from the
// node's ping loop, and fragment requests go over the fragment protocol to peers reached
// directly, through the DHT's peer routing when their addresses are unknown or stale.
// It is safe for concurrent use and holds no goroutines of its own: closing the Node ends
// it.
type Network struct {
	node   *Node
	client *Client
	cfg    NetworkConfig

	mu         sync.Mutex
	stats      map[peer.ID]statEntry // guarded by mu: last free space each peer reported
	down       map[peer.ID]time.Time // guarded by mu: peers not reached, until when to fail fast
	lastLookup time.Time             // guarded by mu: when Candidates last looked up the DHT
}

// statEntry is a cached STAT answer.
type statEntry struct {
	free int64
	at   time.Time
}

// NewNetwork returns the Network of node n, acting for the owner key in n's Config.
func NewNetwork(n *Node, cfg NetworkConfig) (*Network, error) {
	if n.cfg.Owner == nil {
		return nil, errors.New("dht: NewNetwork: Config.Owner is nil")
	}
	return &Network{
		node:   n,
		client: NewClient(n.host, n.cfg.Owner, cfg.Client),
		cfg:    cfg.withDefaults(),
		stats:  make(map[peer.ID]statEntry),
		down:   make(map[peer.ID]time.Time),
	}, nil
}

// Candidates returns up to n peers for key: the routing table's peers by distance to key
// and, when the routing table has fewer than n eligible peers and no lookup ran in the
// last LookupInterval, first the peers closest to key found by a DHT lookup bounded by
// LookupTimeout. It
// leaves out this node, peers that do not serve both the DHT and the fragment protocol
// (client-mode peers, DHT-only servers) and peers connected only through limited (relayed)
// connections. Free comes from STAT answers at most StatMaxAge old, refreshed here for the
// returned peers within StatTimeout; -1 when unknown.
func (nw *Network) Candidates(ctx context.Context, key []byte, n int) ([]swarm.Peer, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dht: candidates: %w", err)
	}
	if n <= 0 {
		return nil, nil
	}
	if len(key) == 0 {
		return nil, errors.New("dht: candidates: empty key")
	}
	d := nw.node.dht
	rt := d.RoutingTable()
	nearest := rt.NearestPeers(kb.ConvertKey(string(key)), rt.Size())
	ictx, cancel := context.WithTimeout(ctx, nw.cfg.StatTimeout)
	defer cancel()
	seen := make(map[peer.ID]bool, len(nearest))
	var ids []peer.ID
	pick := func(ps []peer.ID) {
		for _, p := range ps {
			if len(ids) == n {
				return
			}
			if !seen[p] {
				seen[p] = true
				if nw.eligible(ictx, p) {
					ids = append(ids, p)
				}
			}
		}
	}
	// A lookup per chunk cost 100-700 ms of every Put in the 12-donor benchmark, for
	// peers the routing table mostly knows already (the DHT keeps it fresh on its own).
	// The table's nearest peers spread placements over the key space just as well; look
	// up only when the table cannot fill the request, and not again soon after: a table
	// still short after a recent lookup means a small network, not a stale table (the
	// peers a lookup meets enter the table).
	pick(nearest)
	if len(ids) < n && nw.lookupDue() {
		lctx, lcancel := context.WithTimeout(ctx, nw.cfg.LookupTimeout)
		closest, err := d.GetClosestPeers(lctx, string(key))
		lcancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("dht: candidates: %w", ctx.Err())
			}
			// A failed or timed-out lookup (an empty routing table, unresponsive
			// peers) still leaves the routing table and any partial result.
			nw.node.log.Debug("dht: candidates lookup", "err", err, "found", len(closest))
		}
		// The lookup's peers are closest to key: they go first.
		fromTable := ids
		ids, seen = nil, make(map[peer.ID]bool, len(closest)+len(nearest))
		pick(closest)
		pick(fromTable)
		pick(nearest)
	}
	nw.refreshStats(ctx, ids)

	out := make([]swarm.Peer, len(ids))
	for i, p := range ids {
		out[i] = swarm.Peer{ID: swarm.PeerID(p.String()), Latency: nw.node.Latency(p), Free: nw.free(p)}
	}
	return out, nil
}

// lookupDue reports whether Candidates may look up the DHT now, and if so records that
// it does.
func (nw *Network) lookupDue() bool {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if now := time.Now(); now.Sub(nw.lastLookup) >= nw.cfg.LookupInterval {
		nw.lastLookup = now
		return true
	}
	return false
}

// eligible reports whether p may store fragments: not this node, identified as serving
// both the DHT and the fragment protocol, and not connected only through limited
// connections (a relayed connection is capped at 2 minutes and 128 KiB).
func (nw *Network) eligible(ctx context.Context, p peer.ID) bool {
	h := nw.node.host
	if p == h.ID() {
		return false
	}
	// A peer the lookup has just connected to may not be identified yet.
	if protos, _ := h.Peerstore().GetProtocols(p); len(protos) == 0 {
		nw.node.waitIdentified(ctx, p)
	}
	protos, err := h.Peerstore().SupportsProtocols(p, dhtProtocol, FragmentProtocol)
	if err != nil || len(protos) != 2 {
		return false
	}
	conns := h.Network().ConnsToPeer(p)
	for _, c := range conns {
		if !c.Stat().Limited {
			return true
		}
	}
	return len(conns) == 0 // not connected now: it will be dialed directly
}

// free returns p's cached free space, -1 when unknown or older than StatMaxAge.
func (nw *Network) free(p peer.ID) int64 {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	e, ok := nw.stats[p]
	if !ok || time.Since(e.at) > nw.cfg.StatMaxAge {
		return -1
	}
	return e.free
}

func (nw *Network) setFree(p peer.ID, free int64) {
	nw.mu.Lock()
	nw.stats[p] = statEntry{free: free, at: time.Now()}
	nw.mu.Unlock()
}

// refreshStats asks the peers without a fresh STAT answer for one, eight at a time,
// within StatTimeout.
func (nw *Network) refreshStats(ctx context.Context, ids []peer.ID) {
	ctx, cancel := context.WithTimeout(ctx, nw.cfg.StatTimeout)
	defer cancel()
	var g errgroup.Group
	g.SetLimit(8)
	for _, p := range ids {
		if nw.free(p) >= 0 {
			continue
		}
		g.Go(func() error {
			_, _ = nw.stat(ctx, p) // a peer that does not answer keeps Free -1
			return nil
		})
	}
	_ = g.Wait()
}

// Latency returns the round trip to p as Node.Latency estimates it, 0 when never measured.
func (nw *Network) Latency(p swarm.PeerID) time.Duration {
	id, err := peer.Decode(string(p))
	if err != nil {
		return 0
	}
	return nw.node.Latency(id)
}

// Put stores data under id on p; see swarm.Network.
func (nw *Network) Put(ctx context.Context, p swarm.PeerID, id chunker.FragmentID, data []byte, expires time.Time) error {
	pid, err := nw.reach(ctx, p)
	if err != nil {
		return fmt.Errorf("dht: put %s: %w", id, err)
	}
	err = withCtx(ctx, nw.client.Put(ctx, pid, id, data, expires))
	switch {
	case err == nil:
		nw.mu.Lock()
		if e, ok := nw.stats[pid]; ok {
			e.free = max(e.free-int64(len(data)), 0)
			nw.stats[pid] = e
		}
		nw.mu.Unlock()
	case errors.Is(err, swarm.ErrFull):
		nw.setFree(pid, 0)
	}
	return err
}

// Get fetches fragment id from p; see swarm.Network.
func (nw *Network) Get(ctx context.Context, p swarm.PeerID, id chunker.FragmentID) ([]byte, error) {
	pid, err := nw.reach(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("dht: get %s: %w", id, err)
	}
	b, err := nw.client.Get(ctx, pid, id)
	return b, withCtx(ctx, err)
}

// Has reports which of ids p holds; see swarm.Network.
func (nw *Network) Has(ctx context.Context, p swarm.PeerID, ids []chunker.FragmentID) ([]bool, error) {
	pid, err := nw.reach(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("dht: has: %w", err)
	}
	has, err := nw.client.Has(ctx, pid, ids)
	return has, withCtx(ctx, err)
}

// Delete asks p to drop ids; see swarm.Network.
func (nw *Network) Delete(ctx context.Context, p swarm.PeerID, ids []chunker.FragmentID) error {
	pid, err := nw.reach(ctx, p)
	if err != nil {
		return fmt.Errorf("dht: delete: %w", err)
	}
	return withCtx(ctx, nw.client.Delete(ctx, pid, ids))
}

// Renew extends the leases of ids on p; see swarm.Network.
func (nw *Network) Renew(ctx context.Context, p swarm.PeerID, ids []chunker.FragmentID, expires time.Time) error {
	pid, err := nw.reach(ctx, p)
	if err != nil {
		return fmt.Errorf("dht: renew: %w", err)
	}
	return withCtx(ctx, nw.client.Renew(ctx, pid, ids, expires))
}

// Stat returns p's quota and usage, and remembers its free space for Candidates.
func (nw *Network) Stat(ctx context.Context, p swarm.PeerID) (swarm.Stat, error) {
	pid, err := nw.reach(ctx, p)
	if err != nil {
		return swarm.Stat{}, fmt.Errorf("dht: stat: %w", err)
	}
	return nw.stat(ctx, pid)
}

func (nw *Network) stat(ctx context.Context, p peer.ID) (swarm.Stat, error) {
	st, err := nw.client.Stat(ctx, p)
	if err == nil {
		nw.setFree(p, st.Free())
	}
	return st, withCtx(ctx, err)
}

// withCtx adds ctx's error to err when ctx has ended, so that a request that failed
// because its ctx was cancelled or ran out of time says so to errors.Is, even when the
// failure surfaced first as a broken stream or an I/O deadline.
func withCtx(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%w)", err, cerr)
	}
	return err
}

// reach makes sure there is a direct connection to p. Manifests record only peer IDs, so
// when p's addresses are unknown, or dialing them fails (the peer moved), it asks the
// DHT's peer routing for p's current addresses. Every step is bounded; errors wrap
// swarm.ErrUnreachable, or ctx's error once ctx has ended.
func (nw *Network) reach(ctx context.Context, p swarm.PeerID) (peer.ID, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	id, err := peer.Decode(string(p))
	if err != nil {
		return "", fmt.Errorf("peer %q: %w: %v", p, swarm.ErrUnreachable, err)
	}
	h := nw.node.host
	if id == h.ID() {
		return "", fmt.Errorf("peer %s is this node: %w", id, swarm.ErrUnreachable)
	}
	if h.Network().Connectedness(id) == network.Connected {
		return id, nil
	}
	nw.mu.Lock()
	until, down := nw.down[id]
	nw.mu.Unlock()
	if down && time.Now().Before(until) {
		return "", fmt.Errorf("peer %s not reached recently: %w", id, swarm.ErrUnreachable)
	}
	err = nw.connect(ctx, id)
	nw.mu.Lock()
	if err != nil && ctx.Err() == nil {
		nw.down[id] = time.Now().Add(nw.cfg.Backoff)
	} else {
		delete(nw.down, id)
	}
	nw.mu.Unlock()
	if err != nil {
		return "", err
	}
	return id, nil
}

// connect dials p at its known addresses, then at those the DHT finds.
func (nw *Network) connect(ctx context.Context, id peer.ID) error {
	h := nw.node.host
	var dialErr error
	if len(h.Peerstore().Addrs(id)) > 0 {
		if dialErr = nw.dial(ctx, peer.AddrInfo{ID: id}); dialErr == nil {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	known := h.Peerstore().Addrs(id)
	fctx, cancel := context.WithTimeout(ctx, nw.cfg.FindPeerTimeout)
	ai, err := nw.node.dht.FindPeer(fctx, id)
	cancel()
	if err != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		// The lookup gives up on a peer whose first dial failed, even when later
		// answers bring its new addresses, which it does add to the peerstore: try
		// those.
		fresh := slices.DeleteFunc(h.Peerstore().Addrs(id), func(a ma.Multiaddr) bool {
			return slices.ContainsFunc(known, a.Equal)
		})
		if len(fresh) == 0 {
			return fmt.Errorf("peer %s: %w: %v", id, swarm.ErrUnreachable, errors.Join(dialErr, err))
		}
		ai = peer.AddrInfo{ID: id, Addrs: fresh}
	}
	if err := nw.dial(ctx, ai); err != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("peer %s: %w: %v", id, swarm.ErrUnreachable, err)
	}
	return nil
}

// dial connects to ai directly (never through a relay) within DialTimeout.
func (nw *Network) dial(ctx context.Context, ai peer.AddrInfo) error {
	ctx, cancel := context.WithTimeout(network.WithForceDirectDial(ctx, "fragment"), nw.cfg.DialTimeout)
	defer cancel()
	return nw.node.host.Connect(ctx, ai)
}
