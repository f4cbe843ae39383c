package volume

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/snapshot"
)

// Incremental snapshots. A snapshot is a function of the tree, so a directory whose
// listing, children's inodes (attributes, xattrs, extents) and subdirectories did not
// change since the last snapshot has the same tree Ptr and the same objects as then.
// Snapshot keeps, in memory, each directory's Ptr and objects from the last snapshot
// (snapCache) and rebuilds only the directories that changed and their ancestors.
//
// What changed is recorded in the metadata store, in the same transaction as the change:
// the functions that write inodes, directory entries and extents (putAttr, putDirent,
// delDirent, putExtent, delExtent, deleteInode in meta.go; RemoveXattr, whose change
// writes no attributes) call snapDirty, which records the inode (for an entry, the
// directory holding it) in bucket snapdirty with the transaction ID. Recording in the
// changing transaction is what makes it exact: a change rolled back leaves no mark, a
// change the snapshot's read transaction sees has its mark seen too, and the snapshot
// clears only the marks of transactions up to the one it read (later ones stay for the
// next). The cache itself is not persisted: after Open the first snapshot rebuilds
// everything (so an unclean stop loses nothing), and later ones reuse it.
var bSnapDirty = []byte("snapdirty")

func init() { allBuckets = append(allBuckets, bSnapDirty) }

// snapDirty records that inode ino (or, for an entry added or removed, its directory)
// changed in tx. A store without the bucket (opened by code older than it) cannot have
// a snapshot cache in this process (Open creates the bucket), so nothing is lost there.
func snapDirty(tx *bolt.Tx, ino uint64) error {
	b := tx.Bucket(bSnapDirty)
	if b == nil {
		return nil
	}
	kv := make([]byte, 16) // one allocation; bbolt keeps both until the commit
	binary.BigEndian.PutUint64(kv, ino)
	binary.BigEndian.PutUint64(kv[8:], uint64(tx.ID()))
	return b.Put(kv[:8], kv[8:])
}

// snapDirtyRecord records that UpdateRefs rewrote the record under key in bucket: an
// extent (its inode changed) or a snapshot object's Ref (key is its chunk ID: every
// cached tree holding it must be rebuilt, since pointers to it carry its holders).
func snapDirtyRecord(tx *bolt.Tx, bucket, key []byte) error {
	switch {
	case bytes.Equal(bucket, bExtents) && len(key) == 16:
		return snapDirty(tx, keyIno(key))
	case bytes.Equal(bucket, bSnapObjs):
		if b := tx.Bucket(bSnapDirty); b != nil {
			return b.Put(bytes.Clone(key), binary.BigEndian.AppendUint64(nil, uint64(tx.ID())))
		}
		return nil
	}
	return fmt.Errorf("volume: BUG: snapshot dirty mark for a record of bucket %s", bucket)
}

// snapDirtyClear deletes the marks of transactions up to seenTx: the changes a snapshot
// that read transaction seenTx holds. Later marks stay.
func snapDirtyClear(tx *bolt.Tx, seenTx uint64) error {
	b := tx.Bucket(bSnapDirty)
	if b == nil {
		return nil
	}
	var keep [][2][]byte
	if err := b.ForEach(func(k, val []byte) error {
		if len(val) != 8 {
			return fmt.Errorf("snapshot dirty mark %x: %w", k, errBadRecord)
		}
		if binary.BigEndian.Uint64(val) > seenTx {
			keep = append(keep, [2][]byte{bytes.Clone(k), bytes.Clone(val)})
		}
		return nil
	}); err != nil {
		return err
	}
	// Dropping the bucket is cheaper than deleting its keys one by one after a snapshot
	// that cleared many (the first one after a restore clears every inode).
	if err := tx.DeleteBucket(bSnapDirty); err != nil {
		return err
	}
	nb, err := tx.CreateBucket(bSnapDirty)
	if err != nil {
		return err
	}
	for _, kv := range keep {
		if err := nb.Put(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// snapCached is one directory as the last snapshot wrote it.
type snapCached struct {
	ptr     snapshot.Ptr   // its tree
	refs    []pipeline.Ref // the objects of its own tree (snapshot.Builder.DirRefs)
	subdirs []uint64       // its subdirectories
	kids    []uint64       // its other entries' inodes
}

// snapCache holds the directories of the last snapshot this process took. mu is held
// through Snapshot, so that the cache, the recorded root and the cleared marks change
// together.
type snapCache struct {
	mu    sync.Mutex
	root  []byte                 // encoded root Ptr of the snapshot the cache matches; nil: empty
	dirs  map[uint64]*snapCached // by directory inode
	links map[uint64][]uint64    // non-directory inode → the directories that listed it
}

// reset empties the cache: the next snapshot rebuilds every directory.
func (c *snapCache) reset() {
	c.root, c.dirs, c.links = nil, nil, nil
}

// dirtyDirs returns the cached directories whose trees the marked inodes change, with
// their ancestors (read from tx): the directories a snapshot must rebuild. A directory
// not in the cache is rebuilt anyway.
func (c *snapCache) dirtyDirs(tx *bolt.Tx) (map[uint64]bool, error) {
	dirty := map[uint64]bool{}
	add := func(d uint64) {
		// A directory and its ancestors: each one's entry in its parent changes.
		for d != 0 && !dirty[d] {
			dirty[d] = true
			if d == RootIno {
				return
			}
			p := tx.Bucket(bParents).Get(inoKey(d))
			if len(p) != 8 {
				return // gone: its former parent has a mark of its own
			}
			d = keyIno(p)
		}
	}
	var objs map[crypt.ChunkID][]uint64 // snapshot object → cached directories holding it
	err := tx.Bucket(bSnapDirty).ForEach(func(k, _ []byte) error {
		if len(k) == len(crypt.ChunkID{}) { // an object with new holders (snapDirtyRecord)
			if objs == nil {
				objs = map[crypt.ChunkID][]uint64{}
				for d, cd := range c.dirs {
					for _, r := range cd.refs {
						objs[r.ID] = append(objs[r.ID], d)
					}
				}
			}
			for _, d := range objs[crypt.ChunkID(k)] {
				add(d)
			}
			return nil
		}
		if len(k) != 8 {
			return fmt.Errorf("snapshot dirty mark %x: %w", k, errBadRecord)
		}
		ino := keyIno(k)
		if _, ok := c.dirs[ino]; ok {
			add(ino)
		}
		// A file's entry is in every directory that listed it; one that lists it since
		// has a mark of its own (putDirent).
		for _, d := range c.links[ino] {
			add(d)
		}
		return nil
	})
	return dirty, err
}

// commit makes the cache match the snapshot whose root is root and whose directories are
// dirs, updating links for the directories rebuilt, reused and dropped.
func (c *snapCache) commit(root []byte, dirs map[uint64]*snapCached) {
	if c.links == nil {
		c.links = map[uint64][]uint64{}
	}
	unlink := func(d uint64, kids []uint64) {
		for _, k := range kids {
			ds := slices.DeleteFunc(c.links[k], func(x uint64) bool { return x == d })
			if len(ds) == 0 {
				delete(c.links, k)
			} else {
				c.links[k] = ds
			}
		}
	}
	for d, old := range c.dirs {
		if n, ok := dirs[d]; !ok || n != old {
			unlink(d, old.kids)
		}
	}
	for d, n := range dirs {
		if old, ok := c.dirs[d]; ok && old == n {
			continue // reused: its links are in place
		}
		for _, k := range n.kids {
			c.links[k] = append(c.links[k], d)
		}
	}
	c.root, c.dirs = root, dirs
}
