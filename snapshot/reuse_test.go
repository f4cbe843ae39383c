package snapshot

import (
	"context"
	"fmt"
	"reflect"
	"syscall"
	"testing"
)

// TestDirRefsAdopt checks that DirRefs names every object of a directory's own tree
// (pages and extent trees, also those another directory stored first) and that a Builder
// adopting them ends with the objects a Builder storing the same tree again has.
func TestDirRefsAdopt(t *testing.T) {
	ctx := context.Background()
	keys := testKeys()
	st := newFakeStore(keys)
	var xs []Extent
	for i := range 100 {
		xs = append(xs, Extent{Off: int64(i) << 20, Len: 1 << 20, Ref: chunkRef(keys, fmt.Sprint(i))})
	}
	files := bigDir(300)
	files[7].Extents = xs // an extent tree
	b := NewBuilder(st, keys, nil)
	empty1, e1, err := b.DirRefs(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	empty2, e2, err := b.DirRefs(ctx, nil) // the same page: found, not stored again
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(empty1, empty2) || len(e1) != 1 || !reflect.DeepEqual(e1, e2) {
		t.Fatalf("two empty directories: %v %v, refs %d %d", empty1, empty2, len(e1), len(e2))
	}
	bp, refs, err := b.DirRefs(ctx, files)
	if err != nil {
		t.Fatal(err)
	}
	if b.Stats().Objects != len(refs)+1 {
		t.Fatalf("%d objects, DirRefs named %d (+1 empty page)", b.Stats().Objects, len(refs))
	}

	// A later snapshot reusing the directory adopts its objects instead.
	a := NewBuilder(st, keys, b.Objects())
	a.Adopt(refs)
	a.Adopt(refs) // twice: counted once
	a.Adopt(e1)
	if got := a.Stats(); got.Objects != b.Stats().Objects || got.Uploaded != 0 {
		t.Fatalf("adopted: %+v, built: %+v", got, b.Stats())
	}
	if !reflect.DeepEqual(a.Objects(), b.Objects()) {
		t.Fatal("adopted objects differ from the built ones")
	}
	top := []Entry{{Name: "d", Ino: 9, Attr: attr(syscall.S_IFDIR|0o755, 0, 9), Dir: &bp}}
	p1, err := a.Dir(ctx, top)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := NewBuilder(st, keys, nil).Dir(ctx, top)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p1, p2) {
		t.Fatal("a directory over an adopted tree differs from one over a built tree")
	}
}
