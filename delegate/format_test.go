package delegate

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const goldenList = "testdata/list-v1.hex"

// goldenRefs are two chunks coded 2+1: one fully held, one with fragment 1 unheld.
func goldenRefs() []pipeline.Ref {
	ref := func(b byte, peers ...swarm.PeerID) pipeline.Ref {
		r := pipeline.Ref{ID: crypt.ChunkID{b}, Size: 1000 + uint32(b), SealedLen: 1017 + uint32(b), K: 2, M: 1}
		for i, p := range peers {
			r.Fragments = append(r.Fragments, pipeline.Fragment{ID: chunker.FragmentID{b, byte(i)}, Peer: p})
		}
		return r
	}
	return []pipeline.Ref{ref(1, "peerB", "peerA", "peerC"), ref(2, "peerC", "", "peerA")}
}

// TestGoldenList pins the page encoding: a manifest page of goldenRefs, then a log page
// replacing the first by the second's holders, then a record body naming the first as
// index. Written once with -update.
func TestGoldenList(t *testing.T) {
	refs := goldenRefs()
	page, err := encodeList(kindManifest, refs)
	if err != nil {
		t.Fatal(err)
	}
	moved := refs[0]
	moved.Fragments = []pipeline.Fragment{
		{ID: refs[0].Fragments[0].ID, Peer: "peerD"}, refs[0].Fragments[1], refs[0].Fragments[2]}
	logPage, err := encodeLog([]Replacement{{Old: refs[0], New: moved}})
	if err != nil {
		t.Fatal(err)
	}
	list, err := encodeList(kindRecord, refs[:1])
	if err != nil {
		t.Fatal(err)
	}
	body := append([]byte{0, 0, 0, 7}, list...)
	text := hex.EncodeToString(page) + "\n" + hex.EncodeToString(logPage) + "\n" + hex.EncodeToString(body) + "\n"
	if *update {
		if err := os.WriteFile(goldenList, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenList)
	if err != nil {
		t.Fatalf("%v (write it once with -update)", err)
	}
	if string(want) != text {
		t.Fatalf("page encoding changed:\ngot\n%s\nwant\n%s", text, want)
	}
	lines := strings.Fields(string(want))
	dec := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	got, err := decodeList(dec(lines[0]), kindManifest)
	if err != nil || len(got) != 2 || !got[0].Equal(&refs[0]) || !got[1].Equal(&refs[1]) {
		t.Fatalf("golden page decodes to %+v, %v", got, err)
	}
	rs, err := decodeLog(dec(lines[1]))
	if err != nil || len(rs) != 1 || !rs[0].New.Equal(&moved) {
		t.Fatalf("golden log page: %+v, %v", rs, err)
	}
	b, err := parseBody(dec(lines[2]))
	if err != nil || b.count != 7 || !b.index.Equal(&refs[0]) {
		t.Fatalf("golden body: %+v, %v", b, err)
	}
}

func TestSealBody(t *testing.T) {
	key := [crypt.KeySize]byte{1}
	ix := goldenRefs()[0]
	sealed, err := sealBody(key, adLog, []byte("pub"), 5, recordBody{count: 3, index: &ix})
	if err != nil {
		t.Fatal(err)
	}
	b, err := openBody(key, adLog, []byte("pub"), 5, sealed)
	if err != nil || b.count != 3 || !b.index.Equal(&ix) {
		t.Fatalf("open: %+v %v", b, err)
	}
	for name, f := range map[string]func() error{
		"other key":      func() error { _, err := openBody([crypt.KeySize]byte{2}, adLog, []byte("pub"), 5, sealed); return err },
		"other kind":     func() error { _, err := openBody(key, adManifest, []byte("pub"), 5, sealed); return err },
		"other identity": func() error { _, err := openBody(key, adLog, []byte("pu8"), 5, sealed); return err },
		"other sequence": func() error { _, err := openBody(key, adLog, []byte("pub"), 6, sealed); return err },
		"truncated":      func() error { _, err := openBody(key, adLog, []byte("pub"), 5, sealed[:20]); return err },
	} {
		if err := f(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := parseBody(append([]byte{0, 0, 0, 1}, mustList(t, kindRecord, nil)...)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("count without index: %v", err)
	}
}

func mustList(t testing.TB, kind byte, refs []pipeline.Ref) []byte {
	b, err := encodeList(kind, refs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzDecodeList: the parsers never panic, classify every error, and what they accept is
// exactly what the encoder writes for it.
func FuzzDecodeList(f *testing.F) {
	refs := goldenRefs()
	for _, kind := range []byte{kindManifest, kindIndex, kindLog, kindRecord} {
		f.Add(mustList(f, kind, refs))
	}
	f.Add(mustList(f, kindManifest, nil))
	f.Add(append([]byte{0, 0, 0, 1}, mustList(f, kindRecord, refs[:1])...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= 2 {
			refs, err := decodeList(b, b[1])
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("unclassified: %v", err)
				}
			} else if again, err := encodeList(b[1], refs); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("accepted %x, writes %x (%v)", b, again, err)
			}
		}
		if rs, err := decodeLog(b); err == nil {
			if again, err := encodeLog(rs); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("log accepted %x, writes %x (%v)", b, again, err)
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("unclassified: %v", err)
		}
		if _, err := parseBody(b); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("unclassified: %v", err)
		}
	})
}
