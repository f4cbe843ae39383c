package chunker

import (
	"fmt"
	"slices"

	"github.com/klauspost/reedsolomon"

	"github.com/scatterfs/scatter/crypt"
)

// Default erasure-coding parameters: any 4 of a chunk's 12 fragments may be lost, for
// 1.5x the sealed size in storage and upload.
const (
	DefaultDataShards   = 8 // k
	DefaultParityShards = 4 // m
)

// Coder codes sealed chunks into k data and m parity fragments and back. A Coder holds no
// per-call state and is safe for concurrent use; buffers are owned by the caller.
type Coder struct {
	k, m int
	enc  reedsolomon.Encoder
}

// NewCoder returns a Coder for k data and m parity fragments: 1 <= k, 0 <= m and
// k+m <= MaxShards. Any k of the k+m fragments of a chunk recover it.
func NewCoder(k, m int) (*Coder, error) {
	if k < 1 || m < 0 || k+m > MaxShards {
		return nil, fmt.Errorf("chunker: invalid erasure code %d+%d (want k >= 1, m >= 0, k+m <= %d)", k, m, MaxShards)
	}
	// One goroutine per call: coding a MiB-sized chunk takes tens of microseconds, less
	// than waking helpers costs, and the write pipeline already codes several chunks in
	// parallel. It also makes Encode allocate almost nothing.
	enc, err := reedsolomon.New(k, m, reedsolomon.WithMaxGoroutines(1))
	if err != nil {
		return nil, fmt.Errorf("chunker: erasure code %d+%d: %w", k, m, err)
	}
	return &Coder{k: k, m: m, enc: enc}, nil
}

// DataShards returns k.
func (c *Coder) DataShards() int { return c.k }

// ParityShards returns m.
func (c *Coder) ParityShards() int { return c.m }

// Fragments holds the fragments of one chunk, as Encode writes them. All fragments live in
// one buffer that the next Encode into the same Fragments reuses, so a Fragments used in a
// loop costs no allocation per chunk once its buffer has grown to the largest chunk; the
// slices it holds are valid only until that next Encode.
type Fragments struct {
	Frags [][]byte     // Frags[i] is fragment i: data if i < k, parity otherwise
	IDs   []FragmentID // IDs[i] is FragmentIDOf(Frags[i]), to record in the manifest

	arena  []byte   // all fragments, back to back
	shards [][]byte // shards[i] is the shard part of Frags[i], for Reed-Solomon
}

// Encode codes the sealed chunk named chunk into f, replacing what f held. sealed is
// not retained.
func (c *Coder) Encode(f *Fragments, chunk crypt.ChunkID, sealed []byte) error {
	if len(sealed) > MaxSealedSize {
		return fmt.Errorf("chunker: sealed chunk of %d bytes above %d", len(sealed), MaxSealedSize)
	}
	n := c.k + c.m
	s := shardSize(len(sealed), c.k)
	size := HeaderSize + s
	f.arena = resize(f.arena, n*size)
	f.Frags = resize(f.Frags, n)
	f.IDs = resize(f.IDs, n)
	f.shards = resize(f.shards, n)

	// The shards alias the fragments, so Reed-Solomon writes the parity in place.
	shards := f.shards
	h := Header{K: c.k, M: c.m, SealedLen: len(sealed), Chunk: chunk}
	for i := range n {
		frag := f.arena[i*size : (i+1)*size : (i+1)*size]
		h.Index = i
		h.AppendTo(frag[:0])
		shards[i] = frag[HeaderSize:]
		f.Frags[i] = frag
		if i < c.k {
			// The last data shards are padded with zeros; the arena is reused, so clear.
			copied := copy(shards[i], sealed[min(i*s, len(sealed)):])
			clear(shards[i][copied:])
		}
	}
	if c.m > 0 {
		if err := c.enc.Encode(shards); err != nil {
			panic("BUG: reedsolomon encode: " + err.Error())
		}
	}
	for i, frag := range f.Frags {
		f.IDs[i] = FragmentIDOf(frag)
	}
	return nil
}

// resize returns s with length n, reusing its array when large enough.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// VerifyFragment checks frag as fragment index of chunk, whose ID the manifest records as
// id: the ID must match, the header must parse and name chunk, index and this Coder's k
// and m, and the length must fit the header's sealed length. It returns the header; errors
// match ErrBadFragment (and ErrFragmentHeader when the header is malformed). A reader
// calls it on each fragment as it arrives, to count good ones and move on from bad holders.
func (c *Coder) VerifyFragment(chunk crypt.ChunkID, index int, id FragmentID, frag []byte) (Header, error) {
	if FragmentIDOf(frag) != id {
		return Header{}, fmt.Errorf("%w: fragment %d does not match its ID %s", ErrBadFragment, index, id)
	}
	return c.checkHeader(chunk, index, frag)
}

// checkHeader is VerifyFragment after the ID check: the bytes are the ones the writer
// recorded, so a mismatch here means the manifest lists a fragment that does not belong.
func (c *Coder) checkHeader(chunk crypt.ChunkID, index int, frag []byte) (Header, error) {
	h, err := ParseHeader(frag)
	switch {
	case err != nil:
		return Header{}, fmt.Errorf("%w: fragment %d: %w", ErrBadFragment, index, err)
	case h.K != c.k || h.M != c.m:
		return Header{}, fmt.Errorf("%w: fragment %d is coded %d+%d, want %d+%d", ErrBadFragment, index, h.K, h.M, c.k, c.m)
	case h.Index != index:
		return Header{}, fmt.Errorf("%w: fragment %d has index %d", ErrBadFragment, index, h.Index)
	case h.Chunk != chunk:
		return Header{}, fmt.Errorf("%w: fragment %d belongs to chunk %s, want %s", ErrBadFragment, index, h.Chunk, chunk)
	case len(frag) != h.FragmentSize():
		return Header{}, fmt.Errorf("%w: fragment %d is %d bytes, want %d", ErrBadFragment, index, len(frag), h.FragmentSize())
	}
	return h, nil
}

// sort verifies the given fragments (len(frags[i]) == 0 means missing) in index order and
// returns the shards of the good ones (nil elsewhere), their common sealed length, and the
// indexes of fragments given but bad. With enough > 0 it stops once that many are good,
// leaving the rest unchecked and unused. The sealed length is the one of the lowest good
// index; fragments that disagree with it are bad (only a corrupt manifest can cause this,
// since each fragment matched its recorded ID).
//
// With hashed set the caller has already checked every given fragment against its ID
// (DecodeVerified), and only the headers are checked here.
func (c *Coder) sort(chunk crypt.ChunkID, ids []FragmentID, frags [][]byte, enough int, hashed bool) (shards [][]byte, sealedLen, good int, bad []int, err error) {
	n := c.k + c.m
	if len(ids) != n || len(frags) != n {
		return nil, 0, 0, nil, fmt.Errorf("chunker: %d fragment IDs and %d fragments for a %d+%d code", len(ids), len(frags), c.k, c.m)
	}
	shards = make([][]byte, n)
	sealedLen = -1
	for i, frag := range frags {
		if len(frag) == 0 {
			continue
		}
		if enough > 0 && good == enough {
			break
		}
		var h Header
		if hashed {
			h, err = c.checkHeader(chunk, i, frag)
		} else {
			h, err = c.VerifyFragment(chunk, i, ids[i], frag)
		}
		if err != nil || sealedLen >= 0 && h.SealedLen != sealedLen {
			bad = append(bad, i)
			continue
		}
		sealedLen = h.SealedLen
		shards[i] = frag[HeaderSize:]
		good++
	}
	if good < c.k {
		return nil, 0, good, bad, &NotEnoughError{Have: good, Need: c.k, Bad: bad}
	}
	return shards, sealedLen, good, bad, nil
}

// Decode recovers the sealed chunk named chunk from its fragments and appends it to dst.
// ids[i] is the ID the manifest records for fragment i, frags[i] the fragment obtained for
// index i or nil if none; both have k+m elements. Fragments are verified in index order
// (VerifyFragment) until k are good; bad ones are left out and their indexes returned in
// bad, ascending, on success too, so the caller can report their holders and repair.
// Fragments after the k-th good one are not needed, so they are neither checked nor
// reported (hashing them would cost half as much again when all 8+4 are given). With fewer
// than k good fragments the error is a *NotEnoughError (matching ErrTooFewFragments) and
// dst is returned unchanged: Decode never returns bytes it has not verified.
//
// When the first k good fragments are the data fragments no decoding is done, only a
// copy. dst must not overlap frags; frags are not modified.
func (c *Coder) Decode(dst []byte, chunk crypt.ChunkID, ids []FragmentID, frags [][]byte) (out []byte, bad []int, err error) {
	return c.decode(dst, chunk, ids, frags, false)
}

// DecodeVerified is Decode for fragments the caller has already checked against their
// IDs: every non-empty frags[i] must hash to ids[i] (swarm.Fetch checks each fragment as it
// arrives, to move on from a bad holder). It checks the headers as Decode does but skips
// the second BLAKE3 pass over the bytes, which was 1/3 of a read's hashing.
func (c *Coder) DecodeVerified(dst []byte, chunk crypt.ChunkID, ids []FragmentID, frags [][]byte) (out []byte, bad []int, err error) {
	return c.decode(dst, chunk, ids, frags, true)
}

func (c *Coder) decode(dst []byte, chunk crypt.ChunkID, ids []FragmentID, frags [][]byte, hashed bool) (out []byte, bad []int, err error) {
	shards, sealedLen, _, bad, err := c.sort(chunk, ids, frags, c.k, hashed)
	if err != nil {
		return dst, bad, err
	}
	s := shardSize(sealedLen, c.k)
	base := len(dst)
	// Room for k whole shards: missing data shards are rebuilt straight into their place
	// in out, and the padding past sealedLen is cut off at the end.
	out = slices.Grow(dst, c.k*s)[:base+c.k*s]
	present := 0
	for i := range c.k {
		if shards[i] != nil {
			present++
		}
	}
	if present == c.k {
		for i := range c.k {
			copy(out[base+i*s:], shards[i])
		}
		return out[:base+sealedLen], bad, nil
	}
	given := make([]bool, c.k) // data shards to copy; the others are rebuilt in place
	for i := range c.k {
		if shards[i] != nil {
			given[i] = true
			continue
		}
		region := base + i*s
		shards[i] = out[region : region : region+s] // empty with capacity: filled in place
	}
	if err := c.enc.ReconstructData(shards); err != nil {
		panic("BUG: reedsolomon reconstruct with enough verified shards: " + err.Error())
	}
	for i := range c.k {
		if given[i] {
			copy(out[base+i*s:], shards[i])
		}
	}
	return out[:base+sealedLen], bad, nil
}

// Regenerate rebuilds the fragments at the indexes want, byte-identical with the ones
// Encode made, from at least k good fragments among frags (given and verified as for
// Decode, except that all given fragments are checked, so bad reports every bad one).
// Each rebuilt fragment is checked against its ID in ids before it is returned;
// a mismatch (a manifest that does not describe this chunk's code) is an error matching
// ErrBadFragment. The fragments are returned in the order of want, in one new allocation,
// with the indexes of given-but-bad fragments. A wanted fragment that was given and is good
// is copied.
func (c *Coder) Regenerate(chunk crypt.ChunkID, ids []FragmentID, frags [][]byte, want []int) (regen [][]byte, bad []int, err error) {
	n := c.k + c.m
	required := make([]bool, n)
	for _, w := range want {
		if w < 0 || w >= n {
			return nil, nil, fmt.Errorf("chunker: regenerate fragment %d of %d", w, n)
		}
		if required[w] {
			return nil, nil, fmt.Errorf("chunker: regenerate fragment %d twice", w)
		}
		required[w] = true
	}
	shards, sealedLen, _, bad, err := c.sort(chunk, ids, frags, 0, false)
	if err != nil {
		return nil, bad, err
	}
	size := HeaderSize + shardSize(sealedLen, c.k)
	arena := make([]byte, len(want)*size)
	regen = make([][]byte, len(want))
	for j, w := range want {
		frag := arena[j*size : (j+1)*size : (j+1)*size]
		regen[j] = frag
		if shards[w] != nil {
			copy(frag, frags[w])
			required[w] = false
			continue
		}
		Header{K: c.k, M: c.m, Index: w, SealedLen: sealedLen, Chunk: chunk}.AppendTo(frag[:0])
		shards[w] = frag[HeaderSize:HeaderSize]
	}
	if err := c.enc.ReconstructSome(shards, required); err != nil {
		panic("BUG: reedsolomon reconstruct with enough verified shards: " + err.Error())
	}
	for j, w := range want {
		if got := FragmentIDOf(regen[j]); got != ids[w] {
			return nil, bad, fmt.Errorf("%w: regenerated fragment %d has ID %s, manifest says %s", ErrBadFragment, w, got, ids[w])
		}
	}
	return regen, bad, nil
}
