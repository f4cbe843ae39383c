package volume

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/snapshot"
)

// Metadata snapshots: the volume's bbolt state written as a snapshot tree (package
// snapshot) and a fresh metadata store rebuilt from one. Layout of the two buckets in
// docs/format.md "Metadata store".
var (
	// snapObjs lists the objects of the last snapshot taken or restored (chunk ID →
	// extent record of the object's chunk), so the next snapshot uploads only new objects.
	bSnapObjs = []byte("snapobjs")
	// snapState holds the last snapshot's root pointer, the transaction it saw and the
	// highest root record sequence seen.
	bSnapState = []byte("snapstate")

	snapKeyRoot = []byte("root") // snapshot.Ptr of the last snapshot's root object
	snapKeyTx   = []byte("tx")   // u64: bbolt transaction ID the last snapshot is current at
	snapKeySeq  = []byte("seq")  // u64: highest root record sequence published or seen
)

func init() { allBuckets = append(allBuckets, bSnapObjs, bSnapState) }

// SnapshotChanged reports whether the metadata store committed anything since the last
// snapshot was taken or restored (or no snapshot was ever taken). It may report a change
// that changed nothing a snapshot holds (Open commits its own bookkeeping); a snapshot of
// an unchanged tree then uploads only its root object.
func (v *Volume) SnapshotChanged() (bool, error) {
	var changed bool
	err := v.db.View(func(tx *bolt.Tx) error {
		at := tx.Bucket(bSnapState).Get(snapKeyTx)
		changed = len(at) != 8 || binary.BigEndian.Uint64(at) != uint64(tx.ID())
		return nil
	})
	return changed, err
}

// Version returns the metadata store's last committed transaction ID, which grows with
// every commit: a caller that polls it can tell when changes have settled.
func (v *Volume) Version() (uint64, error) {
	var id uint64
	err := v.db.View(func(tx *bolt.Tx) error {
		id = uint64(tx.ID())
		return nil
	})
	return id, err
}

// SyncDir is fsync(2) of a directory. Namespace changes are durable in the metadata store
// once they return, so it only calls Config.DirSync, if set, and returns its error.
func (v *Volume) SyncDir(ctx context.Context) error {
	if v.cfg.DirSync == nil {
		return nil
	}
	return v.cfg.DirSync(ctx)
}

// LastSnapshot returns the root of the last snapshot taken or restored, if any.
func (v *Volume) LastSnapshot() (snapshot.Ptr, bool, error) {
	var p snapshot.Ptr
	var ok bool
	err := v.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bSnapState).Get(snapKeyRoot)
		if b == nil {
			return nil
		}
		ok = true
		return p.UnmarshalBinary(b)
	})
	return p, ok, err
}

// SnapshotSeq returns the highest root record sequence number recorded with
// SetSnapshotSeq (0 if none).
func (v *Volume) SnapshotSeq() (uint64, error) {
	var seq uint64
	err := v.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bSnapState).Get(snapKeySeq); len(b) == 8 {
			seq = binary.BigEndian.Uint64(b)
		}
		return nil
	})
	return seq, err
}

// SetSnapshotSeq records seq as the highest root record sequence seen, if it is higher
// than the one recorded. A root record with a lower sequence is a replay.
func (v *Volume) SetSnapshotSeq(seq uint64) error {
	return v.db.Update(func(tx *bolt.Tx) error {
		return snapSetSeq(tx, seq)
	})
}

func snapSetSeq(tx *bolt.Tx, seq uint64) error {
	b := tx.Bucket(bSnapState)
	if old := b.Get(snapKeySeq); len(old) == 8 && binary.BigEndian.Uint64(old) >= seq {
		return nil
	}
	// The sequence is nothing a snapshot holds: a store current with the last snapshot
	// stays current (publishing a snapshot must not make SnapshotChanged report a change).
	if at := b.Get(snapKeyTx); len(at) == 8 && binary.BigEndian.Uint64(at) == uint64(tx.ID())-1 {
		if err := b.Put(snapKeyTx, binary.BigEndian.AppendUint64(nil, uint64(tx.ID()))); err != nil {
			return err
		}
	}
	return b.Put(snapKeySeq, binary.BigEndian.AppendUint64(nil, seq))
}

// snapDir is a directory loaded for a snapshot: its inode and its entries in name order.
type snapDir struct {
	ino     uint64
	entries []snapshot.Entry
}

// Snapshot writes the drive's metadata as a snapshot through store and returns its root.
// Objects the last snapshot already put on the peers are not put again, so the upload is
// the pages along the paths that changed. Directories that did not change since the last
// snapshot this process took are neither read nor encoded: their trees are reused
// (snapdirty.go), so the work too is proportional to the directories that changed (the
// first snapshot after Open reads the whole tree). The changed directories are read in
// one read transaction and uploaded after it ends (a read transaction held during uploads
// would stall writers that grow the file).
//
// Data still staged is not in the snapshot: a file with staged bytes appears with the
// extents last uploaded (the staged ranges read as their previous content, or as holes)
// and its recorded size. Callers that want every byte call SyncAll first.
func (v *Volume) Snapshot(ctx context.Context, store snapshot.Store, keys *crypt.Keys) (snapshot.Ptr, snapshot.Stats, error) {
	// A snapshot holds every namespace change acknowledged before it was asked for, even
	// one still in the commit window: the snapshot reads the last commit.
	if err := v.commit.flush(); err != nil {
		return snapshot.Ptr{}, snapshot.Stats{}, fmt.Errorf("volume: snapshot: %w", err)
	}
	c := &v.snap
	c.mu.Lock()
	defer c.mu.Unlock()
	var (
		dirs   []*snapDir // pre-order: a directory before its subdirectories
		reused []uint64   // unchanged cached directories whose parents are rebuilt
		top    snapshot.Entry
		info   snapshot.Info
		known  = map[crypt.ChunkID]pipeline.Ref{}
		seenTx uint64
	)
	err := v.db.View(func(tx *bolt.Tx) error {
		seenTx = uint64(tx.ID())
		if err := tx.Bucket(bSnapObjs).ForEach(func(k, val []byte) error {
			e, err := decodeExtent(val)
			if err != nil || e.Ref == nil || len(k) != len(crypt.ChunkID{}) {
				return fmt.Errorf("snapshot object %x: %w", k, errBadRecord)
			}
			known[crypt.ChunkID(k)] = *e.Ref
			return nil
		}); err != nil {
			return err
		}
		// The cache holds the last snapshot recorded, or nothing (a failed snapshot
		// leaves both as they were; anything else that records a root empties it).
		if c.root == nil || !bytes.Equal(c.root, tx.Bucket(bSnapState).Get(snapKeyRoot)) {
			c.reset()
		}
		dirty, err := c.dirtyDirs(tx)
		if err != nil {
			return err
		}
		rebuild := func(d uint64) bool { _, ok := c.dirs[d]; return !ok || dirty[d] }
		info = snapshot.Info{Time: time.Now(), NextIno: tx.Bucket(bInodes).Sequence()}
		if top, err = snapEntry(tx, RootIno, ""); err != nil {
			return err
		}
		if !rebuild(RootIno) {
			reused = append(reused, RootIno)
			return nil
		}
		loaded := map[uint64]snapshot.Entry{} // hard-linked inodes, loaded once
		stack := []uint64{RootIno}
		for len(stack) > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			d := &snapDir{ino: stack[len(stack)-1]}
			stack = stack[:len(stack)-1]
			dirs = append(dirs, d)
			p := inoKey(d.ino)
			cur := tx.Bucket(bDirents).Cursor()
			for k, val := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, val = cur.Next() {
				de, err := decodeDirent(val)
				if err != nil {
					return fmt.Errorf("entry %q of %d: %w", k[8:], d.ino, err)
				}
				name := string(k[8:])
				e, ok := loaded[de.Ino]
				if !ok {
					if e, err = snapEntry(tx, de.Ino, name); err != nil {
						return err
					}
					if e.Attr.Nlink > 1 && !e.IsDir() {
						loaded[de.Ino] = e
					}
				}
				e.Name = name
				d.entries = append(d.entries, e)
				switch {
				case !e.IsDir():
				case rebuild(de.Ino):
					stack = append(stack, de.Ino)
				default:
					reused = append(reused, de.Ino)
				}
			}
		}
		return nil
	})
	if err != nil {
		return snapshot.Ptr{}, snapshot.Stats{}, fmt.Errorf("volume: snapshot: %w", err)
	}

	b := snapshot.NewBuilder(store, keys, known)
	next := make(map[uint64]*snapCached, len(c.dirs)+len(dirs))
	// Unchanged subtrees: every directory below an unchanged one is unchanged too (a
	// change marks its ancestors), so the cache's entries carry over whole.
	for len(reused) > 0 {
		d := reused[len(reused)-1]
		reused = reused[:len(reused)-1]
		cd := c.dirs[d]
		if cd == nil {
			return snapshot.Ptr{}, snapshot.Stats{}, fmt.Errorf("volume: snapshot: BUG: directory %d reused but not cached", d)
		}
		next[d] = cd
		b.Adopt(cd.refs)
		reused = append(reused, cd.subdirs...)
	}
	for _, d := range slices.Backward(dirs) { // subdirectories first
		n := &snapCached{}
		for i := range d.entries {
			e := &d.entries[i]
			if !e.IsDir() {
				n.kids = append(n.kids, e.Ino)
				continue
			}
			n.subdirs = append(n.subdirs, e.Ino)
			cd := next[e.Ino]
			if cd == nil {
				return snapshot.Ptr{}, snapshot.Stats{}, fmt.Errorf("volume: snapshot: BUG: directory %d built before its subdirectory %d", d.ino, e.Ino)
			}
			p := cd.ptr
			e.Dir = &p
		}
		p, refs, err := b.DirRefs(ctx, d.entries)
		if err != nil {
			return snapshot.Ptr{}, snapshot.Stats{}, fmt.Errorf("volume: snapshot of directory %d: %w", d.ino, err)
		}
		n.ptr, n.refs = p, refs
		next[d.ino] = n
	}
	tp := next[RootIno].ptr
	top.Dir = &tp
	root, err := b.Root(ctx, info, top)
	if err != nil {
		return snapshot.Ptr{}, snapshot.Stats{}, fmt.Errorf("volume: snapshot: %w", err)
	}
	rb, err := v.snapRecord(root, b.Objects(), seenTx)
	if err != nil {
		return snapshot.Ptr{}, snapshot.Stats{}, err
	}
	c.commit(rb, next)
	return root, b.Stats(), nil
}

// snapRecord records root as the last snapshot and objs as its objects. The snapshot is
// current at the transaction after seenTx only if nothing else committed meanwhile.
func (v *Volume) snapRecord(root snapshot.Ptr, objs map[crypt.ChunkID]pipeline.Ref, seenTx uint64) ([]byte, error) {
	rb, err := root.MarshalBinary()
	if err != nil {
		return nil, err
	}
	err = v.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bSnapObjs); err != nil {
			return err
		}
		ob, err := tx.CreateBucket(bSnapObjs)
		if err != nil {
			return err
		}
		for id, ref := range objs {
			if err := ob.Put(id[:], encodeExtent(extent{Len: int64(ref.Size), Ref: &ref})); err != nil {
				return err
			}
		}
		sb := tx.Bucket(bSnapState)
		if err := sb.Put(snapKeyRoot, rb); err != nil {
			return err
		}
		if err := sb.Put(snapKeySeen, binary.BigEndian.AppendUint64(nil, seenTx)); err != nil {
			return err // the state it holds, for Garbage once it is published
		}
		at := uint64(0) // changed meanwhile: the next check sees a change
		if uint64(tx.ID()) == seenTx+1 {
			at = uint64(tx.ID())
		}
		if err := sb.Put(snapKeyTx, binary.BigEndian.AppendUint64(nil, at)); err != nil {
			return err
		}
		return snapDirtyClear(tx, seenTx) // the changes this snapshot holds
	})
	if err != nil {
		return nil, fmt.Errorf("volume: record snapshot: %w", err)
	}
	return rb, nil
}

// snapEntry loads inode ino as a snapshot entry named name.
func snapEntry(tx *bolt.Tx, ino uint64, name string) (snapshot.Entry, error) {
	a, err := getAttr(tx, ino)
	if err != nil {
		return snapshot.Entry{}, err
	}
	e := snapshot.Entry{Name: name, Ino: ino, Attr: snapshot.Attr{
		Mode: a.Mode, Nlink: a.Nlink, UID: a.UID, GID: a.GID, Rdev: a.Rdev, Size: a.Size,
		Atime: a.Atime, Mtime: a.Mtime, Ctime: a.Ctime,
	}}
	p := inoKey(ino)
	c := tx.Bucket(bXattrs).Cursor()
	for k, val := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, val = c.Next() {
		e.Xattrs = append(e.Xattrs, snapshot.Xattr{Name: string(k[8:]), Value: bytes.Clone(val)})
	}
	if a.IsDir() {
		return e, nil
	}
	exts, err := extentsIn(tx, ino, 0, MaxFileSize)
	if err != nil {
		return snapshot.Entry{}, err
	}
	for _, x := range exts {
		se := snapshot.Extent{Off: x.Off, Len: x.Len, Ref: x.Ref}
		if x.Ref == nil {
			se.Data = bytes.Clone(x.Data) // bbolt's bytes are valid only in the transaction
		}
		e.Extents = append(e.Extents, se)
	}
	return e, nil
}

// ErrRestoreExists is returned by Restore when the directory already holds a metadata
// store: a restore never overwrites one.
var ErrRestoreExists = errors.New("volume: metadata store exists; restore needs an empty directory")

// Restore builds the metadata store of cfg.Dir from the snapshot whose root object root
// points to, reading objects through r, and records it as the last snapshot (so the next
// snapshot uploads only what changes). The store is written under a temporary name and
// renamed into place once complete, so a failed restore leaves no store behind. Open
// the volume afterwards with Open.
func Restore(ctx context.Context, cfg Config, r *snapshot.Reader, root snapshot.Ptr) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	return restoreStore(cfg, "restore", func(db *bolt.DB) error { return snapRestore(ctx, db, r, root) })
}

func snapRestore(ctx context.Context, db *bolt.DB, r *snapshot.Reader, root snapshot.Ptr) error {
	info, top, err := r.Root(ctx, root)
	if err != nil {
		return err
	}
	if top.Ino != RootIno || top.Dir == nil {
		return fmt.Errorf("%w: snapshot root is inode %d, not a directory tree", errBadRecord, top.Ino)
	}
	maxIno, err := restoreTree(ctx, db, r, *top.Dir, func(tx *bolt.Tx) error { return snapPutInode(tx, &top) }, restoreHooks{})
	if err != nil {
		return err
	}
	maxIno = max(maxIno, info.NextIno)
	rb, err := root.MarshalBinary()
	if err != nil {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bInodes).SetSequence(maxIno); err != nil {
			return err
		}
		ob := tx.Bucket(bSnapObjs)
		for id, ref := range r.Objects() {
			if err := ob.Put(id[:], encodeExtent(extent{Len: int64(ref.Size), Ref: &ref})); err != nil {
				return err
			}
		}
		sb := tx.Bucket(bSnapState)
		if err := sb.Put(snapKeyRoot, rb); err != nil {
			return err
		}
		// The store now equals the snapshot: current at this very transaction.
		if err := sb.Put(snapKeySeen, binary.BigEndian.AppendUint64(nil, uint64(tx.ID()))); err != nil {
			return err
		}
		return sb.Put(snapKeyTx, binary.BigEndian.AppendUint64(nil, uint64(tx.ID())))
	})
}

// snapPutInode writes an entry's inode: attributes, xattrs and extents.
func snapPutInode(tx *bolt.Tx, e *snapshot.Entry) error {
	a := Attr{Ino: e.Ino, Mode: e.Attr.Mode, Nlink: e.Attr.Nlink, UID: e.Attr.UID, GID: e.Attr.GID,
		Rdev: e.Attr.Rdev, Size: e.Attr.Size, Atime: e.Attr.Atime, Mtime: e.Attr.Mtime, Ctime: e.Attr.Ctime}
	if err := putAttr(tx, &a); err != nil {
		return err
	}
	for _, x := range e.Xattrs {
		if len(x.Name) > MaxName || len(x.Value) > MaxXattrSize {
			return fmt.Errorf("%w: xattr of inode %d too large", errBadRecord, e.Ino)
		}
		if err := tx.Bucket(bXattrs).Put(xattrKey(e.Ino, x.Name), x.Value); err != nil {
			return err
		}
	}
	for _, x := range e.Extents {
		ext := extentAt{Off: x.Off, extent: extent{Len: x.Len, Ref: x.Ref, Data: x.Data}}
		if x.Ref == nil && x.Data == nil {
			ext.Data = []byte{}
		}
		if err := putExtent(tx, e.Ino, ext); err != nil {
			return err
		}
	}
	return nil
}
