// Package cache is the read cache of the filesystem core: sealed (encrypted) chunks on
// local disk, keyed by chunk ID, evicted least-recently-used under a hard byte bound.
// Holding ciphertext means the cache directory reveals nothing a peer could not see.
package cache

import (
	"container/list"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/scatterfs/scatter/crypt"
)

// Cache is a bounded on-disk LRU of sealed chunks. It is safe for concurrent use.
type Cache struct {
	dir string
	max int64

	mu   sync.Mutex
	used int64 // bytes of entries plus bytes reserved by Puts in progress; <= max
	lru  *list.List
	idx  map[crypt.ChunkID]*list.Element

	hits, misses atomic.Int64 // Get calls that found the chunk, and that did not
}

type entry struct {
	id   crypt.ChunkID
	size int64
}

// Open opens the cache in dir (created if missing), indexing the chunks already there,
// most recently used last by modification time, and trimming it to max bytes.
func Open(dir string, max int64) (*Cache, error) {
	if max <= 0 {
		return nil, fmt.Errorf("cache: max %d must be positive", max)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c := &Cache{dir: dir, max: max, lru: list.New(), idx: map[crypt.ChunkID]*list.Element{}}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	type found struct {
		id   crypt.ChunkID
		size int64
		mod  int64
	}
	var all []found
	for _, de := range des {
		var id crypt.ChunkID
		b, err := hex.DecodeString(de.Name())
		info, ierr := de.Info()
		if err != nil || len(b) != len(id) || ierr != nil || !info.Mode().IsRegular() {
			os.Remove(filepath.Join(dir, de.Name())) // a temp file from a crash, or junk
			continue
		}
		copy(id[:], b)
		all = append(all, found{id, info.Size(), info.ModTime().UnixNano()})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mod < all[j].mod })
	for _, f := range all {
		c.idx[f.id] = c.lru.PushBack(&entry{f.id, f.size})
		c.used += f.size
	}
	c.mu.Lock()
	c.evictLocked(0)
	c.mu.Unlock()
	return c, nil
}

func (c *Cache) path(id crypt.ChunkID) string { return filepath.Join(c.dir, id.String()) }

// evictLocked drops least recently used entries until n more bytes fit.
func (c *Cache) evictLocked(n int64) {
	for c.used+n > c.max {
		el := c.lru.Front()
		if el == nil {
			return
		}
		e := el.Value.(*entry)
		c.lru.Remove(el)
		delete(c.idx, e.id)
		c.used -= e.size
		os.Remove(c.path(e.id))
	}
}

// Get returns the sealed chunk id, or false if it is not cached.
func (c *Cache) Get(id crypt.ChunkID) ([]byte, bool) {
	b, ok := c.get(id)
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return b, ok
}

func (c *Cache) get(id crypt.ChunkID) ([]byte, bool) {
	c.mu.Lock()
	el, ok := c.idx[id]
	if ok {
		c.lru.MoveToBack(el)
	}
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	b, err := os.ReadFile(c.path(id))
	if err != nil {
		c.mu.Lock()
		if el, ok := c.idx[id]; ok {
			c.lru.Remove(el)
			delete(c.idx, id)
			c.used -= el.Value.(*entry).size
		}
		c.mu.Unlock()
		return nil, false
	}
	return b, true
}

// Stats returns how many Get calls found their chunk and how many did not, since Open.
func (c *Cache) Stats() (hits, misses int64) { return c.hits.Load(), c.misses.Load() }

// Has reports whether id is cached.
func (c *Cache) Has(id crypt.ChunkID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.idx[id]
	return ok
}

// Put stores sealed chunk id. Chunks larger than the whole cache are not stored. The
// bytes are reserved before they are written, so the bound holds even while writing.
func (c *Cache) Put(id crypt.ChunkID, sealed []byte) error {
	n := int64(len(sealed))
	c.mu.Lock()
	if _, ok := c.idx[id]; ok || n > c.max {
		c.mu.Unlock()
		return nil
	}
	c.evictLocked(n)
	c.used += n
	c.mu.Unlock()
	tmp, err := os.CreateTemp(c.dir, "tmp-")
	if err == nil {
		_, err = tmp.Write(sealed)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), c.path(id))
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.used -= n
		return fmt.Errorf("cache: put %s: %w", id, err)
	}
	if _, ok := c.idx[id]; ok { // a concurrent Put of the same chunk won
		c.used -= n
		return nil
	}
	c.idx[id] = c.lru.PushBack(&entry{id, n})
	return nil
}

// Used returns the bytes the cache holds (never above its bound).
func (c *Cache) Used() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}
