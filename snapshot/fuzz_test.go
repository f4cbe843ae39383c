package snapshot

import (
	"errors"
	"testing"
)

// FuzzDecodeObject: any bytes decode to an object or to an ErrCorrupt/ErrVersion error,
// never a panic; what decodes keeps the invariants readers rely on.
func FuzzDecodeObject(f *testing.F) {
	for _, o := range readGolden(f) {
		f.Add(o)
	}
	f.Add([]byte{1, 2, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := decodeObject(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error not ErrCorrupt or ErrVersion: %v", err)
			}
			return
		}
		for i, x := range o.entries {
			if x.IsDir() != (x.Dir != nil) {
				t.Fatalf("entry %d: directory without tree", i)
			}
			if i > 0 && o.kind == kindEntries && x.Name <= o.entries[i-1].Name {
				t.Fatalf("entries out of order")
			}
			for _, e := range x.Extents {
				if e.Len <= 0 || (e.Ref == nil && int64(len(e.Data)) != e.Len) {
					t.Fatalf("bad extent %+v", e)
				}
			}
		}
		for _, p := range o.ptrs {
			if len(p.Ref.Fragments) != int(p.Ref.K)+int(p.Ref.M) {
				t.Fatalf("bad pointer shape")
			}
		}
	})
}

// FuzzPtr: UnmarshalBinary never panics, and what it accepts encodes back to the same bytes.
func FuzzPtr(f *testing.F) {
	keys := testKeys()
	p := Ptr{Ref: *chunkRef(keys, "x"), Key: keys.ChunkKey(keys.ChunkID([]byte("x")))}
	b, err := p.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Ptr
		if err := p.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatal(err)
			}
			return
		}
		out, err := p.MarshalBinary()
		if err != nil || string(out) != string(b) {
			t.Fatalf("re-encoding differs: %x vs %x (%v)", out, b, err)
		}
	})
}
