package chunker

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
	"testing/iotest"

	chunk "github.com/ipfs/boxo/chunker"
	"github.com/zeebo/blake3"
)

// smallParams keep the splitter tests fast and produce many chunks from little data.
var smallParams = Params{Min: 2 << 10, Normal: 8 << 10, Max: 32 << 10}

// split returns the chunks of data (copies) and checks the splitter's invariants: the
// chunks concatenate to data, none is empty, all are within [p.Min, p.Max] except that the
// last may be shorter than p.Min, and io.EOF is sticky.
func split(t testing.TB, key [32]byte, p Params, data []byte) [][]byte {
	t.Helper()
	s, err := New(bytes.NewReader(data), key, p)
	if err != nil {
		t.Fatal(err)
	}
	var chunks [][]byte
	for {
		c, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, slices.Clone(c))
	}
	if c, err := s.Next(); c != nil || err != io.EOF {
		t.Fatalf("Next after the end = %d bytes, %v", len(c), err)
	}
	if got := bytes.Join(chunks, nil); !bytes.Equal(got, data) {
		t.Fatalf("chunks of %d bytes do not concatenate to the input (%d bytes)", len(data), len(got))
	}
	for i, c := range chunks {
		last := i == len(chunks)-1
		if len(c) == 0 || len(c) > p.Max || len(c) < p.Min && !last {
			t.Fatalf("chunk %d of %d: %d bytes, outside [%d, %d]", i, len(chunks), len(c), p.Min, p.Max)
		}
	}
	return chunks
}

func boundaries(chunks [][]byte) []int {
	var b []int
	off := 0
	for _, c := range chunks {
		off += len(c)
		b = append(b, off)
	}
	return b
}

func TestParamsValidate(t *testing.T) {
	if err := DefaultParams.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Params{
		{Min: 32, Normal: 64, Max: 128},
		{Min: 64, Normal: 64, Max: 128},
		{Min: 64, Normal: 96, Max: 128},
		{Min: 64, Normal: 128, Max: 128},
		{Min: 1 << 20, Normal: 2 << 20, Max: MaxChunkSize + 1},
		{},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v: valid", p)
		}
		if _, err := New(nil, [32]byte{}, p); err == nil {
			t.Errorf("New(%+v) succeeded", p)
		}
	}
}

func TestSplitSizes(t *testing.T) {
	key := testKey("sizes")
	p := smallParams
	for _, n := range []int{0, 1, p.Min - 1, p.Min, p.Min + 1, p.Normal, p.Max - 1, p.Max, p.Max + 1, 2*p.Max + 7, 1 << 20} {
		chunks := split(t, key, p, prng("sizes", n))
		if n == 0 && len(chunks) != 0 {
			t.Fatalf("empty input gave %d chunks", len(chunks))
		}
	}
	// All-zero input has no content to cut on: every chunk is forced at Max.
	chunks := split(t, key, p, make([]byte, 10*p.Max+5))
	for _, c := range chunks[:len(chunks)-1] {
		if len(c) != p.Max {
			t.Fatalf("zero input: chunk of %d bytes, want %d", len(c), p.Max)
		}
	}
}

// TestSplitDefault splits 64 MiB with the default parameters and logs the size statistics
// that docs/format.md quotes.
func TestSplitDefault(t *testing.T) {
	chunks := split(t, testKey("default"), DefaultParams, prng("default", 64<<20))
	lo, hi := 64<<20, 0
	for _, c := range chunks[:len(chunks)-1] {
		lo, hi = min(lo, len(c)), max(hi, len(c))
	}
	t.Logf("64 MiB, %v: %d chunks, mean %.2f MiB, smallest %d, largest %d (last %d)",
		DefaultParams, len(chunks), 64/float64(len(chunks)), lo, hi, len(chunks[len(chunks)-1]))
}

func TestSplitKeyed(t *testing.T) {
	data := prng("keyed", 64<<20)
	a := boundaries(split(t, testKey("a"), DefaultParams, data))
	b := boundaries(split(t, testKey("b"), DefaultParams, data))
	a2 := boundaries(split(t, testKey("a"), DefaultParams, data))
	if !slices.Equal(a, a2) {
		t.Fatal("the same key gave different boundaries")
	}
	// Under independent gear tables a shared cut point would be a coincidence of the
	// order of one in a million per boundary; only the end of the data is common.
	shared := 0
	for _, off := range a[:len(a)-1] {
		if _, ok := slices.BinarySearch(b, off); ok {
			shared++
		}
	}
	t.Logf("key a: %d chunks, key b: %d chunks, shared boundaries: %d", len(a), len(b), shared)
	if shared != 0 {
		t.Fatalf("two keys share %d boundaries", shared)
	}
}

// TestSplitInsert inserts bytes into 64 MiB and counts the chunks that change. Boundaries
// before the edit cannot move; the chunk holding the edit changes; after it, cut points
// depend only on the last 64 bytes and the distance from the previous cut, so the old cut
// after the edit is found again unless the edit's neighbourhood produced an earlier one,
// and then the next one realigns in turn. The bound is the edited chunk plus two.
func TestSplitInsert(t *testing.T) {
	const bound = 3
	key := testKey("insert")
	data := prng("insert", 64<<20)
	old := split(t, key, DefaultParams, data)
	oldSet := make(map[[32]byte]bool)
	for _, c := range old {
		oldSet[blake3.Sum256(c)] = true
	}
	for _, at := range []int{len(data) / 4, len(data) / 2, 3 * len(data) / 4} {
		for _, n := range []int{1, 100, 10000} {
			edited := slices.Concat(data[:at], prng("inserted", n), data[at:])
			chunks := split(t, key, DefaultParams, edited)
			changed, after := 0, 0
			off := 0
			for _, c := range chunks {
				if !oldSet[blake3.Sum256(c)] {
					changed++
				}
				if off+len(c) > at {
					after++
				}
				off += len(c)
			}
			t.Logf("insert %d bytes at %d: %d of %d chunks changed (%d chunks from the edit on)", n, at, changed, len(chunks), after)
			if changed < 1 || changed > bound {
				t.Errorf("insert %d bytes at %d: %d chunks changed, want 1..%d", n, at, changed, bound)
			}
		}
	}
}

// TestNextBytesOwned checks boxo's contract: slices from NextBytes stay valid after later
// calls, while Next reuses its buffer.
func TestNextBytesOwned(t *testing.T) {
	data := prng("owned", 1<<20)
	s, err := New(bytes.NewReader(data), testKey("owned"), smallParams)
	if err != nil {
		t.Fatal(err)
	}
	var kept [][]byte
	for {
		c, err := s.NextBytes()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, c)
	}
	if !bytes.Equal(bytes.Join(kept, nil), data) {
		t.Fatal("chunks kept from NextBytes were overwritten")
	}
	if s.Reader() == nil {
		t.Fatal("Reader() is nil")
	}

	// Reset splits a new stream the same way, with the same buffer.
	s.Reset(bytes.NewReader(data))
	for i := range kept {
		c, err := s.Next()
		if err != nil || !bytes.Equal(c, kept[i]) {
			t.Fatalf("after Reset, chunk %d differs (%v)", i, err)
		}
	}
	if _, err := s.Next(); err != io.EOF {
		t.Fatalf("after Reset, end: %v", err)
	}
}

func TestSplitReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(prng("err", 100<<10)), iotest.ErrReader(boom))
	s, err := New(r, testKey("err"), smallParams)
	if err != nil {
		t.Fatal(err)
	}
	var got error
	for got == nil {
		_, got = s.Next()
	}
	if !errors.Is(got, boom) {
		t.Fatalf("err = %v, want boom", got)
	}
	if _, err := s.NextBytes(); !errors.Is(err, boom) {
		t.Fatalf("second err = %v, want boom again", err)
	}
}

func TestFromString(t *testing.T) {
	data := prng("fromstring", 3<<20)
	key := testKey("fromstring")
	for _, tc := range []struct {
		spec string
		want Params // zero: not our splitter
	}{
		{"kfastcdc", DefaultParams},
		{smallParams.String(), smallParams},
		{"size-1000", Params{}},
		{"rabin", Params{}},
		{"rabin-16384-65536-262144", Params{}},
		{"buzhash", Params{}},
		{"default", Params{}},
		{"", Params{}},
	} {
		s, err := FromString(bytes.NewReader(data), key, tc.spec)
		if err != nil {
			t.Fatalf("%q: %v", tc.spec, err)
		}
		var chunks [][]byte
		for {
			c, err := s.NextBytes()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%q: %v", tc.spec, err)
			}
			chunks = append(chunks, c)
		}
		if !bytes.Equal(bytes.Join(chunks, nil), data) {
			t.Fatalf("%q: chunks do not concatenate to the input", tc.spec)
		}
		_, isOurs := s.(*Splitter)
		if isOurs != (tc.want != Params{}) {
			t.Fatalf("%q: got %T", tc.spec, s)
		}
		if isOurs {
			want := split(t, key, tc.want, data)
			if !slices.EqualFunc(chunks, want, bytes.Equal) {
				t.Fatalf("%q: chunks differ from New with %+v", tc.spec, tc.want)
			}
		}
		if tc.spec == "size-1000" && len(chunks[0]) != 1000 {
			t.Fatalf("size-1000: first chunk %d bytes", len(chunks[0]))
		}
	}
	for _, spec := range []string{"kfastcdc-1", "kfastcdc-1-2-3-4", "kfastcdc-a-8192-32768", "kfastcdc-64-100-1000", "nope", "size-x"} {
		if _, err := FromString(bytes.NewReader(data), key, spec); err == nil {
			t.Errorf("%q: accepted", spec)
		}
	}
	var _ chunk.Splitter = (*Splitter)(nil)
}
