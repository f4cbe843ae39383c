package delegate

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
)

// pages stores the manifest's and the log's pages as chunks through the ordinary
// pipeline, sealed with the capability's object keys (crypt.RepairCap.ObjectKeys): the
// repairer opens them, and nothing it holds opens the drive's own chunks.
type pages struct {
	net   swarm.Network
	keys  *crypt.Keys
	cfg   pipeline.Config // K, M of the pages written; Lease
	mu    sync.Mutex
	store map[[2]uint8]*pipeline.Store // guarded by mu: one per shape met
}

func newPages(net swarm.Network, c crypt.RepairCap, cfg pipeline.Config) *pages {
	return &pages{net: net, keys: c.ObjectKeys(), cfg: cfg, store: map[[2]uint8]*pipeline.Store{}}
}

// storeFor returns the Store for chunks coded k+m (k 0: the configured shape).
func (p *pages) storeFor(k, m uint8) (*pipeline.Store, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := [2]uint8{k, m}
	if s := p.store[key]; s != nil {
		return s, nil
	}
	cfg := p.cfg
	if k != 0 {
		cfg.K, cfg.M = int(k), int(m)
	}
	s, err := pipeline.NewStore(p.net, p.keys, cfg)
	if err != nil {
		return nil, err
	}
	p.store[key] = s
	return s, nil
}

// write puts each encoded page, then the index listing them, coded k+m (k 0: the
// configured shape), and returns the index Ref and the pages' Refs.
func (p *pages) write(ctx context.Context, k, m uint8, encoded [][]byte) (pipeline.Ref, []pipeline.Ref, error) {
	return p.put(ctx, k, m, encoded, nil)
}

// writeKnown is write in the configured shape, except that a page whose chunk ID is in
// known is not put again: its Ref there is used.
func (p *pages) writeKnown(ctx context.Context, encoded [][]byte, known map[crypt.ChunkID]pipeline.Ref) (pipeline.Ref, []pipeline.Ref, error) {
	return p.put(ctx, 0, 0, encoded, known)
}

func (p *pages) put(ctx context.Context, k, m uint8, encoded [][]byte, known map[crypt.ChunkID]pipeline.Ref) (pipeline.Ref, []pipeline.Ref, error) {
	s, err := p.storeFor(k, m)
	if err != nil {
		return pipeline.Ref{}, nil, err
	}
	refs := make([]pipeline.Ref, len(encoded))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, b := range encoded {
		if r, ok := known[p.keys.ChunkID(b)]; ok {
			refs[i] = r
			continue
		}
		g.Go(func() error {
			r, err := s.Put(gctx, b)
			if err != nil {
				return fmt.Errorf("delegate: put page %d of %d: %w", i+1, len(encoded), err)
			}
			refs[i] = r
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return pipeline.Ref{}, nil, err
	}
	ib, err := encodeList(kindIndex, refs)
	if err != nil {
		return pipeline.Ref{}, nil, err
	}
	index, err := s.Put(ctx, ib)
	if err != nil {
		return pipeline.Ref{}, nil, fmt.Errorf("delegate: put page index: %w", err)
	}
	return index, refs, nil
}

// get fetches and opens one page.
func (p *pages) get(ctx context.Context, r pipeline.Ref) ([]byte, error) {
	if err := checkRef(&r); err != nil {
		return nil, err
	}
	s, err := p.storeFor(r.K, r.M)
	if err != nil {
		return nil, err
	}
	b, err := s.Get(ctx, r, nil)
	if err != nil {
		return nil, fmt.Errorf("delegate: get page %s: %w", r.ID, err)
	}
	return b, nil
}

// read fetches the index r names and every page it lists (each through fix, which
// returns the Ref to fetch a page by: the repairer's own repairs of pages) and returns
// the pages' Refs (as fix gave them) and plaintexts, in order.
func (p *pages) read(ctx context.Context, index pipeline.Ref, fix func(pipeline.Ref) pipeline.Ref) ([]pipeline.Ref, [][]byte, error) {
	ib, err := p.get(ctx, fix(index))
	if err != nil {
		return nil, nil, err
	}
	refs, err := decodeList(ib, kindIndex)
	if err != nil {
		return nil, nil, fmt.Errorf("delegate: page index: %w", err)
	}
	refs = slices.Clone(refs)
	out := make([][]byte, len(refs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i := range refs {
		refs[i] = fix(refs[i])
		g.Go(func() error {
			b, err := p.get(gctx, refs[i])
			out[i] = b
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return refs, out, nil
}
