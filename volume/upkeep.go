package volume

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/snapshot"
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
				if slices.ContainsFunc(seen[e.Ref.ID], func(i int) bool { return refs[i].Equal(e.Ref) }) {
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
			name []byte
			b    *bolt.Bucket
			key  []byte
			e    extent
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
				if !ok || e.Ref.Equal(&nr) {
					continue
				}
				if !e.Ref.SameChunk(&nr) {
					return fmt.Errorf("%w: new ref of chunk %s does not describe the recorded chunk", ErrInvalid, nr.ID)
				}
				e.Ref = &nr
				// Keys from a cursor are valid only during the transaction and must not
				// be written through while iterating: collect, then write.
				todo = append(todo, rewrite{name, b, slices.Clone(k), e})
			}
		}
		for _, r := range todo {
			if err := snapDirtyRecord(tx, r.name, r.key); err != nil { // new holders: new snapshot pages
				return err
			}
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

// Garbage and published snapshots. A chunk no extent references is listed in the garbage
// bucket with the transaction that dropped its last reference (garbage record v2, written
// by refChunk through encodeGarbage). Its fragments must stay while a published snapshot
// that a reader may still use (a device recovering the drive, a follower) references it:
// only a snapshot that read the store at or after that transaction does not. The mount
// reports each publication with SnapshotPublished, which records the transaction the
// snapshot reflects and when it was published (bucket snappub), and Garbage returns only
// chunks whose last reference went before a snapshot published long enough ago that
// readers of the previous ones have moved on.
var bSnapPub = []byte("snappub")

var (
	snapKeySeen      = []byte("seen")      // u64: transaction whose state the last snapshot holds
	snapKeyGarbageTx = []byte("garbagetx") // empty: every garbage record carries its transaction
)

func init() { allBuckets = append(allBuckets, bSnapPub) }

// Garbage record versions: v1 is a bare extent record (no transaction: written before
// snapshots were taken into account), v2 prefixes it with the transaction.
const garbageV2 = 2

// pubKeep is how long publication records are kept in full; of the older ones only the
// newest is kept. A grace longer than this only delays collection (the horizon is then
// computed from fewer publications, never from a later one than is true).
const pubKeep = time.Hour

// encodeGarbage returns the garbage record of chunk r whose last reference went in
// transaction tx: 02 ‖ tx u64 ‖ extent record (kind 1, len = chunk size).
func encodeGarbage(tx uint64, r *pipeline.Ref) []byte {
	b := binary.BigEndian.AppendUint64([]byte{garbageV2}, tx)
	return append(b, encodeExtent(extent{Len: int64(r.Size), Ref: r})...)
}

// decodeGarbage decodes a garbage record; a v1 record has transaction 0 (unknown).
func decodeGarbage(b []byte) (tx uint64, r *pipeline.Ref, err error) {
	if len(b) > 0 && b[0] == garbageV2 {
		if len(b) < 9 {
			return 0, nil, badRecord("garbage", "short header")
		}
		tx, b = binary.BigEndian.Uint64(b[1:]), b[9:]
	}
	e, err := decodeExtent(b)
	if err != nil {
		return 0, nil, err
	}
	if e.Ref == nil {
		return 0, nil, badRecord("garbage", "not a chunk")
	}
	if e.Len != int64(e.Ref.Size) {
		return 0, nil, badRecord("garbage", "length %d of a %d-byte chunk", e.Len, e.Ref.Size)
	}
	return tx, e.Ref, nil
}

// SnapshotPublished records that the snapshot whose root is root was published (as the
// drive's root record) at time at. The mount calls it after every publication of a new
// snapshot. A root other than the last snapshot taken or restored is not recorded:
// nothing then becomes collectable, which is the safe side.
func (v *Volume) SnapshotPublished(root snapshot.Ptr, at time.Time) error {
	rb, err := root.MarshalBinary()
	if err != nil {
		return err
	}
	err = v.db.Update(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bSnapState)
		if !bytes.Equal(sb.Get(snapKeyRoot), rb) {
			return nil
		}
		if err := upgradeGarbage(tx); err != nil {
			return err
		}
		// The transaction the snapshot holds: its read transaction, or for a snapshot
		// taken before that was recorded, the one it is current at (0: unknown).
		var seen uint64
		if b := sb.Get(snapKeySeen); len(b) == 8 {
			seen = binary.BigEndian.Uint64(b)
		} else if b := sb.Get(snapKeyTx); len(b) == 8 {
			seen = binary.BigEndian.Uint64(b)
		}
		if seen == 0 {
			return nil
		}
		pb := tx.Bucket(bSnapPub)
		if k, _ := pb.Cursor().Last(); k != nil && binary.BigEndian.Uint64(k) >= seen {
			return nil // published before: the first publication counts
		}
		val := binary.BigEndian.AppendUint64([]byte{recordV1}, uint64(at.UnixNano()))
		if err := pb.Put(binary.BigEndian.AppendUint64(nil, seen), val); err != nil {
			return err
		}
		if err := prunePublished(pb, at.Add(-pubKeep)); err != nil {
			return err
		}
		// Nothing a snapshot holds changed: a store current with the last snapshot stays
		// current, or every publication would call for another snapshot.
		if cur := sb.Get(snapKeyTx); len(cur) == 8 && binary.BigEndian.Uint64(cur) == uint64(tx.ID())-1 {
			return sb.Put(snapKeyTx, binary.BigEndian.AppendUint64(nil, uint64(tx.ID())))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("volume: snapshot published: %w", err)
	}
	return nil
}

// upgradeGarbage gives every v1 garbage record, once, the current transaction: when its
// last reference went is unknown, so only a snapshot published after now may let it go.
func upgradeGarbage(tx *bolt.Tx) error {
	sb := tx.Bucket(bSnapState)
	if sb.Get(snapKeyGarbageTx) != nil {
		return nil
	}
	gb := tx.Bucket(bGarbage)
	var keys, vals [][]byte
	err := gb.ForEach(func(k, val []byte) error {
		if len(val) > 0 && val[0] == garbageV2 {
			return nil
		}
		_, r, err := decodeGarbage(val)
		if err != nil {
			return fmt.Errorf("garbage chunk %x: %w", k, err)
		}
		keys, vals = append(keys, slices.Clone(k)), append(vals, encodeGarbage(uint64(tx.ID()), r))
		return nil
	})
	if err != nil {
		return err
	}
	for i := range keys {
		if err := gb.Put(keys[i], vals[i]); err != nil {
			return err
		}
	}
	return sb.Put(snapKeyGarbageTx, []byte{})
}

// decodePublished decodes a publication record: its transaction and time.
func decodePublished(k, val []byte) (uint64, time.Time, error) {
	if len(k) != 8 || len(val) != 9 || val[0] != recordV1 {
		return 0, time.Time{}, badRecord("published snapshot", "%d-byte key, %d-byte value", len(k), len(val))
	}
	return binary.BigEndian.Uint64(k), time.Unix(0, int64(binary.BigEndian.Uint64(val[1:]))), nil
}

// prunePublished deletes the publications before cutoff except the newest of them.
func prunePublished(pb *bolt.Bucket, cutoff time.Time) error {
	var old [][]byte
	c := pb.Cursor()
	for k, val := c.First(); k != nil; k, val = c.Next() {
		_, t, err := decodePublished(k, val)
		if err != nil {
			return err
		}
		if !t.Before(cutoff) {
			break
		}
		old = append(old, slices.Clone(k))
	}
	for _, k := range old[:max(len(old)-1, 0)] {
		if err := pb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// collectHorizon returns the transaction of the newest snapshot published at or before
// settled (false if none): chunks whose last reference went at or before it are in no
// snapshot published since.
func collectHorizon(tx *bolt.Tx, settled time.Time) (uint64, bool, error) {
	var h uint64
	var ok bool
	c := tx.Bucket(bSnapPub).Cursor()
	for k, val := c.First(); k != nil; k, val = c.Next() {
		seen, t, err := decodePublished(k, val)
		if err != nil {
			return 0, false, err
		}
		if t.After(settled) {
			break // later transactions were published later too
		}
		h, ok = seen, true
	}
	return h, ok, nil
}

// Garbage returns the Refs of the chunks no extent references any more, as recorded when
// their last reference went, that no published snapshot a reader may still use
// references: those whose last reference went before a snapshot published at or before
// settled (the mount passes now minus a grace covering followers' poll and restore
// times). Their fragments can be deleted from the peers. A drive that never published a
// snapshot (SnapshotPublished) has none.
func (v *Volume) Garbage(ctx context.Context, settled time.Time) ([]pipeline.Ref, error) {
	var refs []pipeline.Ref
	err := v.db.View(func(tx *bolt.Tx) error {
		h, ok, err := collectHorizon(tx, settled)
		if err != nil || !ok {
			return err
		}
		upgraded := tx.Bucket(bSnapState).Get(snapKeyGarbageTx) != nil
		return tx.Bucket(bGarbage).ForEach(func(k, val []byte) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			at, r, err := decodeGarbage(val)
			if err != nil {
				return fmt.Errorf("garbage chunk %x: %w", k, err)
			}
			if at == 0 && !upgraded || at > h {
				return nil // v1 record not yet given a transaction, or in a snapshot readers may use
			}
			refs = append(refs, *r)
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
			_, r, err := decodeGarbage(val)
			if err != nil {
				return fmt.Errorf("garbage chunk %s: %w", refs[i].ID, err)
			}
			if !r.Equal(&refs[i]) {
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
