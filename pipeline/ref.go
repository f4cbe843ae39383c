// Package pipeline is scatter's data path between plaintext and peers: it cuts a byte
// stream into keyed content-defined chunks, names each chunk by a keyed hash, seals it,
// cuts the sealed chunk into Reed-Solomon fragments, places them on distinct peers, and does
// the reverse on reads. It imports neither go-fuse nor libp2p: peers are reached through
// swarm.Network.
package pipeline

import (
	"slices"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/swarm"
)

// Ref is everything a reader needs to get a chunk back with no DHT lookup: the chunk's
// identity, its sizes, its erasure-code shape and, for each fragment index, the fragment's
// ID and the peer that holds it. The filesystem's metadata stores one Ref per chunk.
type Ref struct {
	ID        crypt.ChunkID
	Size      uint32 // plaintext bytes
	SealedLen uint32 // bytes of the sealed chunk that was erasure-coded
	K, M      uint8  // data and parity fragment counts
	Fragments []Fragment
}

// Fragment is one fragment of a chunk: its content ID and the peer that holds it.
// Fragments[i] of a Ref is the fragment with index i; Peer is empty when the fragment
// has no holder (lost and not yet repaired).
type Fragment struct {
	ID   chunker.FragmentID
	Peer swarm.PeerID
}

// SameChunk reports whether o can stand for r: the same chunk, sizes, code and fragment
// IDs, only (some) holders differing - what a repair changes.
func (r *Ref) SameChunk(o *Ref) bool {
	if r.ID != o.ID || r.Size != o.Size || r.SealedLen != o.SealedLen || r.K != o.K || r.M != o.M ||
		len(r.Fragments) != len(o.Fragments) {
		return false
	}
	for i := range r.Fragments {
		if r.Fragments[i].ID != o.Fragments[i].ID {
			return false
		}
	}
	return true
}

// Equal reports whether r and o are the same Ref, holders included.
func (r *Ref) Equal(o *Ref) bool { return r.SameChunk(o) && slices.Equal(r.Fragments, o.Fragments) }
