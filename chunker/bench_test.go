package chunker

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"testing"

	chunk "github.com/ipfs/boxo/chunker"
)

// benchInput returns the input of the splitter benchmarks: 64 MiB of pseudo-random bytes,
// so boundaries follow the algorithms' statistics. It is made on first use, so that tests
// and fuzzing do not pay for it.
var benchInput = sync.OnceValue(func() []byte { return prng("bench", 64<<20) })

// loop runs b.Loop like a benchmark body would, and reports the throughput per CPU
// second of the process ("cpu-MB/s") next to the wall-clock MB/s.
func loop(b *testing.B, bytesPerOp int, body func()) {
	b.SetBytes(int64(bytesPerOp))
	b.ReportAllocs()
	n := 0
	start := cpuTime()
	for b.Loop() {
		body()
		n++
	}
	if used := cpuTime() - start; used > 0 {
		b.ReportMetric(float64(n)*float64(bytesPerOp)/used.Seconds()/1e6, "cpu-MB/s")
	}
}

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
	benchData := benchInput()
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
			chunks := 0
			loop(b, len(benchData), func() {
				s.Reset(bytes.NewReader(benchData))
				chunks = drain(b, s.Next)
			})
			b.ReportMetric(float64(len(benchData))/float64(chunks)/(1<<20), "MiB/chunk")
		})
	}
	// NextBytes copies each chunk, as boxo's contract requires: the price of ownership.
	b.Run("kfastcdc-default-NextBytes", func(b *testing.B) {
		s, err := New(bytes.NewReader(benchData), key, DefaultParams)
		if err != nil {
			b.Fatal(err)
		}
		loop(b, len(benchData), func() {
			s.Reset(bytes.NewReader(benchData))
			drain(b, s.NextBytes)
		})
	})
	// boxo caps Rabin at 2 MiB chunks; "rabin-1048576" cuts between 1/3 and 1.5 MiB.
	for _, spec := range []string{"rabin-1048576", "buzhash"} {
		b.Run("boxo-"+spec, func(b *testing.B) {
			chunks := 0
			loop(b, len(benchData), func() {
				s, err := chunk.FromString(bytes.NewReader(benchData), spec)
				if err != nil {
					b.Fatal(err)
				}
				chunks = drain(b, s.NextBytes)
			})
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
			loop(b, size, func() {
				if err := c.Encode(&f, id, sealed); err != nil {
					b.Fatal(err)
				}
			})
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
		{"8+4/all-given", nil}, // the 4 parity fragments are not needed, so not hashed
		{"8+4/2-data-lost", []int{0, 5}},
		{"8+4/4-data-lost", []int{0, 1, 2, 3}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			frags := e.without(tc.lost...)
			var buf []byte
			loop(b, len(e.sealed), func() {
				var err error
				buf, _, err = c.Decode(buf[:0], e.chunk, e.ids, frags)
				if err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}
