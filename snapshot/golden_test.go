package snapshot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"flag"
	"os"
	"strings"
	"testing"
)

// The golden file pins the object format: the plaintext of every object of the sample
// snapshot (sampleTree, written with the golden secret 00 01 ... 1f and the fake store's
// deterministic Refs), one hex line each, in the order they were put. Written once with
// `go test ./snapshot -run Golden -update`; a format change fails here until the version
// byte is bumped and a new fixture added.
var update = flag.Bool("update", false, "rewrite testdata/objects-v1.hex")

const goldenObjects = "testdata/objects-v1.hex"

func sampleObjects(t *testing.T) [][]byte {
	keys := testKeys()
	st := newFakeStore(keys)
	b := NewBuilder(st, keys, nil)
	top := build(t, b, sampleTree(keys))
	if _, err := b.Root(context.Background(), sampleInfo, rootEntry(top)); err != nil {
		t.Fatal(err)
	}
	return st.puts
}

func readGolden(t testing.TB) [][]byte {
	f, err := os.Open(goldenObjects)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		b, err := hex.DecodeString(line)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestGolden(t *testing.T) {
	objs := sampleObjects(t)
	if *update {
		var buf bytes.Buffer
		buf.WriteString("# snapshot objects v1 of the sample tree (snapshot/golden_test.go), in put order\n")
		for _, o := range objs {
			buf.WriteString(hex.EncodeToString(o) + "\n")
		}
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenObjects, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := readGolden(t)
	if len(want) != len(objs) {
		t.Fatalf("%d objects, golden has %d", len(objs), len(want))
	}
	kinds := map[uint8]int{}
	for i := range want {
		if !bytes.Equal(objs[i], want[i]) {
			t.Errorf("object %d differs from the golden file:\n got %x\nwant %x", i, objs[i], want[i])
		}
		o, err := decodeObject(want[i])
		if err != nil {
			t.Fatalf("golden object %d: %v", i, err)
		}
		kinds[o.kind]++
	}
	// The sample covers every object kind.
	for _, k := range []uint8{kindEntries, kindIndex, kindExtents, kindRoot} {
		if kinds[k] == 0 && k != kindIndex {
			t.Errorf("no object of kind %d in the sample", k)
		}
	}
}
