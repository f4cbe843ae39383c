package dht

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	bolt "go.etcd.io/bbolt"
)

// recordsFile is the file of a server's DHT value records in Config.DataDir.
const recordsFile = "records.db"

// maxRecords bounds the value records a server keeps. Anyone can make a valid IPNS
// record under a fresh key, so without a bound a peer could fill a donor's disk with
// them; a donor serving many drives holds one root record per drive, far below this.
const maxRecords = 1 << 16

// maxRecordSize bounds one stored record; kad-dht refuses larger messages anyway.
const maxRecordSize = 64 << 10

// errRecordsFull is returned by a Put of a new key when maxRecords are stored.
var errRecordsFull = errors.New("dht: record store full")

var recordsBucket = []byte("records")

// records is the datastore of a server's DHT value records (kad-dht's ValueDatastore):
// one bbolt file, so a donor that restarts still serves the root records put on it,
// instead of losing them until each drive's next republish (kad-dht keeps them in
// memory by default).
//
// Not go-ds-flatfs: kad-dht files records under two-level keys ("/ipns/<base32>") and
// its expiry sweep queries by prefix, and flatfs holds only one-level keys and answers
// no prefix query. Records are few and small, so bbolt's one file suits them.
type records struct {
	db *bolt.DB
	n  atomic.Int64 // records stored; updated as transactions commit
}

var _ ds.Batching = (*records)(nil)

// openRecords opens or creates the record store at path.
func openRecords(path string) (*records, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("dht: records: %w", err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(recordsBucket)
		return err
	}); err != nil {
		return nil, errors.Join(fmt.Errorf("dht: records: %w", err), db.Close())
	}
	r := &records{db: db}
	err = db.View(func(tx *bolt.Tx) error {
		r.n.Store(int64(tx.Bucket(recordsBucket).Stats().KeyN))
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("dht: records: %w", err), db.Close())
	}
	return r, nil
}

// Get returns the value stored under k, or ds.ErrNotFound.
func (r *records) Get(_ context.Context, k ds.Key) ([]byte, error) {
	var v []byte
	err := r.db.View(func(tx *bolt.Tx) error {
		v = bytes.Clone(tx.Bucket(recordsBucket).Get(k.Bytes()))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, ds.ErrNotFound
	}
	return v, nil
}

// Has reports whether a value is stored under k.
func (r *records) Has(ctx context.Context, k ds.Key) (bool, error) {
	_, err := r.Get(ctx, k)
	if errors.Is(err, ds.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// GetSize returns the size of the value under k, or ds.ErrNotFound.
func (r *records) GetSize(ctx context.Context, k ds.Key) (int, error) {
	v, err := r.Get(ctx, k)
	return len(v), err
}

// Query reads the matching entries in one read transaction and applies the rest of q
// (filters, orders, offset, limit) in memory: there are at most maxRecords.
func (r *records) Query(ctx context.Context, q dsq.Query) (dsq.Results, error) {
	prefix := []byte(ds.NewKey(q.Prefix).String())
	if string(prefix) == "/" {
		prefix = nil
	}
	var entries []dsq.Entry
	err := r.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(recordsBucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			e := dsq.Entry{Key: string(k), Size: len(v)}
			if !q.KeysOnly {
				e.Value = bytes.Clone(v)
			}
			entries = append(entries, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// NaiveQueryApply filters the prefix exactly ("/ipns" finds "/ipns/x", not "/ipnsx").
	return dsq.NaiveQueryApply(q, dsq.ResultsWithEntries(q, entries)), nil
}

// Put stores v under k, refusing a new key once maxRecords are stored.
func (r *records) Put(_ context.Context, k ds.Key, v []byte) error {
	if len(v) > maxRecordSize {
		return fmt.Errorf("dht: record of %d bytes, at most %d", len(v), maxRecordSize)
	}
	return r.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(recordsBucket)
		if b.Get(k.Bytes()) == nil {
			if r.n.Load() >= maxRecords {
				return errRecordsFull
			}
			tx.OnCommit(func() { r.n.Add(1) })
		}
		return b.Put(k.Bytes(), v)
	})
}

// Delete removes the value under k; a missing key is not an error.
func (r *records) Delete(_ context.Context, k ds.Key) error {
	return r.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(recordsBucket)
		if b.Get(k.Bytes()) != nil {
			tx.OnCommit(func() { r.n.Add(-1) })
		}
		return b.Delete(k.Bytes())
	})
}

// Sync does nothing: every Put and Delete is durable when it returns.
func (r *records) Sync(context.Context, ds.Key) error { return nil }

// Batch returns a batch that applies its operations one by one at Commit.
func (r *records) Batch(context.Context) (ds.Batch, error) { return ds.NewBasicBatch(r), nil }

// Close closes the file.
func (r *records) Close() error { return r.db.Close() }
