package volume

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Crash stops v as kill -9 would leave it: nothing more is journalled or committed, no
// staging file is removed. The directories can be opened again with Open.
func Crash(v *Volume) {
	v.commit.crash()
	v.wb.close()
	v.reads.close()
	v.mu.Lock()
	for _, f := range v.files {
		if f.stage != nil {
			f.stage.Close()
		}
	}
	v.mu.Unlock()
	v.db.Close()
}

// ChunkRefs returns the sum of chunk reference counts and the number of chunks listed
// as garbage.
func ChunkRefs(v *Volume) (refs int64, garbage int, err error) {
	err = v.commit.view(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bChunkRefs).ForEach(func(k, val []byte) error {
			n, err := decodeCount(val)
			refs += n
			return err
		}); err != nil {
			return err
		}
		// Not Stats().KeyN: it counts only pages, not the changes of an open transaction.
		return tx.Bucket(bGarbage).ForEach(func(_, _ []byte) error {
			garbage++
			return nil
		})
	})
	return refs, garbage, err
}

// StagingOf returns the staged byte ranges of inode ino as [off, end) pairs, the path of
// its staging file, and a channel closed at the next change of its upload state.
func StagingOf(v *Volume, ino uint64) (staged [][2]int64, path string, changed <-chan struct{}) {
	v.mu.Lock()
	f := v.files[ino]
	v.mu.Unlock()
	if f == nil {
		return nil, v.stagingPath(ino), nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.staged {
		staged = append(staged, [2]int64{s.off, s.end})
	}
	return staged, v.stagingPath(ino), f.changed
}

// SetLinkDroppedHook makes fn run inside the transaction that removes an inode's last
// link, right after the removal was decided (nil: no hook).
func SetLinkDroppedHook(fn func(ino uint64)) { testHookLinkDropped = fn }

// FailingChange applies a namespace change that writes key into the inodes bucket and
// then fails with an error that is not a user error, as a corrupt record would make an
// operation fail halfway; it returns that error.
func FailingChange(v *Volume, key string) error {
	return v.commit.do(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bInodes).Put([]byte(key), []byte("half")); err != nil {
			return err
		}
		return fmt.Errorf("%w: test failure after a change", errBadRecord)
	})
}

// HasInodeKey reports whether the inodes bucket holds key, as read by the volume.
func HasInodeKey(v *Volume, key string) (ok bool) {
	v.commit.view(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bInodes).Get([]byte(key)) != nil
		return nil
	})
	return ok
}

// SetWindowCommittedHook makes fn run each time a transaction commits because its commit
// window ended (nil: no hook).
func SetWindowCommittedHook(fn func()) { testHookWindowCommitted = fn }
