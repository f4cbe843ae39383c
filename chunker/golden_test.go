package chunker

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeebo/blake3"
)

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s changed: a format change needs a new version and a new fixture.\ngot:\n%s", path, got)
	}
}

// TestGoldenBoundaries pins the chunk boundaries of fixed pseudo-random data under a fixed
// key: a change means every drive's existing chunks stop deduplicating.
func TestGoldenBoundaries(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Params
		size int
	}{
		{"boundaries-default.golden", DefaultParams, 24 << 20},
		{"boundaries-small.golden", smallParams, 1 << 20},
	} {
		var b strings.Builder
		fmt.Fprintf(&b, "# %v, key prng(\"key golden\"), input prng(\"golden boundaries\", %d)\n", tc.p, tc.size)
		fmt.Fprintf(&b, "# offset length blake3-256\n")
		off := 0
		for _, c := range split(t, testKey("golden"), tc.p, prng("golden boundaries", tc.size)) {
			fmt.Fprintf(&b, "%d %d %x\n", off, len(c), blake3.Sum256(c))
			off += len(c)
		}
		golden(t, tc.name, b.String())
	}
}

// goldenSealed and goldenChunk are the input of the fragment fixture: sealed bytes that
// do not fill the shards evenly, so the zero padding is pinned too.
var (
	goldenSealed = prng("golden sealed", 1001)
	goldenChunk  = testChunkID("golden")
)

// TestGoldenFragments pins the fragments of a fixed sealed chunk coded 4+2: header layout,
// shard split, padding, the Reed-Solomon matrix and the fragment IDs. It also decodes the
// stored fragments, so fragments written by this version stay readable.
func TestGoldenFragments(t *testing.T) {
	c := mustCoder(t, 4, 2)
	var f Fragments
	if err := c.Encode(&f, goldenChunk, goldenSealed); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# 4+2, chunk %s, sealed prng(\"golden sealed\", 1001)\n", goldenChunk)
	fmt.Fprintf(&b, "# index fragment-id fragment-hex\n")
	for i, frag := range f.Frags {
		fmt.Fprintf(&b, "%d %s %x\n", i, f.IDs[i], frag)
	}
	golden(t, "fragments-4+2.golden", b.String())

	// Decode the stored fixture, losing the first two data fragments.
	data, err := os.ReadFile(filepath.Join("testdata", "fragments-4+2.golden"))
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]FragmentID, 6)
	frags := make([][]byte, 6)
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		var i int
		var id, frag string
		if _, err := fmt.Sscanf(line, "%d %s %s", &i, &id, &frag); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if ids[i], err = ParseFragmentID(id); err != nil {
			t.Fatal(err)
		}
		if frags[i], err = hex.DecodeString(frag); err != nil {
			t.Fatal(err)
		}
	}
	frags[0], frags[1] = nil, nil
	out, bad, err := c.Decode(nil, goldenChunk, ids, frags)
	if err != nil || len(bad) != 0 || !bytes.Equal(out, goldenSealed) {
		t.Fatalf("decoding the fixture: bad %v, err %v, equal %v", bad, err, bytes.Equal(out, goldenSealed))
	}
}

// TestGoldenHeader pins the parse of a fixed version 1 header.
func TestGoldenHeader(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "header-v1.hex"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Header{K: 8, M: 4, Index: 10, SealedLen: 0x00123456}
	for i := range want.Chunk {
		want.Chunk[i] = byte(0xa0 + i)
	}
	if h != want {
		t.Fatalf("parsed %+v, want %+v", h, want)
	}
	if !bytes.Equal(h.AppendTo(nil), b) {
		t.Fatal("AppendTo does not reproduce the fixture")
	}
	if h.ShardSize() != (0x123456+7)/8 || h.FragmentSize() != 40+(0x123456+7)/8 {
		t.Fatalf("shard size %d, fragment size %d", h.ShardSize(), h.FragmentSize())
	}
}
