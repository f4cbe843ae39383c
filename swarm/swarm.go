// Package swarm is the data path's view of the peer network: the small Network interface
// through which the core stores and fetches fragments, and the strategies built on it that
// do not depend on how peers are reached: placement of a chunk's fragments on distinct peers
// with long-tail cancellation, and reads from the fastest holders.
//
// The libp2p implementation lives in package dht; swarm/memnet is an in-memory fake with
// knobs for latency, failure, corruption and hanging; swarm/swarmtest is the conformance
// suite that every implementation passes.
package swarm

import (
	"context"
	"errors"
	"time"

	"github.com/scatterfs/scatter/chunker"
)

// PeerID identifies a peer. For libp2p peers it is the peer.ID's string form; the core
// treats it as opaque and records it in manifests.
type PeerID string

// Peer is a candidate for storing fragments, as the network knows it now.
type Peer struct {
	ID      PeerID
	Latency time.Duration // smoothed round-trip estimate; 0 when not measured yet
	Free    int64         // bytes free as last reported by the peer; -1 when unknown
}

// Stat is a donor's answer to a STAT request.
//
// Used is what the donor charges against its quota for the fragments it stores: at least
// their sizes, and possibly more (a per-fragment header, block rounding), so that Free is
// what a PUT can really use. It returns to its earlier value when a fragment is deleted.
type Stat struct {
	Quota     int64 // bytes the donor has promised to store at most
	Used      int64 // bytes of fragments it stores now (never above Quota)
	Fragments int64 // number of fragments it stores now
}

// Free returns the bytes the donor can still accept.
func (s Stat) Free() int64 { return max(s.Quota-s.Used, 0) }

// Errors every Network implementation returns, wrapped, so callers classify them with
// errors.Is. Unless said otherwise an error is about one peer and one request: the caller
// moves on to another peer.
var (
	// ErrNotFound: the peer does not hold the fragment (permanent for this peer).
	ErrNotFound = errors.New("swarm: fragment not found")
	// ErrBusy: the peer is overloaded right now; try another peer, or this one later.
	ErrBusy = errors.New("swarm: peer busy")
	// ErrFull: the peer's quota cannot take the fragment.
	ErrFull = errors.New("swarm: peer full")
	// ErrUnreachable: no connection to the peer could be made or kept.
	ErrUnreachable = errors.New("swarm: peer unreachable")
	// ErrDenied: the peer refused the request (bad signature, not the owner, bad request).
	ErrDenied = errors.New("swarm: request denied")
	// ErrCorrupt: bytes failed verification against their fragment ID.
	ErrCorrupt = errors.New("swarm: fragment corrupt")
)

// Network stores and fetches fragments on peers. Every method takes a ctx first and
// returns promptly once it is cancelled. Implementations are safe for concurrent use.
// The owner identity (whose key signs DELETE and RENEW, and is recorded at PUT) is fixed
// when the implementation is constructed.
type Network interface {
	// Candidates returns up to n peers able to store fragments, best placement first for
	// key (for the DHT: closest to key, then the routing table). It leaves out this node,
	// peers in client mode and peers reachable only through limited (relayed) connections.
	// Fewer than n peers is not an error.
	Candidates(ctx context.Context, key []byte, n int) ([]Peer, error)

	// Latency returns the current round-trip estimate to p, 0 when unknown.
	Latency(p PeerID) time.Duration

	// Put stores data under id on p with a lease until expires. The peer verifies that
	// data hashes to id. Idempotent: storing a fragment the peer already has extends its
	// lease. ErrFull and ErrBusy say to try another peer.
	Put(ctx context.Context, p PeerID, id chunker.FragmentID, data []byte, expires time.Time) error

	// Get fetches fragment id from p. The caller must verify the bytes against id:
	// a hostile peer can return anything. ErrNotFound is permanent for this peer.
	Get(ctx context.Context, p PeerID, id chunker.FragmentID) ([]byte, error)

	// Has reports, in one request, which of ids p holds; the result has len(ids) entries.
	Has(ctx context.Context, p PeerID, ids []chunker.FragmentID) ([]bool, error)

	// Delete asks p to drop ids, signed by the owner. Fragments the peer does not hold, or
	// holds for another owner, are skipped. Idempotent.
	Delete(ctx context.Context, p PeerID, ids []chunker.FragmentID) error

	// Renew extends the lease of ids on p to expires, signed by the owner. Idempotent.
	Renew(ctx context.Context, p PeerID, ids []chunker.FragmentID, expires time.Time) error

	// Stat returns p's quota and usage.
	Stat(ctx context.Context, p PeerID) (Stat, error)
}
