package volume

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
)

// Read-only views of the volume for status displays and metrics, and SyncAll, the
// drive-wide fsync that `scatter sync` and a clean unmount wait on.

// Pending returns the bytes staged and not yet on the peers (as StagedBytes, including
// bytes reserved by writes in progress) and the number of files holding staged bytes.
func (v *Volume) Pending() (bytes int64, files int) {
	w := v.wb
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.used, len(w.stagedF)
}

// CacheStats returns the read cache's hits and misses since the volume was opened.
func (v *Volume) CacheStats() (hits, misses int64) { return v.cache.Stats() }

// CacheUsed returns the bytes held by the read cache.
func (v *Volume) CacheUsed() int64 { return v.cache.Used() }

// ChunkRefs returns the Ref of every chunk the drive's files reference, once per chunk,
// as recorded in the metadata (the peers are not asked). It reads one consistent
// snapshot; chunks committed meanwhile may be missing from it.
func (v *Volume) ChunkRefs(ctx context.Context) ([]pipeline.Ref, error) {
	var refs []pipeline.Ref
	seen := map[crypt.ChunkID]struct{}{}
	err := v.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bExtents).Cursor()
		n := 0
		for k, val := c.First(); k != nil; k, val = c.Next() {
			if n++; n%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			e, err := decodeExtent(val)
			if err != nil {
				return fmt.Errorf("extent of inode %d: %w", keyIno(k), err)
			}
			if e.Ref == nil {
				continue
			}
			if _, ok := seen[e.Ref.ID]; ok {
				continue
			}
			seen[e.Ref.ID] = struct{}{}
			refs = append(refs, *e.Ref)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("volume: chunk refs: %w", err)
	}
	return refs, nil
}

// SyncAll makes every namespace change acknowledged before it durable, and returns once
// every file that holds staged data when it is called has it on the peers (or inline in
// the metadata): fsync(2) of the whole drive. It makes those
// files' uploads start at once, even while they are open for writing. It waits as long
// as ctx allows: a file written without pause keeps data staged, and uploads retry while
// no peer takes data. On cancellation the data stays staged and journalled.
func (v *Volume) SyncAll(ctx context.Context) error {
	// Every namespace change acknowledged so far becomes durable, whether or not a file
	// has data to upload.
	if err := v.commit.flush(); err != nil {
		return err
	}
	v.mu.Lock()
	files := make([]*file, 0, len(v.files))
	for _, f := range v.files {
		files = append(files, f)
	}
	v.mu.Unlock()

	var waiting []*file
	defer func() {
		for _, f := range waiting {
			f.mu.Lock()
			f.syncWait--
			f.mu.Unlock()
		}
	}()
	for _, f := range files {
		f.mu.Lock()
		if f.gone || len(f.staged) == 0 {
			f.mu.Unlock()
			continue
		}
		if err := v.journalLocked(f); err != nil {
			f.mu.Unlock()
			return err
		}
		f.syncWait++ // uploads of f no longer wait for its writers to close it
		f.mu.Unlock()
		waiting = append(waiting, f)
		v.wb.notify(f)
	}
	for _, f := range waiting {
		for {
			f.mu.Lock()
			done := len(f.staged) == 0 || f.gone
			ch := f.changed
			f.mu.Unlock()
			if done {
				break
			}
			select {
			case <-ch:
			case <-ctx.Done():
				return fmt.Errorf("%w: %w", ErrInterrupted, ctx.Err())
			}
		}
	}
	return nil
}
