package volume

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestGarbageRecordGolden pins garbage record v2 (testdata/golden-garbage.hex) and reads
// both versions back.
func TestGarbageRecordGolden(t *testing.T) {
	got := encodeGarbage(0x0102030405060708, goldenRef())
	p := filepath.Join("testdata", "golden-garbage.hex")
	if *update {
		if err := os.WriteFile(p, []byte(hex.EncodeToString(got)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("garbage record changed (bump its version):\n got %x\nwant %x", got, want)
	}
	tx, r, err := decodeGarbage(want)
	if err != nil || tx != 0x0102030405060708 || !reflect.DeepEqual(r, goldenRef()) {
		t.Fatalf("v2: %d %+v %v", tx, r, err)
	}
	// v1, written before garbage records carried their transaction: the extent record.
	tx, r, err = decodeGarbage(encodeExtent(extent{Len: 1 << 20, Ref: goldenRef()}))
	if err != nil || tx != 0 || r.ID != goldenRef().ID {
		t.Fatalf("v1: %d %+v %v", tx, r, err)
	}
	for name, bad := range map[string][]byte{
		"empty":    nil,
		"short v2": want[:5],
		"inline":   append(binary.BigEndian.AppendUint64([]byte{garbageV2}, 1), goldens()["extent-inline"]...),
		"version":  append([]byte{3}, want[1:]...),
		"trailing": append(bytes.Clone(want), 0),
		"length":   append(binary.BigEndian.AppendUint64([]byte{garbageV2}, 1), encodeExtent(extent{Len: 1000, Ref: goldenRef()})...),
	} {
		if _, _, err := decodeGarbage(bad); !errors.Is(err, errBadRecord) {
			t.Errorf("%s: %v, want errBadRecord", name, err)
		}
	}
}

func FuzzDecodeGarbage(f *testing.F) {
	f.Add(encodeGarbage(7, goldenRef()))
	f.Add(encodeExtent(extent{Len: 1 << 20, Ref: goldenRef()}))
	f.Fuzz(func(t *testing.T, b []byte) {
		tx, r, err := decodeGarbage(b)
		if err != nil {
			return
		}
		want := encodeExtent(extent{Len: int64(r.Size), Ref: r}) // v1
		if b[0] == garbageV2 {
			want = encodeGarbage(tx, r)
		}
		if !bytes.Equal(want, b) {
			t.Fatalf("%x re-encodes as %x", b, want)
		}
	})
}

// TestGarbageUpgrade: v1 garbage records (no transaction) become collectable only after a
// snapshot published after the first publication this code records.
func TestGarbageUpgrade(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v := &Volume{db: db}
	r := goldenRef()
	rb := []byte("root")
	setSnap := func(tx *bolt.Tx) error { // a snapshot current now, as snapRecord leaves it
		sb := tx.Bucket(bSnapState)
		if err := sb.Put(snapKeyRoot, rb); err != nil {
			return err
		}
		return sb.Put(snapKeySeen, binary.BigEndian.AppendUint64(nil, uint64(tx.ID())))
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bGarbage, bSnapState, bSnapPub} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bGarbage).Put(r.ID[:], encodeExtent(extent{Len: int64(r.Size), Ref: r})); err != nil {
			return err
		}
		return setSnap(tx)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Unix(1_800_000_000, 0)
	publish := func(at time.Time) {
		t.Helper()
		// SnapshotPublished with the raw root bytes this test stored.
		err := db.Update(func(tx *bolt.Tx) error {
			if err := upgradeGarbage(tx); err != nil {
				return err
			}
			seen := binary.BigEndian.Uint64(tx.Bucket(bSnapState).Get(snapKeySeen))
			return tx.Bucket(bSnapPub).Put(binary.BigEndian.AppendUint64(nil, seen),
				binary.BigEndian.AppendUint64([]byte{recordV1}, uint64(at.UnixNano())))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	publish(t0)
	if g, err := v.Garbage(ctx, t0.Add(time.Hour)); err != nil || len(g) != 0 {
		t.Fatalf("old record collectable after the first publication: %d, %v", len(g), err)
	}
	if err := db.Update(setSnap); err != nil {
		t.Fatal(err)
	}
	publish(t0.Add(time.Minute))
	if g, err := v.Garbage(ctx, t0.Add(time.Hour)); err != nil || len(g) != 1 || g[0].ID != r.ID {
		t.Fatalf("old record after the next publication: %d, %v", len(g), err)
	}
}

// TestPrunePublished: publications older than the cutoff are dropped but the newest of
// them, which may still be the horizon.
func TestPrunePublished(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t0 := time.Unix(1_800_000_000, 0)
	var keys []uint64
	err = db.Update(func(tx *bolt.Tx) error {
		pb, err := tx.CreateBucket(bSnapPub)
		if err != nil {
			return err
		}
		for i := range 10 {
			if err := pb.Put(binary.BigEndian.AppendUint64(nil, uint64(10+i)),
				binary.BigEndian.AppendUint64([]byte{recordV1}, uint64(t0.Add(time.Duration(i)*time.Minute).UnixNano()))); err != nil {
				return err
			}
		}
		if err := prunePublished(pb, t0.Add(5*time.Minute+time.Second)); err != nil {
			return err
		}
		h, ok, err := collectHorizon(tx, t0.Add(5*time.Minute+time.Second))
		if err != nil || !ok || h != 15 {
			t.Errorf("horizon %d %v %v, want 15", h, ok, err)
		}
		return pb.ForEach(func(k, _ []byte) error {
			keys = append(keys, binary.BigEndian.Uint64(k))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(keys, []uint64{15, 16, 17, 18, 19}) {
		t.Fatalf("kept %v", keys)
	}
}

func FuzzDecodePublished(f *testing.F) {
	f.Add(binary.BigEndian.AppendUint64(nil, 7), binary.BigEndian.AppendUint64([]byte{recordV1}, 1_800_000_000_000_000_000))
	f.Fuzz(func(t *testing.T, k, val []byte) {
		tx, at, err := decodePublished(k, val)
		if err != nil {
			if !errors.Is(err, errBadRecord) {
				t.Fatalf("error %v does not wrap errBadRecord", err)
			}
			return
		}
		if !bytes.Equal(binary.BigEndian.AppendUint64(nil, tx), k) ||
			!bytes.Equal(binary.BigEndian.AppendUint64([]byte{recordV1}, uint64(at.UnixNano())), val) {
			t.Fatalf("%x %x does not re-encode", k, val)
		}
	})
}
