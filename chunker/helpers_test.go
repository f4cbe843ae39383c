package chunker

import (
	"flag"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/scatterfs/scatter/crypt"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// prng returns n pseudo-random bytes determined by seed: the BLAKE3 XOF of the seed, so
// the bytes are the same on every platform and Go version (golden fixtures rely on it).
func prng(seed string, n int) []byte {
	h := blake3.New()
	h.WriteString(seed)
	b := make([]byte, n)
	if _, err := h.Digest().Read(b); err != nil {
		panic(err)
	}
	return b
}

func testKey(seed string) (k [32]byte) {
	copy(k[:], prng("key "+seed, 32))
	return k
}

func testChunkID(seed string) (id crypt.ChunkID) {
	copy(id[:], prng("chunk "+seed, 32))
	return id
}

func mustCoder(t testing.TB, k, m int) *Coder {
	t.Helper()
	c, err := NewCoder(k, m)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
