package volume

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/scatterfs/scatter/pipeline"
)

var update = flag.Bool("update", false, "rewrite golden files")

func goldenRef() *pipeline.Ref {
	r := &pipeline.Ref{Size: 1 << 20, SealedLen: 1<<20 + 40, K: 2, M: 1}
	for i := range r.ID {
		r.ID[i] = byte(i)
	}
	for i := range 3 {
		var f pipeline.Fragment
		for j := range f.ID {
			f.ID[j] = byte(0xa0 + i)
		}
		if i != 1 {
			f.Peer = "12D3KooWpeer"
		}
		r.Fragments = append(r.Fragments, f)
	}
	return r
}

// goldens are the record encodings pinned by testdata/golden-*.hex.
func goldens() map[string][]byte {
	a := Attr{Mode: 0o100644, Nlink: 1, UID: 1000, GID: 100, Size: 5<<30 + 7,
		Atime: time.Unix(1700000000, 1), Mtime: time.Unix(-1, 999999999), Ctime: time.Unix(1<<40, 0)}
	return map[string][]byte{
		"attr":          encodeAttr(&a),
		"dirent":        encodeDirent(dirent{Ino: 42, Type: 0o040000, Cookie: 7}),
		"extent-inline": encodeExtent(extent{Len: 5, Data: []byte("hello")}),
		"extent-chunk":  encodeExtent(extent{Len: 1000, Ref: goldenRef()}),
		"count":         encodeCount(3),
		"journal":       encodeJournal(journalRec{Size: 1 << 33, Dirty: ranges{{0, 4096}, {1 << 32, 1<<32 + 1}}}),
	}
}

func TestGolden(t *testing.T) {
	for name, got := range goldens() {
		p := filepath.Join("testdata", "golden-"+name+".hex")
		if *update {
			os.MkdirAll("testdata", 0o755)
			if err := os.WriteFile(p, []byte(hex.EncodeToString(got)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		want, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: encoding changed (bump the record version):\n got %x\nwant %x", name, got, want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	g := goldens()
	a, err := decodeAttr(9, g["attr"])
	if err != nil || a.Size != 5<<30+7 || a.Mtime.Unix() != -1 || a.Mtime.Nanosecond() != 999999999 || a.Ino != 9 {
		t.Errorf("attr: %+v %v", a, err)
	}
	if !bytes.Equal(encodeAttr(&a), g["attr"]) {
		t.Error("attr does not re-encode")
	}
	d, err := decodeDirent(g["dirent"])
	if err != nil || d != (dirent{42, 0o040000, 7}) {
		t.Errorf("dirent: %+v %v", d, err)
	}
	e, err := decodeExtent(g["extent-chunk"])
	if err != nil || e.Len != 1000 || !reflect.DeepEqual(e.Ref, goldenRef()) {
		t.Errorf("extent: %+v %v", e, err)
	}
	e, err = decodeExtent(g["extent-inline"])
	if err != nil || string(e.Data) != "hello" {
		t.Errorf("inline extent: %+v %v", e, err)
	}
	j, err := decodeJournal(g["journal"])
	if err != nil || j.Size != 1<<33 || len(j.Dirty) != 2 || j.Dirty[1] != (span{1 << 32, 1<<32 + 1}) {
		t.Errorf("journal: %+v %v", j, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	g := goldens()
	bad := map[string][]byte{
		"empty":          nil,
		"version":        append([]byte{2}, g["attr"][1:]...),
		"short":          g["attr"][:10],
		"extent kind":    append([]byte{1, 9}, g["extent-inline"][2:]...),
		"inline len":     g["extent-inline"][:8],
		"chunk trailing": append(bytes.Clone(g["extent-chunk"]), 0),
		"chunk short":    g["extent-chunk"][:60],
		"journal order":  encodeJournal(journalRec{Size: 10, Dirty: ranges{{5, 6}, {0, 1}}}),
	}
	for name, b := range bad {
		var err error
		switch {
		case strings.HasPrefix(name, "extent"), strings.HasPrefix(name, "inline"), strings.HasPrefix(name, "chunk"):
			_, err = decodeExtent(b)
		case strings.HasPrefix(name, "journal"):
			_, err = decodeJournal(b)
		default:
			_, err = decodeAttr(1, b)
		}
		if !errors.Is(err, errBadRecord) {
			t.Errorf("%s: got %v, want errBadRecord", name, err)
		}
	}
}

func FuzzDecodeExtent(f *testing.F) {
	g := goldens()
	f.Add(g["extent-chunk"])
	f.Add(g["extent-inline"])
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeExtent(b)
		if err != nil {
			return
		}
		if e.Ref != nil && len(e.Ref.Fragments) > maxFragments {
			t.Fatal("too many fragments")
		}
		e2, err := decodeExtent(encodeExtent(e))
		if err != nil || !reflect.DeepEqual(e, e2) {
			t.Fatalf("re-encode: %v", err)
		}
	})
}

func FuzzDecodeJournal(f *testing.F) {
	f.Add(goldens()["journal"])
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := decodeJournal(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeJournal(j), b) {
			t.Fatal("journal does not re-encode to the same bytes")
		}
	})
}

func FuzzDecodeAttrDirent(f *testing.F) {
	g := goldens()
	f.Add(g["attr"])
	f.Add(g["dirent"])
	f.Add(g["count"])
	f.Fuzz(func(t *testing.T, b []byte) {
		if a, err := decodeAttr(1, b); err == nil && !bytes.Equal(encodeAttr(&a), b) {
			t.Fatal("attr does not re-encode to the same bytes")
		}
		if d, err := decodeDirent(b); err == nil && !bytes.Equal(encodeDirent(d), b) {
			t.Fatal("dirent does not re-encode to the same bytes")
		}
		if n, err := decodeCount(b); err == nil && (n <= 0 || !bytes.Equal(encodeCount(n), b)) {
			t.Fatal("count does not re-encode to the same bytes")
		}
	})
}

func TestRanges(t *testing.T) {
	var r ranges
	r.add(10, 20)
	r.add(30, 40)
	r.add(20, 30) // touching spans merge
	if len(r) != 1 || r[0] != (span{10, 40}) {
		t.Fatalf("merge: %v", r)
	}
	if n := r.remove(15, 25); n != 10 || len(r) != 2 {
		t.Fatalf("remove: %d %v", n, r)
	}
	if n := r.overlap(0, 100); n != 20 {
		t.Errorf("overlap %d", n)
	}
	if s, ok := r.next(16); !ok || s != (span{25, 40}) {
		t.Errorf("next: %v %v", s, ok)
	}
	if got := r.intersect(12, 30); len(got) != 2 || got[0] != (span{12, 15}) || got[1] != (span{25, 30}) {
		t.Errorf("intersect: %v", got)
	}
}

// FuzzRanges checks the span set against a bitmap over a small domain: every operation
// leaves it sorted, disjoint, non-adjacent and equal to the model.
func FuzzRanges(f *testing.F) {
	f.Add([]byte{0, 10, 20, 1, 15, 5, 0, 40, 3})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var r ranges
		var model [256]bool
		for len(ops) >= 3 {
			op, a, n := ops[0]%2, int64(ops[1]), int64(ops[2]%64)
			ops = ops[3:]
			b := min(a+n, 256)
			if op == 0 {
				r.add(a, b)
				for i := a; i < b; i++ {
					model[i] = true
				}
			} else {
				var want int64
				for i := a; i < b; i++ {
					if model[i] {
						want++
					}
					model[i] = false
				}
				if got := r.remove(a, b); got != want {
					t.Fatalf("remove [%d,%d) = %d, want %d", a, b, got, want)
				}
			}
			var total int64
			for i, s := range r {
				if s.off >= s.end || (i > 0 && r[i-1].end >= s.off) {
					t.Fatalf("bad set %v", r)
				}
			}
			for i := range int64(256) {
				in := r.overlap(i, i+1) == 1
				if in != model[i] {
					t.Fatalf("byte %d: set %v, model %v (%v)", i, in, model[i], r)
				}
				if in {
					total++
				}
			}
			if r.total() != total {
				t.Fatalf("total %d, want %d", r.total(), total)
			}
		}
	})
}
