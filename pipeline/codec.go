package pipeline

import (
	"errors"
	"fmt"
	"io"
	"sync"

	chunk "github.com/ipfs/boxo/chunker"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
)

// ErrUnrecoverable is wrapped by reads that cannot rebuild a chunk: fewer than K of its
// fragments could be fetched and verified, or what was fetched does not decrypt. Retrying
// the same holders cannot help; only repair (or a holder coming back) can.
var ErrUnrecoverable = errors.New("pipeline: chunk unrecoverable")

// Codec turns plaintext chunks into fragments and back, with no I/O: chunk ID, sealing,
// Reed-Solomon coding and fragment IDs on the way out; fragment verification,
// reconstruction and opening on the way in. A Codec is safe for concurrent use; the
// Buffers passed to it are not.
type Codec struct {
	keys   *crypt.Keys
	coder  *chunker.Coder
	params chunker.Params
	others sync.Map // [2]uint8{k, m} -> *chunker.Coder: chunks read of another shape
}

// NewCodec returns a Codec for the drive whose sub-keys are keys, coding each chunk into
// k data and m parity fragments, with chunk boundaries cut by params.
func NewCodec(keys *crypt.Keys, k, m int, params chunker.Params) (*Codec, error) {
	if keys == nil {
		return nil, errors.New("pipeline: no keys")
	}
	if err := params.Validate(); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	coder, err := chunker.NewCoder(k, m)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	return &Codec{keys: keys, coder: coder, params: params}, nil
}

// K returns the number of data fragments per chunk.
func (c *Codec) K() int { return c.coder.DataShards() }

// M returns the number of parity fragments per chunk.
func (c *Codec) M() int { return c.coder.ParityShards() }

// Split returns the drive's keyed content-defined splitter over r. Its NextBytes returns
// chunks the caller may keep; Next (on the concrete type) reuses one buffer.
func (c *Codec) Split(r io.Reader) chunk.Splitter {
	s, err := chunker.New(r, c.keys.Chunker, c.params)
	if err != nil {
		// NewCodec validated the params, the only input New can reject.
		panic("BUG: pipeline: splitter: " + err.Error())
	}
	return s
}

// Buffers is reusable scratch space for Encode. Once its buffers have grown to the largest
// chunk, encoding allocates nothing per chunk. The zero value is ready to use; a Buffers
// must not be used by two goroutines at once.
type Buffers struct {
	sealed []byte
	frags  chunker.Fragments
}

// Encoded is one chunk ready for placement. Its slices point into the Buffers that Encode
// used and stay valid only until that Buffers is used again.
type Encoded struct {
	ID        crypt.ChunkID
	Size      int                  // plaintext bytes
	SealedLen int                  // sealed bytes, before erasure coding
	Frags     [][]byte             // Frags[i]: fragment i, header included
	IDs       []chunker.FragmentID // IDs[i] = chunker.FragmentIDOf(Frags[i])
}

// Encode names, seals and erasure-codes one plaintext chunk.
func (c *Codec) Encode(b *Buffers, plain []byte) (Encoded, error) {
	id := c.keys.ChunkID(plain)
	b.sealed = c.keys.Seal(b.sealed[:0], id, plain)
	if err := c.coder.Encode(&b.frags, id, b.sealed); err != nil {
		return Encoded{}, fmt.Errorf("pipeline: encode chunk %s: %w", id, err)
	}
	return Encoded{
		ID: id, Size: len(plain), SealedLen: len(b.sealed),
		Frags: b.frags.Frags, IDs: b.frags.IDs,
	}, nil
}

// Decode verifies the fragments fetched for the chunk ref names and rebuilds the sealed
// chunk, appending it to dst. frags[i] is the fragment with index i or nil; it may be
// shorter than K+M. bad lists the indexes of fragments that failed verification (their
// holders served wrong bytes), also on success. Too few good fragments gives an error
// wrapping ErrUnrecoverable and chunker.ErrTooFewFragments.
func (c *Codec) Decode(dst []byte, ref *Ref, frags [][]byte) (sealed []byte, bad []int, err error) {
	return c.decode(dst, ref, frags, false)
}

// decodeVerified is Decode for fragments already checked against their IDs (by
// swarm.Fetch): the headers are checked, the bytes not hashed a second time.
func (c *Codec) decodeVerified(dst []byte, ref *Ref, frags [][]byte) (sealed []byte, bad []int, err error) {
	return c.decode(dst, ref, frags, true)
}

func (c *Codec) decode(dst []byte, ref *Ref, frags [][]byte, hashed bool) (sealed []byte, bad []int, err error) {
	coder, err := c.coderFor(ref)
	if err != nil {
		return dst, nil, err
	}
	n := len(ref.Fragments)
	if len(frags) > n {
		return dst, nil, fmt.Errorf("pipeline: chunk %s: %d fragments for %d indexes", ref.ID, len(frags), n)
	}
	ids := make([]chunker.FragmentID, n)
	for i, f := range ref.Fragments {
		ids[i] = f.ID
	}
	all := frags
	if len(frags) < n {
		all = make([][]byte, n)
		copy(all, frags)
	}
	decode := coder.Decode
	if hashed {
		decode = coder.DecodeVerified
	}
	out, bad, err := decode(dst, ref.ID, ids, all)
	if err != nil {
		return dst, bad, fmt.Errorf("pipeline: chunk %s: %w: %w", ref.ID, ErrUnrecoverable, err)
	}
	if got := len(out) - len(dst); got != int(ref.SealedLen) {
		return dst, bad, fmt.Errorf("pipeline: chunk %s: %w: sealed length %d, manifest says %d",
			ref.ID, ErrUnrecoverable, got, ref.SealedLen)
	}
	return out, bad, nil
}

// Open decrypts the sealed chunk ref names and appends the plaintext to dst. A sealed
// chunk that does not authenticate (tampered, or from another drive) gives an error
// wrapping ErrUnrecoverable and crypt.ErrAuth.
func (c *Codec) Open(dst []byte, ref *Ref, sealed []byte) ([]byte, error) {
	out, err := c.keys.Open(dst, ref.ID, sealed)
	if err != nil {
		return dst, fmt.Errorf("pipeline: chunk %s: %w: %w", ref.ID, ErrUnrecoverable, err)
	}
	if got := len(out) - len(dst); got != int(ref.Size) {
		return dst, fmt.Errorf("pipeline: chunk %s: %w: %d plaintext bytes, manifest says %d",
			ref.ID, ErrUnrecoverable, got, ref.Size)
	}
	return out, nil
}

// coderFor returns the Coder that decodes ref: the codec's own, or one for the shape ref
// records (a drive recovered, shared or repaired elsewhere may hold chunks coded with
// another k+m than this device writes). A Ref whose fragment count contradicts its shape,
// or whose shape no Coder takes, is refused before any fragment is fetched.
func (c *Codec) coderFor(ref *Ref) (*chunker.Coder, error) {
	if len(ref.Fragments) != int(ref.K)+int(ref.M) {
		return nil, fmt.Errorf("pipeline: chunk %s coded %d+%d with %d fragments", ref.ID, ref.K, ref.M, len(ref.Fragments))
	}
	if int(ref.K) == c.K() && int(ref.M) == c.M() {
		return c.coder, nil
	}
	shape := [2]uint8{ref.K, ref.M}
	if co, ok := c.others.Load(shape); ok {
		return co.(*chunker.Coder), nil
	}
	co, err := chunker.NewCoder(int(ref.K), int(ref.M))
	if err != nil {
		return nil, fmt.Errorf("pipeline: chunk %s: %w", ref.ID, err)
	}
	got, _ := c.others.LoadOrStore(shape, co)
	return got.(*chunker.Coder), nil
}
