package volume

import bolt "go.etcd.io/bbolt"

// Crash stops v as kill -9 would leave it: nothing more is journalled or committed, no
// staging file is removed. The directories can be opened again with Open.
func Crash(v *Volume) {
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
	err = v.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bChunkRefs).ForEach(func(k, val []byte) error {
			n, err := decodeCount(val)
			refs += n
			return err
		}); err != nil {
			return err
		}
		garbage = tx.Bucket(bGarbage).Stats().KeyN
		return nil
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
