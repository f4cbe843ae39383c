package pipeline

import (
	"bytes"
	"io"
	"testing"

	"github.com/scatterfs/scatter/chunker"
)

const benchSize = 64 << 20

// BenchmarkWrite is the whole write pipeline on one goroutine: cut chunks, name each with
// its keyed hash, seal it, erasure-code it 8+4 and hash every fragment.
func BenchmarkWrite(b *testing.B) {
	c := testCodec(b, testKeys(b, 40), chunker.DefaultDataShards, chunker.DefaultParityShards, chunker.DefaultParams)
	in := randBytes(41, benchSize)
	split := c.Split(nil).(*chunker.Splitter)
	var buf Buffers
	b.SetBytes(benchSize)
	b.ReportAllocs()
	chunks := 0
	start := cpuTime()
	for b.Loop() {
		split.Reset(bytes.NewReader(in))
		for {
			data, err := split.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Encode(&buf, data); err != nil {
				b.Fatal(err)
			}
			chunks++
		}
	}
	reportCPU(b, start, benchSize)
	b.ReportMetric(float64(chunks)/float64(b.N), "chunks/op")
}

// BenchmarkRead is the read pipeline for one chunk of the default size on one goroutine:
// verify the k fragments obtained, two data fragments lost so Reed-Solomon reconstructs,
// then open.
func BenchmarkRead(b *testing.B) {
	c := testCodec(b, testKeys(b, 42), chunker.DefaultDataShards, chunker.DefaultParityShards, chunker.DefaultParams)
	plain := randBytes(43, chunker.DefaultParams.Normal)
	var buf Buffers
	enc, err := c.Encode(&buf, plain)
	if err != nil {
		b.Fatal(err)
	}
	ref := refOf(c, enc)
	k := c.K()
	// Fragments as fetched: data 0 and 1 lost, parity 0 and 1 in their place, the other
	// parity not asked for.
	frags := make([][]byte, len(enc.Frags))
	for i := 2; i < k+2; i++ {
		frags[i] = bytes.Clone(enc.Frags[i])
	}
	// "verify" hashes each fragment in Decode, into reused buffers; "fetched" is what
	// Store.GetSealed does with fragments swarm.Fetch has already checked: no second
	// hash, a new sealed buffer per chunk.
	for _, fetched := range []bool{false, true} {
		name := "verify"
		if fetched {
			name = "fetched"
		}
		b.Run(name, func(b *testing.B) {
			var sealed, out []byte
			b.SetBytes(int64(len(plain)))
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				if fetched {
					sealed, _, err = c.decodeVerified(nil, &ref, frags)
				} else {
					sealed, _, err = c.Decode(sealed[:0], &ref, frags)
				}
				if err != nil {
					b.Fatal(err)
				}
				out, err = c.Open(out[:0], &ref, sealed)
				if err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start, int64(len(plain)))
			if !bytes.Equal(out, plain) {
				b.Fatal("read back other bytes")
			}
		})
	}
}
