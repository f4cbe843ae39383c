package chunker

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/scatterfs/scatter/crypt"
)

// encoded holds one chunk coded with its own copy of the fragments, so tests can damage
// them freely.
type encoded struct {
	c      *Coder
	chunk  crypt.ChunkID
	sealed []byte
	ids    []FragmentID
	frags  [][]byte
}

func encode(t testing.TB, c *Coder, sealed []byte) *encoded {
	t.Helper()
	e := &encoded{c: c, chunk: testChunkID(fmt.Sprint(len(sealed))), sealed: sealed}
	var f Fragments
	if err := c.Encode(&f, e.chunk, sealed); err != nil {
		t.Fatal(err)
	}
	for i, frag := range f.Frags {
		if FragmentIDOf(frag) != f.IDs[i] {
			t.Fatalf("fragment %d: ID does not match its bytes", i)
		}
		e.frags = append(e.frags, slices.Clone(frag))
	}
	e.ids = slices.Clone(f.IDs)
	return e
}

// without returns a copy of the fragment list with the fragments at lost set to nil.
func (e *encoded) without(lost ...int) [][]byte {
	frags := slices.Clone(e.frags)
	for _, i := range lost {
		frags[i] = nil
	}
	return frags
}

// decodeOK decodes frags and checks the result equals the sealed chunk and bad is wantBad.
func (e *encoded) decodeOK(t *testing.T, frags [][]byte, wantBad []int) {
	t.Helper()
	prefix := []byte("prefix")
	out, bad, err := e.c.Decode(slices.Clip(prefix), e.chunk, e.ids, frags)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !bytes.Equal(out[:len(prefix)], prefix) || !bytes.Equal(out[len(prefix):], e.sealed) {
		t.Fatalf("decode: wrong bytes (len %d, want %d)", len(out)-len(prefix), len(e.sealed))
	}
	if !slices.Equal(bad, wantBad) {
		t.Fatalf("bad = %v, want %v", bad, wantBad)
	}
}

// decodeTooFew checks that decoding frags fails with a *NotEnoughError.
func (e *encoded) decodeTooFew(t *testing.T, frags [][]byte, have int, wantBad []int) {
	t.Helper()
	dst := []byte("dst")
	out, bad, err := e.c.Decode(dst, e.chunk, e.ids, frags)
	var ne *NotEnoughError
	if !errors.As(err, &ne) || !errors.Is(err, ErrTooFewFragments) {
		t.Fatalf("decode: err = %v, want *NotEnoughError", err)
	}
	if ne.Have != have || ne.Need != e.c.DataShards() || !slices.Equal(ne.Bad, wantBad) || !slices.Equal(bad, wantBad) {
		t.Fatalf("decode: %+v (bad %v), want have %d need %d bad %v", ne, bad, have, e.c.DataShards(), wantBad)
	}
	if string(out) != "dst" {
		t.Fatalf("decode returned %d bytes on error", len(out))
	}
}

func TestNewCoder(t *testing.T) {
	for _, tc := range []struct {
		k, m int
		ok   bool
	}{
		{8, 4, true}, {1, 0, true}, {1, 254, true}, {255, 0, true}, {128, 127, true},
		{0, 4, false}, {-1, 4, false}, {8, -1, false}, {200, 56, false}, {256, 0, false},
	} {
		c, err := NewCoder(tc.k, tc.m)
		if (err == nil) != tc.ok {
			t.Errorf("NewCoder(%d, %d): err = %v", tc.k, tc.m, err)
		}
		if err == nil && (c.DataShards() != tc.k || c.ParityShards() != tc.m) {
			t.Errorf("NewCoder(%d, %d): got %d+%d", tc.k, tc.m, c.DataShards(), c.ParityShards())
		}
	}
	if _, err := NewCoder(DefaultDataShards, DefaultParityShards); err != nil {
		t.Fatal(err)
	}
}

func TestCoderRoundTrip(t *testing.T) {
	for _, km := range [][2]int{{8, 4}, {4, 2}, {3, 3}, {1, 0}, {1, 2}, {5, 0}, {10, 245}} {
		k, m := km[0], km[1]
		c := mustCoder(t, k, m)
		sizes := []int{0, 1, k - 1, k, k + 1, 100*k - 1, 100 * k, 100*k + 1, 1000}
		for _, n := range sizes {
			if n < 0 {
				continue
			}
			t.Run(fmt.Sprintf("%d+%d/%d", k, m, n), func(t *testing.T) {
				e := encode(t, c, prng(fmt.Sprint("sealed", n), n))
				if len(e.frags) != k+m {
					t.Fatalf("%d fragments, want %d", len(e.frags), k+m)
				}
				for i, frag := range e.frags {
					h, err := ParseHeader(frag)
					if err != nil {
						t.Fatal(err)
					}
					want := Header{K: k, M: m, Index: i, SealedLen: n, Chunk: e.chunk}
					if h != want || len(frag) != HeaderSize+max(1, (n+k-1)/k) || len(frag) != h.FragmentSize() {
						t.Fatalf("fragment %d: header %+v len %d", i, h, len(frag))
					}
				}
				e.decodeOK(t, e.frags, nil)
				lost := make([]int, 0, m)
				for i := range m {
					lost = append(lost, i) // data shards first: the expensive case
				}
				e.decodeOK(t, e.without(lost...), nil)
			})
		}
	}
}

func TestCoderMaxSize(t *testing.T) {
	c := mustCoder(t, DefaultDataShards, DefaultParityShards)
	e := encode(t, c, prng("max", MaxSealedSize))
	e.decodeOK(t, e.without(0, 3, 7, 9), nil)

	var f Fragments
	if err := c.Encode(&f, e.chunk, make([]byte, MaxSealedSize+1)); err == nil {
		t.Fatal("Encode accepted a sealed chunk above MaxSealedSize")
	}
}

// subsets calls fn with every subset of {0..n-1}, as ascending index lists.
func subsets(n int, fn func([]int)) {
	for mask := 0; mask < 1<<n; mask++ {
		var s []int
		for i := range n {
			if mask&(1<<i) != 0 {
				s = append(s, i)
			}
		}
		fn(s)
	}
}

func TestCoderEveryLossPattern(t *testing.T) {
	for _, km := range [][2]int{{4, 2}, {3, 3}, {2, 4}} {
		k, m := km[0], km[1]
		e := encode(t, mustCoder(t, k, m), prng("every", 997))
		subsets(k+m, func(lost []int) {
			frags := e.without(lost...)
			if len(lost) <= m {
				e.decodeOK(t, frags, nil)
			} else {
				e.decodeTooFew(t, frags, k+m-len(lost), nil)
			}
		})
	}
}

func TestCoderRandomLoss(t *testing.T) {
	c := mustCoder(t, 8, 4)
	e := encode(t, c, prng("random loss", 1<<20))
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		lost := r.Perm(12)[:r.IntN(c.ParityShards()+1)]
		e.decodeOK(t, e.without(lost...), nil)
	}
	for range 50 {
		lost := r.Perm(12)[:5+r.IntN(8)]
		e.decodeTooFew(t, e.without(lost...), 12-len(lost), nil)
	}
}

// TestCoderBitFlip flips every bit of every fragment in turn: the fragment must be
// excluded and reported, and the chunk still decoded from the others.
func TestCoderBitFlip(t *testing.T) {
	for _, km := range [][2]int{{4, 2}, {3, 3}} {
		k, m := km[0], km[1]
		e := encode(t, mustCoder(t, k, m), prng("flip", 61))
		for i := range e.frags {
			for bit := range 8 * len(e.frags[i]) {
				frags := e.without()
				frags[i] = slices.Clone(frags[i])
				frags[i][bit/8] ^= 1 << (bit % 8)
				// Decode checks fragments in order until k are good: a flipped parity
				// fragment is then not needed, and not reported.
				var wantBad []int
				if i < k {
					wantBad = []int{i}
				}
				e.decodeOK(t, frags, wantBad)
				if _, err := e.c.VerifyFragment(e.chunk, i, e.ids[i], frags[i]); !errors.Is(err, ErrBadFragment) {
					t.Fatalf("fragment %d bit %d flipped: VerifyFragment err = %v", i, bit, err)
				}
				if i >= k && i < k+m-1 {
					// Without data fragments 0..i-k, the flipped one is needed (k-1 good
					// ones before it), found bad, and a later parity fragment used instead.
					fewer := slices.Clone(frags)
					for j := 0; j <= i-k; j++ {
						fewer[j] = nil
					}
					e.decodeOK(t, fewer, []int{i})
				}

				// With m others lost too, the flipped one is not enough to decode.
				others := slices.DeleteFunc([]int{0, 1, 2, 3, 4, 5}, func(j int) bool { return j == i })[:m]
				lost := e.without(others...)
				lost[i] = frags[i]
				e.decodeTooFew(t, lost, k-1, []int{i})
			}
		}
	}
}

// TestCoderBadFragments covers fragments that are well-formed but do not belong: swapped
// positions, another chunk's fragments, truncated or extended ones.
func TestCoderBadFragments(t *testing.T) {
	c := mustCoder(t, 4, 2)
	e := encode(t, c, prng("bad", 1000))
	other := encode(t, c, prng("other", 1000))
	other.chunk = testChunkID("other")

	swapped := e.without()
	swapped[0], swapped[5] = swapped[5], swapped[0]
	e.decodeOK(t, swapped, []int{0}) // 1-4 are enough: 5 is not looked at
	swapped[1] = nil
	e.decodeTooFew(t, swapped, 3, []int{0, 5})

	foreign := e.without()
	foreign[2] = other.frags[2]
	e.decodeOK(t, foreign, []int{2})

	short := e.without()
	short[1] = short[1][:len(short[1])-1]
	long := e.without()
	long[3] = append(slices.Clone(long[3]), 0)
	e.decodeOK(t, short, []int{1})
	e.decodeOK(t, long, []int{3})

	// The right IDs under the wrong chunk ID: every fragment names another chunk.
	wrong := *e
	wrong.chunk = testChunkID("wrong")
	wrong.decodeTooFew(t, e.frags, 0, []int{0, 1, 2, 3, 4, 5})

	// A manifest that records the IDs of another coding (k+m mismatch) fails cleanly.
	c2 := mustCoder(t, 2, 4)
	e2 := encode(t, c2, prng("bad", 1000))
	bad := *e
	bad.ids, bad.frags = e2.ids, e2.frags
	bad.chunk = e2.chunk
	bad.decodeTooFew(t, e2.frags, 0, []int{0, 1, 2, 3, 4, 5})

	if _, _, err := c.Decode(nil, e.chunk, e.ids[:5], e.frags); err == nil || errors.Is(err, ErrTooFewFragments) {
		t.Fatalf("decode with 5 IDs: err = %v", err)
	}
}

func TestVerifyFragment(t *testing.T) {
	c := mustCoder(t, 4, 2)
	e := encode(t, c, prng("verify", 300))
	for i, frag := range e.frags {
		h, err := c.VerifyFragment(e.chunk, i, e.ids[i], frag)
		if err != nil || h.Index != i || h.SealedLen != 300 {
			t.Fatalf("fragment %d: %+v, %v", i, h, err)
		}
	}
	if _, err := c.VerifyFragment(e.chunk, 1, e.ids[0], e.frags[0]); !errors.Is(err, ErrBadFragment) {
		t.Fatalf("fragment 0 at index 1: err = %v", err)
	}
	if _, err := c.VerifyFragment(e.chunk, 0, e.ids[0], e.frags[1]); !errors.Is(err, ErrBadFragment) {
		t.Fatalf("fragment 1 under ID 0: err = %v", err)
	}
	// A fragment whose ID matches but whose header is malformed: both errors match.
	junk := []byte("not a fragment")
	_, err := c.VerifyFragment(e.chunk, 0, FragmentIDOf(junk), junk)
	if !errors.Is(err, ErrBadFragment) || !errors.Is(err, ErrFragmentHeader) {
		t.Fatalf("junk: err = %v", err)
	}
}

func TestCoderRegenerate(t *testing.T) {
	for _, km := range [][2]int{{4, 2}, {3, 3}, {8, 4}} {
		k, m := km[0], km[1]
		e := encode(t, mustCoder(t, k, m), prng("regen", 5000))
		n := k + m
		check := func(lost, want []int, frags [][]byte, wantBad []int) {
			t.Helper()
			regen, bad, err := e.c.Regenerate(e.chunk, e.ids, frags, want)
			if err != nil {
				t.Fatalf("%d+%d lost %v want %v: %v", k, m, lost, want, err)
			}
			if !slices.Equal(bad, wantBad) {
				t.Fatalf("bad = %v, want %v", bad, wantBad)
			}
			for j, w := range want {
				if !bytes.Equal(regen[j], e.frags[w]) {
					t.Fatalf("%d+%d lost %v: fragment %d differs from the original", k, m, lost, w)
				}
			}
		}
		if n <= 6 {
			subsets(n, func(lost []int) {
				if len(lost) <= m {
					check(lost, lost, e.without(lost...), nil)
				}
			})
		}
		// Rebuild every fragment, from a set where one given fragment is corrupt.
		frags := e.without(0)
		frags[n-1] = slices.Clone(frags[n-1])
		frags[n-1][HeaderSize] ^= 0x80
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		check([]int{0}, all, frags, []int{n - 1})

		lost := make([]int, m+1)
		for i := range lost {
			lost[i] = i
		}
		if _, _, err := e.c.Regenerate(e.chunk, e.ids, e.without(lost...), lost); !errors.Is(err, ErrTooFewFragments) {
			t.Fatalf("regenerate with %d lost: err = %v", m+1, err)
		}
	}

	c := mustCoder(t, 4, 2)
	e := encode(t, c, prng("regen args", 100))
	for _, want := range [][]int{{-1}, {6}, {1, 1}} {
		if _, _, err := c.Regenerate(e.chunk, e.ids, e.frags, want); err == nil {
			t.Errorf("Regenerate(want %v) succeeded", want)
		}
	}
	// IDs that do not describe this code: the rebuilt fragment cannot match them.
	ids := slices.Clone(e.ids)
	ids[5] = FragmentIDOf([]byte("elsewhere"))
	if _, _, err := c.Regenerate(e.chunk, ids, e.without(5), []int{5}); !errors.Is(err, ErrBadFragment) {
		t.Fatalf("regenerate against a wrong ID: err = %v", err)
	}
}

// TestEncodeReuse checks that a Fragments reused for chunks of shrinking and growing
// sizes gives the same fragments as a fresh one, and allocates nothing once warm.
func TestEncodeReuse(t *testing.T) {
	c := mustCoder(t, 8, 4)
	var reused Fragments
	for _, n := range []int{1 << 20, 10, 1000, 0, 1<<20 + 3, 77} {
		sealed := prng(fmt.Sprint("reuse", n), n)
		id := testChunkID(fmt.Sprint(n))
		var fresh Fragments
		if err := c.Encode(&fresh, id, sealed); err != nil {
			t.Fatal(err)
		}
		if err := c.Encode(&reused, id, sealed); err != nil {
			t.Fatal(err)
		}
		if len(reused.Frags) != 12 || !slices.Equal(fresh.IDs, reused.IDs) {
			t.Fatalf("size %d: reused Fragments differ from fresh ones", n)
		}
		for i := range fresh.Frags {
			if !bytes.Equal(fresh.Frags[i], reused.Frags[i]) {
				t.Fatalf("size %d: fragment %d differs", n, i)
			}
		}
	}
	sealed := prng("allocs", 1<<20)
	allocs := testing.AllocsPerRun(20, func() {
		if err := c.Encode(&reused, crypt.ChunkID{}, sealed); err != nil {
			t.Fatal(err)
		}
	})
	// reedsolomon v1.14.2 allocates its GFNI coding matrix on each call; Encode itself
	// allocates nothing.
	if allocs > 1 {
		t.Errorf("Encode into a warm Fragments: %v allocations, want <= 1", allocs)
	}
}

func TestParseHeader(t *testing.T) {
	good := Header{K: 8, M: 4, Index: 11, SealedLen: 1 << 20, Chunk: testChunkID("parse")}
	b := good.AppendTo(nil)
	if len(b) != HeaderSize {
		t.Fatalf("header is %d bytes", len(b))
	}
	h, err := ParseHeader(append(b, "shard bytes are ignored"...))
	if err != nil || h != good {
		t.Fatalf("ParseHeader = %+v, %v", h, err)
	}
	mutate := func(f func(b []byte)) []byte {
		c := slices.Clone(b)
		f(c)
		return c
	}
	for name, in := range map[string][]byte{
		"empty":     nil,
		"short":     b[:HeaderSize-1],
		"version 0": mutate(func(b []byte) { b[0] = 0 }),
		"version 2": mutate(func(b []byte) { b[0] = 2 }),
		"k 0":       mutate(func(b []byte) { b[1] = 0 }),
		"k+m 256":   mutate(func(b []byte) { b[1], b[2] = 200, 56 }),
		"index":     mutate(func(b []byte) { b[3] = 12 }),
		"length":    mutate(func(b []byte) { b[4] = 0xff }),
	} {
		if _, err := ParseHeader(in); !errors.Is(err, ErrFragmentHeader) {
			t.Errorf("%s: err = %v, want ErrFragmentHeader", name, err)
		}
	}
}

// TestCoderConcurrent uses one Coder from several goroutines, as the write and read
// pipelines do; run with -race.
func TestCoderConcurrent(t *testing.T) {
	c := mustCoder(t, 8, 4)
	done := make(chan error)
	for g := range 4 {
		go func() {
			var f Fragments
			var buf []byte
			for i := range 20 {
				sealed := prng(fmt.Sprint("concurrent", g, i), 10000+i)
				if err := c.Encode(&f, crypt.ChunkID{byte(g)}, sealed); err != nil {
					done <- err
					return
				}
				frags := slices.Clone(f.Frags)
				frags[i%12], frags[(i+5)%12] = nil, nil
				var err error
				buf, _, err = c.Decode(buf[:0], crypt.ChunkID{byte(g)}, f.IDs, frags)
				if err != nil {
					done <- err
					return
				}
				if !bytes.Equal(buf, sealed) {
					done <- fmt.Errorf("goroutine %d chunk %d: wrong bytes", g, i)
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestDecodeVerified: DecodeVerified rebuilds what Decode does, still refuses fragments
// whose header does not belong (another chunk, another index), and - its contract - does
// not hash again, so a payload change the caller failed to catch goes through it.
func TestDecodeVerified(t *testing.T) {
	c := mustCoder(t, 4, 2)
	e := encode(t, c, prng("verified", 100_000))
	other := encode(t, c, prng("other chunk", 100_001)) // encode names the chunk by its length

	frags := e.without(1) // rebuilds data fragment 1 from parity
	out, bad, err := c.DecodeVerified(nil, e.chunk, e.ids, frags)
	if err != nil || len(bad) != 0 || !bytes.Equal(out, e.sealed) {
		t.Fatalf("DecodeVerified: %d bytes, bad %v, err %v", len(out), bad, err)
	}

	frags = e.without()
	frags[0] = other.frags[0] // a header naming another chunk
	frags[2] = e.frags[3]     // a header with another index
	out, bad, err = c.DecodeVerified(nil, e.chunk, e.ids, frags)
	if err != nil || !slices.Equal(bad, []int{0, 2}) || !bytes.Equal(out, e.sealed) {
		t.Fatalf("DecodeVerified with foreign headers: %d bytes, bad %v, err %v", len(out), bad, err)
	}

	frags = e.without()
	frags[0] = slices.Clone(frags[0])
	frags[0][len(frags[0])-1] ^= 1 // the payload, not the header
	if _, bad, err := c.Decode(nil, e.chunk, e.ids, frags); err != nil || !slices.Equal(bad, []int{0}) {
		t.Fatalf("Decode of a changed payload: bad %v, err %v; want bad [0]", bad, err)
	}
	out, bad, err = c.DecodeVerified(nil, e.chunk, e.ids, frags)
	if err != nil || len(bad) != 0 || bytes.Equal(out, e.sealed) {
		t.Fatalf("DecodeVerified hashed the fragments again (bad %v, err %v)", bad, err)
	}
}
