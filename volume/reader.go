package volume

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
)

// plainCacheChunks is how many decrypted chunks stay in memory, so that a reader reading
// a chunk in 128 KiB pieces decrypts it once.
const plainCacheChunks = 8

// reader fetches chunks: decrypted chunks from a small in-memory LRU, sealed chunks from
// the disk cache or the peers (one fetch per chunk however many readers wait), and
// prefetches ahead of sequential readers.
type reader struct {
	v      *Volume
	ctx    context.Context // prefetches and shared fetches outlive the request that started them
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{} // bounds prefetches in flight

	mu       sync.Mutex
	plainLRU *list.List // of *plainEntry, most recent last
	plainIdx map[crypt.ChunkID]*list.Element
	opening  map[crypt.ChunkID]*opening // chunks being decrypted, shared by their readers
	fetches  map[crypt.ChunkID]*fetch
}

// opening is one decryption of a chunk that concurrent readers of it wait for: the kernel
// sends several 128 KiB reads of one chunk at once, and each used to decrypt the whole
// chunk (AES-GCM was twice what one pass costs in the read profile).
type opening struct {
	done  chan struct{}
	plain []byte
	err   error
}

type plainEntry struct {
	id   crypt.ChunkID
	data []byte
}

type fetch struct {
	done   chan struct{}
	sealed []byte
	err    error
}

func newReader(v *Volume) *reader {
	r := &reader{
		v:        v,
		sem:      make(chan struct{}, v.cfg.Prefetch),
		plainLRU: list.New(),
		plainIdx: map[crypt.ChunkID]*list.Element{},
		opening:  map[crypt.ChunkID]*opening{},
		fetches:  map[crypt.ChunkID]*fetch{},
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r
}

func (r *reader) close() {
	r.cancel()
	r.wg.Wait()
}

// plain returns the whole plaintext of chunk ref. The caller must not modify it.
// Concurrent callers for one chunk share one decryption; a caller whose wait for another's
// fails (that caller was interrupted, say) decrypts on its own.
func (r *reader) plain(ctx context.Context, ref pipeline.Ref) ([]byte, error) {
	r.mu.Lock()
	if el, ok := r.plainIdx[ref.ID]; ok {
		r.plainLRU.MoveToBack(el)
		r.mu.Unlock()
		return el.Value.(*plainEntry).data, nil
	}
	if o, ok := r.opening[ref.ID]; ok {
		r.mu.Unlock()
		select {
		case <-o.done:
			if o.err == nil {
				return o.plain, nil
			}
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("open chunk %s: %w", ref.ID, ctx.Err())
			}
			return nil, ErrInterrupted
		}
		return r.open(ctx, ref)
	}
	o := &opening{done: make(chan struct{})}
	r.opening[ref.ID] = o
	r.mu.Unlock()
	o.plain, o.err = r.open(ctx, ref)
	r.mu.Lock()
	delete(r.opening, ref.ID)
	r.mu.Unlock()
	close(o.done)
	return o.plain, o.err
}

// open fetches and decrypts chunk ref and adds it to the LRU.
func (r *reader) open(ctx context.Context, ref pipeline.Ref) ([]byte, error) {
	sealed, err := r.sealed(ctx, ref)
	if err != nil {
		return nil, err
	}
	plain, err := r.v.chunks.Open(make([]byte, 0, ref.Size), ref, sealed)
	if err != nil {
		return nil, fmt.Errorf("open chunk %s: %w", ref.ID, err)
	}
	r.mu.Lock()
	if _, ok := r.plainIdx[ref.ID]; !ok {
		r.plainIdx[ref.ID] = r.plainLRU.PushBack(&plainEntry{ref.ID, plain})
		for r.plainLRU.Len() > plainCacheChunks {
			el := r.plainLRU.Front()
			r.plainLRU.Remove(el)
			delete(r.plainIdx, el.Value.(*plainEntry).id)
		}
	}
	r.mu.Unlock()
	return plain, nil
}

// sealed returns sealed chunk ref from the disk cache or the peers. Concurrent callers
// share one fetch, which runs under the reader's own context bounded by FetchTimeout, so
// an interrupted caller does not cancel it for the others.
func (r *reader) sealed(ctx context.Context, ref pipeline.Ref) ([]byte, error) {
	if b, ok := r.v.cache.Get(ref.ID); ok {
		return b, nil
	}
	r.mu.Lock()
	f, ok := r.fetches[ref.ID]
	if !ok {
		f = &fetch{done: make(chan struct{})}
		r.fetches[ref.ID] = f
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			fctx, cancel := context.WithTimeout(r.ctx, r.v.cfg.FetchTimeout)
			f.sealed, f.err = r.v.chunks.GetSealed(fctx, ref)
			cancel()
			if f.err == nil {
				if err := r.v.cache.Put(ref.ID, f.sealed); err != nil {
					r.v.log.Warn("read cache", "err", err)
				}
			}
			r.mu.Lock()
			delete(r.fetches, ref.ID)
			r.mu.Unlock()
			close(f.done)
		}()
	}
	r.mu.Unlock()
	select {
	case <-f.done:
		return f.sealed, f.err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("fetch chunk %s: %w", ref.ID, ctx.Err())
		}
		return nil, ErrInterrupted
	}
}

// prefetch starts fetching the chunks of ino that follow off into the disk cache, up to
// Config.Prefetch chunks, skipping cached ones and when enough prefetches are running.
func (r *reader) prefetch(ino uint64, off int64) {
	var refs []pipeline.Ref
	r.v.db.View(func(tx *bolt.Tx) error {
		exts, err := extentsIn(tx, ino, off, off+int64(r.v.cfg.Prefetch)*(8<<20))
		if err != nil {
			return nil
		}
		for _, e := range exts {
			if e.Ref != nil && len(refs) < r.v.cfg.Prefetch {
				refs = append(refs, *e.Ref)
			}
		}
		return nil
	})
	for _, ref := range refs {
		if r.v.cache.Has(ref.ID) {
			continue
		}
		r.mu.Lock()
		_, fetching := r.fetches[ref.ID]
		r.mu.Unlock()
		if fetching {
			continue
		}
		select {
		case r.sem <- struct{}{}:
		default:
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() { <-r.sem }()
			r.sealed(r.ctx, ref)
		}()
	}
}
