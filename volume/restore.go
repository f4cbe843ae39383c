package volume

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scatterfs/scatter/snapshot"
)

// Restoring a metadata store from a snapshot tree: the whole drive (Restore) or a shared
// directory (RestoreShare). Both write a new bbolt file under a temporary name and rename
// it into place once complete, and walk the tree breadth first, one directory's entries
// per transaction (at most restoreBatch at a time); they differ in what they do with an
// entry, which restoreHooks say.

// restoreBatch bounds the entries written per transaction.
const restoreBatch = 4096

// restoreStore builds cfg.Dir's meta.db with fill, under a temporary name renamed into
// place once fill succeeded, so a failed restore leaves no store behind. It refuses a
// directory that holds a store (ErrRestoreExists). what names the restore in errors.
func restoreStore(cfg Config, what string, fill func(db *bolt.DB) error) error {
	final := filepath.Join(cfg.Dir, "meta.db")
	if _, err := os.Stat(final); err == nil {
		return ErrRestoreExists
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("volume: %s: %w", what, err)
	}
	tmp := final + ".restore"
	os.Remove(tmp)
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("volume: %s: %w", what, err)
	}
	err = fill(db)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("volume: %s: %w", what, err)
	}
	return nil
}

// restoreHooks adapt restoreTree to what is restored. Each may be nil.
type restoreHooks struct {
	// keep may adjust an entry before it is written, and reports whether it is written.
	keep func(e *snapshot.Entry) bool
	// linked runs for every entry written (every link to an inode), in its transaction.
	linked func(tx *bolt.Tx, parent uint64, e *snapshot.Entry) error
	// inode runs once per inode, after it was written, in the same transaction.
	inode func(tx *bolt.Tx, e *snapshot.Entry) error
}

// restoreTree writes a new store's buckets and layout with the root inode (put writes
// it), then everything below the directory tree top as the root's contents, reading
// directories through r. It returns the highest inode number written. A directory
// linked twice, or a link to the root inode, is a corrupt snapshot.
func restoreTree(ctx context.Context, db *bolt.DB, r *snapshot.Reader, top snapshot.Ptr,
	put func(tx *bolt.Tx) error, h restoreHooks) (uint64, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bMeta).Put(keyLayout, []byte{layoutV1}); err != nil {
			return err
		}
		return put(tx)
	})
	if err != nil {
		return 0, err
	}
	type dirTodo struct {
		ino uint64
		ptr snapshot.Ptr
	}
	var (
		maxIno = uint64(RootIno)
		seen   = map[uint64]bool{RootIno: true}
		queue  = []dirTodo{{RootIno, top}}
	)
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		entries, err := r.Dir(ctx, d.ptr)
		if err != nil {
			return 0, err
		}
		for start := 0; start < len(entries); start += restoreBatch {
			batch := entries[start:min(start+restoreBatch, len(entries))]
			err := db.Update(func(tx *bolt.Tx) error {
				for i := range batch {
					e := &batch[i]
					if e.Ino == RootIno || e.IsDir() && seen[e.Ino] {
						return fmt.Errorf("%w: directory inode %d linked twice", errBadRecord, e.Ino)
					}
					if h.keep != nil && !h.keep(e) {
						continue
					}
					if err := putDirent(tx, d.ino, e.Name, e.Ino, e.Attr.Mode&syscall.S_IFMT); err != nil {
						return err
					}
					if h.linked != nil {
						if err := h.linked(tx, d.ino, e); err != nil {
							return err
						}
					}
					if seen[e.Ino] {
						continue // another link to an inode already written
					}
					seen[e.Ino] = true
					maxIno = max(maxIno, e.Ino)
					if err := snapPutInode(tx, e); err != nil {
						return err
					}
					if h.inode != nil {
						if err := h.inode(tx, e); err != nil {
							return err
						}
					}
					if e.IsDir() {
						if err := tx.Bucket(bParents).Put(inoKey(e.Ino), inoKey(d.ino)); err != nil {
							return err
						}
						queue = append(queue, dirTodo{e.Ino, *e.Dir})
					}
				}
				return nil
			})
			if err != nil {
				return 0, err
			}
		}
	}
	return maxIno, nil
}
