package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	chunk "github.com/ipfs/boxo/chunker"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/swarm"
)

// DefaultLease is how long donors keep a fragment unless the owner renews it. A mount
// renews every live fragment's lease about weekly (package upkeep), so 30 days survive
// three missed renewals; a deleted file's fragments that a DELETE did not reach, and an
// abandoned drive's, are freed within a month.
const DefaultLease = 30 * 24 * time.Hour

// Config configures a Store. The zero value gives the defaults.
type Config struct {
	K, M     int            // data and parity fragments per chunk; 0 means chunker's defaults
	Chunking chunker.Params // chunk sizes; the zero value means chunker.DefaultParams
	Lease    time.Duration  // lease asked for each fragment; 0 means DefaultLease
	Place    swarm.PlaceOptions
	Fetch    swarm.FetchOptions
}

// Store keeps whole chunks on the peers of a swarm.Network: Put encodes a plaintext chunk
// and places its fragments on distinct peers; GetSealed fetches K verified fragments from
// the fastest holders and rebuilds the sealed chunk; Open decrypts it. It is safe for
// concurrent use.
type Store struct {
	net   swarm.Network
	codec *Codec
	lease time.Duration
	place swarm.PlaceOptions
	fetch swarm.FetchOptions
	bufs  sync.Pool // *Buffers
}

// NewStore returns a Store for the drive whose sub-keys are keys, over net.
func NewStore(net swarm.Network, keys *crypt.Keys, cfg Config) (*Store, error) {
	k := cmp.Or(cfg.K, chunker.DefaultDataShards)
	m := cfg.M
	if cfg.K == 0 && m == 0 {
		m = chunker.DefaultParityShards
	}
	params := cfg.Chunking
	if params == (chunker.Params{}) {
		params = chunker.DefaultParams
	}
	codec, err := NewCodec(keys, k, m, params)
	if err != nil {
		return nil, err
	}
	return &Store{
		net: net, codec: codec,
		lease: cmp.Or(cfg.Lease, DefaultLease),
		place: cfg.Place, fetch: cfg.Fetch,
		bufs: sync.Pool{New: func() any { return new(Buffers) }},
	}, nil
}

// Codec returns the Store's codec.
func (s *Store) Codec() *Codec { return s.codec }

// Split returns the drive's keyed content-defined splitter over r.
func (s *Store) Split(r io.Reader) chunk.Splitter { return s.codec.Split(r) }

// Put names, seals and erasure-codes one plaintext chunk, places its K+M fragments on
// distinct peers and returns the chunk's Ref once every fragment is stored (or, when
// Config.Place.Min allows fewer, at least that many: then the error wraps
// swarm.ErrDegraded and the Ref is usable, with empty Peer for unplaced fragments).
// Errors from the network (swarm.ErrNotEnoughPeers and what it wraps) are retryable later.
func (s *Store) Put(ctx context.Context, plain []byte) (Ref, error) {
	b := s.bufs.Get().(*Buffers)
	defer s.bufs.Put(b)
	enc, err := s.codec.Encode(b, plain)
	if err != nil {
		return Ref{}, err
	}
	expires := time.Now().Add(s.lease)
	peers, err := swarm.Place(ctx, s.net, enc.ID[:], enc.Frags, enc.IDs, expires, s.place)
	if err != nil && !errors.Is(err, swarm.ErrDegraded) {
		return Ref{}, fmt.Errorf("pipeline: put chunk %s: %w", enc.ID, err)
	}
	ref := Ref{
		ID: enc.ID, Size: uint32(enc.Size), SealedLen: uint32(enc.SealedLen),
		K: uint8(s.codec.K()), M: uint8(s.codec.M()),
		Fragments: make([]Fragment, len(enc.IDs)),
	}
	for i, id := range enc.IDs {
		ref.Fragments[i] = Fragment{ID: id, Peer: peers[i]}
	}
	if err != nil {
		return ref, fmt.Errorf("pipeline: put chunk %s: %w", enc.ID, err)
	}
	return ref, nil
}

// GetSealed fetches K verified fragments of the chunk ref names from its fastest holders
// and returns the sealed chunk. When fewer than K fragments can be had, the error wraps
// ErrUnrecoverable.
func (s *Store) GetSealed(ctx context.Context, ref Ref) ([]byte, error) {
	if _, err := s.codec.coderFor(&ref); err != nil {
		return nil, err
	}
	holders := make([]swarm.Holder, 0, len(ref.Fragments))
	for i, f := range ref.Fragments {
		if f.Peer != "" {
			holders = append(holders, swarm.Holder{Index: i, ID: f.ID, Peer: f.Peer})
		}
	}
	frags, err := swarm.Fetch(ctx, s.net, holders, int(ref.K), s.fetch)
	if err != nil {
		if errors.Is(err, swarm.ErrNotEnoughFragments) {
			return nil, fmt.Errorf("pipeline: get chunk %s: %w: %w", ref.ID, ErrUnrecoverable, err)
		}
		return nil, fmt.Errorf("pipeline: get chunk %s: %w", ref.ID, err)
	}
	// swarm.Fetch checked each fragment against its ID as it arrived: no second hash.
	// Decode sizes the buffer itself (k whole shards): one of SealedLen was too small
	// for that and was allocated twice over.
	sealed, _, err := s.codec.decodeVerified(nil, &ref, frags)
	return sealed, err
}

// Open decrypts a sealed chunk, appending the plaintext to dst.
func (s *Store) Open(dst []byte, ref Ref, sealed []byte) ([]byte, error) {
	return s.codec.Open(dst, &ref, sealed)
}

// Get fetches and decrypts the chunk ref names, appending the plaintext to dst.
func (s *Store) Get(ctx context.Context, ref Ref, dst []byte) ([]byte, error) {
	sealed, err := s.GetSealed(ctx, ref)
	if err != nil {
		return dst, err
	}
	return s.Open(dst, ref, sealed)
}

// capacityPeers is how many peers Capacity asks the network for: more than any routing
// table this drive's swarm fills today.
const capacityPeers = 1024

// Capacity returns how many plaintext bytes the peers can still take, counting only space
// peers have reported (a peer of unknown free space counts as full, so the figure never
// claims space that is not there). A chunk needs K+M fragments on distinct peers, so the
// space of a few large peers counts only as far as enough other peers can match it; see
// placeable.
func (s *Store) Capacity(ctx context.Context) (int64, error) {
	// Any key will do: the routing table's peers come with the closest ones. The drive's
	// public key keeps the lookup the same from one call to the next.
	peers, err := s.net.Candidates(ctx, s.codec.keys.Public, capacityPeers)
	if err != nil {
		return 0, fmt.Errorf("pipeline: capacity: %w", err)
	}
	free := make([]int64, 0, len(peers))
	for _, p := range peers {
		if p.Free > 0 {
			free = append(free, p.Free)
		}
	}
	k, n := s.codec.K(), s.codec.K()+s.codec.M()
	perPeer := placeable(free, n)
	// Each chunk puts one fragment of about SealedLen/K bytes (plus a header) on each of
	// n peers, so perPeer bytes on every holder carry about perPeer*K bytes of plaintext.
	// Leave out the fragment headers and seal overhead of the smallest chunks as margin.
	const margin = 1.0 - float64(chunker.HeaderSize+crypt.Overhead)/float64(64<<10)
	return int64(float64(perPeer) * float64(k) * margin), nil
}

// placeable returns the largest X such that n fragments of every chunk, each on a distinct
// peer, can put X bytes on each of n peers' worth of space: the largest X with
// sum(min(free_i, X)) >= n*X. That is the fluid form of "how many chunks fit": a chunk
// needs n distinct peers, so a peer's space beyond what the others can match is useless.
func placeable(free []int64, n int) int64 {
	if len(free) < n || n <= 0 {
		return 0
	}
	free = slices.Clone(free)
	slices.Sort(free)
	// With free sorted ascending, g(X) = sum(min(free_i, X)) - n*X starts at 0 and, for X
	// between free[j-1] and free[j], is prefix(j) + (len-j-n)*X: it grows while more than
	// n peers are uncapped and falls once fewer are. Find where it returns to 0.
	var prefix int64
	for j := 0; j <= len(free); j++ {
		if rest := int64(len(free) - j); rest < int64(n) {
			x := prefix / (int64(n) - rest)
			if j == len(free) || x <= free[j] {
				return x
			}
		}
		prefix += free[j]
	}
	panic("BUG: pipeline: placeable: no root")
}
