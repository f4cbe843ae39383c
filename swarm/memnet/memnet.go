// Package memnet is an in-memory swarm.Network for fast tests of the data path.
//
// A World holds a set of donor peers with their fragment stores; World.Net gives one node's
// view of it, acting for one owner, so several owners (or several devices of one owner)
// share the same peers. Every peer has knobs: one-way latency (emulated with timers that
// respect ctx), a fault (unreachable, busy, full, refuse, hang), corruption of GET replies,
// client mode, kill and revive, a quota, and hidden statistics. The World counts the requests
// each peer received per operation, so tests assert on which peers were used rather than on
// durations.
//
// memnet keeps the contract of swarm.Network as a donor would: a PUT is verified against its
// fragment ID, leases are kept per owner (a fragment stays while any owner's lease holds it),
// DELETE and RENEW act only on the calling owner's leases, and quotas are never exceeded.
package memnet

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/swarm"
)

var _ swarm.Network = (*Net)(nil)

// Fault is a failure a peer shows to every request that reaches it.
type Fault int

// Faults a peer can be set to with World.SetFault.
const (
	Healthy     Fault = iota // answers normally
	Unreachable              // every request fails at once with swarm.ErrUnreachable
	Busy                     // every request fails with swarm.ErrBusy after the round trip
	Full                     // every PUT fails with swarm.ErrFull; other requests are served
	Refuse                   // every request fails with swarm.ErrDenied after the round trip
	Hang                     // requests are accepted and never answered until ctx is done
)

func (f Fault) String() string {
	switch f {
	case Healthy:
		return "healthy"
	case Unreachable:
		return "unreachable"
	case Busy:
		return "busy"
	case Full:
		return "full"
	case Refuse:
		return "refuse"
	case Hang:
		return "hang"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Op names a request type, for World.Requests.
type Op int

// The request types of swarm.Network that reach a peer.
const (
	OpPut Op = iota
	OpGet
	OpHas
	OpDelete
	OpRenew
	OpStat
	numOps
)

func (o Op) String() string {
	return [...]string{"put", "get", "has", "delete", "renew", "stat"}[o]
}

// World is a set of donor peers shared by any number of Nets. It is safe for concurrent use.
type World struct {
	mu    sync.Mutex
	peers map[swarm.PeerID]*peer // guarded by mu, and so is everything in each peer
}

type peer struct {
	id       swarm.PeerID
	hash     [32]byte // sha256 of id: the peer's position in the key space
	quota    int64
	used     int64
	frags    map[chunker.FragmentID]*fragment
	delay    time.Duration // one-way
	fault    Fault
	dead     bool // killed: unreachable, store kept
	corrupt  bool
	client   bool
	hidden   bool // Latency and Free unknown to Candidates and Latency
	requests [numOps]int
}

type fragment struct {
	data   []byte
	leases map[string]time.Time // owner -> lease expiry
}

// NewWorld returns an empty world.
func NewWorld() *World {
	return &World{peers: make(map[swarm.PeerID]*peer)}
}

// AddPeer adds a healthy donor peer with the given quota in bytes and no latency.
// Adding a peer that exists panics: it is a bug in the test.
func (w *World) AddPeer(id swarm.PeerID, quota int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.peers[id]; ok {
		panic(fmt.Sprintf("BUG: memnet: peer %q added twice", id))
	}
	w.peers[id] = &peer{
		id:    id,
		hash:  sha256.Sum256([]byte(id)),
		quota: quota,
		frags: make(map[chunker.FragmentID]*fragment),
	}
}

// AddPeers adds n healthy peers named prefix0, prefix1, … with the given quota, and returns
// their IDs.
func (w *World) AddPeers(prefix string, n int, quota int64) []swarm.PeerID {
	ids := make([]swarm.PeerID, n)
	for i := range ids {
		ids[i] = swarm.PeerID(fmt.Sprintf("%s%d", prefix, i))
		w.AddPeer(ids[i], quota)
	}
	return ids
}

// with runs f on peer id under the lock; an unknown id is a bug in the test.
func (w *World) with(id swarm.PeerID, f func(p *peer)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.peers[id]
	if !ok {
		panic(fmt.Sprintf("BUG: memnet: unknown peer %q", id))
	}
	f(p)
}

// SetDelay sets the one-way latency of every request to and reply from id; a round trip
// takes twice d.
func (w *World) SetDelay(id swarm.PeerID, d time.Duration) {
	w.with(id, func(p *peer) { p.delay = d })
}

// SetFault makes id fail every later request in the way f says (Healthy clears it).
// Requests already waiting are not affected.
func (w *World) SetFault(id swarm.PeerID, f Fault) {
	w.with(id, func(p *peer) { p.fault = f })
}

// SetCorrupt makes id flip a bit in every GET reply (the stored bytes stay intact).
func (w *World) SetCorrupt(id swarm.PeerID, on bool) {
	w.with(id, func(p *peer) { p.corrupt = on })
}

// SetClient puts id in client mode (on) or server mode (off). A client-mode peer is never
// returned by Candidates, but answers requests addressed to it.
func (w *World) SetClient(id swarm.PeerID, on bool) {
	w.with(id, func(p *peer) { p.client = on })
}

// SetHidden makes id's latency and free space unknown (on): Latency returns 0 and
// Candidates reports Free -1, as for a peer that was never measured.
func (w *World) SetHidden(id swarm.PeerID, on bool) {
	w.with(id, func(p *peer) { p.hidden = on })
}

// SetQuota changes id's quota. It never goes below the bytes already stored, so Stat's
// Used stays within Quota as the contract says.
func (w *World) SetQuota(id swarm.PeerID, quota int64) {
	w.with(id, func(p *peer) { p.quota = max(quota, p.used) })
}

// Kill makes id unreachable, as a stopped process: it keeps its store, Candidates still
// returns it (a routing table notices late), and every request fails with
// swarm.ErrUnreachable until Revive.
func (w *World) Kill(id swarm.PeerID) {
	w.with(id, func(p *peer) { p.dead = true })
}

// Revive undoes Kill; the peer comes back with the fragments it had.
func (w *World) Revive(id swarm.PeerID) {
	w.with(id, func(p *peer) { p.dead = false })
}

// Requests returns how many requests of type op id has been sent, by any Net, whatever
// their outcome (a request to an unreachable peer counts too).
func (w *World) Requests(id swarm.PeerID, op Op) int {
	var n int
	w.with(id, func(p *peer) { n = p.requests[op] })
	return n
}

// ResetRequests sets every request counter of every peer to zero.
func (w *World) ResetRequests() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.peers {
		p.requests = [numOps]int{}
	}
}

// Lease returns owner's lease on fragment fid at peer id, and whether there is one.
func (w *World) Lease(id swarm.PeerID, owner string, fid chunker.FragmentID) (time.Time, bool) {
	var t time.Time
	var ok bool
	w.with(id, func(p *peer) {
		if f := p.frags[fid]; f != nil {
			t, ok = f.leases[owner]
		}
	})
	return t, ok
}

// Expire drops every lease that ended before now, and every fragment left with no lease,
// as a donor's garbage collection does.
func (w *World) Expire(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.peers {
		for fid, f := range p.frags {
			for owner, t := range f.leases {
				if t.Before(now) {
					delete(f.leases, owner)
				}
			}
			if len(f.leases) == 0 {
				p.drop(fid, f)
			}
		}
	}
}

func (p *peer) drop(fid chunker.FragmentID, f *fragment) {
	delete(p.frags, fid)
	p.used -= int64(len(f.data))
}

// Net returns the view of the world from node self, acting for owner: Candidates never
// returns self, and PUT, DELETE and RENEW record and check owner. self need not be a peer
// of the world (a client-only device).
func (w *World) Net(self swarm.PeerID, owner string) *Net {
	return &Net{w: w, self: self, owner: owner}
}

// Net is one node's swarm.Network over a World, acting for one owner.
type Net struct {
	w     *World
	self  swarm.PeerID
	owner string
}

// Candidates returns up to n server-mode peers other than self, ordered by the XOR distance
// of sha256(peer ID) to sha256(key), as a Kademlia lookup would; ties (impossible in
// practice) break by ID. Killed and faulty peers are included: a routing table notices
// failures late, and the callers must cope.
func (n *Net) Candidates(ctx context.Context, key []byte, count int) ([]swarm.Peer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	target := sha256.Sum256(key)
	type cand struct {
		peer swarm.Peer
		dist [32]byte
	}
	var cands []cand
	n.w.mu.Lock()
	for _, p := range n.w.peers {
		if p.id == n.self || p.client {
			continue
		}
		c := cand{peer: swarm.Peer{ID: p.id, Latency: 2 * p.delay, Free: max(p.quota-p.used, 0)}}
		if p.hidden {
			c.peer.Latency, c.peer.Free = 0, -1
		}
		for i := range c.dist {
			c.dist[i] = p.hash[i] ^ target[i]
		}
		cands = append(cands, c)
	}
	n.w.mu.Unlock()
	slices.SortFunc(cands, func(a, b cand) int {
		return cmp.Or(bytes.Compare(a.dist[:], b.dist[:]), cmp.Compare(a.peer.ID, b.peer.ID))
	})
	out := make([]swarm.Peer, 0, min(max(count, 0), len(cands)))
	for _, c := range cands[:cap(out)] {
		out = append(out, c.peer)
	}
	return out, nil
}

// Latency returns the round trip to p (twice its one-way delay), or 0 when p is unknown or
// hidden.
func (n *Net) Latency(id swarm.PeerID) time.Duration {
	n.w.mu.Lock()
	defer n.w.mu.Unlock()
	p, ok := n.w.peers[id]
	if !ok || p.hidden {
		return 0
	}
	return 2 * p.delay
}

// request emulates one request to id: it counts it, waits the one-way delay, applies the
// peer's fault, runs serve under the world's lock, and waits the delay back. serve is not
// run if the request fails before reaching the peer.
func (n *Net) request(ctx context.Context, id swarm.PeerID, op Op, serve func(p *peer) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n.w.mu.Lock()
	p, ok := n.w.peers[id]
	if !ok {
		n.w.mu.Unlock()
		return fmt.Errorf("memnet: %s to %s: no such peer: %w", op, id, swarm.ErrUnreachable)
	}
	p.requests[op]++
	delay, fault, dead := p.delay, p.fault, p.dead
	n.w.mu.Unlock()

	if dead || fault == Unreachable {
		return fmt.Errorf("memnet: %s to %s: %w", op, id, swarm.ErrUnreachable)
	}
	if fault == Hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if err := sleep(ctx, delay); err != nil {
		return err
	}

	n.w.mu.Lock()
	// The peer may have been killed or changed while the request was on its way.
	fault, dead = p.fault, p.dead
	var err error
	switch {
	case dead || fault == Unreachable:
		err = swarm.ErrUnreachable
	case fault == Busy:
		err = swarm.ErrBusy
	case fault == Refuse:
		err = swarm.ErrDenied
	case fault == Full && op == OpPut:
		err = swarm.ErrFull
	case fault == Hang:
		n.w.mu.Unlock()
		<-ctx.Done()
		return ctx.Err()
	default:
		err = serve(p)
	}
	n.w.mu.Unlock()

	if err != nil {
		err = fmt.Errorf("memnet: %s to %s: %w", op, id, err)
	}
	// The reply travels back even when the caller gives up on it: a PUT whose reply is
	// lost to a cancelled ctx is stored all the same, as on a real network.
	if serr := sleep(ctx, delay); serr != nil {
		return serr
	}
	return err
}

// sleep waits d or until ctx is done, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Put stores a copy of data on id after checking that it hashes to fid, with owner's lease
// extended to expires. A lease that has already ended is refused with swarm.ErrDenied.
func (n *Net) Put(ctx context.Context, id swarm.PeerID, fid chunker.FragmentID, data []byte, expires time.Time) error {
	// Hash on the caller's goroutine, as the bytes would arrive at the donor: not under the lock.
	valid := chunker.FragmentIDOf(data) == fid
	return n.request(ctx, id, OpPut, func(p *peer) error {
		if !valid {
			return fmt.Errorf("data does not hash to fragment %s: %w", fid, swarm.ErrDenied)
		}
		if !expires.After(time.Now()) {
			return fmt.Errorf("lease already expired at %s: %w", expires.Format(time.RFC3339), swarm.ErrDenied)
		}
		f := p.frags[fid]
		if f == nil {
			if int64(len(data)) > p.quota-p.used {
				return fmt.Errorf("%d bytes, %d free: %w", len(data), max(p.quota-p.used, 0), swarm.ErrFull)
			}
			f = &fragment{data: bytes.Clone(data), leases: make(map[string]time.Time)}
			if f.data == nil {
				f.data = []byte{}
			}
			p.frags[fid] = f
			p.used += int64(len(data))
		}
		if cur, ok := f.leases[n.owner]; !ok || expires.After(cur) {
			f.leases[n.owner] = expires
		}
		return nil
	})
}

// Get returns a copy of fragment fid from id; a corrupting peer flips one bit of the copy.
func (n *Net) Get(ctx context.Context, id swarm.PeerID, fid chunker.FragmentID) ([]byte, error) {
	var data []byte
	err := n.request(ctx, id, OpGet, func(p *peer) error {
		f := p.frags[fid]
		if f == nil {
			return fmt.Errorf("fragment %s: %w", fid, swarm.ErrNotFound)
		}
		data = bytes.Clone(f.data)
		if p.corrupt {
			if len(data) == 0 {
				data = []byte{0}
			} else {
				data[len(data)/2] ^= 0x10
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return data, nil
}

// Has reports in one request which of fids id holds, for any owner.
func (n *Net) Has(ctx context.Context, id swarm.PeerID, fids []chunker.FragmentID) ([]bool, error) {
	have := make([]bool, len(fids))
	err := n.request(ctx, id, OpHas, func(p *peer) error {
		for i, fid := range fids {
			_, have[i] = p.frags[fid]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return have, nil
}

// Delete drops owner's leases on fids at id; a fragment is freed once no owner holds a lease.
func (n *Net) Delete(ctx context.Context, id swarm.PeerID, fids []chunker.FragmentID) error {
	return n.request(ctx, id, OpDelete, func(p *peer) error {
		for _, fid := range fids {
			f := p.frags[fid]
			if f == nil {
				continue
			}
			delete(f.leases, n.owner)
			if len(f.leases) == 0 {
				p.drop(fid, f)
			}
		}
		return nil
	})
}

// Renew extends owner's leases on fids at id to expires; leases are never shortened, and
// fragments without a lease of owner are skipped.
func (n *Net) Renew(ctx context.Context, id swarm.PeerID, fids []chunker.FragmentID, expires time.Time) error {
	return n.request(ctx, id, OpRenew, func(p *peer) error {
		for _, fid := range fids {
			f := p.frags[fid]
			if f == nil {
				continue
			}
			if cur, ok := f.leases[n.owner]; ok && expires.After(cur) {
				f.leases[n.owner] = expires
			}
		}
		return nil
	})
}

// Stat returns id's quota and usage.
func (n *Net) Stat(ctx context.Context, id swarm.PeerID) (swarm.Stat, error) {
	var st swarm.Stat
	err := n.request(ctx, id, OpStat, func(p *peer) error {
		st = swarm.Stat{Quota: p.quota, Used: p.used, Fragments: int64(len(p.frags))}
		return nil
	})
	return st, err
}
