package delegate

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/routing"
	"go.uber.org/goleak"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/root"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/swarm/memnet"
	"github.com/scatterfs/scatter/upkeep"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// memDHT is a routing.ValueStore in memory that keeps the last value put per key.
type memDHT struct {
	mu   sync.Mutex
	vals map[string][]byte
	puts int
}

var _ routing.ValueStore = (*memDHT)(nil)

func (d *memDHT) PutValue(_ context.Context, key string, val []byte, _ ...routing.Option) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.vals == nil {
		d.vals = map[string][]byte{}
	}
	d.vals[key] = bytes.Clone(val)
	d.puts++
	return nil
}

func (d *memDHT) GetValue(_ context.Context, key string, _ ...routing.Option) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.vals[key]
	if !ok {
		return nil, routing.ErrNotFound
	}
	return bytes.Clone(v), nil
}

func (d *memDHT) SearchValue(ctx context.Context, key string, opts ...routing.Option) (<-chan []byte, error) {
	v, err := d.GetValue(ctx, key, opts...)
	if err != nil {
		return nil, err
	}
	ch := make(chan []byte, 1)
	ch <- v
	close(ch)
	return ch, nil
}

func (d *memDHT) get(t *testing.T, pub ed25519.PublicKey) []byte {
	t.Helper()
	k, err := root.Key(pub)
	if err != nil {
		t.Fatal(err)
	}
	v, err := d.GetValue(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (d *memDHT) set(t *testing.T, pub ed25519.PublicKey, v []byte) {
	t.Helper()
	k, err := root.Key(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.PutValue(t.Context(), k, v); err != nil {
		t.Fatal(err)
	}
}

// memDrive is the owner's metadata in memory.
type memDrive struct {
	mu   sync.Mutex
	refs []pipeline.Ref
}

func (m *memDrive) LiveRefs(context.Context) ([]pipeline.Ref, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.refs), nil
}

func (m *memDrive) UpdateRefs(_ context.Context, u map[crypt.ChunkID]pipeline.Ref) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.refs {
		if nr, ok := u[m.refs[i].ID]; ok && m.refs[i].SameChunk(&nr) {
			m.refs[i] = nr
		}
	}
	return nil
}

func keysOf(b byte) *crypt.Keys {
	var s crypt.Secret
	for i := range s {
		s[i] = b + byte(i)
	}
	return s.Keys()
}

// env is a memnet world of 12 donors, a drive with 5 chunks coded 4+2 on it, and its
// owner and repairer over one in-memory DHT.
type env struct {
	w      *memnet.World
	peers  []swarm.PeerID
	keys   *crypt.Keys
	dht    *memDHT
	store  *pipeline.Store
	drive  *memDrive
	owner  *Owner
	plains [][]byte
}

const testK, testM = 4, 2

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{w: memnet.NewWorld(), keys: keysOf(1), dht: &memDHT{}, drive: &memDrive{}}
	e.peers = e.w.AddPeers("p", 12, 1<<30)
	owner := string(e.keys.StoragePublic)
	net := e.w.Net("owner", owner)
	cfg := pipeline.Config{K: testK, M: testM}
	var err error
	if e.store, err = pipeline.NewStore(net, e.keys, cfg); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		plain := bytes.Repeat([]byte{byte(i)}, 1000+i)
		ref, err := e.store.Put(t.Context(), plain)
		if err != nil {
			t.Fatal(err)
		}
		e.plains = append(e.plains, plain)
		e.drive.refs = append(e.drive.refs, ref)
	}
	e.owner = NewOwner(e.dht, net, e.keys, OwnerConfig{Pages: cfg})
	return e
}

func (e *env) repairer(t *testing.T, c crypt.RepairCap, state string) *Repairer {
	t.Helper()
	r, err := NewRepairer(e.dht, e.w.Net("repairer", string(c.StoragePublic())), c,
		RepairerConfig{Pages: pipeline.Config{K: testK, M: testM}, Logger: quiet, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *env) publish(t *testing.T) bool {
	t.Helper()
	refs, _ := e.drive.LiveRefs(t.Context())
	ok, err := e.owner.Publish(t.Context(), refs)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestRepairRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if !e.publish(t) {
		t.Fatal("first publish wrote nothing")
	}
	puts := e.dht.puts
	if e.publish(t) || e.dht.puts != puts {
		t.Fatal("unchanged refs published again")
	}
	r := e.repairer(t, e.keys.RepairCap(), "")
	live, err := r.LiveRefs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 5 chunks, the index and one page.
	if len(live) != 5+2 {
		t.Fatalf("repairer sees %d refs, want 7", len(live))
	}
	for _, want := range e.drive.refs {
		if !slices.ContainsFunc(live, func(r pipeline.Ref) bool { return r.Equal(&want) }) {
			t.Fatalf("chunk %s not in the manifest as the owner records it", want.ID)
		}
	}

	// m donors die; the repairer alone rebuilds.
	lost := holdersOf(e.drive.refs)[:testM]
	for _, p := range lost {
		e.w.Kill(p)
	}
	u := upkeep.New(e.w.Net("repairer", string(e.keys.StoragePublic)), upkeep.Config{})
	// No background check: the one checked is Run below.
	loop := upkeep.Start(u, r.Drive(), upkeep.LoopConfig{CheckEvery: -1, RenewEvery: time.Hour, Logger: quiet})
	defer loop.Close()
	rep, err := loop.Run(ctx, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repair == nil || rep.Repair.Failed+rep.Repair.Partial != 0 || rep.Repair.Repaired == 0 {
		t.Fatalf("repair: %+v", rep.Repair)
	}
	if len(r.Replacements()) == 0 {
		t.Fatal("no replacement recorded")
	}
	// Full health, checked on the donors, through the repairer's view.
	live, _ = r.LiveRefs(ctx)
	_, cst, err := u.Check(ctx, live, upkeep.CheckOptions{})
	if err != nil || cst.Complete != len(live) {
		t.Fatalf("after repair: %+v %v", cst, err)
	}

	// The owner merges: every chunk it recorded on a lost peer now names live holders.
	st, err := e.owner.Merge(ctx, e.drive)
	if err != nil {
		t.Fatal(err)
	}
	if st.Applied == 0 || st.Applied+st.Outdated != st.Logged {
		t.Fatalf("merge: %+v", st)
	}
	_, cst, err = u.Check(ctx, e.drive.refs, upkeep.CheckOptions{})
	if err != nil || cst.Complete != len(e.drive.refs) {
		t.Fatalf("owner's refs after merge: %+v %v", cst, err)
	}
	for i, ref := range e.drive.refs {
		got, err := e.store.Get(ctx, ref, nil)
		if err != nil || !bytes.Equal(got, e.plains[i]) {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	// Merging again changes nothing: the old Refs are gone from the drive.
	if st, err := e.owner.Merge(ctx, e.drive); err != nil || st.Applied != 0 {
		t.Fatalf("second merge: %+v %v", st, err)
	}

	// The owner publishes the merged refs; the repairer drops the merged replacements
	// and publishes a log with only what is left (the pages it repaired, if any).
	if !e.publish(t) {
		t.Fatal("changed refs not published")
	}
	if _, err := r.LiveRefs(ctx); err != nil {
		t.Fatal(err)
	}
	for _, x := range r.Replacements() {
		if slices.ContainsFunc(e.drive.refs, func(d pipeline.Ref) bool { return d.ID == x.Old.ID }) {
			t.Fatalf("replacement of chunk %s kept after the owner merged it", x.Old.ID)
		}
	}

	// A repairer restarted with no memory reads its log back.
	r2 := e.repairer(t, e.keys.RepairCap(), "")
	if _, err := r2.LiveRefs(ctx); err != nil {
		t.Fatal(err)
	}
	if a, b := r.Replacements(), r2.Replacements(); len(a) != len(b) {
		t.Fatalf("restarted repairer holds %d replacements, had %d", len(b), len(a))
	}
}

func holdersOf(refs []pipeline.Ref) []swarm.PeerID {
	var ps []swarm.PeerID
	for _, r := range refs {
		for _, f := range r.Fragments {
			if !slices.Contains(ps, f.Peer) {
				ps = append(ps, f.Peer)
			}
		}
	}
	slices.Sort(ps)
	return ps
}

func TestRenewOnly(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.publish(t)
	c := e.keys.RepairCap()
	r := e.repairer(t, c, "")
	live, err := r.LiveRefs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u := upkeep.New(e.w.Net("repairer", string(c.StoragePublic())), upkeep.Config{Lease: 90 * 24 * time.Hour})
	target := time.Now().Add(60 * 24 * time.Hour)
	if st, err := u.Renew(ctx, live, target, nil); err != nil || len(st.Failures) != 0 {
		t.Fatalf("renew: %+v %v", st, err)
	}
	for _, ref := range live {
		for _, f := range ref.Fragments {
			l, ok := e.w.Lease(f.Peer, string(e.keys.StoragePublic), f.ID)
			if !ok || l.Before(target.Add(-time.Second)) {
				t.Fatalf("fragment %s on %s: lease %v, want %v", f.ID, f.Peer, l, target)
			}
		}
	}
	// The repairer's drive has no garbage, ever.
	if g, err := r.Drive().Garbage(ctx, time.Now()); err != nil || len(g) != 0 {
		t.Fatalf("garbage: %v %v", g, err)
	}
}

func TestRecordsRejected(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.publish(t)
	c := e.keys.RepairCap()
	mpub := c.Manifest
	first := e.dht.get(t, mpub)

	// Another drive's capability opens nothing of this drive.
	other := e.repairer(t, keysOf(9).RepairCap(), "")
	if _, err := other.LiveRefs(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another drive's repairer: %v, want ErrNotFound (its own manifest name)", err)
	}
	wrong := keysOf(9).RepairCap()
	wrong.Manifest = c.Manifest // the right name, the wrong payload keys
	if _, _, err := getRecord(ctx, e.dht, mpub, wrong.ManifestPayloadKey(), adManifest, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("wrong capability: %v, want ErrInvalid", err)
	}
	// A log key cannot sign a manifest: a record under the manifest name signed by anyone
	// else is rejected.
	seq := uint64(time.Now().UnixMilli()) + 1000
	payload, err := sealBody(c.ManifestPayloadKey(), adManifest, mpub, seq, recordBody{})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := root.EncodeNamed(c.LogKey(), seq, payload, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := openRecord(mpub, c.ManifestPayloadKey(), adManifest, 0, forged); !errors.Is(err, ErrInvalid) {
		t.Fatalf("manifest signed by the log key: %v, want ErrInvalid", err)
	}
	// Tampered: any flipped bit of the record is rejected or changes nothing.
	for i := 0; i < len(first); i += 7 {
		bad := bytes.Clone(first)
		bad[i] ^= 0x10
		if body, _, err := openRecord(mpub, c.ManifestPayloadKey(), adManifest, 0, bad); err == nil {
			ok, _, _ := openRecord(mpub, c.ManifestPayloadKey(), adManifest, 0, first)
			if body.count != ok.count || !body.index.Equal(ok.index) {
				t.Fatalf("byte %d flipped: opens to another manifest", i)
			}
		}
	}
	// A payload moved to another sequence does not open.
	s1, p1, _ := root.DecodeNamed(mpub, first)
	if _, err := openBody(c.ManifestPayloadKey(), adManifest, mpub, s1+1, p1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("payload under another sequence: %v", err)
	}
	// Replay: after a newer manifest, the first one put back is refused.
	r := e.repairer(t, c, "")
	if _, err := r.LiveRefs(ctx); err != nil {
		t.Fatal(err)
	}
	e.drive.refs = e.drive.refs[:3]
	if !e.publish(t) {
		t.Fatal("not published")
	}
	if live, err := r.LiveRefs(ctx); err != nil || len(live) != 3+2 {
		t.Fatalf("after the second manifest: %d refs, %v", len(live), err)
	}
	newest := e.dht.get(t, mpub)
	e.dht.set(t, mpub, first)
	if _, _, err := getRecord(ctx, e.dht, mpub, c.ManifestPayloadKey(), adManifest, r.manifestSeq); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed manifest: %v, want ErrReplay", err)
	}
	if live, err := r.LiveRefs(ctx); err != nil || len(live) != 3+2 {
		t.Fatalf("with the old manifest replayed the repairer keeps the newer: %d refs, %v", len(live), err)
	}

	// A repairer restarted with its state file refuses the replayed manifest too.
	state := filepath.Join(t.TempDir(), "state")
	e.dht.set(t, mpub, newest)
	r1 := e.repairer(t, c, state)
	if _, err := r1.LiveRefs(ctx); err != nil {
		t.Fatal(err)
	}
	e.dht.set(t, mpub, first)
	r2 := e.repairer(t, c, state)
	if _, err := r2.LiveRefs(ctx); !errors.Is(err, ErrReplay) {
		t.Fatalf("restarted repairer shown an old manifest: %v, want ErrReplay", err)
	}
	if err := os.WriteFile(state, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRepairer(e.dht, e.w.Net("x", "y"), c, RepairerConfig{StateFile: state}); err == nil {
		t.Fatal("a garbled state file accepted")
	}
}

func TestCapOpensNothing(t *testing.T) {
	e := newEnv(t)
	c := e.keys.RepairCap()
	sealed, err := e.store.GetSealed(t.Context(), e.drive.refs[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ObjectKeys().Open(nil, e.drive.refs[0].ID, sealed); !errors.Is(err, crypt.ErrAuth) {
		t.Fatalf("a data chunk under the capability's keys: %v, want crypt.ErrAuth", err)
	}
	if id := c.ObjectKeys().ChunkID(e.plains[0]); id == e.drive.refs[0].ID {
		t.Fatal("the capability computes the drive's chunk IDs")
	}
}

func TestMergeSkipsOwnerRepairs(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.publish(t)
	r := e.repairer(t, e.keys.RepairCap(), "")
	if _, err := r.LiveRefs(ctx); err != nil {
		t.Fatal(err)
	}
	// The repairer moves fragment 0 of chunks 0 and 1; the owner meanwhile records
	// another holder for chunk 1 itself.
	moved := map[crypt.ChunkID]pipeline.Ref{}
	for i := range 2 {
		nr := e.drive.refs[i]
		nr.Fragments = slices.Clone(nr.Fragments)
		nr.Fragments[0].Peer = "elsewhere"
		moved[nr.ID] = nr
	}
	if err := r.UpdateRefs(ctx, moved); err != nil {
		t.Fatal(err)
	}
	mine := e.drive.refs[1]
	mine.Fragments = slices.Clone(mine.Fragments)
	mine.Fragments[1].Peer = "owner-choice"
	e.drive.refs[1] = mine
	st, err := e.owner.Merge(ctx, e.drive)
	if err != nil {
		t.Fatal(err)
	}
	if st.Logged != 2 || st.Applied != 1 || st.Outdated != 1 {
		t.Fatalf("merge: %+v, want 2 logged, 1 applied, 1 outdated", st)
	}
	if e.drive.refs[0].Fragments[0].Peer != "elsewhere" || e.drive.refs[1].Fragments[1].Peer != "owner-choice" ||
		e.drive.refs[1].Fragments[0].Peer == "elsewhere" {
		t.Fatal("merge overwrote the owner's own change or missed the repairer's")
	}
	// A log put back from before is refused.
	lpub := e.keys.RepairCap().LogKey().Public().(ed25519.PublicKey)
	old := e.dht.get(t, lpub)
	if err := r.UpdateRefs(ctx, map[crypt.ChunkID]pipeline.Ref{e.drive.refs[2].ID: withPeer(e.drive.refs[2], "x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.owner.Merge(ctx, e.drive); err != nil {
		t.Fatal(err)
	}
	e.dht.set(t, lpub, old)
	if _, err := e.owner.Merge(ctx, e.drive); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed log: %v, want ErrReplay", err)
	}
}

func withPeer(r pipeline.Ref, p swarm.PeerID) pipeline.Ref {
	r.Fragments = slices.Clone(r.Fragments)
	r.Fragments[0].Peer = p
	return r
}

func TestListErrors(t *testing.T) {
	e := newEnv(t)
	good, err := encodeList(kindManifest, e.drive.refs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeList(good, kindManifest)
	if err != nil || len(got) != len(e.drive.refs) {
		t.Fatalf("round trip: %v", err)
	}
	for i := range got {
		if !got[i].Equal(&e.drive.refs[i]) {
			t.Fatalf("ref %d differs", i)
		}
	}
	for name, b := range map[string][]byte{
		"empty":      nil,
		"version":    append([]byte{2}, good[1:]...),
		"kind":       append([]byte{1, kindLog}, good[2:]...),
		"truncated":  good[:len(good)-1],
		"trailing":   append(slices.Clone(good), 0),
		"huge count": {1, kindManifest, 0, 0, 0xff, 0xff, 0xff, 0xff},
		"dup peers":  {1, kindManifest, 0, 2, 1, 'a', 1, 'a', 0, 0, 0, 0},
		"empty peer": {1, kindManifest, 0, 1, 0, 0, 0, 0, 0},
	} {
		if _, err := decodeList(b, kindManifest); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	// A log pair that changes the chunk is refused both ways.
	a, b := e.drive.refs[0], e.drive.refs[1]
	if _, err := encodeLog([]Replacement{{a, b}}); err == nil {
		t.Fatal("log of a chunk replaced by another encoded")
	}
	raw, _ := encodeList(kindLog, []pipeline.Ref{a, b})
	if _, err := decodeLog(raw); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("log page replacing a chunk by another: %v", err)
	}
	if _, err := encodeList(kindManifest, []pipeline.Ref{{K: 0}}); err == nil {
		t.Fatal("a ref with k = 0 encoded")
	}
}

// TestIncrementalPages: a manifest of many Refs spans several pages cut by content; after
// one more Ref only the page it falls in and the index are put again, and a repairer reads
// the new manifest whole.
func TestIncrementalPages(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	rnd := rand.New(rand.NewPCG(1, 2))
	fake := func() pipeline.Ref {
		r := pipeline.Ref{Size: 1 << 20, SealedLen: 1<<20 + 17, K: testK, M: testM}
		for i := range r.ID {
			r.ID[i] = byte(rnd.Uint32())
		}
		for i := range testK + testM {
			var f chunker.FragmentID
			f[0], f[1] = byte(i), byte(rnd.Uint32())
			r.Fragments = append(r.Fragments, pipeline.Fragment{ID: f, Peer: e.peers[i]})
		}
		return r
	}
	refs := make([]pipeline.Ref, 5000)
	for i := range refs {
		refs[i] = fake()
	}
	puts := func() (n int) {
		for _, p := range e.peers {
			n += e.w.Requests(p, memnet.OpPut)
		}
		return n
	}
	if _, err := e.owner.Publish(ctx, refs); err != nil {
		t.Fatal(err)
	}
	pages := len(encodePages(kindManifest, sortedRefs(refs)))
	if pages < 3 {
		t.Fatalf("5000 refs in %d pages, want several", pages)
	}
	e.w.ResetRequests()
	refs = append(refs, fake())
	if ok, err := e.owner.Publish(ctx, refs); err != nil || !ok {
		t.Fatalf("publish after one more ref: %v %v", ok, err)
	}
	// One page and the index, each coded 4+2 (a cut may move: at most two pages).
	got := puts()
	t.Logf("%d refs in %d pages; one more ref: %d fragment PUTs", len(refs), pages, got)
	if got > 3*(testK+testM) {
		t.Fatalf("%d fragment PUTs for one more ref in %d pages, want at most %d", got, pages, 3*(testK+testM))
	}
	r := e.repairer(t, e.keys.RepairCap(), "")
	live, err := r.LiveRefs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(refs) + 1 + len(encodePages(kindManifest, sortedRefs(refs))); len(live) != want {
		t.Fatalf("repairer sees %d refs, want %d", len(live), want)
	}
}

func sortedRefs(refs []pipeline.Ref) []pipeline.Ref {
	refs = slices.Clone(refs)
	slices.SortFunc(refs, compareRefs)
	return refs
}
