package store

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-datastore"
	flatfs "github.com/ipfs/go-ds-flatfs"

	"github.com/scatterfs/scatter/chunker"
)

const benchSize = 128 << 10

// benchFragments returns a buffer and the IDs it hashes to when its first 8 bytes hold
// 0..n-1, so the timed loop writes distinct fragments without allocating them.
func benchFragments(n int) ([]byte, []chunker.FragmentID) {
	data, _ := fragment(1, benchSize)
	ids := make([]chunker.FragmentID, n)
	for i := range ids {
		binary.BigEndian.PutUint64(data, uint64(i))
		ids[i] = chunker.FragmentIDOf(data)
	}
	return data, ids
}

// BenchmarkPut stores distinct 128 KiB fragments (hash check, temp file, rename), written
// with O_DIRECT (the default, where the filesystem takes it) and through the page cache.
func BenchmarkPut(b *testing.B) {
	for _, buffered := range []bool{false, true} {
		name := "direct"
		if buffered {
			name = "buffered"
		}
		b.Run(name, func(b *testing.B) {
			s, err := Open(b.TempDir(), Config{Quota: 1 << 40, GCInterval: -1, BufferedIO: buffered})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data, ids := benchFragments(b.N)
			exp := time.Now().Add(time.Hour)
			b.SetBytes(benchSize)
			b.ResetTimer()
			for i := range b.N {
				binary.BigEndian.PutUint64(data, uint64(i))
				if err := s.Put(context.Background(), ids[i], alice, exp, data); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if !buffered && !s.direct.Load() {
				b.Skip("the filesystem refuses O_DIRECT")
			}
		})
	}
}

// BenchmarkGet reads and verifies 128 KiB fragments (from the page cache).
func BenchmarkGet(b *testing.B) {
	s, err := Open(b.TempDir(), Config{Quota: 1 << 40, GCInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data, ids := benchFragments(256)
	for i, id := range ids {
		binary.BigEndian.PutUint64(data, uint64(i))
		if err := s.Put(context.Background(), id, alice, time.Now().Add(time.Hour), data); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Get(context.Background(), ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFlatfsPut is the same workload on go-ds-flatfs (no hash check, no header), the
// alternative this store was measured against.
func BenchmarkFlatfsPut(b *testing.B) {
	ds, err := flatfs.CreateOrOpen(b.TempDir(), flatfs.NextToLast(2), false)
	if err != nil {
		b.Fatal(err)
	}
	defer ds.Close()
	data, ids := benchFragments(b.N)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := range b.N {
		binary.BigEndian.PutUint64(data, uint64(i))
		k := datastore.NewKey(strings.ToUpper(hex.EncodeToString(ids[i][:])))
		if err := ds.Put(context.Background(), k, data); err != nil {
			b.Fatal(err)
		}
	}
}
