package delegate

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/root"
	"github.com/scatterfs/scatter/swarm"
)

// RepairerConfig configures a Repairer. The zero value gives the defaults.
type RepairerConfig struct {
	// Pages sets the erasure code and lease of the log's pages (K 0: the manifest's
	// pages' code; Lease 0: pipeline.DefaultLease).
	Pages pipeline.Config
	// Validity is how long a log record is valid; 0 means DefaultValidity.
	Validity time.Duration
	// Logger receives a line when the manifest or the log changes; nil means
	// slog.Default().
	Logger *slog.Logger
	// StateFile, if set, keeps the highest manifest and log sequences seen across
	// restarts, so an older manifest replayed to a restarted repairer is refused too.
	StateFile string
}

// Repairer is the helper's side: an upkeep.Drive backed by the drive's repair manifest.
// LiveRefs loads the newest manifest (and, the first time, the repairer's own log) and
// returns every Ref it lists with the repairer's replacements applied, plus the Refs of
// the manifest's and the log's own pages, so they are renewed and repaired too.
// UpdateRefs records replacements and publishes the repair log. Drive adds a Garbage that
// is always empty: deletion stays the owner's. Run it with upkeep.Start(u, r.Drive(), ...);
// it is safe for concurrent use.
type Repairer struct {
	dht   routing.ValueStore
	cap   crypt.RepairCap
	logSK ed25519.PrivateKey
	pages *pages
	cfg   RepairerConfig
	log   *slog.Logger

	mu          sync.Mutex // held across each call: the Loop runs one pass at a time anyway
	loaded      bool       // a manifest was loaded
	manifestSeq uint64
	manifest    []pipeline.Ref         // the Refs the manifest lists, as listed
	meta        []pipeline.Ref         // the manifest's index and pages, as listed
	overlay     map[string]Replacement // by refKey(Old): what the repairer replaced
	logSeq      uint64
	logRefs     []pipeline.Ref // the last published log's index and pages
	dirty       bool           // overlay changed since the log was last published
}

// NewRepairer returns a Repairer holding capability c, reading and writing records
// through dht and pages through net (which must act for c.Storage).
// A StateFile that exists but cannot be read is an error.
func NewRepairer(dht routing.ValueStore, net swarm.Network, c crypt.RepairCap, cfg RepairerConfig) (*Repairer, error) {
	cfg.Validity = cmp.Or(cfg.Validity, DefaultValidity)
	r := &Repairer{dht: dht, cap: c, logSK: c.LogKey(), pages: newPages(net, c, cfg.Pages), cfg: cfg,
		log: cmp.Or(cfg.Logger, slog.Default()), overlay: map[string]Replacement{}}
	if cfg.StateFile != "" {
		b, err := os.ReadFile(cfg.StateFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("delegate: repairer state: %w", err)
		default:
			if _, err := fmt.Sscanf(string(b), "manifest %d log %d\n", &r.manifestSeq, &r.logSeq); err != nil {
				return nil, fmt.Errorf("delegate: repairer state %s: %w", cfg.StateFile, err)
			}
		}
	}
	return r, nil
}

// saveState records the sequences seen in StateFile, through a rename so a crash leaves
// the old or the new state.
func (r *Repairer) saveState() error {
	if r.cfg.StateFile == "" {
		return nil
	}
	tmp := r.cfg.StateFile + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "manifest %d log %d\n", r.manifestSeq, r.logSeq), 0o600); err != nil {
		return fmt.Errorf("delegate: repairer state: %w", err)
	}
	if err := os.Rename(tmp, r.cfg.StateFile); err != nil {
		return fmt.Errorf("delegate: repairer state: %w", err)
	}
	return nil
}

// refKey names a Ref with its holders.
func refKey(r *pipeline.Ref) string {
	var b strings.Builder
	b.Write(r.ID[:])
	for _, f := range r.Fragments {
		b.Write(f.ID[:])
		b.WriteString(string(f.Peer))
		b.WriteByte(0)
	}
	return b.String()
}

// current returns r with the repairer's replacement applied.
func (r *Repairer) current(ref pipeline.Ref) pipeline.Ref {
	if x, ok := r.overlay[refKey(&ref)]; ok {
		return x.New
	}
	return ref
}

// refresh loads the manifest if a newer one is published, and the repairer's own log
// the first time.
func (r *Repairer) refresh(ctx context.Context) error {
	pub := r.cap.Manifest
	body, seq, err := getRecord(ctx, r.dht, pub, r.cap.ManifestPayloadKey(), adManifest, r.manifestSeq)
	if err != nil {
		return fmt.Errorf("delegate: manifest: %w", err)
	}
	if r.loaded && seq == r.manifestSeq {
		return nil
	}
	var refs, meta []pipeline.Ref
	if body.index != nil {
		pageRefs, pgs, err := r.pages.read(ctx, *body.index, r.current)
		if err != nil {
			return fmt.Errorf("delegate: manifest %d: %w", seq, err)
		}
		for _, b := range pgs {
			page, err := decodeList(b, kindManifest)
			if err != nil {
				return fmt.Errorf("delegate: manifest %d: %w", seq, err)
			}
			refs = append(refs, page...)
		}
		// Listed as the owner wrote them: the overlay maps them to where they are now.
		meta = append([]pipeline.Ref{*body.index}, pageRefs...)
		for i := range pageRefs {
			meta[i+1] = r.original(pageRefs[i])
		}
	}
	if len(refs) != int(body.count) {
		return fmt.Errorf("%w: manifest %d lists %d refs, its pages %d", ErrCorrupt, seq, body.count, len(refs))
	}
	first := !r.loaded
	r.manifest, r.meta, r.manifestSeq, r.loaded = refs, meta, seq, true
	if err := r.saveState(); err != nil {
		r.log.Warn("delegate: keeping the manifest sequence", "err", err)
	}
	if first {
		if err := r.loadLog(ctx); err != nil {
			r.loaded = false // try the log again next time, before publishing over it
			return err
		}
	}
	// Replacements the owner merged (the manifest lists the new Ref now) or whose chunk
	// is gone leave the log.
	listed := map[string]bool{}
	for _, l := range [][]pipeline.Ref{r.manifest, r.meta} {
		for i := range l {
			listed[refKey(&l[i])] = true
		}
	}
	dropped := 0
	for k := range r.overlay {
		if !listed[k] {
			delete(r.overlay, k)
			dropped++
		}
	}
	r.dirty = r.dirty || dropped > 0
	r.log.Info("delegate: manifest loaded", "seq", seq, "chunks", len(refs), "pages", max(len(meta)-1, 0),
		"replacements_kept", len(r.overlay), "replacements_merged", dropped)
	return nil
}

// original returns the Ref the overlay replaced by ref, or ref.
func (r *Repairer) original(ref pipeline.Ref) pipeline.Ref {
	for _, x := range r.overlay {
		if x.New.Equal(&ref) {
			return x.Old
		}
	}
	return ref
}

// loadLog reads the repairer's own last log (after a restart) into the overlay.
func (r *Repairer) loadLog(ctx context.Context) error {
	rs, seq, err := readLog(ctx, r.dht, r.pages, r.cap, r.logSeq)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delegate: own repair log: %w", err)
	}
	r.logSeq = seq
	for _, x := range rs {
		r.overlay[refKey(&x.Old)] = x
	}
	return nil
}

// LiveRefs implements upkeep.Drive: it loads a newer manifest if there is one, publishes
// the log if a publication failed before, and returns the Refs to keep alive.
func (r *Repairer) LiveRefs(ctx context.Context) ([]pipeline.Ref, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(ctx); err != nil {
		if !r.loaded {
			return nil, err
		}
		// The DHT may be unreachable for a while: keep the fragments of the manifest
		// already loaded alive meanwhile.
		r.log.Warn("delegate: keeping the last manifest", "seq", r.manifestSeq, "err", err)
	}
	if r.dirty {
		if err := r.publishLog(ctx); err != nil {
			r.log.Warn("delegate: publish repair log", "err", err)
		}
	}
	out := make([]pipeline.Ref, 0, len(r.manifest)+len(r.meta)+len(r.logRefs))
	for _, l := range [][]pipeline.Ref{r.manifest, r.meta} {
		for _, ref := range l {
			out = append(out, r.current(ref))
		}
	}
	return append(out, r.logRefs...), nil
}

// UpdateRefs implements upkeep.Drive: it records the replacements of every Ref of those
// chunks and publishes the repair log.
func (r *Repairer) UpdateRefs(ctx context.Context, refs map[crypt.ChunkID]pipeline.Ref) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range [][]pipeline.Ref{r.manifest, r.meta} {
		for _, orig := range l {
			nr, ok := refs[orig.ID]
			if !ok {
				continue
			}
			cur := r.current(orig)
			if cur.Equal(&nr) || !cur.SameChunk(&nr) {
				continue
			}
			r.overlay[refKey(&orig)] = Replacement{Old: orig, New: nr}
			n++
		}
	}
	for i, lr := range r.logRefs {
		if nr, ok := refs[lr.ID]; ok && lr.SameChunk(&nr) {
			r.logRefs[i] = nr
		}
	}
	if n == 0 {
		return nil
	}
	r.dirty = true
	return r.publishLog(ctx)
}

// publishLog writes the overlay as the repair log.
func (r *Repairer) publishLog(ctx context.Context) error {
	rs := slices.Collect(maps.Values(r.overlay))
	slices.SortFunc(rs, func(a, b Replacement) int { return compareRefs(a.Old, b.Old) })
	body := recordBody{count: uint32(len(rs))}
	var logRefs []pipeline.Ref
	if len(rs) > 0 {
		var encoded [][]byte
		for chunk := range slices.Chunk(rs, refsPerPage/2) {
			b, err := encodeLog(chunk)
			if err != nil {
				return err
			}
			encoded = append(encoded, b)
		}
		// Unless configured, the log's pages take the manifest's shape: the owner chose
		// it for the swarm it knows.
		var k, m uint8
		if r.cfg.Pages.K == 0 && len(r.meta) > 0 {
			k, m = r.meta[0].K, r.meta[0].M
		}
		index, pageRefs, err := r.pages.write(ctx, k, m, encoded)
		if err != nil {
			return err
		}
		body.index = &index
		logRefs = append([]pipeline.Ref{index}, pageRefs...)
	}
	seq := nextSeq(r.logSeq)
	pub := r.logSK.Public().(ed25519.PublicKey)
	payload, err := sealBody(r.cap.LogPayloadKey(), adLog, pub, seq, body)
	if err != nil {
		return err
	}
	rec, err := root.EncodeNamed(r.logSK, seq, payload, r.cfg.Validity)
	if err != nil {
		return err
	}
	r.logSeq = seq
	if err := root.PutNamed(ctx, r.dht, pub, rec); err != nil {
		return fmt.Errorf("delegate: put repair log record: %w", err)
	}
	r.logRefs, r.dirty = logRefs, false
	if err := r.saveState(); err != nil {
		r.log.Warn("delegate: keeping the log sequence", "err", err)
	}
	r.log.Info("delegate: repair log published", "seq", seq, "replacements", len(rs))
	return nil
}

// Replacements returns the replacements the repairer holds now, sorted by old Ref.
func (r *Repairer) Replacements() []Replacement {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := slices.Collect(maps.Values(r.overlay))
	slices.SortFunc(rs, func(a, b Replacement) int { return compareRefs(a.Old, b.Old) })
	return rs
}
