package volume

import (
	"context"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
)

// The volume's side of fragment upkeep (package upkeep): the Refs to check, repair and
// renew, recording repaired holders, and the garbage list of chunks to delete from the
// peers. *Volume implements upkeep.Drive with these methods.

// upkeepBuckets are the buckets whose records hold the Refs of live chunks: file extents,
// and the objects of the last metadata snapshot (which must outlive their leases as long
// as that snapshot is the drive's latest; older snapshots' objects are no longer renewed
// and lapse).
var upkeepBuckets = [][]byte{bExtents, bSnapObjs}

// LiveRefs returns every distinct Ref the drive references, in file extents and as objects
// of the last metadata snapshot: a chunk appears once per distinct fragment list (extents
// written at different times can record the same chunk with different holders, and each
// holder's copy needs its lease renewed). It reads one consistent snapshot of the metadata.
func (v *Volume) LiveRefs(ctx context.Context) ([]pipeline.Ref, error) {
	var refs []pipeline.Ref
	seen := map[crypt.ChunkID][]int{} // chunk -> indexes in refs of its variants
	err := v.db.View(func(tx *bolt.Tx) error {
		n := 0
		for _, name := range upkeepBuckets {
			c := tx.Bucket(name).Cursor()
			for k, val := c.First(); k != nil; k, val = c.Next() {
				if n++; n%1024 == 0 && ctx.Err() != nil {
					return ctx.Err()
				}
				e, err := decodeExtent(val)
				if err != nil {
					return fmt.Errorf("%s record %x: %w", name, k, err)
				}
				if e.Ref == nil {
					continue
				}
				if slices.ContainsFunc(seen[e.Ref.ID], func(i int) bool { return upkeepSameRef(&refs[i], e.Ref) }) {
					continue
				}
				seen[e.Ref.ID] = append(seen[e.Ref.ID], len(refs))
				refs = append(refs, *e.Ref)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("volume: live refs: %w", err)
	}
	return refs, nil
}

// upkeepSameRef reports whether a and b are the same Ref, holders included.
func upkeepSameRef(a, b *pipeline.Ref) bool {
	return a.ID == b.ID && a.Size == b.Size && a.SealedLen == b.SealedLen && a.K == b.K && a.M == b.M &&
		slices.Equal(a.Fragments, b.Fragments)
}

// upkeepSameChunk reports whether b can replace a: the same chunk with the same code and
// fragments, only (some) holders differing.
func upkeepSameChunk(a, b *pipeline.Ref) bool {
	if a.ID != b.ID || a.Size != b.Size || a.SealedLen != b.SealedLen || a.K != b.K || a.M != b.M ||
		len(a.Fragments) != len(b.Fragments) {
		return false
	}
	for i := range a.Fragments {
		if a.Fragments[i].ID != b.Fragments[i].ID {
			return false
		}
	}
	return true
}

// UpdateRefs records repaired Refs: every extent (and snapshot object record) referencing
// a chunk of refs gets that chunk's new Ref, in one transaction, keeping its length;
// reference counts do not change. (A changed snapshot object record makes the next
// metadata snapshot point to the new holders.)
// A new Ref must describe the same chunk as the recorded one (same ID, sizes, code and
// fragment IDs; only holders may differ), otherwise nothing is written and the error wraps
// ErrInvalid. Chunks no extent references any more are skipped.
func (v *Volume) UpdateRefs(ctx context.Context, refs map[crypt.ChunkID]pipeline.Ref) error {
	if len(refs) == 0 {
		return nil
	}
	err := v.db.Update(func(tx *bolt.Tx) error {
		type rewrite struct {
			b   *bolt.Bucket
			key []byte
			e   extent
		}
		var todo []rewrite
		n := 0
		for _, name := range upkeepBuckets {
			b := tx.Bucket(name)
			c := b.Cursor()
			for k, val := c.First(); k != nil; k, val = c.Next() {
				if n++; n%1024 == 0 && ctx.Err() != nil {
					return ctx.Err()
				}
				if len(val) < 2 || val[1] != extentChunk {
					continue
				}
				e, err := decodeExtent(val)
				if err != nil {
					return fmt.Errorf("%s record %x: %w", name, k, err)
				}
				nr, ok := refs[e.Ref.ID]
				if !ok || upkeepSameRef(e.Ref, &nr) {
					continue
				}
				if !upkeepSameChunk(e.Ref, &nr) {
					return fmt.Errorf("%w: new ref of chunk %s does not describe the recorded chunk", ErrInvalid, nr.ID)
				}
				e.Ref = &nr
				// Keys from a cursor are valid only during the transaction and must not
				// be written through while iterating: collect, then write.
				todo = append(todo, rewrite{b, slices.Clone(k), e})
			}
		}
		for _, r := range todo {
			if err := r.b.Put(r.key, encodeExtent(r.e)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("volume: update refs: %w", err)
	}
	return nil
}

// Garbage returns the Refs of the chunks no extent references any more, as recorded when
// their last reference went: their fragments can be deleted from the peers.
func (v *Volume) Garbage(ctx context.Context) ([]pipeline.Ref, error) {
	var refs []pipeline.Ref
	err := v.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bGarbage).ForEach(func(k, val []byte) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e, err := decodeExtent(val)
			if err != nil {
				return fmt.Errorf("garbage chunk %x: %w", k, err)
			}
			if e.Ref == nil {
				return fmt.Errorf("garbage chunk %x: %w", k, badRecord("garbage", "not a chunk"))
			}
			refs = append(refs, *e.Ref)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("volume: garbage: %w", err)
	}
	return refs, nil
}

// DropGarbage forgets the garbage chunks of refs whose fragments were deleted from the
// peers: each is removed from the garbage list if it is still listed there with the same
// Ref (a chunk referenced again meanwhile has left the list; one that became garbage again
// with other holders stays, to be deleted from those). It returns how many it removed.
func (v *Volume) DropGarbage(ctx context.Context, refs []pipeline.Ref) (int, error) {
	if len(refs) == 0 {
		return 0, nil
	}
	dropped := 0
	err := v.db.Update(func(tx *bolt.Tx) error {
		dropped = 0
		gb := tx.Bucket(bGarbage)
		for i := range refs {
			if err := ctx.Err(); err != nil {
				return err
			}
			val := gb.Get(refs[i].ID[:])
			if val == nil {
				continue
			}
			e, err := decodeExtent(val)
			if err != nil {
				return fmt.Errorf("garbage chunk %s: %w", refs[i].ID, err)
			}
			if e.Ref == nil || !upkeepSameRef(e.Ref, &refs[i]) {
				continue
			}
			if err := gb.Delete(refs[i].ID[:]); err != nil {
				return err
			}
			dropped++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("volume: drop garbage: %w", err)
	}
	return dropped, nil
}
