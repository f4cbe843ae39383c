package pipeline

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
)

func testKeys(t testing.TB, seed byte) *crypt.Keys {
	t.Helper()
	var s crypt.Secret
	for i := range s {
		s[i] = seed + byte(i)
	}
	return s.Keys()
}

func testCodec(t testing.TB, keys *crypt.Keys, k, m int, p chunker.Params) *Codec {
	t.Helper()
	c, err := NewCodec(keys, k, m, p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// randBytes returns n pseudo-random bytes fixed by seed.
func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	_, _ = r.Read(b)
	return b
}

// refOf is the Ref a Store would record for enc, with no holders.
func refOf(c *Codec, enc Encoded) Ref {
	ref := Ref{ID: enc.ID, Size: uint32(enc.Size), SealedLen: uint32(enc.SealedLen),
		K: uint8(c.K()), M: uint8(c.M()), Fragments: make([]Fragment, len(enc.IDs))}
	for i, id := range enc.IDs {
		ref.Fragments[i].ID = id
	}
	return ref
}

// roundTrip splits r, encodes every chunk, drops lose(i) fragments of chunk i, decodes
// and opens it, and writes the plaintext to w. It returns the number of chunks.
func roundTrip(t testing.TB, c *Codec, r io.Reader, w io.Writer, lose func(chunk int) []int) int {
	t.Helper()
	split := c.Split(r).(*chunker.Splitter)
	var b Buffers
	var sealed, plain []byte
	n := 0
	for ; ; n++ {
		data, err := split.Next()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		enc, err := c.Encode(&b, data)
		if err != nil {
			t.Fatal(err)
		}
		ref := refOf(c, enc)
		frags := slicesClone2(enc.Frags)
		for _, i := range lose(n) {
			frags[i] = nil
		}
		sealed, _, err = c.Decode(sealed[:0], &ref, frags)
		if err != nil {
			t.Fatalf("chunk %d: decode: %v", n, err)
		}
		plain, err = c.Open(plain[:0], &ref, sealed)
		if err != nil {
			t.Fatalf("chunk %d: open: %v", n, err)
		}
		if _, err := w.Write(plain); err != nil {
			t.Fatal(err)
		}
	}
}

func slicesClone2(in [][]byte) [][]byte {
	out := make([][]byte, len(in))
	copy(out, in)
	return out
}

func noLoss(int) []int { return nil }

// TestRoundTripSizes covers sizes 0 and 1 and every size next to a chunk boundary
// (Min, Max, multiples of Max: the forced cuts) and next to a fragment boundary (a sealed
// length that is a multiple of k, where a shard just fills or just spills).
func TestRoundTripSizes(t *testing.T) {
	p := chunker.Params{Min: 64 << 10, Normal: 128 << 10, Max: 512 << 10}
	const k, m = 8, 4
	c := testCodec(t, testKeys(t, 1), k, m, p)
	sizes := []int{0, 1, 2, k - 1, k, k + 1}
	for _, base := range []int{p.Min, p.Normal, p.Max, 2 * p.Max, 3*p.Max + p.Min} {
		sizes = append(sizes, base-1, base, base+1)
	}
	// Sealed length = size + crypt.Overhead: put it on, before and after a multiple of k.
	for _, mult := range []int{k, 1024 * k, p.Min / k * k} {
		for d := -1; d <= 1; d++ {
			if s := mult - crypt.Overhead + d; s >= 0 {
				sizes = append(sizes, s)
			}
		}
	}
	for _, size := range sizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			in := randBytes(uint64(size), size)
			var out bytes.Buffer
			rng := rand.New(rand.NewPCG(uint64(size), 7))
			roundTrip(t, c, bytes.NewReader(in), &out, func(int) []int {
				return rng.Perm(k + m)[:rng.IntN(m+1)]
			})
			if !bytes.Equal(in, out.Bytes()) {
				t.Fatalf("round trip of %d bytes changed the data (%d bytes back)", size, out.Len())
			}
		})
	}
}

// TestRoundTripLarge streams 128 MiB of random data through the default pipeline, losing
// a random set of up to m fragments of every chunk.
func TestRoundTripLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large round trip skipped in -short")
	}
	const size = 128 << 20
	c := testCodec(t, testKeys(t, 2), chunker.DefaultDataShards, chunker.DefaultParityShards, chunker.DefaultParams)
	k, m := c.K(), c.M()
	in := io.LimitReader(rand.NewChaCha8([32]byte{42}), size)
	hin, hout := sha256.New(), sha256.New()
	rng := rand.New(rand.NewPCG(1, 2))
	lost := 0
	chunks := roundTrip(t, c, io.TeeReader(in, hin), hout, func(int) []int {
		l := rng.Perm(k + m)[:rng.IntN(m+1)]
		lost += len(l)
		return l
	})
	if !bytes.Equal(hin.Sum(nil), hout.Sum(nil)) {
		t.Fatal("128 MiB round trip changed the data")
	}
	t.Logf("%d chunks, %d fragments lost in all, every byte back", chunks, lost)
}

// TestEveryLossPattern loses every subset of up to m fragments of one chunk (4+2 and
// 3+3), and every subset of m+1, which must give the typed error and no bytes.
func TestEveryLossPattern(t *testing.T) {
	for _, shape := range [][2]int{{4, 2}, {3, 3}} {
		k, m := shape[0], shape[1]
		c := testCodec(t, testKeys(t, 3), k, m, chunker.DefaultParams)
		plain := randBytes(9, 100_003)
		var b Buffers
		enc, err := c.Encode(&b, plain)
		if err != nil {
			t.Fatal(err)
		}
		ref := refOf(c, enc)
		n := k + m
		for mask := 0; mask < 1<<n; mask++ {
			frags := slicesClone2(enc.Frags)
			lost := 0
			for i := range n {
				if mask&(1<<i) != 0 {
					frags[i] = nil
					lost++
				}
			}
			if lost > m+1 {
				continue
			}
			sealed, _, err := c.Decode(nil, &ref, frags)
			if lost == m+1 {
				if !errors.Is(err, ErrUnrecoverable) || !errors.Is(err, chunker.ErrTooFewFragments) || sealed != nil {
					t.Fatalf("%d+%d, lost mask %b: got %d bytes, err %v; want the typed error", k, m, mask, len(sealed), err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%d+%d, lost mask %b: %v", k, m, mask, err)
			}
			got, err := c.Open(nil, &ref, sealed)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("%d+%d, lost mask %b: open: %v", k, m, mask, err)
			}
		}
	}
}

// TestCorruptFragmentExcluded flips one bit anywhere in one fragment. Given that fragment
// and k-1 good ones, decoding fails and names it; given it and k good ones, the chunk
// decodes right (Decode may stop verifying once k fragments are good, so the flipped one
// is either reported bad or never used).
func TestCorruptFragmentExcluded(t *testing.T) {
	const k, m = 4, 2
	c := testCodec(t, testKeys(t, 4), k, m, chunker.DefaultParams)
	plain := randBytes(10, 5000)
	var b Buffers
	enc, err := c.Encode(&b, plain)
	if err != nil {
		t.Fatal(err)
	}
	ref := refOf(c, enc)
	for i := range enc.Frags {
		for _, bit := range []int{0, 8*chunker.HeaderSize - 1, 8 * chunker.HeaderSize, 8*len(enc.Frags[i]) - 1} {
			flipped := bytes.Clone(enc.Frags[i])
			flipped[bit/8] ^= 1 << (bit % 8)
			others := make([]int, 0, k+m-1)
			for j := range k + m {
				if j != i {
					others = append(others, j)
				}
			}
			// The flipped fragment and k-1 good ones: too few.
			frags := make([][]byte, k+m)
			frags[i] = flipped
			for _, j := range others[:k-1] {
				frags[j] = enc.Frags[j]
			}
			_, bad, err := c.Decode(nil, &ref, frags)
			if !errors.Is(err, chunker.ErrTooFewFragments) || len(bad) != 1 || bad[0] != i {
				t.Fatalf("fragment %d bit %d flipped, k-1 good: bad = %v, err = %v; want it named and too few", i, bit, bad, err)
			}
			// The flipped fragment and k good ones: right bytes.
			frags[others[k-1]] = enc.Frags[others[k-1]]
			sealed, bad, err := c.Decode(nil, &ref, frags)
			if err != nil {
				t.Fatalf("fragment %d bit %d flipped, k good: %v", i, bit, err)
			}
			if len(bad) > 1 || (len(bad) == 1 && bad[0] != i) {
				t.Fatalf("fragment %d bit %d flipped: bad = %v", i, bit, bad)
			}
			if got, err := c.Open(nil, &ref, sealed); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("fragment %d bit %d: open: %v", i, bit, err)
			}
		}
	}
}

// TestTamperAndWrongKey: a sealed chunk with any byte changed, or opened by another
// drive, fails authentication.
func TestTamperAndWrongKey(t *testing.T) {
	c := testCodec(t, testKeys(t, 5), 4, 2, chunker.DefaultParams)
	other := testCodec(t, testKeys(t, 6), 4, 2, chunker.DefaultParams)
	plain := randBytes(11, 300)
	var b Buffers
	enc, err := c.Encode(&b, plain)
	if err != nil {
		t.Fatal(err)
	}
	ref := refOf(c, enc)
	sealed, _, err := c.Decode(nil, &ref, enc.Frags)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x80
		if _, err := c.Open(nil, &ref, bad); !errors.Is(err, ErrUnrecoverable) {
			t.Fatalf("byte %d flipped: err = %v, want ErrUnrecoverable", i, err)
		}
	}
	if _, err := other.Open(nil, &ref, sealed); !errors.Is(err, crypt.ErrAuth) {
		t.Fatalf("wrong drive key: err = %v, want crypt.ErrAuth", err)
	}
	// A whole set of fragments re-encoded by another drive under the same Ref: the IDs
	// do not match what the manifest recorded.
	var b2 Buffers
	enc2, err := other.Encode(&b2, plain)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Decode(nil, &ref, enc2.Frags); !errors.Is(err, chunker.ErrTooFewFragments) {
		t.Fatalf("another drive's fragments: err = %v, want ErrTooFewFragments", err)
	}
}

// TestNoPlaintextInFragments: no 32-byte window of the plaintext appears anywhere in any
// fragment, for a corpus of real text (Go sources), zeros and a repeating pattern.
func TestNoPlaintextInFragments(t *testing.T) {
	var corpus []byte
	src := filepath.Join(runtime.GOROOT(), "src", "io")
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(src, e.Name())); err == nil {
			corpus = append(corpus, b...)
		}
	}
	corpus = append(corpus, make([]byte, 200<<10)...)
	corpus = append(corpus, bytes.Repeat([]byte("scatter fragment "), 20000)...)
	const w = 32
	windows := make(map[[w]byte]struct{}, len(corpus))
	for i := 0; i+w <= len(corpus); i++ {
		windows[[w]byte(corpus[i:i+w])] = struct{}{}
	}
	c := testCodec(t, testKeys(t, 7), 8, 4, chunker.Params{Min: 16 << 10, Normal: 32 << 10, Max: 128 << 10})
	split := c.Split(bytes.NewReader(corpus)).(*chunker.Splitter)
	var b Buffers
	frags, chunks := 0, 0
	for {
		data, err := split.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		enc, err := c.Encode(&b, data)
		if err != nil {
			t.Fatal(err)
		}
		chunks++
		for i, f := range enc.Frags {
			frags++
			for j := 0; j+w <= len(f); j++ {
				if _, ok := windows[[w]byte(f[j:j+w])]; ok {
					t.Fatalf("chunk %d fragment %d offset %d holds 32 bytes of plaintext", chunks, i, j)
				}
			}
		}
	}
	t.Logf("%d bytes of corpus, %d chunks, %d fragments: no plaintext window", len(corpus), chunks, frags)
}
