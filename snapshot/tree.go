package snapshot

import (
	"context"
	"fmt"
	"sync"

	"github.com/zeebo/blake3"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
)

// Store puts whole plaintext chunks on the peers; pipeline.Store implements it.
type Store interface {
	// Put seals, codes and places one chunk and returns its Ref; see pipeline.Store.Put.
	Put(ctx context.Context, plain []byte) (pipeline.Ref, error)
}

// Fetcher gets sealed chunks back; pipeline.Store implements it.
type Fetcher interface {
	// GetSealed returns the sealed chunk ref names, its fragments verified.
	GetSealed(ctx context.Context, ref pipeline.Ref) ([]byte, error)
}

// Page shapes. A page is cut after an item whose keyed hash has its low bits zero, so cuts
// depend on the items around them only, or before an item that would take the page above
// pageMax. Entries cut on their name, index items on the child's chunk ID, extents on
// their encoding.
const (
	pageMax    = 1 << 20
	leafMask   = 63 // a leaf page holds 64 entries on average
	indexMask  = 31 // an index page points to 32 pages on average
	headerSize = 6
)

// Stats counts what a Builder did.
type Stats struct {
	Objects       int   // objects in the snapshot
	Uploaded      int   // objects put on the peers (the others were already there)
	UploadedBytes int64 // plaintext bytes of the objects put
}

// Builder writes one snapshot, bottom-up: the caller writes each directory with Dir once
// its subdirectories are written (their entries carry the Ptr Dir returned), then the top
// directory's entry with Root. Objects whose chunk ID is in known (objects on the peers
// from earlier snapshots) are not put again. A Builder is not safe for concurrent use.
type Builder struct {
	store Store
	keys  *crypt.Keys
	known map[crypt.ChunkID]pipeline.Ref
	objs  map[crypt.ChunkID]pipeline.Ref
	cut   *blake3.Hasher
	stats Stats
	trace *[]pipeline.Ref // DirRefs: every object the current Dir call stores or finds
}

// NewBuilder returns a Builder storing objects through store for the drive whose keys
// are keys. known may be nil.
func NewBuilder(store Store, keys *crypt.Keys, known map[crypt.ChunkID]pipeline.Ref) *Builder {
	// Cut points come from a keyed hash, so page sizes say nothing about which names a
	// directory holds. The metadata key is used only here and for the root record's payload.
	h, err := blake3.NewKeyed(keys.Metadata[:])
	if err != nil {
		panic("BUG: snapshot: blake3 keyed: " + err.Error())
	}
	return &Builder{store: store, keys: keys, known: known, objs: map[crypt.ChunkID]pipeline.Ref{}, cut: h}
}

// Stats returns what the Builder has done so far.
func (b *Builder) Stats() Stats { return b.stats }

// Objects returns the Ref of every object of the snapshot built so far, by chunk ID: the
// known set to give the next Builder.
func (b *Builder) Objects() map[crypt.ChunkID]pipeline.Ref { return b.objs }

func (b *Builder) hash(domain byte, p []byte) uint64 {
	b.cut.Reset()
	_, _ = b.cut.Write([]byte{domain})
	_, _ = b.cut.Write(p)
	var buf [32]byte
	s := b.cut.Sum(buf[:0])
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24
}

// put stores one object unless it is already on the peers.
func (b *Builder) put(ctx context.Context, plain []byte) (Ptr, error) {
	if len(plain) > MaxObject {
		return Ptr{}, fmt.Errorf("snapshot: BUG: object of %d bytes", len(plain))
	}
	id := b.keys.ChunkID(plain)
	ref, ok := b.objs[id]
	if !ok {
		ref, ok = b.known[id]
		if !ok {
			var err error
			if ref, err = b.store.Put(ctx, plain); err != nil {
				return Ptr{}, fmt.Errorf("snapshot: put object: %w", err)
			}
			if ref.ID != id {
				return Ptr{}, fmt.Errorf("snapshot: store named object %s as %s: not this drive's keys", id, ref.ID)
			}
			b.stats.Uploaded++
			b.stats.UploadedBytes += int64(len(plain))
		}
		b.objs[id] = ref
		b.stats.Objects++
	}
	if b.trace != nil {
		*b.trace = append(*b.trace, ref)
	}
	return Ptr{Ref: ref, Key: b.keys.ChunkKey(id)}, nil
}

// pages cuts items into pages of kind and stores them. With no items it stores one empty
// page (an empty directory). minItems > 1 forbids hash cuts in pages shorter than that,
// so each index level at least halves the level below.
func (b *Builder) pages(ctx context.Context, kind uint8, items [][]byte, cut func(int) bool, minItems int) ([]Ptr, error) {
	var out []Ptr
	start, size := 0, headerSize
	flush := func(end int) error {
		e := header(kind, end-start)
		for _, it := range items[start:end] {
			e.raw(it)
		}
		p, err := b.put(ctx, e.b)
		if err != nil {
			return err
		}
		out = append(out, p)
		start, size = end, headerSize
		return nil
	}
	for i, it := range items {
		if headerSize+len(it) > MaxObject {
			return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(it))
		}
		if i > start && size+len(it) > pageMax {
			if err := flush(i); err != nil {
				return nil, err
			}
		}
		size += len(it)
		if i+1-start >= minItems && i+1 < len(items) && cut(i) {
			if err := flush(i + 1); err != nil {
				return nil, err
			}
		}
	}
	if start < len(items) || len(out) == 0 {
		if err := flush(len(items)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// tree stores items as leaf pages of kind and index pages above them, and returns the
// top page.
func (b *Builder) tree(ctx context.Context, kind uint8, items [][]byte, cut func(int) bool) (Ptr, error) {
	ptrs, err := b.pages(ctx, kind, items, cut, 1)
	for err == nil && len(ptrs) > 1 {
		items := make([][]byte, len(ptrs))
		for i := range ptrs {
			e := &enc{}
			if err := e.ptr(&ptrs[i]); err != nil {
				return Ptr{}, err
			}
			items[i] = e.b
		}
		level := ptrs
		ptrs, err = b.pages(ctx, kindIndex, items, func(i int) bool {
			return b.hash('i', level[i].Ref.ID[:])&indexMask == 0
		}, 2)
	}
	if err != nil {
		return Ptr{}, err
	}
	return ptrs[0], nil
}

// encodeEntry encodes x for a directory page, moving its extents to an extent tree when
// they are many or large.
func (b *Builder) encodeEntry(ctx context.Context, x *Entry) ([]byte, error) {
	for i := range x.Extents {
		if r := x.Extents[i].Ref; r != nil {
			x.Extents[i].Key = b.keys.ChunkKey(r.ID)
		}
	}
	var tree *Ptr
	if !x.IsDir() && len(x.Extents) > 0 {
		items := make([][]byte, len(x.Extents))
		total := 0
		for i := range x.Extents {
			e := &enc{}
			if err := e.extent(&x.Extents[i]); err != nil {
				return nil, fmt.Errorf("%q: %w", x.Name, err)
			}
			items[i] = e.b
			total += len(e.b)
		}
		if len(items) > inlineExtents || total > inlineExtentBytes {
			p, err := b.tree(ctx, kindExtents, items, func(i int) bool {
				return b.hash('x', items[i])&leafMask == 0
			})
			if err != nil {
				return nil, fmt.Errorf("%q: %w", x.Name, err)
			}
			tree = &p
		}
	}
	e := &enc{}
	if err := e.entry(x, tree); err != nil {
		return nil, err
	}
	return e.b, nil
}

// Dir stores a directory whose entries are sorted by name (byte order, each name once)
// and returns its tree's Ptr, to set as Dir in the directory's own entry. Directory
// entries must have Dir set already. Dir fills in the read key of every chunk extent.
func (b *Builder) Dir(ctx context.Context, entries []Entry) (Ptr, error) {
	items := make([][]byte, len(entries))
	for i := range entries {
		x := &entries[i]
		if i > 0 && x.Name <= entries[i-1].Name {
			return Ptr{}, fmt.Errorf("snapshot: BUG: entry %q after %q", x.Name, entries[i-1].Name)
		}
		var err error
		if items[i], err = b.encodeEntry(ctx, x); err != nil {
			return Ptr{}, err
		}
	}
	return b.tree(ctx, kindEntries, items, func(i int) bool {
		return b.hash('n', []byte(entries[i].Name))&leafMask == 0
	})
}

// DirRefs is Dir that also returns the Ref of every object of the directory's own tree:
// its pages and its files' extent trees, not its subdirectories' trees. A later Builder
// that reuses the returned Ptr for an unchanged directory passes them to Adopt.
func (b *Builder) DirRefs(ctx context.Context, entries []Entry) (Ptr, []pipeline.Ref, error) {
	var refs []pipeline.Ref
	b.trace = &refs
	defer func() { b.trace = nil }()
	p, err := b.Dir(ctx, entries)
	if err != nil {
		return Ptr{}, nil, err
	}
	return p, refs, nil
}

// Adopt records refs, the objects of a directory tree an earlier Builder stored (as
// DirRefs returned them), as objects of this snapshot without storing or encoding them
// again: the caller reuses that tree's Ptr because nothing in it changed. They count in
// Stats.Objects and appear in Objects, so the next Builder knows them too.
func (b *Builder) Adopt(refs []pipeline.Ref) {
	for _, ref := range refs {
		if _, ok := b.objs[ref.ID]; ok {
			continue
		}
		b.objs[ref.ID] = ref
		b.stats.Objects++
	}
}

// Root stores the snapshot's root object: info and top, the top directory's entry (named
// "", Dir set). Its Ptr names the whole snapshot.
func (b *Builder) Root(ctx context.Context, info Info, top Entry) (Ptr, error) {
	if top.Name != "" || !top.IsDir() || top.Dir == nil {
		return Ptr{}, fmt.Errorf("snapshot: BUG: root entry %q mode %o", top.Name, top.Attr.Mode)
	}
	e := header(kindRoot, 1)
	e.time(info.Time)
	e.u64(info.NextIno)
	if err := e.entry(&top, nil); err != nil {
		return Ptr{}, err
	}
	return b.put(ctx, e.b)
}

// Reader reads snapshots. It needs no drive keys: every Ptr carries its object's read key.
// It is safe for concurrent use.
type Reader struct {
	f Fetcher

	mu   sync.Mutex
	objs map[crypt.ChunkID]pipeline.Ref // guarded by mu
}

// NewReader returns a Reader fetching objects through f.
func NewReader(f Fetcher) *Reader {
	return &Reader{f: f, objs: map[crypt.ChunkID]pipeline.Ref{}}
}

// Objects returns the Ref of every object read so far.
func (r *Reader) Objects() map[crypt.ChunkID]pipeline.Ref {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[crypt.ChunkID]pipeline.Ref, len(r.objs))
	for k, v := range r.objs {
		out[k] = v
	}
	return out
}

// get fetches, authenticates and decodes one object.
func (r *Reader) get(ctx context.Context, p Ptr) (*object, error) {
	sealed, err := r.f.GetSealed(ctx, p.Ref)
	if err != nil {
		return nil, fmt.Errorf("snapshot: object %s: %w", p.Ref.ID, err)
	}
	plain, err := crypt.OpenWithKey(nil, p.Key, p.Ref.ID, sealed)
	if err != nil {
		return nil, fmt.Errorf("snapshot: object %s: %w", p.Ref.ID, err)
	}
	if len(plain) != int(p.Ref.Size) {
		return nil, fmt.Errorf("%w: object %s of %d bytes, pointer says %d", ErrCorrupt, p.Ref.ID, len(plain), p.Ref.Size)
	}
	o, err := decodeObject(plain)
	if err != nil {
		return nil, fmt.Errorf("snapshot: object %s: %w", p.Ref.ID, err)
	}
	r.mu.Lock()
	r.objs[p.Ref.ID] = p.Ref
	r.mu.Unlock()
	return o, nil
}

// walk visits the leaf pages of kind under p in order.
func (r *Reader) walk(ctx context.Context, p Ptr, leaf uint8, depth int, visit func(*object) error) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: index pages nested deeper than %d", ErrCorrupt, maxDepth)
	}
	o, err := r.get(ctx, p)
	if err != nil {
		return err
	}
	switch o.kind {
	case leaf:
		return visit(o)
	case kindIndex:
		for _, c := range o.ptrs {
			if err := r.walk(ctx, c, leaf, depth+1, visit); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("%w: object %s of kind %d where kind %d was expected", ErrCorrupt, p.Ref.ID, o.kind, leaf)
}

// Root reads a snapshot's root object.
func (r *Reader) Root(ctx context.Context, p Ptr) (Info, Entry, error) {
	o, err := r.get(ctx, p)
	if err != nil {
		return Info{}, Entry{}, err
	}
	if o.kind != kindRoot {
		return Info{}, Entry{}, fmt.Errorf("%w: object %s is not a snapshot root", ErrCorrupt, p.Ref.ID)
	}
	return o.info, o.entries[0], nil
}

// Dir reads the directory whose tree p points to: its entries in name order, each file's
// extents complete (extent trees are read too).
func (r *Reader) Dir(ctx context.Context, p Ptr) ([]Entry, error) {
	var out []Entry
	err := r.walk(ctx, p, kindEntries, 0, func(o *object) error {
		for i, x := range o.entries {
			if len(out) > 0 && x.Name <= out[len(out)-1].Name {
				return fmt.Errorf("%w: entry %q out of order across pages", ErrCorrupt, x.Name)
			}
			if t := o.trees[i]; t != nil {
				xs, err := r.extents(ctx, *t)
				if err != nil {
					return fmt.Errorf("%q: %w", x.Name, err)
				}
				x.Extents = xs
			}
			out = append(out, x)
		}
		return nil
	})
	return out, err
}

// extents reads a file's extent tree.
func (r *Reader) extents(ctx context.Context, p Ptr) ([]Extent, error) {
	var out []Extent
	err := r.walk(ctx, p, kindExtents, 0, func(o *object) error {
		for _, x := range o.extents {
			if n := len(out); n > 0 && x.Off < out[n-1].Off+out[n-1].Len {
				return fmt.Errorf("%w: extent at %d overlaps across pages", ErrCorrupt, x.Off)
			}
			out = append(out, x)
		}
		return nil
	})
	return out, err
}
