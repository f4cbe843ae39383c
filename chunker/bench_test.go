package chunker

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	chunk "github.com/ipfs/boxo/chunker"
)

// benchData is the input of the splitter benchmarks: 64 MiB of pseudo-random bytes, so
// boundaries follow the algorithms' statistics and nothing deduplicates.
var benchData = prng("bench", 64<<20)

// drain runs s to the end and returns the number of chunks; next is s's method to call.
func drain(b *testing.B, next func() ([]byte, error)) int {
	n := 0
	for {
		c, err := next()
		if err == io.EOF {
			return n
		}
		if err != nil {
			b.Fatal(err)
		}
		n++
		_ = c
	}
}

func BenchmarkSplit(b *testing.B) {
	key := testKey("bench")
	for _, p := range []Params{
		{Min: 256 << 10, Normal: 1 << 20, Max: 4 << 20},
		{Min: 512 << 10, Normal: 1 << 20, Max: 4 << 20},
		{Min: 512 << 10, Normal: 2 << 20, Max: 8 << 20},
		{Min: 1 << 20, Normal: 2 << 20, Max: 8 << 20},
		{Min: 1 << 20, Normal: 4 << 20, Max: 8 << 20},
		{Min: 2 << 20, Normal: 4 << 20, Max: 8 << 20},
	} {
		b.Run(p.String(), func(b *testing.B) {
			s, err := New(bytes.NewReader(benchData), key, p)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(benchData)))
			b.ReportAllocs()
			chunks := 0
			for b.Loop() {
				s.Reset(bytes.NewReader(benchData))
				chunks = drain(b, s.Next)
			}
			b.ReportMetric(float64(len(benchData))/float64(chunks)/(1<<20), "MiB/chunk")
		})
	}
	// NextBytes copies each chunk, as boxo's contract requires: the price of ownership.
	b.Run("kfastcdc-default-NextBytes", func(b *testing.B) {
		s, err := New(bytes.NewReader(benchData), key, DefaultParams)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(benchData)))
		b.ReportAllocs()
		for b.Loop() {
			s.Reset(bytes.NewReader(benchData))
			drain(b, s.NextBytes)
		}
	})
	for _, spec := range []string{"rabin-262144-1048576-4194304", "buzhash"} {
		b.Run("boxo-"+spec, func(b *testing.B) {
			b.SetBytes(int64(len(benchData)))
			b.ReportAllocs()
			chunks := 0
			for b.Loop() {
				s, err := chunk.FromString(bytes.NewReader(benchData), spec)
				if err != nil {
					b.Fatal(err)
				}
				chunks = drain(b, s.NextBytes)
			}
			b.ReportMetric(float64(len(benchData))/float64(chunks)/(1<<20), "MiB/chunk")
		})
	}
}

// BenchmarkEncode codes one 1 MiB sealed chunk into 8+4 fragments, including the 12
// fragment IDs, into a reused Fragments.
func BenchmarkEncode(b *testing.B) {
	for _, size := range []int{1 << 20, 2560 << 10} {
		b.Run(fmt.Sprintf("8+4/%dKiB", size>>10), func(b *testing.B) {
			c := mustCoder(b, 8, 4)
			sealed := prng("encode", size)
			id := testChunkID("x")
			var f Fragments
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Encode(&f, id, sealed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode recovers a 1 MiB sealed chunk from its 8+4 fragments, including the
// verification of every given fragment's ID, into a reused buffer.
func BenchmarkDecode(b *testing.B) {
	c := mustCoder(b, 8, 4)
	e := encode(b, c, prng("decode", 1<<20))
	for _, tc := range []struct {
		name string
		lost []int
	}{
		{"8+4/all", nil},
		{"8+4/data-only", []int{8, 9, 10, 11}},
		{"8+4/2-data-lost", []int{0, 5}},
		{"8+4/4-data-lost", []int{0, 1, 2, 3}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			frags := e.without(tc.lost...)
			var buf []byte
			b.SetBytes(int64(len(e.sealed)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				buf, _, err = c.Decode(buf[:0], e.chunk, e.ids, frags)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
