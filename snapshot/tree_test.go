package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
)

// fakeStore seals chunks with the drive's keys as the pipeline does, keeps them in memory
// and counts puts. Refs are deterministic: 2+1 fragments named from the sealed bytes.
type fakeStore struct {
	keys *crypt.Keys

	mu     sync.Mutex
	sealed map[crypt.ChunkID][]byte
	puts   [][]byte // plaintext of every Put, in order
	flip   bool     // GetSealed flips one bit
}

func newFakeStore(keys *crypt.Keys) *fakeStore {
	return &fakeStore{keys: keys, sealed: map[crypt.ChunkID][]byte{}}
}

func (s *fakeStore) Put(ctx context.Context, plain []byte) (pipeline.Ref, error) {
	id := s.keys.ChunkID(plain)
	sealed := s.keys.Seal(nil, id, plain)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealed[id] = sealed
	s.puts = append(s.puts, bytes.Clone(plain))
	ref := pipeline.Ref{ID: id, Size: uint32(len(plain)), SealedLen: uint32(len(sealed)), K: 2, M: 1}
	for i := range 3 {
		ref.Fragments = append(ref.Fragments, pipeline.Fragment{
			ID:   chunker.FragmentID(blake3.Sum256(append(bytes.Clone(sealed), byte(i)))),
			Peer: swarm.PeerID(fmt.Sprintf("peer-%d", i)),
		})
	}
	return ref, nil
}

func (s *fakeStore) GetSealed(ctx context.Context, ref pipeline.Ref) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.sealed[ref.ID]
	if !ok {
		return nil, fmt.Errorf("chunk %s: %w", ref.ID, pipeline.ErrUnrecoverable)
	}
	b = bytes.Clone(b)
	if s.flip {
		b[len(b)/2] ^= 0x10
	}
	return b, nil
}

func (s *fakeStore) putCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.puts)
}

func testKeys() *crypt.Keys {
	var s crypt.Secret
	for i := range s {
		s[i] = byte(i)
	}
	return s.Keys()
}

// ts returns a time with nanoseconds, in the location decoding gives.
func ts(sec int64, ns int64) time.Time { return time.Unix(sec, ns) }

func attr(mode uint32, size int64, n int64) Attr {
	return Attr{Mode: mode, Nlink: 1, UID: 1000, GID: 100, Size: size,
		Atime: ts(1700000000+n, 123456789), Mtime: ts(1700000100+n, 1), Ctime: ts(1700000200+n, 999999999)}
}

// chunkRef is a data chunk's Ref as the volume records it.
func chunkRef(keys *crypt.Keys, content string) *pipeline.Ref {
	r := &pipeline.Ref{ID: keys.ChunkID([]byte(content)), Size: uint32(len(content)), SealedLen: uint32(len(content) + crypt.Overhead), K: 2, M: 1}
	for i := range 3 {
		r.Fragments = append(r.Fragments, pipeline.Fragment{ID: chunker.FragmentID{byte(i), 1}, Peer: swarm.PeerID(fmt.Sprintf("holder-%d", i))})
	}
	return r
}

// tree is a directory to build: its entries, subdirectories by name.
type tree struct {
	entries []Entry
	sub     map[string]*tree
}

// build writes t bottom-up and returns its Ptr.
func build(t *testing.T, b *Builder, d *tree) Ptr {
	t.Helper()
	for i := range d.entries {
		if sd, ok := d.sub[d.entries[i].Name]; ok {
			p := build(t, b, sd)
			d.entries[i].Dir = &p
		}
	}
	p, err := b.Dir(context.Background(), d.entries)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sampleTree has every kind of entry: empty, inline and multi-chunk files, a file with
// enough extents for an extent tree, sparse extents, a symlink, hard links, xattrs,
// devices, a fifo, and nested directories.
func sampleTree(keys *crypt.Keys) *tree {
	var many []Extent
	for i := range 40 {
		c := fmt.Sprintf("chunk %d", i)
		many = append(many, Extent{Off: int64(i) * 1000, Len: int64(len(c)), Ref: chunkRef(keys, c)})
	}
	sub := &tree{entries: []Entry{
		{Name: "deep.txt", Ino: 20, Attr: attr(syscall.S_IFREG|0o600, 5, 20), Extents: []Extent{{Off: 0, Len: 5, Data: []byte("deep\n")}}},
		{Name: "link-to-a", Ino: 11, Attr: attr(syscall.S_IFREG|0o644, 3, 11), Extents: []Extent{{Off: 0, Len: 3, Data: []byte("abc")}}},
	}}
	sub.entries[1].Attr.Nlink = 2
	emptyDir := &tree{}
	top := &tree{
		entries: []Entry{
			{Name: "a", Ino: 11, Attr: attr(syscall.S_IFREG|0o644, 3, 11), Extents: []Extent{{Off: 0, Len: 3, Data: []byte("abc")}},
				Xattrs: []Xattr{{Name: "user.colour", Value: []byte("blue")}, {Name: "user.empty", Value: []byte{}}}},
			{Name: "big", Ino: 12, Attr: attr(syscall.S_IFREG|0o640, 4096+7, 12), Extents: []Extent{
				{Off: 0, Len: 7, Ref: chunkRef(keys, "first c")},
				{Off: 4096, Len: 7, Ref: chunkRef(keys, "second!")},
			}},
			{Name: "dev", Ino: 13, Attr: attr(syscall.S_IFCHR|0o600, 0, 13)},
			{Name: "empty", Ino: 14, Attr: attr(syscall.S_IFREG|0o644, 0, 14)},
			{Name: "emptydir", Ino: 15, Attr: attr(syscall.S_IFDIR|0o755, 0, 15)},
			{Name: "fifo", Ino: 16, Attr: attr(syscall.S_IFIFO|0o644, 0, 16)},
			{Name: "many", Ino: 17, Attr: attr(syscall.S_IFREG|0o644, 39*1000+8, 17), Extents: many},
			{Name: "sparse", Ino: 18, Attr: attr(syscall.S_IFREG|0o644, 1<<40, 18)},
			{Name: "sub", Ino: 19, Attr: attr(syscall.S_IFDIR|0o2775, 0, 19)},
			{Name: "symlink", Ino: 21, Attr: attr(syscall.S_IFLNK|0o777, 8, 21), Extents: []Extent{{Off: 0, Len: 8, Data: []byte("sub/deep")}}},
			{Name: "\xff non-UTF-8 name", Ino: 22, Attr: attr(syscall.S_IFREG|0o644, 1, 22), Extents: []Extent{{Off: 0, Len: 1, Data: []byte("x")}}},
		},
		sub: map[string]*tree{"sub": sub, "emptydir": emptyDir},
	}
	top.entries[0].Attr.Nlink = 2
	top.entries[2].Attr.Rdev = 0x0105
	top.entries[4].Attr.Nlink = 2
	top.entries[8].Attr.Nlink = 3
	return top
}

var sampleInfo = Info{Time: ts(1700001000, 42), NextIno: 22}

func rootEntry(p Ptr) Entry {
	return Entry{Ino: 1, Attr: attr(syscall.S_IFDIR|0o755, 0, 1), Dir: &p}
}

// readAll reads the whole tree under p into the same shape as build's input.
func readAll(t *testing.T, r *Reader, p Ptr) *tree {
	t.Helper()
	es, err := r.Dir(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	d := &tree{entries: es, sub: map[string]*tree{}}
	for _, e := range es {
		if e.IsDir() {
			d.sub[e.Name] = readAll(t, r, *e.Dir)
		}
	}
	return d
}

// strip removes what building adds (Dir pointers, chunk read keys), to compare a tree
// read back with the tree built.
func strip(d *tree) {
	for i := range d.entries {
		d.entries[i].Dir = nil
		for j := range d.entries[i].Extents {
			d.entries[i].Extents[j].Key = crypt.ChunkKey{}
		}
		if d.entries[i].Extents != nil && len(d.entries[i].Extents) == 0 {
			d.entries[i].Extents = nil
		}
	}
	if len(d.sub) == 0 {
		d.sub = nil
	}
	if len(d.entries) == 0 {
		d.entries = nil
	}
	for _, s := range d.sub {
		strip(s)
	}
}

func TestRoundTrip(t *testing.T) {
	keys := testKeys()
	st := newFakeStore(keys)
	b := NewBuilder(st, keys, nil)
	in := sampleTree(keys)
	top := build(t, b, in)
	root, err := b.Root(context.Background(), sampleInfo, rootEntry(top))
	if err != nil {
		t.Fatal(err)
	}

	r := NewReader(st)
	info, ent, err := r.Root(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(info, sampleInfo) {
		t.Errorf("info = %+v, want %+v", info, sampleInfo)
	}
	if ent.Ino != 1 || !reflect.DeepEqual(ent.Attr, rootEntry(top).Attr) {
		t.Errorf("root entry = %+v", ent)
	}
	out := readAll(t, r, *ent.Dir)

	// Chunk read keys come back, and they open the chunks they name.
	for _, e := range out.entries {
		for _, x := range e.Extents {
			if x.Ref != nil && x.Key != keys.ChunkKey(x.Ref.ID) {
				t.Errorf("%s: extent at %d has the wrong read key", e.Name, x.Off)
			}
		}
	}
	strip(in)
	strip(out)
	if !reflect.DeepEqual(in, out) {
		for i := range in.entries {
			if i < len(out.entries) && !reflect.DeepEqual(in.entries[i], out.entries[i]) {
				t.Errorf("entry %d:\n got %+v\nwant %+v", i, out.entries[i], in.entries[i])
			}
		}
		t.Fatalf("tree read back differs")
	}
	if n := len(r.Objects()); n != b.Stats().Objects {
		t.Errorf("reader saw %d objects, builder wrote %d", n, b.Stats().Objects)
	}
}

// bigDir returns n file entries, sorted.
func bigDir(n int) []Entry {
	es := make([]Entry, n)
	for i := range es {
		name := fmt.Sprintf("file-%06d", i)
		es[i] = Entry{Name: name, Ino: uint64(100 + i), Attr: attr(syscall.S_IFREG|0o644, int64(len(name)), int64(i)),
			Extents: []Extent{{Off: 0, Len: int64(len(name)), Data: []byte(name)}}}
	}
	return es
}

// A change to one file of a large directory re-uploads one leaf page, the index pages
// above it, the parents' pages and the root: not the directory.
func TestIncrementalUpload(t *testing.T) {
	keys := testKeys()
	st := newFakeStore(keys)
	ctx := context.Background()
	const n = 20000
	snap := func(known map[crypt.ChunkID]pipeline.Ref, big []Entry) (*Builder, Ptr) {
		b := NewBuilder(st, keys, known)
		bp, err := b.Dir(ctx, big)
		if err != nil {
			t.Fatal(err)
		}
		mid, err := b.Dir(ctx, []Entry{{Name: "big", Ino: 3, Attr: attr(syscall.S_IFDIR|0o755, 0, 3), Dir: &bp},
			{Name: "other", Ino: 4, Attr: attr(syscall.S_IFREG|0o644, 0, 4)}})
		if err != nil {
			t.Fatal(err)
		}
		top, err := b.Dir(ctx, []Entry{{Name: "mid", Ino: 2, Attr: attr(syscall.S_IFDIR|0o755, 0, 2), Dir: &mid}})
		if err != nil {
			t.Fatal(err)
		}
		root, err := b.Root(ctx, sampleInfo, rootEntry(top))
		if err != nil {
			t.Fatal(err)
		}
		return b, root
	}
	b1, root1 := snap(nil, bigDir(n))
	first := b1.Stats()
	if first.Uploaded != first.Objects || first.Objects < n/256 {
		t.Fatalf("first snapshot: %+v", first)
	}

	// The same tree again uploads nothing and names the same root.
	b2, root2 := snap(b1.Objects(), bigDir(n))
	if s := b2.Stats(); s.Uploaded != 0 || root2.Ref.ID != root1.Ref.ID {
		t.Fatalf("unchanged tree: %+v, root %s vs %s", s, root2.Ref.ID, root1.Ref.ID)
	}

	// One file's mtime changes.
	big := bigDir(n)
	big[n/2].Attr.Mtime = big[n/2].Attr.Mtime.Add(time.Nanosecond)
	b3, root3 := snap(b2.Objects(), big)
	s := b3.Stats()
	t.Logf("first %+v; after one change %+v", first, s)
	// leaf + up to 3 index levels for 20,000 entries + mid + top + root.
	if s.Uploaded < 4 || s.Uploaded > 7 || s.UploadedBytes*20 > first.UploadedBytes {
		t.Errorf("one change uploaded %d objects, %d bytes (first snapshot %d bytes)", s.Uploaded, s.UploadedBytes, first.UploadedBytes)
	}
	r := NewReader(st)
	_, ent, err := r.Root(ctx, root3)
	if err != nil {
		t.Fatal(err)
	}
	top, _ := r.Dir(ctx, *ent.Dir)
	mid, _ := r.Dir(ctx, *top[0].Dir)
	got, err := r.Dir(ctx, *mid[0].Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n || !got[n/2].Attr.Mtime.Equal(big[n/2].Attr.Mtime) || got[n-1].Name != big[n-1].Name {
		t.Fatalf("read back %d entries, changed one %+v", len(got), got[n/2].Attr)
	}

	// An inserted name changes a page too, and the pages after it are reused.
	big = append(big[:n/3:n/3], append([]Entry{{Name: big[n/3-1].Name + "-new", Ino: 99, Attr: attr(syscall.S_IFREG, 0, 99)}}, big[n/3:]...)...)
	b4, _ := snap(b3.Objects(), big)
	if s := b4.Stats(); s.Uploaded > 8 {
		t.Errorf("one insertion uploaded %d objects", s.Uploaded)
	}
}

// A bit flipped in a stored object is detected (the chunk does not authenticate), never
// read as another tree.
func TestFlippedBit(t *testing.T) {
	keys := testKeys()
	st := newFakeStore(keys)
	b := NewBuilder(st, keys, nil)
	top := build(t, b, sampleTree(keys))
	st.flip = true
	_, err := NewReader(st).Dir(context.Background(), top)
	if !errors.Is(err, crypt.ErrAuth) {
		t.Fatalf("flipped bit: err = %v, want crypt.ErrAuth", err)
	}
	// A pointer with another object's key does not open either.
	st.flip = false
	other := top
	other.Key = keys.ChunkKey(crypt.ChunkID{1})
	if _, err := NewReader(st).Dir(context.Background(), other); !errors.Is(err, crypt.ErrAuth) {
		t.Fatalf("wrong key: err = %v, want crypt.ErrAuth", err)
	}
}

// A file with many extents keeps them in an extent tree split into pages.
func TestLargeFileExtents(t *testing.T) {
	keys := testKeys()
	st := newFakeStore(keys)
	b := NewBuilder(st, keys, nil)
	var xs []Extent
	for i := range 3000 {
		xs = append(xs, Extent{Off: int64(i) << 21, Len: 1 << 21, Ref: chunkRef(keys, fmt.Sprint(i))})
		xs[i].Ref.Size, xs[i].Ref.SealedLen = 1<<21, 1<<21+crypt.Overhead
	}
	es := []Entry{{Name: "huge", Ino: 5, Attr: attr(syscall.S_IFREG|0o644, 3000<<21, 5), Extents: xs}}
	p, err := b.Dir(context.Background(), es)
	if err != nil {
		t.Fatal(err)
	}
	if b.Stats().Objects < 10 {
		t.Errorf("3000 extents in %d objects", b.Stats().Objects)
	}
	got, err := NewReader(st).Dir(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Extents) != 3000 || got[0].Extents[2999].Off != 2999<<21 {
		t.Fatalf("read back %d entries", len(got))
	}
}

func TestBuilderRejectsUnsorted(t *testing.T) {
	keys := testKeys()
	b := NewBuilder(newFakeStore(keys), keys, nil)
	es := bigDir(2)
	es[0], es[1] = es[1], es[0]
	if _, err := b.Dir(context.Background(), es); err == nil {
		t.Fatal("unsorted entries accepted")
	}
}
