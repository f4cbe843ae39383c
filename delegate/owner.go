package delegate

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/zeebo/blake3"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/root"
	"github.com/scatterfs/scatter/swarm"
)

// Defaults of OwnerConfig and RepairerConfig.
const (
	// DefaultValidity is how long a manifest or log record stays valid: the root record's.
	DefaultValidity = root.DefaultValidity
	// DefaultRepublish is how often an unchanged manifest record is signed again (under
	// a new sequence number, same pages), so it never expires while the owner is around.
	DefaultRepublish = root.DefaultRepublish
)

// Refs is the owner's metadata as the manifest and the merge need it; volume.Volume (an
// upkeep.Drive) implements it.
type Refs interface {
	// LiveRefs returns every distinct Ref the drive references.
	LiveRefs(ctx context.Context) ([]pipeline.Ref, error)
	// UpdateRefs records new Refs (new holders) for chunks, in every place that
	// references them.
	UpdateRefs(ctx context.Context, refs map[crypt.ChunkID]pipeline.Ref) error
}

// OwnerConfig configures an Owner. The zero value gives the defaults.
type OwnerConfig struct {
	// Pages sets the erasure code (K, M; 0: chunker's defaults) and the lease of the
	// manifest's pages. The repairer renews them; the owner puts them again when they are
	// older than half their lease.
	Pages pipeline.Config
	// Validity is how long a record is valid; 0 means DefaultValidity.
	Validity time.Duration
	// Republish is how often an unchanged manifest is signed again; 0 means
	// DefaultRepublish.
	Republish time.Duration
}

// Owner is the drive owner's side: it publishes the repair manifest and merges the
// repair log. It is safe for concurrent use.
type Owner struct {
	dht   routing.ValueStore
	cap   crypt.RepairCap
	sk    ed25519.PrivateKey // the manifest identity
	pages *pages
	cfg   OwnerConfig

	mu       sync.Mutex // serialises Publish and Merge; guards the fields below
	seq      uint64     // last manifest sequence used
	sum      [32]byte   // hash of the Refs last published
	body     *recordBody
	signedAt time.Time                      // when the last record was signed
	putAt    time.Time                      // when every page was last put (known reset)
	logSeq   uint64                         // highest repair log sequence seen
	known    map[crypt.ChunkID]pipeline.Ref // pages on the peers since putAt, by chunk ID: not put again
}

// NewOwner returns the Owner of the drive whose keys are keys, publishing through dht and
// storing pages through net (which must act for keys.Storage).
func NewOwner(dht routing.ValueStore, net swarm.Network, keys *crypt.Keys, cfg OwnerConfig) *Owner {
	cfg.Validity = cmp.Or(cfg.Validity, DefaultValidity)
	cfg.Republish = cmp.Or(cfg.Republish, DefaultRepublish)
	cfg.Pages.Lease = cmp.Or(cfg.Pages.Lease, pipeline.DefaultLease)
	c := keys.RepairCap()
	return &Owner{dht: dht, cap: c, sk: keys.ManifestKey(), pages: newPages(net, c, cfg.Pages), cfg: cfg}
}

// nextSeq returns a sequence number above last and, so that a device restarted with no
// memory of last still goes above it, at least the time in milliseconds.
func nextSeq(last uint64) uint64 { return max(last+1, uint64(time.Now().UnixMilli())) }

// manifestSum hashes sorted Refs: equal sets of Refs give equal sums.
func manifestSum(refs []pipeline.Ref) [32]byte {
	h := blake3.New()
	for _, b := range encodePages(kindManifest, refs) {
		_, _ = h.Write(b)
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// encodePages cuts sorted refs into pages: after a Ref whose chunk ID matches cutMask,
// and at refsPerPage at most. Encoding checked Refs cannot fail.
func encodePages(kind byte, refs []pipeline.Ref) [][]byte {
	var out [][]byte
	start := 0
	for i := range refs {
		id := refs[i].ID
		last := i+1 == len(refs)
		// Variants of one chunk stay on one page: a cut falls after the last of them.
		sameNext := !last && refs[i+1].ID == id
		if last || i+1-start == refsPerPage || !sameNext && binary.BigEndian.Uint16(id[30:])&cutMask == 0 {
			b, err := encodeList(kind, refs[start:i+1])
			if err != nil {
				panic("BUG: delegate: encode checked refs: " + err.Error())
			}
			out = append(out, b)
			start = i + 1
		}
	}
	return out
}

// Publish publishes refs (the drive's live Refs) as the repair manifest, unless they are
// the Refs last published: then it only signs the record again if it is older than
// Republish, and puts its pages again if they are older than half their lease. It
// reports whether it wrote anything.
func (o *Owner) Publish(ctx context.Context, refs []pipeline.Ref) (bool, error) {
	refs = slices.Clone(refs)
	for i := range refs {
		if err := checkRef(&refs[i]); err != nil {
			return false, err
		}
	}
	slices.SortFunc(refs, compareRefs)
	refs = slices.CompactFunc(refs, func(a, b pipeline.Ref) bool { return a.Equal(&b) })
	sum := manifestSum(refs)
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	body := o.body
	if body == nil || sum != o.sum || now.Sub(o.putAt) > o.cfg.Pages.Lease/2 {
		if o.known == nil || now.Sub(o.putAt) > o.cfg.Pages.Lease/2 {
			// Pages older than half their lease are put again, not reused.
			o.known, o.putAt = map[crypt.ChunkID]pipeline.Ref{}, now
		}
		body = &recordBody{count: uint32(len(refs))}
		if len(refs) > 0 {
			index, pageRefs, err := o.pages.writeKnown(ctx, encodePages(kindManifest, refs), o.known)
			if err != nil {
				return false, err
			}
			body.index = &index
			// Only the current manifest's pages are worth reusing.
			o.known = make(map[crypt.ChunkID]pipeline.Ref, len(pageRefs))
			for _, r := range pageRefs {
				o.known[r.ID] = r
			}
		}
	} else if now.Sub(o.signedAt) < o.cfg.Republish {
		return false, nil
	}
	seq := nextSeq(o.seq)
	pub := o.sk.Public().(ed25519.PublicKey)
	payload, err := sealBody(o.cap.ManifestPayloadKey(), adManifest, pub, seq, *body)
	if err != nil {
		return false, err
	}
	rec, err := root.EncodeNamed(o.sk, seq, payload, o.cfg.Validity)
	if err != nil {
		return false, err
	}
	// The sequence is taken before the put: a record that reached some peers is never
	// followed by another with the same number.
	o.seq = seq
	if err := root.PutNamed(ctx, o.dht, pub, rec); err != nil {
		return false, fmt.Errorf("delegate: put manifest record: %w", err)
	}
	o.sum, o.body, o.signedAt = sum, body, now
	return true, nil
}

// MergeStats sums a Merge.
type MergeStats struct {
	Seq      uint64 // the log record's sequence; 0 when there was none
	Logged   int    // replacements in the log
	Applied  int    // recorded in the drive
	Outdated int    // skipped: the drive no longer records the old Ref (the owner repaired or deleted the chunk meanwhile, or already merged)
}

// Merge reads the repair log and records, through d.UpdateRefs, each replacement whose
// old Ref is still what d records (holders included), so a chunk the owner repaired or
// changed meanwhile is not overwritten. No log yet is not an error. A log older than one
// merged before is ErrReplay.
func (o *Owner) Merge(ctx context.Context, d Refs) (MergeStats, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var st MergeStats
	rs, seq, err := readLog(ctx, o.dht, o.pages, o.cap, o.logSeq)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return st, nil
		}
		return st, err
	}
	st.Seq, st.Logged = seq, len(rs)
	o.logSeq = seq
	for _, r := range rs {
		// Pages of the manifest the repairer moved: reuse them where they are now.
		if k, ok := o.known[r.Old.ID]; ok && k.Equal(&r.Old) {
			o.known[r.Old.ID] = r.New
		}
	}
	if len(rs) == 0 {
		return st, nil
	}
	live, err := d.LiveRefs(ctx)
	if err != nil {
		return st, err
	}
	byID := map[crypt.ChunkID][]int{}
	for i, r := range live {
		byID[r.ID] = append(byID[r.ID], i)
	}
	updates := map[crypt.ChunkID]pipeline.Ref{}
	for _, r := range rs {
		if _, done := updates[r.Old.ID]; done {
			st.Outdated++
			continue
		}
		if slices.ContainsFunc(byID[r.Old.ID], func(i int) bool { return live[i].Equal(&r.Old) }) {
			updates[r.Old.ID] = r.New
		} else {
			st.Outdated++
		}
	}
	if len(updates) == 0 {
		return st, nil
	}
	if err := d.UpdateRefs(ctx, updates); err != nil {
		return st, fmt.Errorf("delegate: merge repair log: %w", err)
	}
	st.Applied = len(updates)
	return st, nil
}

// readLog fetches and opens the repair log record and its pages. A record below minSeq is
// ErrReplay.
func readLog(ctx context.Context, dht routing.ValueStore, p *pages, c crypt.RepairCap, minSeq uint64) ([]Replacement, uint64, error) {
	pub := c.LogKey().Public().(ed25519.PublicKey)
	body, seq, err := getRecord(ctx, dht, pub, c.LogPayloadKey(), adLog, minSeq)
	if err != nil {
		return nil, 0, err
	}
	if body.index == nil {
		return nil, seq, nil
	}
	_, pgs, err := p.read(ctx, *body.index, func(r pipeline.Ref) pipeline.Ref { return r })
	if err != nil {
		return nil, 0, err
	}
	var rs []Replacement
	for _, b := range pgs {
		page, err := decodeLog(b)
		if err != nil {
			return nil, 0, err
		}
		rs = append(rs, page...)
	}
	if len(rs) != int(body.count) {
		return nil, 0, fmt.Errorf("%w: log lists %d replacements, its pages %d", ErrCorrupt, body.count, len(rs))
	}
	return rs, seq, nil
}

// getRecord fetches, validates and opens the record of identity pub.
func getRecord(ctx context.Context, dht routing.ValueStore, pub ed25519.PublicKey, key [crypt.KeySize]byte,
	ad string, minSeq uint64) (recordBody, uint64, error) {
	b, err := root.GetNamed(ctx, dht, pub)
	if err != nil {
		if errors.Is(err, root.ErrNotFound) {
			return recordBody{}, 0, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return recordBody{}, 0, err
	}
	return openRecord(pub, key, ad, minSeq, b)
}

// openRecord validates and opens a record of identity pub.
func openRecord(pub ed25519.PublicKey, key [crypt.KeySize]byte, ad string, minSeq uint64, b []byte) (recordBody, uint64, error) {
	seq, payload, err := root.DecodeNamed(pub, b)
	if err != nil {
		return recordBody{}, 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if seq < minSeq {
		return recordBody{}, 0, fmt.Errorf("%w: sequence %d, seen %d", ErrReplay, seq, minSeq)
	}
	body, err := openBody(key, ad, pub, seq, payload)
	if err != nil {
		return recordBody{}, 0, err
	}
	return body, seq, nil
}
