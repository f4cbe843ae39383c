package volume_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/upkeep"
	"github.com/scatterfs/scatter/volume"
)

var _ upkeep.Drive = (*volume.Volume)(nil)

// TestUpkeepHooks: LiveRefs lists each chunk once, UpdateRefs moves holders in every
// extent without touching lengths or counts, and the garbage list is read and dropped.
func TestUpkeepHooks(t *testing.T) {
	e := newEnv(t, volume.Config{InlineMax: 1})
	block := func(b byte) []byte { return bytes.Repeat([]byte{b}, 64<<10) }
	a, h := e.create(volume.RootIno, "f")
	for i, b := range []byte("abab") {
		e.write(h, block(b), int64(i)<<16)
	}
	e.write(h, []byte("tail"), 4<<16) // a short last chunk
	if err := h.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	h.Release()
	live := must[[]pipeline.Ref](t)(e.v.LiveRefs(ctx))
	if len(live) != 3 {
		t.Fatalf("%d live refs, want 3 (a, b, tail)", len(live))
	}
	refs0, _, _ := volume.ChunkRefs(e.v)

	// Move chunk "a" and "tail" to other holders.
	moved := map[crypt.ChunkID]pipeline.Ref{}
	for _, r := range live {
		if r.Size == 64<<10 && len(moved) == 1 {
			continue // leave one full chunk alone
		}
		nr := r
		nr.Fragments = slices.Clone(r.Fragments)
		nr.Fragments[0].Peer = swarm.PeerID("elsewhere-" + r.ID.String()[:4])
		moved[r.ID] = nr
	}
	if err := e.v.UpdateRefs(ctx, moved); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	live2 := must[[]pipeline.Ref](t)(e.v.LiveRefs(ctx))
	if len(live2) != 3 {
		t.Fatalf("%d live refs after update, want 3", len(live2))
	}
	for _, r := range live2 {
		want, ok := moved[r.ID]
		if ok && r.Fragments[0].Peer != want.Fragments[0].Peer || !ok && r.Fragments[0].Peer != "mem" {
			t.Fatalf("chunk %s held by %q after update", r.ID, r.Fragments[0].Peer)
		}
	}
	if refs, garbage, _ := volume.ChunkRefs(e.v); refs != refs0 || garbage != 0 {
		t.Fatalf("counts after update: refs %d (was %d) garbage %d", refs, refs0, garbage)
	}
	h = must[*volume.Handle](t)(e.v.Open(ctx, a.Ino, 0))
	got := e.read(h, 5<<16, 0)
	want := slices.Concat(block('a'), block('b'), block('a'), block('b'), []byte("tail"))
	if !bytes.Equal(got, want) {
		t.Fatalf("content changed by UpdateRefs: %d bytes read", len(got))
	}
	h.Release()

	// A "new" Ref that is another chunk is refused, and nothing is written.
	for id, r := range moved {
		bad := r
		bad.Fragments = slices.Clone(r.Fragments)
		bad.Fragments[0].ID[0] ^= 1
		if err := e.v.UpdateRefs(ctx, map[crypt.ChunkID]pipeline.Ref{id: bad}); !errors.Is(err, volume.ErrInvalid) {
			t.Fatalf("update with other fragment IDs: %v", err)
		}
	}
	if live3 := must[[]pipeline.Ref](t)(e.v.LiveRefs(ctx)); !slices.EqualFunc(live3, live2, sameRef) {
		t.Fatal("a refused update changed the refs")
	}

	// Unlink: every chunk becomes garbage, with the Ref its last extent recorded.
	if err := e.v.Unlink(ctx, volume.RootIno, "f"); err != nil {
		t.Fatal(err)
	}
	e.publish(newSnapStore(), time.Unix(1_800_000_000, 0))
	garbage := must[[]pipeline.Ref](t)(e.v.Garbage(ctx, time.Unix(1_800_000_000, 0)))
	if len(garbage) != 3 || !sameSet(garbage, live2) {
		t.Fatalf("garbage %v, want the three live refs", garbage)
	}
	// A Ref with other holders than the listed one is not dropped: those holders still
	// have the fragments.
	other := garbage[0]
	other.Fragments = []pipeline.Fragment{{ID: other.Fragments[0].ID, Peer: "nobody"}}
	if n := must[int](t)(e.v.DropGarbage(ctx, []pipeline.Ref{other, garbage[1]})); n != 1 {
		t.Fatalf("dropped %d, want 1", n)
	}
	left := must[[]pipeline.Ref](t)(e.v.Garbage(ctx, time.Unix(1_800_000_000, 0)))
	if len(left) != 2 || !sameSet(left, []pipeline.Ref{garbage[0], garbage[2]}) {
		t.Fatalf("garbage left %v", left)
	}
	if n := must[int](t)(e.v.DropGarbage(ctx, left)); n != 2 {
		t.Fatalf("dropped %d, want 2", n)
	}
	if _, g, _ := volume.ChunkRefs(e.v); g != 0 {
		t.Fatalf("%d garbage chunks left", g)
	}
}

func sameRef(a, b pipeline.Ref) bool {
	return a.ID == b.ID && a.Size == b.Size && slices.Equal(a.Fragments, b.Fragments)
}

func sameSet(a, b []pipeline.Ref) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(r pipeline.Ref) bool {
		return !slices.ContainsFunc(b, func(s pipeline.Ref) bool { return sameRef(r, s) })
	})
}

// TestUpkeepSnapshotObjects: the last snapshot's objects are live (renewed, checked) and
// their repaired holders are recorded.
func TestUpkeepSnapshotObjects(t *testing.T) {
	e := newEnv(t, volume.Config{InlineMax: 1})
	_, h := e.create(volume.RootIno, "f")
	e.write(h, bytes.Repeat([]byte("x"), 100<<10), 0)
	h.Release()
	if err := e.v.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	before := must[[]pipeline.Ref](t)(e.v.LiveRefs(ctx))
	st := newSnapStore()
	if _, _, err := e.v.Snapshot(ctx, st, st.Keys); err != nil {
		t.Fatal(err)
	}
	after := must[[]pipeline.Ref](t)(e.v.LiveRefs(ctx))
	var objs []pipeline.Ref
	for _, r := range after {
		if !slices.ContainsFunc(before, func(b pipeline.Ref) bool { return b.ID == r.ID }) {
			objs = append(objs, r)
		}
	}
	if len(objs) == 0 || len(objs) != st.Puts() {
		t.Fatalf("%d snapshot objects among the live refs, %d were put", len(objs), st.Puts())
	}
	nr := objs[0]
	nr.Fragments = []pipeline.Fragment{{ID: nr.Fragments[0].ID, Peer: "repaired"}}
	if err := e.v.UpdateRefs(ctx, map[crypt.ChunkID]pipeline.Ref{nr.ID: nr}); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(must[[]pipeline.Ref](t)(e.v.LiveRefs(ctx)), func(r pipeline.Ref) bool { return sameRef(r, nr) }) {
		t.Fatal("repaired snapshot object's holder not recorded")
	}
}
