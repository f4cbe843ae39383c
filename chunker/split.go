package chunker

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	cdc "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc" // registers the FastCDC variants
	chunk "github.com/ipfs/boxo/chunker"
)

// SplitterName is the name of the keyed FastCDC splitter in FromString specifications.
const SplitterName = "kfastcdc"

// cdcAlgorithm is the go-cdc-chunkers variant the splitter runs. The library's own
// "kfastcdc" name is its legacy variant, which keeps FastCDC's masks for 8 KiB chunks
// whatever the sizes: at MiB sizes it cuts ~32 KiB after the minimum, which is nearly
// fixed-size chunking. "fastcdc-v1.0.0" derives the masks from the normal size and takes
// the same Key, from which it derives the same keyed gear table (BLAKE3 keyed by the key).
// The golden fixture in testdata pins the resulting boundaries.
const cdcAlgorithm = "fastcdc-v1.0.0"

// Limits on Params, checked by Params.Validate.
const (
	// MinChunkSize is the smallest allowed Params.Min: the gear hash looks at a 64-byte
	// window, and much smaller chunks make no sense for a network drive.
	MinChunkSize = 64
	// MaxChunkSize is the largest allowed Params.Max. It bounds the memory one splitter
	// holds (twice Max) and keeps a sealed chunk under MaxSealedSize.
	MaxChunkSize = 8 << 20
)

// DefaultParams are the chunk sizes a drive uses unless configured otherwise: chunks of
// at least 1 MiB, aiming at 2 MiB (about 2.4 MiB on average on random data, because
// normalized FastCDC rarely cuts before Normal), never above 8 MiB. Chosen by benchmark,
// see docs/format.md "Chunk boundaries" and docs/benchmarks.md: with k=8 a chunk gives
// ~300 KiB fragments, large enough that a fragment request is not dominated by per-stream
// costs, while the splitter stays well above 1 GB/s on one core.
var DefaultParams = Params{Min: 1 << 20, Normal: 2 << 20, Max: 8 << 20}

// Params are the size parameters of the keyed FastCDC splitter. Every chunk is at least
// Min and at most Max bytes, except that the last chunk of a stream may be shorter than
// Min. Boundaries depend on the parameters, so a drive must keep them fixed: changing
// them changes every boundary and defeats deduplication against existing chunks.
type Params struct {
	Min int // smallest chunk; no boundary is looked for before it
	// Normal is FastCDC's normal size, a power of two: before it a boundary is 4x less
	// likely than at the target rate, after it 4x more likely (normalization level 2).
	Normal int
	Max    int // largest chunk; a boundary is forced here
}

// Validate reports whether p is usable: MinChunkSize <= Min < Normal < Max <=
// MaxChunkSize, and Normal is a power of two.
func (p Params) Validate() error {
	switch {
	case p.Min < MinChunkSize:
		return fmt.Errorf("chunker: min size %d below %d", p.Min, MinChunkSize)
	case p.Normal <= p.Min:
		return fmt.Errorf("chunker: normal size %d must be above min size %d", p.Normal, p.Min)
	case p.Normal&(p.Normal-1) != 0:
		return fmt.Errorf("chunker: normal size %d is not a power of two", p.Normal)
	case p.Max <= p.Normal:
		return fmt.Errorf("chunker: max size %d must be above normal size %d", p.Max, p.Normal)
	case p.Max > MaxChunkSize:
		return fmt.Errorf("chunker: max size %d above %d", p.Max, MaxChunkSize)
	}
	return nil
}

// String returns the FromString specification of p: "kfastcdc-<min>-<normal>-<max>".
func (p Params) String() string {
	return fmt.Sprintf("%s-%d-%d-%d", SplitterName, p.Min, p.Normal, p.Max)
}

// Splitter cuts a stream into keyed content-defined chunks. It implements boxo's
// chunk.Splitter. A Splitter is not safe for concurrent use.
type Splitter struct {
	r   io.Reader
	c   *cdc.Chunker
	err error // sticky: io.EOF once the last chunk was returned, or the read error
}

var _ chunk.Splitter = (*Splitter)(nil)

// New returns a Splitter reading r, with boundaries keyed by key (the drive's chunker
// sub-key) and sizes p. It holds a buffer of 2*p.Max bytes; use Reset to reuse it for the
// next stream.
func New(r io.Reader, key [32]byte, p Params) (*Splitter, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	opts := &cdc.ChunkerOpts{MinSize: p.Min, NormalSize: p.Normal, MaxSize: p.Max, Key: key[:]}
	c, err := cdc.NewChunker(cdcAlgorithm, r, opts)
	if err != nil {
		return nil, fmt.Errorf("chunker: %w", err)
	}
	return &Splitter{r: r, c: c}, nil
}

// Reset makes s split r from its start, keeping the key, sizes and buffer.
func (s *Splitter) Reset(r io.Reader) {
	s.r = r
	s.err = nil
	s.c.Reset(r)
}

// Reader returns the reader s splits.
func (s *Splitter) Reader() io.Reader { return s.r }

// Next returns the next chunk, or nil and io.EOF after the last one (an empty stream has
// no chunks). The chunk aliases s's buffer: it is valid only until the next call to Next,
// NextBytes or Reset, and must not be modified. A read error other than io.EOF is
// returned as is, and again on every later call.
func (s *Splitter) Next() ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	b, err := s.c.Next()
	switch {
	case err == nil:
		return b, nil
	case errors.Is(err, io.EOF):
		// The library returns the last chunk together with io.EOF; boxo's contract wants
		// the chunk with a nil error and io.EOF on the following call.
		s.err = io.EOF
		if len(b) == 0 {
			return nil, io.EOF
		}
		return b, nil
	default:
		s.err = err
		return nil, err
	}
}

// NextBytes is boxo's chunk.Splitter method: like Next, but the chunk is a fresh copy the
// caller owns and may keep. Prefer Next when the chunk is consumed before the next call.
func (s *Splitter) NextBytes() ([]byte, error) {
	b, err := s.Next()
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), b...), nil
}

// FromString returns the splitter a specification names. "kfastcdc" is the keyed
// splitter with DefaultParams and "kfastcdc-<min>-<normal>-<max>" the keyed splitter with
// those sizes in bytes (Params.String); both use key. Any other specification is handed to
// boxo's chunk.FromString ("size-<n>", "rabin[-...]", "buzhash", "default"...), whose
// splitters are not keyed and ignore key.
func FromString(r io.Reader, key [32]byte, spec string) (chunk.Splitter, error) {
	name, rest, hasArgs := strings.Cut(spec, "-")
	if name != SplitterName {
		return chunk.FromString(r, spec)
	}
	p := DefaultParams
	if hasArgs {
		f := strings.Split(rest, "-")
		if len(f) != 3 {
			return nil, fmt.Errorf("chunker: splitter %q: want %s or %s-<min>-<normal>-<max>", spec, SplitterName, SplitterName)
		}
		var v [3]int
		for i, s := range f {
			n, err := strconv.Atoi(s)
			if err != nil {
				return nil, fmt.Errorf("chunker: splitter %q: %w", spec, err)
			}
			v[i] = n
		}
		p = Params{Min: v[0], Normal: v[1], Max: v[2]}
	}
	return New(r, key, p)
}
