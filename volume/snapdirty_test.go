package volume_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"syscall"
	"testing"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/volume"
	"github.com/scatterfs/scatter/volume/memchunks"
)

// TestSnapshotIncrementalEqualsFull runs random operation sequences (creates, writes,
// renames across directories, hard links, unlinks, rmdir, xattrs, setattr, UpdateRefs
// of file chunks and of snapshot objects) and checks after each batch that the snapshot
// that reuses unchanged directories is the one a from-scratch build makes: the same top
// directory tree Ptr, the same objects with the same Refs.
func TestSnapshotIncrementalEqualsFull(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { snapshotProperty(t, seed) })
	}
}

func snapshotProperty(t *testing.T, seed uint64) {
	ctx := context.Background()
	var s crypt.Secret
	s[0] = 7
	keys := s.Keys()
	store := memchunks.NewObjects(keys)
	chunks := memchunks.New(4<<10, 1<<40)
	cfg := volume.Config{Dir: t.TempDir(), Logger: quiet, CommitWindow: -1, InlineMax: 512}
	v, err := volume.Open(cfg, chunks)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { v.Close() }()
	rnd := rand.New(rand.NewPCG(seed, 99))
	dirs := []uint64{volume.RootIno}
	type ent struct {
		parent uint64
		name   string
	}
	var names []ent // every name made, some gone since
	n := 0
	pick := func() ent { return names[rnd.IntN(len(names))] }
	lookup := func(e ent) (volume.Attr, bool) {
		a, err := v.Lookup(ctx, e.parent, e.name)
		return a, err == nil
	}
	op := func() {
		n++
		name := fmt.Sprintf("n%03d", n)
		d := dirs[rnd.IntN(len(dirs))]
		switch k := rnd.IntN(12); {
		case k < 3 || len(names) == 0: // a file with content of 0-40 KiB
			_, h, err := v.Create(ctx, d, name, syscall.O_RDWR, 0o644, 0, 0)
			if err != nil {
				return // the directory may be gone
			}
			buf := make([]byte, rnd.IntN(40<<10))
			for i := range buf {
				buf[i] = byte(rnd.Uint32())
			}
			if _, err := h.Write(ctx, buf, 0); err != nil {
				t.Fatal(err)
			}
			h.Release()
			names = append(names, ent{d, name})
		case k == 3:
			if a, err := v.Mkdir(ctx, d, name, 0o755, 0, 0); err == nil {
				dirs = append(dirs, a.Ino)
				names = append(names, ent{d, name})
			}
		case k == 4: // rewrite part of a file
			a, ok := lookup(pick())
			if !ok || a.IsDir() {
				return
			}
			h, err := v.Open(ctx, a.Ino, syscall.O_RDWR)
			if err != nil {
				return
			}
			buf := bytes.Repeat([]byte{byte(n)}, 1+rnd.IntN(9000))
			if _, err := h.Write(ctx, buf, int64(rnd.IntN(30<<10))); err != nil {
				t.Fatal(err)
			}
			h.Release()
		case k == 5: // rename, often into another directory
			e := pick()
			if v.Rename(ctx, e.parent, e.name, d, name, 0) == nil {
				names = append(names, ent{d, name})
			}
		case k == 6:
			if a, ok := lookup(pick()); ok && !a.IsDir() {
				if _, err := v.Link(ctx, a.Ino, d, name); err == nil {
					names = append(names, ent{d, name})
				}
			}
		case k == 7:
			e := pick()
			if v.Unlink(ctx, e.parent, e.name) != nil {
				v.Rmdir(ctx, e.parent, e.name)
			}
		case k == 8:
			if a, ok := lookup(pick()); ok {
				if rnd.IntN(2) == 0 {
					v.SetXattr(ctx, a.Ino, "user.x", []byte(name), 0)
				} else {
					v.RemoveXattr(ctx, a.Ino, "user.x")
				}
			}
		case k == 9:
			if a, ok := lookup(pick()); ok {
				mode := uint32(0o600 + rnd.IntN(0o100))
				sa := volume.SetAttr{Mode: &mode}
				if !a.IsDir() && rnd.IntN(2) == 0 {
					size := int64(rnd.IntN(50 << 10))
					sa.Size = &size
				}
				if _, err := v.Setattr(ctx, a.Ino, sa); err != nil {
					t.Fatal(err)
				}
			}
		case k == 10: // a repair moves a fragment of a file chunk
			refs, err := v.LiveRefs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(refs) > 0 {
				r := refs[rnd.IntN(len(refs))]
				r.Fragments = slices.Clone(r.Fragments)
				r.Fragments[0].Peer = pipelinePeer(name)
				if err := v.UpdateRefs(ctx, map[crypt.ChunkID]pipeline.Ref{r.ID: r}); err != nil {
					t.Fatal(err)
				}
			}
		case k == 11: // a repair moves a fragment of a snapshot object
			objs, _ := volume.SnapshotState(t, v)
			for _, r := range objs {
				r.Fragments = slices.Clone(r.Fragments)
				r.Fragments[0].Peer = pipelinePeer(name)
				if err := v.UpdateRefs(ctx, map[crypt.ChunkID]pipeline.Ref{r.ID: r}); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
	}
	for round := range 30 {
		// Mostly short batches, so that one kind of change alone decides some rounds.
		for range 1 + rnd.IntN(1+rnd.IntN(30)) {
			op()
		}
		if err := v.SyncAll(ctx); err != nil {
			t.Fatal(err)
		}
		if round%10 == 9 { // a restart: the cache is gone, the marks of earlier processes stay
			if err := v.Close(); err != nil {
				t.Fatal(err)
			}
			if v, err = volume.Open(cfg, chunks); err != nil {
				t.Fatal(err)
			}
		}
		checkIncremental(t, v, cfg, chunks, store, keys, fmt.Sprint("round ", round))
	}
}

// checkIncremental takes a snapshot of v and checks it against a from-scratch build of
// the same state: a copy of the store opened afresh (no cache) and snapshotted.
func checkIncremental(t *testing.T, v *volume.Volume, cfg volume.Config, chunks *memchunks.Store, store *snapStore, keys *crypt.Keys, round string) {
	t.Helper()
	ctx := context.Background()
	r := snapshot.NewReader(store)
	var err error
	// A from-scratch build of the same state: a copy of the store opened afresh.
	// Background work (a released file's last upload) may commit between the copy
	// and the snapshot: then both are taken again.
	var (
		dir     string
		inc     snapshot.Ptr
		ist     snapshot.Stats
		incObjs map[crypt.ChunkID]pipeline.Ref
	)
	for try := 0; ; try++ {
		dir = t.TempDir()
		copied := volume.CopyStore(t, v, dir)
		var seen uint64
		if inc, ist, err = v.Snapshot(ctx, store, keys); err != nil {
			t.Fatal(err)
		}
		if incObjs, seen = volume.SnapshotState(t, v); seen == copied {
			break
		}
		if try == 10 {
			t.Fatalf("%s: commits between every copy and snapshot", round)
		}
		t.Logf("%s: a commit between the copy (%d) and the snapshot (%d)", round, copied, seen)
	}
	wcfg := cfg
	wcfg.Dir = dir
	w, err := volume.Open(wcfg, chunks)
	if err != nil {
		t.Fatal(err)
	}
	full, fst, err := w.Snapshot(ctx, store, keys)
	if err != nil {
		t.Fatal(err)
	}
	fullObjs, _ := volume.SnapshotState(t, w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, itop, err := r.Root(ctx, inc)
	if err != nil {
		t.Fatal(err)
	}
	_, ftop, err := r.Root(ctx, full)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(itop, ftop) {
		t.Fatalf("%s: incremental top entry\n%+v\nfull\n%+v", round, itop, ftop)
	}
	delete(incObjs, inc.Ref.ID)
	delete(fullObjs, full.Ref.ID)
	if !reflect.DeepEqual(incObjs, fullObjs) {
		t.Fatalf("%s: incremental snapshot's objects differ from a full build's (%d, %d)", round, len(incObjs), len(fullObjs))
	}
	if ist.Objects != fst.Objects {
		t.Fatalf("%s: %d objects, full build %d", round, ist.Objects, fst.Objects)
	}
}

func pipelinePeer(s string) swarm.PeerID { return swarm.PeerID("peer-" + s) }

// TestSnapshotRemoveXattr: removing an extended attribute writes no attributes, so it
// marks the inode itself; the next snapshot must not reuse the directory listing it.
func TestSnapshotRemoveXattr(t *testing.T) {
	ctx := context.Background()
	var s crypt.Secret
	s[0] = 7
	keys := s.Keys()
	store := memchunks.NewObjects(keys)
	chunks := memchunks.New(4<<10, 1<<40)
	cfg := volume.Config{Dir: t.TempDir(), Logger: quiet, CommitWindow: -1}
	v, err := volume.Open(cfg, chunks)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	d, err := v.Mkdir(ctx, volume.RootIno, "d", 0o755, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, h, err := v.Create(ctx, d.Ino, "f", syscall.O_RDWR, 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.Release()
	if err := v.SetXattr(ctx, a.Ino, "user.x", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	checkIncremental(t, v, cfg, chunks, store, keys, "with the xattr")
	if err := v.RemoveXattr(ctx, a.Ino, "user.x"); err != nil {
		t.Fatal(err)
	}
	checkIncremental(t, v, cfg, chunks, store, keys, "without it")
}
