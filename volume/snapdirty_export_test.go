package volume

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
)

// SnapshotState returns the recorded snapshot objects and the transaction the last snapshot
// read.
func SnapshotState(t *testing.T, v *Volume) (map[crypt.ChunkID]pipeline.Ref, uint64) {
	t.Helper()
	objs := map[crypt.ChunkID]pipeline.Ref{}
	var seen uint64
	err := v.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bSnapState).Get(snapKeySeen); len(b) == 8 {
			seen = binary.BigEndian.Uint64(b)
		}
		return tx.Bucket(bSnapObjs).ForEach(func(k, val []byte) error {
			e, err := decodeExtent(val)
			if err != nil {
				return err
			}
			objs[crypt.ChunkID(k)] = *e.Ref
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return objs, seen
}

// CopyStore writes v's metadata store as last committed into dir/meta.db, for Open, and
// returns the transaction it copied.
func CopyStore(t *testing.T, v *Volume, dir string) uint64 {
	t.Helper()
	var id uint64
	err := v.db.View(func(tx *bolt.Tx) error {
		id = uint64(tx.ID())
		return tx.CopyFile(filepath.Join(dir, "meta.db"), 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}
