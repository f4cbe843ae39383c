// Package metastore compares the two embedded transactional stores the filesystem core
// could keep its metadata in, on the core's own workload: small durable multi-key updates
// (an inode record and a directory entry per file operation), one at a time and from
// many goroutines, then lookups and an ordered scan of a large directory.
//
//	cd bench/metastore && go test -bench . -benchtime 2000x -count 3
//
// It is a module of its own so that pebble, which the project does not use, stays out of
// scatter's go.mod.
package metastore

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble"
	bolt "go.etcd.io/bbolt"
)

// op is one file creation as the core writes it: a 65-byte attr record under the inode
// number and a 21-byte dirent under parent ‖ name.
func op(i int) (ik, iv, dk, dv []byte) {
	ik = binary.BigEndian.AppendUint64([]byte("i"), uint64(i))
	iv = make([]byte, 65)
	dk = append(binary.BigEndian.AppendUint64([]byte("d"), 1), fmt.Sprintf("file-%08d", i)...)
	dv = make([]byte, 21)
	return
}

type store interface {
	commit(i int) error    // one durable transaction of op(i), grouped with concurrent callers'
	commitOne(i int) error // one durable transaction of op(i), alone
	get(i int) error
	scan() (int, error)
	close()
}

type boltStore struct{ db *bolt.DB }

func openBolt(b *testing.B) store {
	db, err := bolt.Open(b.TempDir()+"/meta.db", 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists([]byte("m")); return err })
	if err != nil {
		b.Fatal(err)
	}
	return &boltStore{db}
}

func (s *boltStore) commit(i int) error {
	// Batch coalesces concurrent callers into one transaction and one fsync, as the
	// core's group commit does; a lone caller pays one transaction.
	return s.db.Batch(func(tx *bolt.Tx) error {
		ik, iv, dk, dv := op(i)
		bk := tx.Bucket([]byte("m"))
		if err := bk.Put(ik, iv); err != nil {
			return err
		}
		return bk.Put(dk, dv)
	})
}

func (s *boltStore) commitOne(i int) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		ik, iv, dk, dv := op(i)
		bk := tx.Bucket([]byte("m"))
		if err := bk.Put(ik, iv); err != nil {
			return err
		}
		return bk.Put(dk, dv)
	})
}

func (s *boltStore) get(i int) error {
	ik, _, _, _ := op(i)
	return s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("m")).Get(ik) == nil {
			return fmt.Errorf("missing %d", i)
		}
		return nil
	})
}

func (s *boltStore) scan() (n int, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte("m")).Cursor()
		prefix := []byte("d")
		for k, _ := c.Seek(prefix); k != nil && k[0] == 'd'; k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, err
}

func (s *boltStore) close() { s.db.Close() }

type pebbleStore struct{ db *pebble.DB }

func openPebble(b *testing.B) store {
	db, err := pebble.Open(b.TempDir(), &pebble.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return &pebbleStore{db}
}

func (s *pebbleStore) commit(i int) error {
	// A synced batch; pebble's WAL groups concurrent synced commits itself.
	ik, iv, dk, dv := op(i)
	batch := s.db.NewBatch()
	defer batch.Close()
	if err := batch.Set(ik, iv, nil); err != nil {
		return err
	}
	if err := batch.Set(dk, dv, nil); err != nil {
		return err
	}
	return batch.Commit(pebble.Sync)
}

func (s *pebbleStore) commitOne(i int) error { return s.commit(i) }

func (s *pebbleStore) get(i int) error {
	ik, _, _, _ := op(i)
	_, c, err := s.db.Get(ik)
	if err != nil {
		return err
	}
	return c.Close()
}

func (s *pebbleStore) scan() (n int, err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte("d"), UpperBound: []byte("e")})
	if err != nil {
		return 0, err
	}
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n, it.Close()
}

func (s *pebbleStore) close() { s.db.Close() }

var stores = []struct {
	name string
	open func(*testing.B) store
}{{"bbolt", openBolt}, {"pebble", openPebble}}

// BenchmarkCommitSerial: one durable file creation at a time (a single-threaded tar x).
func BenchmarkCommitSerial(b *testing.B) {
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			s := st.open(b)
			defer s.close()
			i := 0
			for b.Loop() {
				if err := s.commitOne(i); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkCommitConcurrent: 32 goroutines creating files at once (the kernel's parallel
// FUSE requests), ns per file.
func BenchmarkCommitConcurrent(b *testing.B) {
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			s := st.open(b)
			defer s.close()
			const workers = 32
			var wg sync.WaitGroup
			per := b.N/workers + 1
			b.ResetTimer()
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range per {
						if err := s.commit(w*per + j); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// BenchmarkLookupAndScan: point lookups over 20,000 files, and an ordered scan of the
// 20,000-entry directory (readdir), per lookup and per scan.
func BenchmarkLookup(b *testing.B) {
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			s := fill(b, st.open(b))
			defer s.close()
			i := 0
			for b.Loop() {
				if err := s.get(i % 20000); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkScan(b *testing.B) {
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			s := fill(b, st.open(b))
			defer s.close()
			for b.Loop() {
				if n, err := s.scan(); err != nil || n != 20000 {
					b.Fatalf("scan: %d entries, %v", n, err)
				}
			}
		})
	}
}

func fill(b *testing.B, s store) store {
	var wg sync.WaitGroup
	for w := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 400 {
				if err := s.commit(w*400 + j); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return s
}
