package crypt

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

func TestChunkID(t *testing.T) {
	k1, k2 := testSecret(1).Keys(), testSecret(2).Keys()
	for _, n := range []int{0, 1, 1023, 1024, 1025, 64 << 10, 1<<20 + 7} {
		plain := randomBytes(uint64(n), n)
		id := k1.ChunkID(plain)
		if id != k1.ChunkID(plain) {
			t.Errorf("%d bytes: ChunkID not deterministic", n)
		}
		if id == k2.ChunkID(plain) {
			t.Errorf("%d bytes: two drives give the same chunk ID", n)
		}
		if n > 0 {
			changed := bytes.Clone(plain)
			changed[n/2] ^= 1
			if id == k1.ChunkID(changed) {
				t.Errorf("%d bytes: flipping a bit keeps the chunk ID", n)
			}
		}
	}
	if k1.ChunkID([]byte("a")) == k1.ChunkID([]byte("b")) {
		t.Error("different plaintexts, same ID")
	}
}

func TestChunkIDNoAllocs(t *testing.T) {
	k := testSecret(1).Keys()
	plain := randomBytes(1, 1<<20)
	k.ChunkID(plain) // fill the pool
	if a := testing.AllocsPerRun(20, func() { k.ChunkID(plain) }); a != 0 {
		t.Errorf("ChunkID allocates %.1f times per call, want 0", a)
	}
}

func TestSealOpen(t *testing.T) {
	k := testSecret(1).Keys()
	for _, n := range []int{0, 1, 15, 16, 17, 4096, 1<<20 + 3} {
		plain := randomBytes(uint64(n), n)
		id := k.ChunkID(plain)
		sealed := k.Seal(nil, id, plain)
		if len(sealed) != SealedSize(n) {
			t.Fatalf("%d bytes: sealed %d bytes, SealedSize says %d", n, len(sealed), SealedSize(n))
		}
		if n >= 16 && bytes.Contains(sealed, plain[:16]) {
			t.Errorf("%d bytes: sealed chunk contains the plaintext", n)
		}
		if again := k.Seal(nil, id, plain); !bytes.Equal(sealed, again) {
			t.Errorf("%d bytes: sealing is not deterministic", n)
		}
		got, err := k.Open(nil, id, sealed)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("%d bytes: round trip changed the data", n)
		}
	}
}

func TestSealAppends(t *testing.T) {
	k := testSecret(1).Keys()
	plain := []byte("hello chunk")
	id := k.ChunkID(plain)
	prefix := []byte("prefix")
	sealed := k.Seal(bytes.Clone(prefix), id, plain)
	if !bytes.HasPrefix(sealed, prefix) || !bytes.Equal(sealed[len(prefix):], k.Seal(nil, id, plain)) {
		t.Fatal("Seal does not append to dst")
	}
	// With room in dst, both write in place.
	buf := make([]byte, 0, SealedSize(len(plain)))
	if out := k.Seal(buf, id, plain); &out[0] != &buf[:1][0] {
		t.Error("Seal reallocated although dst had room")
	}
	pbuf := make([]byte, 0, len(plain))
	if out, err := k.Open(pbuf, id, k.Seal(nil, id, plain)); err != nil || &out[0] != &pbuf[:1][0] {
		t.Errorf("Open reallocated although dst had room (%v)", err)
	}
	opened, err := k.Open(bytes.Clone(prefix), id, sealed[len(prefix):])
	if err != nil || string(opened) != "prefixhello chunk" {
		t.Fatalf("Open does not append to dst: %q, %v", opened, err)
	}
}

func TestSealAllocsBounded(t *testing.T) {
	k := testSecret(1).Keys()
	plain := randomBytes(1, 1<<20)
	id := k.ChunkID(plain)
	sealed := k.Seal(nil, id, plain)
	sbuf := make([]byte, 0, SealedSize(len(plain)))
	pbuf := make([]byte, 0, len(plain))
	// A per-chunk AES key schedule, GCM object and associated data: a few small objects,
	// whatever the chunk size. Bytes are measured too, so a chunk-sized allocation cannot
	// hide behind a small count.
	for name, f := range map[string]func(){
		"Seal": func() { k.Seal(sbuf[:0], id, plain) },
		"Open": func() {
			if _, err := k.Open(pbuf[:0], id, sealed); err != nil {
				t.Fatal(err)
			}
		},
	} {
		f()
		allocs := testing.AllocsPerRun(10, f)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 10 {
			f()
		}
		runtime.ReadMemStats(&after)
		bytesPerOp := (after.TotalAlloc - before.TotalAlloc) / 10
		t.Logf("%s: %.0f allocations, %d bytes per 1 MiB chunk", name, allocs, bytesPerOp)
		// Nominally 3 allocations and 1.3 KiB; the slack covers a pooled hasher being
		// re-made (the race detector drops pooled items on purpose) while still catching
		// any allocation in proportion to the 1 MiB chunk.
		if allocs > 8 || bytesPerOp > 64<<10 {
			t.Errorf("%s: %.0f allocations, %d bytes per 1 MiB chunk; want a few small ones", name, allocs, bytesPerOp)
		}
	}
}

func TestSealDifferentDrives(t *testing.T) {
	k1, k2 := testSecret(1).Keys(), testSecret(2).Keys()
	plain := []byte("the same file on two drives")
	// Even under the same chunk ID the sealing keys differ, because they include the
	// content key: a chunk ID (public) alone does not give the key.
	id := k1.ChunkID(plain)
	if bytes.Equal(k1.Seal(nil, id, plain), k2.Seal(nil, id, plain)) {
		t.Fatal("two drives seal the same chunk identically")
	}
	if _, err := k2.Open(nil, id, k1.Seal(nil, id, plain)); !errors.Is(err, ErrAuth) {
		t.Fatalf("another drive opens the chunk: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	k := testSecret(1).Keys()
	plain := []byte("a small chunk of twenty-nine b")
	id := k.ChunkID(plain)
	sealed := k.Seal(nil, id, plain)

	for i := range sealed {
		for _, mask := range []byte{1, 0x80, 0xff} {
			bad := bytes.Clone(sealed)
			bad[i] ^= mask
			_, err := k.Open(nil, id, bad)
			want := ErrAuth
			if i == 0 {
				want = ErrUnsupportedVersion
			}
			if !errors.Is(err, want) {
				t.Errorf("byte %d ^ %#x: got %v, want %v", i, mask, err, want)
			}
		}
	}
	for n := range len(sealed) {
		_, err := k.Open(nil, id, sealed[:n])
		want := ErrAuth
		if n < Overhead {
			want = ErrTruncated
		}
		if !errors.Is(err, want) {
			t.Errorf("prefix of %d bytes: got %v, want %v", n, err, want)
		}
	}
	otherID := id
	otherID[31] ^= 1
	if _, err := k.Open(nil, otherID, sealed); !errors.Is(err, ErrAuth) {
		t.Errorf("wrong chunk ID: got %v, want ErrAuth", err)
	}
	if _, err := k.Open(nil, id, append(bytes.Clone(sealed), 0)); !errors.Is(err, ErrAuth) {
		t.Errorf("extra byte: got %v, want ErrAuth", err)
	}
	if _, err := testSecret(9).Keys().Open(nil, id, sealed); !errors.Is(err, ErrAuth) {
		t.Errorf("wrong keys: got %v, want ErrAuth", err)
	}
}

func TestKeysConcurrent(t *testing.T) {
	k := testSecret(1).Keys()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				plain := randomBytes(uint64(g*100+i), 3000+i)
				id := k.ChunkID(plain)
				got, err := k.Open(nil, id, k.Seal(nil, id, plain))
				if err != nil || !bytes.Equal(got, plain) || k.ChunkID(plain) != id {
					t.Errorf("goroutine %d, chunk %d: round trip failed: %v", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
