package volume

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/scatterfs/scatter/pipeline"
)

// Chunk reference counts and unreferenced chunks; see docs/format.md "Metadata store".
var (
	bChunkRefs = []byte("chunkrefs")
	bGarbage   = []byte("garbage")
)

func init() { allBuckets = append(allBuckets, bChunkRefs, bGarbage) }

func inoKey(ino uint64) []byte { return binary.BigEndian.AppendUint64(nil, ino) }

func keyIno(k []byte) uint64 { return binary.BigEndian.Uint64(k) }

func direntKey(parent uint64, name string) []byte {
	return append(inoKey(parent), name...)
}

func pairKey(ino uint64, n uint64) []byte {
	return binary.BigEndian.AppendUint64(inoKey(ino), n)
}

func xattrKey(ino uint64, name string) []byte { return append(inoKey(ino), name...) }

func getAttr(tx *bolt.Tx, ino uint64) (Attr, error) {
	b := tx.Bucket(bInodes).Get(inoKey(ino))
	if b == nil {
		return Attr{}, fmt.Errorf("inode %d: %w", ino, ErrNotFound)
	}
	return decodeAttr(ino, b)
}

func putAttr(tx *bolt.Tx, a *Attr) error {
	if err := snapDirty(tx, a.Ino); err != nil { // snapdirty.go: the next snapshot rebuilds its directories
		return err
	}
	return tx.Bucket(bInodes).Put(inoKey(a.Ino), encodeAttr(a))
}

func getDirent(tx *bolt.Tx, parent uint64, name string) (dirent, bool, error) {
	b := tx.Bucket(bDirents).Get(direntKey(parent, name))
	if b == nil {
		return dirent{}, false, nil
	}
	d, err := decodeDirent(b)
	return d, err == nil, err
}

// putDirent adds name to parent with a fresh listing cookie.
func putDirent(tx *bolt.Tx, parent uint64, name string, ino uint64, typ uint32) error {
	if err := snapDirty(tx, parent); err != nil {
		return err
	}
	cb := tx.Bucket(bCookies)
	c, err := cb.NextSequence()
	if err != nil {
		return err
	}
	if err := cb.Put(pairKey(parent, c), []byte(name)); err != nil {
		return err
	}
	return tx.Bucket(bDirents).Put(direntKey(parent, name), encodeDirent(dirent{Ino: ino, Type: typ, Cookie: c}))
}

func delDirent(tx *bolt.Tx, parent uint64, name string, d dirent) error {
	if err := snapDirty(tx, parent); err != nil {
		return err
	}
	if err := tx.Bucket(bCookies).Delete(pairKey(parent, d.Cookie)); err != nil {
		return err
	}
	return tx.Bucket(bDirents).Delete(direntKey(parent, name))
}

// dirEmpty reports whether directory ino has no entries.
func dirEmpty(tx *bolt.Tx, ino uint64) bool {
	p := inoKey(ino)
	k, _ := tx.Bucket(bDirents).Cursor().Seek(p)
	return k == nil || !bytes.HasPrefix(k, p)
}

// deletePrefix deletes every key of bucket b that starts with prefix.
func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// deleteInode removes an inode and everything keyed by it.
func deleteInode(tx *bolt.Tx, ino uint64) error {
	k := inoKey(ino)
	if err := snapDirty(tx, ino); err != nil {
		return err
	}
	for _, b := range [][]byte{bInodes, bJournal, bOrphans} {
		if err := tx.Bucket(b).Delete(k); err != nil {
			return err
		}
	}
	if err := deleteExtents(tx, ino); err != nil {
		return err
	}
	return deletePrefix(tx.Bucket(bXattrs), k)
}

// extentAt is an extent with its file offset.
type extentAt struct {
	Off int64
	extent
}

func (e extentAt) end() int64 { return e.Off + e.Len }

// extentsIn returns the extents of ino that overlap [off, end), in order.
func extentsIn(tx *bolt.Tx, ino uint64, off, end int64) ([]extentAt, error) {
	c := tx.Bucket(bExtents).Cursor()
	p := inoKey(ino)
	k, val := c.Seek(pairKey(ino, uint64(off)))
	// The extent holding off starts at or before it: step back one.
	if k == nil || !bytes.HasPrefix(k, p) || int64(binary.BigEndian.Uint64(k[8:])) > off {
		var pk, pv []byte
		if k == nil {
			pk, pv = c.Last()
		} else {
			pk, pv = c.Prev()
		}
		if pk != nil && bytes.HasPrefix(pk, p) {
			k, val = pk, pv
		} else {
			k, val = c.Seek(pairKey(ino, uint64(off)))
		}
	}
	var out []extentAt
	for ; k != nil && bytes.HasPrefix(k, p); k, val = c.Next() {
		o := int64(binary.BigEndian.Uint64(k[8:]))
		if o >= end {
			break
		}
		e, err := decodeExtent(val)
		if err != nil {
			return nil, fmt.Errorf("inode %d extent at %d: %w", ino, o, err)
		}
		if o+e.Len <= off {
			continue
		}
		out = append(out, extentAt{o, e})
	}
	return out, nil
}

// putExtent stores e, replacing any extent at the same offset, and keeps chunk
// reference counts.
func putExtent(tx *bolt.Tx, ino uint64, e extentAt) error {
	if err := delExtent(tx, ino, e.Off); err != nil {
		return err
	}
	if err := snapDirty(tx, ino); err != nil {
		return err
	}
	if e.Ref != nil {
		if err := refChunk(tx, e.Ref, 1); err != nil {
			return err
		}
	}
	return tx.Bucket(bExtents).Put(pairKey(ino, uint64(e.Off)), encodeExtent(e.extent))
}

// delExtent deletes the extent at off, if any, and keeps chunk reference counts.
func delExtent(tx *bolt.Tx, ino uint64, off int64) error {
	b := tx.Bucket(bExtents)
	k := pairKey(ino, uint64(off))
	old := b.Get(k)
	if old == nil {
		return nil
	}
	e, err := decodeExtent(old)
	if err != nil {
		return fmt.Errorf("inode %d extent at %d: %w", ino, off, err)
	}
	if err := snapDirty(tx, ino); err != nil {
		return err
	}
	if e.Ref != nil {
		if err := refChunk(tx, e.Ref, -1); err != nil {
			return err
		}
	}
	return b.Delete(k)
}

// deleteExtents deletes every extent of ino.
func deleteExtents(tx *bolt.Tx, ino uint64) error {
	exts, err := extentsIn(tx, ino, 0, MaxFileSize)
	if err != nil {
		return err
	}
	for _, e := range exts {
		if err := delExtent(tx, ino, e.Off); err != nil {
			return err
		}
	}
	return nil
}

// refChunk adds delta to the number of extents referencing chunk r. A chunk no extent
// references is listed in the garbage bucket (with its Ref, to delete its fragments
// from their holders); a chunk referenced again leaves it.
func refChunk(tx *bolt.Tx, r *pipeline.Ref, delta int64) error {
	rb, gb := tx.Bucket(bChunkRefs), tx.Bucket(bGarbage)
	var n int64
	if v := rb.Get(r.ID[:]); v != nil {
		c, err := decodeCount(v)
		if err != nil {
			return fmt.Errorf("chunk %s: %w", r.ID, err)
		}
		n = c
	}
	n += delta
	switch {
	case n < 0:
		return fmt.Errorf("%w: chunk %s referenced %d times", errBadRecord, r.ID, n)
	case n == 0:
		if err := rb.Delete(r.ID[:]); err != nil {
			return err
		}
		return gb.Put(r.ID[:], encodeGarbage(uint64(tx.ID()), r)) // with its transaction: see Garbage
	}
	if n == 1 && delta > 0 {
		if err := gb.Delete(r.ID[:]); err != nil {
			return err
		}
	}
	return rb.Put(r.ID[:], encodeCount(n))
}

// hasChunkExtents reports whether ino has any extent stored on the peers.
func hasChunkExtents(tx *bolt.Tx, ino uint64) (bool, error) {
	exts, err := extentsIn(tx, ino, 0, MaxFileSize)
	if err != nil {
		return false, err
	}
	for _, e := range exts {
		if e.Ref != nil {
			return true, nil
		}
	}
	return false, nil
}

// truncateExtents drops content of ino at and beyond size.
func truncateExtents(tx *bolt.Tx, ino uint64, size int64) error {
	exts, err := extentsIn(tx, ino, size, MaxFileSize)
	if err != nil {
		return err
	}
	for _, e := range exts {
		if e.Off >= size {
			if err := delExtent(tx, ino, e.Off); err != nil {
				return err
			}
			continue
		}
		e.Len = size - e.Off
		if e.Data != nil {
			e.Data = e.Data[:e.Len]
		}
		if err := putExtent(tx, ino, e); err != nil {
			return err
		}
	}
	return nil
}
