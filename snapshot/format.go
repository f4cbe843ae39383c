package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
)

// Errors. Decoders wrap ErrCorrupt with what is wrong; an object that does not
// authenticate is crypt.ErrAuth (wrapped) instead.
var (
	// ErrCorrupt means an object decrypted but is not well formed (a writer's bug, or an
	// object of a newer format under an old version byte).
	ErrCorrupt = errors.New("snapshot: corrupt object")
	// ErrVersion means an object carries a format version this build does not know.
	ErrVersion = errors.New("snapshot: unknown object version")
	// ErrTooLarge means a single entry does not fit in one object (MaxObject).
	ErrTooLarge = errors.New("snapshot: entry too large")
)

// Object format version and kinds (the second byte of every object).
const (
	objectV1 = 1

	kindEntries = 1 // leaf page of a directory: entries in name order
	kindIndex   = 2 // index page: pointers to the pages below (of a directory or extent tree)
	kindExtents = 3 // leaf page of a file's extent tree: extents in offset order
	kindRoot    = 4 // snapshot root: Info and the top directory's entry
)

// Content kinds of an entry.
const (
	contentNone    = 0 // device, fifo, socket, or a file with no extents
	contentExtents = 1 // extents listed in the entry
	contentTree    = 2 // pointer to an extent tree
	contentDir     = 3 // pointer to the directory's tree
)

// Extent kinds.
const (
	extentChunk  = 1
	extentInline = 2
)

// Limits. They bound what a decoder allocates and what one object may hold.
const (
	// MaxObject is the largest object, in bytes: the largest chunk the pipeline takes.
	MaxObject = 8 << 20
	// maxName is the longest entry name (volume.MaxName).
	maxName = 255
	// maxXattr is the largest extended attribute value (volume.MaxXattrSize).
	maxXattr = 64 << 10
	// maxFileSize bounds sizes and offsets (volume.MaxFileSize).
	maxFileSize = 1 << 50
	// maxDepth bounds the nesting of index pages, so a hostile or broken tree cannot make
	// a reader recurse without end. 8 levels of even 2-way fan-out pages cover any drive.
	maxDepth = 16
	// inlineExtents: a file with more extents than this, or whose extents take more than
	// inlineExtentBytes, keeps them in an extent tree of their own, so a directory page
	// stays small whatever its files' sizes.
	inlineExtents     = 16
	inlineExtentBytes = 64 << 10
)

// Ptr points to an object or a data chunk: the chunk's Ref (identity, sizes and fragment
// holders) and its read key. A Ptr to a directory's tree is a capability for that subtree.
type Ptr struct {
	Ref pipeline.Ref
	Key crypt.ChunkKey
}

// Attr is an inode's attributes as a snapshot records them.
type Attr struct {
	Mode                uint32 // file type and permission bits, syscall.S_IF*
	Nlink               uint32
	UID, GID            uint32
	Rdev                uint32
	Size                int64
	Atime, Mtime, Ctime time.Time
}

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// Extent is a piece of a file's content at Off: the first Len bytes of a chunk (Ref, and
// Key once decoded or built) or Len inline bytes (Data). Gaps are holes.
type Extent struct {
	Off  int64
	Len  int64
	Ref  *pipeline.Ref
	Key  crypt.ChunkKey // the chunk's read key; the Builder fills it in
	Data []byte
}

// Entry is one name in a directory and the inode it names. Entries of one snapshot that
// share Ino are hard links to one inode; each carries the inode in full, so a subtree
// holds everything its files need.
type Entry struct {
	Name    string
	Ino     uint64
	Attr    Attr
	Xattrs  []Xattr  // sorted by name
	Extents []Extent // regular files and symlinks (a symlink's target is one inline extent)
	Dir     *Ptr     // directories: the directory's tree
}

// IsDir reports whether e is a directory.
func (e *Entry) IsDir() bool { return e.Attr.Mode&syscall.S_IFMT == syscall.S_IFDIR }

// Info is what a snapshot's root records besides the top directory.
type Info struct {
	Time    time.Time // when the snapshot was taken
	NextIno uint64    // the drive's last allocated inode number, so a restore allocates above it
}

// enc is an append-only encoder.
type enc struct{ b []byte }

func (e *enc) u8(v uint8)   { e.b = append(e.b, v) }
func (e *enc) u16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *enc) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *enc) raw(p []byte) { e.b = append(e.b, p...) }
func (e *enc) time(t time.Time) {
	e.u64(uint64(t.Unix()))
	e.u32(uint32(t.Nanosecond()))
}

func (e *enc) ref(r *pipeline.Ref) error {
	if len(r.Fragments) > 255 {
		return fmt.Errorf("snapshot: chunk %s has %d fragments", r.ID, len(r.Fragments))
	}
	e.raw(r.ID[:])
	e.u32(r.Size)
	e.u32(r.SealedLen)
	e.u8(r.K)
	e.u8(r.M)
	e.u8(uint8(len(r.Fragments)))
	for _, f := range r.Fragments {
		if len(f.Peer) > 255 {
			return fmt.Errorf("snapshot: chunk %s: peer ID of %d bytes", r.ID, len(f.Peer))
		}
		e.raw(f.ID[:])
		e.u8(uint8(len(f.Peer)))
		e.raw([]byte(f.Peer))
	}
	return nil
}

func (e *enc) ptr(p *Ptr) error {
	if err := e.ref(&p.Ref); err != nil {
		return err
	}
	e.raw(p.Key[:])
	return nil
}

func (e *enc) attr(a *Attr) {
	e.u32(a.Mode)
	e.u32(a.Nlink)
	e.u32(a.UID)
	e.u32(a.GID)
	e.u32(a.Rdev)
	e.u64(uint64(a.Size))
	e.time(a.Atime)
	e.time(a.Mtime)
	e.time(a.Ctime)
}

func (e *enc) extent(x *Extent) error {
	e.u64(uint64(x.Off))
	e.u32(uint32(x.Len))
	if x.Ref == nil {
		if int64(len(x.Data)) != x.Len {
			return fmt.Errorf("snapshot: inline extent at %d: %d bytes, length %d", x.Off, len(x.Data), x.Len)
		}
		e.u8(extentInline)
		e.raw(x.Data)
		return nil
	}
	e.u8(extentChunk)
	e.raw(x.Key[:])
	return e.ref(x.Ref)
}

// entry encodes an entry whose extents are already decided to be inline or in a tree
// (tree != nil).
func (e *enc) entry(x *Entry, tree *Ptr) error {
	if len(x.Name) > maxName {
		return fmt.Errorf("snapshot: name of %d bytes", len(x.Name))
	}
	e.u8(uint8(len(x.Name)))
	e.raw([]byte(x.Name))
	e.u64(x.Ino)
	e.attr(&x.Attr)
	if len(x.Xattrs) > 0xffff {
		return fmt.Errorf("snapshot: %q: %d xattrs", x.Name, len(x.Xattrs))
	}
	e.u16(uint16(len(x.Xattrs)))
	for _, xa := range x.Xattrs {
		if len(xa.Name) > 255 || len(xa.Value) > maxXattr {
			return fmt.Errorf("snapshot: %q: xattr of %d+%d bytes", x.Name, len(xa.Name), len(xa.Value))
		}
		e.u8(uint8(len(xa.Name)))
		e.raw([]byte(xa.Name))
		e.u32(uint32(len(xa.Value)))
		e.raw(xa.Value)
	}
	switch {
	case x.IsDir():
		if x.Dir == nil {
			return fmt.Errorf("snapshot: BUG: directory %q without its tree", x.Name)
		}
		e.u8(contentDir)
		return e.ptr(x.Dir)
	case tree != nil:
		e.u8(contentTree)
		return e.ptr(tree)
	case len(x.Extents) == 0:
		e.u8(contentNone)
		return nil
	}
	e.u8(contentExtents)
	e.u32(uint32(len(x.Extents)))
	for i := range x.Extents {
		if err := e.extent(&x.Extents[i]); err != nil {
			return err
		}
	}
	return nil
}

// header starts an object of kind with count items.
func header(kind uint8, count int) *enc {
	e := &enc{b: make([]byte, 0, 256)}
	e.u8(objectV1)
	e.u8(kind)
	e.u32(uint32(count))
	return e
}

// dec is a decoder over one object; the first error sticks and later reads return zeros.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
}

func (d *dec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b) < n {
		d.fail("truncated")
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) u8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *dec) u16() uint16 {
	if p := d.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *dec) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *dec) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *dec) time() time.Time {
	s, ns := int64(d.u64()), d.u32()
	if ns >= 1e9 {
		d.fail("nanoseconds %d", ns)
	}
	return time.Unix(s, int64(ns))
}

func (d *dec) ref() pipeline.Ref {
	var r pipeline.Ref
	copy(r.ID[:], d.take(32))
	r.Size = d.u32()
	r.SealedLen = d.u32()
	r.K = d.u8()
	r.M = d.u8()
	n := int(d.u8())
	if d.err != nil {
		return r
	}
	if r.K == 0 || int(r.K)+int(r.M) != n || r.Size > MaxObject || r.SealedLen < r.Size {
		d.fail("chunk %s: shape %d+%d with %d fragments, %d/%d bytes", r.ID, r.K, r.M, n, r.Size, r.SealedLen)
		return r
	}
	r.Fragments = make([]pipeline.Fragment, n)
	for i := range r.Fragments {
		copy(r.Fragments[i].ID[:], d.take(32))
		r.Fragments[i].Peer = swarm.PeerID(d.take(int(d.u8())))
	}
	return r
}

func (d *dec) ptr() Ptr {
	var p Ptr
	p.Ref = d.ref()
	copy(p.Key[:], d.take(32))
	return p
}

func (d *dec) attr() Attr {
	a := Attr{Mode: d.u32(), Nlink: d.u32(), UID: d.u32(), GID: d.u32(), Rdev: d.u32(), Size: int64(d.u64())}
	a.Atime, a.Mtime, a.Ctime = d.time(), d.time(), d.time()
	if a.Size < 0 || a.Size > maxFileSize {
		d.fail("size %d", a.Size)
	}
	return a
}

func (d *dec) extent() Extent {
	x := Extent{Off: int64(d.u64()), Len: int64(d.u32())}
	if x.Off < 0 || x.Off > maxFileSize || x.Len <= 0 {
		d.fail("extent [%d,+%d)", x.Off, x.Len)
		return x
	}
	switch k := d.u8(); k {
	case extentInline:
		x.Data = d.take(int(x.Len))
	case extentChunk:
		copy(x.Key[:], d.take(32))
		r := d.ref()
		if d.err == nil && x.Len > int64(r.Size) {
			d.fail("extent of %d bytes in a chunk of %d", x.Len, r.Size)
		}
		x.Ref = &r
	default:
		d.fail("extent kind %d", k)
	}
	return x
}

// checkExtents checks that extents are in order and do not overlap.
func checkExtents(d *dec, xs []Extent) {
	var end int64
	for i, x := range xs {
		if x.Off < end {
			d.fail("extent %d at %d overlaps or is out of order", i, x.Off)
			return
		}
		end = x.Off + x.Len
		if end > maxFileSize {
			d.fail("extent %d ends past the largest file", i)
			return
		}
	}
}

// checkName rejects names a directory cannot hold.
func checkName(d *dec, name string) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		d.fail("entry name %q", name)
	}
}

// entry decodes one entry; a contentTree entry comes back with tree set and no extents
// (the reader fetches them).
func (d *dec) entry(root bool) (x Entry, tree *Ptr) {
	x.Name = string(d.take(int(d.u8())))
	if !root {
		checkName(d, x.Name)
	} else if x.Name != "" {
		d.fail("root entry named %q", x.Name)
	}
	x.Ino = d.u64()
	if x.Ino == 0 {
		d.fail("inode 0")
	}
	x.Attr = d.attr()
	n := int(d.u16())
	if n > len(d.b) { // each xattr takes at least 5 bytes: checks the count before allocating
		d.fail("%d xattrs in %d bytes", n, len(d.b))
		return x, nil
	}
	var prev string
	for i := 0; i < n && d.err == nil; i++ {
		xa := Xattr{Name: string(d.take(int(d.u8())))}
		vl := d.u32()
		if vl > maxXattr {
			d.fail("xattr of %d bytes", vl)
		}
		xa.Value = d.take(int(vl))
		if xa.Name == "" || (i > 0 && xa.Name <= prev) {
			d.fail("xattr %q out of order", xa.Name)
		}
		prev = xa.Name
		x.Xattrs = append(x.Xattrs, xa)
	}
	typ := x.Attr.Mode & syscall.S_IFMT
	switch c := d.u8(); c {
	case contentNone:
	case contentExtents:
		n := int(d.u32())
		if n == 0 || n > len(d.b)/13 { // an extent takes at least 13 bytes
			d.fail("%d extents in %d bytes", n, len(d.b))
			return x, nil
		}
		x.Extents = make([]Extent, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			x.Extents = append(x.Extents, d.extent())
		}
		checkExtents(d, x.Extents)
	case contentTree:
		p := d.ptr()
		tree = &p
	case contentDir:
		p := d.ptr()
		x.Dir = &p
	default:
		d.fail("content kind %d", c)
	}
	switch {
	case d.err != nil:
	case (typ == syscall.S_IFDIR) != (x.Dir != nil):
		d.fail("%q: mode %o with a directory tree %v", x.Name, x.Attr.Mode, x.Dir != nil)
	case typ != syscall.S_IFREG && typ != syscall.S_IFLNK && (x.Extents != nil || tree != nil):
		d.fail("%q: mode %o with content", x.Name, x.Attr.Mode)
	}
	return x, tree
}

// object is a decoded object: its kind and the items of that kind.
type object struct {
	kind    uint8
	entries []Entry // kindEntries, kindRoot (one)
	trees   []*Ptr  // kindEntries: entries[i]'s extent tree, or nil
	ptrs    []Ptr   // kindIndex
	extents []Extent
	info    Info // kindRoot
}

// decodeObject parses one object's plaintext. It never panics and allocates in proportion
// to len(b) at most.
func decodeObject(b []byte) (*object, error) {
	if len(b) > MaxObject {
		return nil, fmt.Errorf("%w: object of %d bytes", ErrCorrupt, len(b))
	}
	d := &dec{b: b}
	if v := d.u8(); d.err == nil && v != objectV1 {
		return nil, fmt.Errorf("%w: %d", ErrVersion, v)
	}
	o := &object{kind: d.u8()}
	n := int(d.u32())
	if d.err != nil {
		return nil, d.err
	}
	// Every item takes at least 10 bytes, so a count above that is corrupt: checked before
	// allocating.
	if n > len(d.b)/10+1 {
		return nil, fmt.Errorf("%w: %d items in %d bytes", ErrCorrupt, n, len(d.b))
	}
	switch o.kind {
	case kindEntries:
		for i := 0; i < n && d.err == nil; i++ {
			x, t := d.entry(false)
			if i > 0 && x.Name <= o.entries[i-1].Name {
				d.fail("entry %q out of order", x.Name)
			}
			o.entries = append(o.entries, x)
			o.trees = append(o.trees, t)
		}
	case kindIndex:
		if n == 0 {
			d.fail("empty index")
		}
		for i := 0; i < n && d.err == nil; i++ {
			o.ptrs = append(o.ptrs, d.ptr())
		}
	case kindExtents:
		if n == 0 {
			d.fail("empty extent page")
		}
		for i := 0; i < n && d.err == nil; i++ {
			o.extents = append(o.extents, d.extent())
		}
		checkExtents(d, o.extents)
	case kindRoot:
		if n != 1 {
			d.fail("root with %d entries", n)
			break
		}
		o.info = Info{Time: d.time(), NextIno: d.u64()}
		x, t := d.entry(true)
		if d.err == nil && (!x.IsDir() || t != nil) {
			d.fail("root entry is not a directory")
		}
		o.entries, o.trees = []Entry{x}, []*Ptr{t}
	default:
		return nil, fmt.Errorf("%w: object kind %d", ErrCorrupt, o.kind)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	return o, nil
}
