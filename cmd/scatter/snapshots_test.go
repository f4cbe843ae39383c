package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/root"
	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/swarm/memnet"
	"github.com/scatterfs/scatter/volume"
)

// memDHT is a routing.ValueStore in memory: the last value put under a key wins. Every
// put is also sent on puts, if set, without blocking.
type memDHT struct {
	mu     sync.Mutex
	vals   map[string][]byte
	getErr error // returned by every GetValue when set
	puts   chan []byte
}

var _ routing.ValueStore = (*memDHT)(nil)

func newMemDHT() *memDHT { return &memDHT{vals: map[string][]byte{}, puts: make(chan []byte, 64)} }

func (d *memDHT) PutValue(_ context.Context, key string, val []byte, _ ...routing.Option) error {
	d.mu.Lock()
	d.vals[key] = bytes.Clone(val)
	d.mu.Unlock()
	select {
	case d.puts <- bytes.Clone(val):
	default:
	}
	return nil
}

func (d *memDHT) GetValue(_ context.Context, key string, _ ...routing.Option) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.getErr != nil {
		return nil, d.getErr
	}
	v, ok := d.vals[key]
	if !ok {
		return nil, routing.ErrNotFound
	}
	return bytes.Clone(v), nil
}

func (d *memDHT) SearchValue(ctx context.Context, key string, _ ...routing.Option) (<-chan []byte, error) {
	v, err := d.GetValue(ctx, key)
	if err != nil {
		return nil, err
	}
	ch := make(chan []byte, 1)
	ch <- v
	close(ch)
	return ch, nil
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// snapEnv is a drive over an in-memory swarm: keys, a chunk store and a DHT.
type snapEnv struct {
	keys  *crypt.Keys
	store *pipeline.Store
	dht   *memDHT
}

func newSnapEnv(t *testing.T) *snapEnv {
	t.Helper()
	var s crypt.Secret
	s[0] = 42
	w := memnet.NewWorld()
	w.AddPeers("donor", 8, 1<<30)
	keys := s.Keys()
	st, err := pipeline.NewStore(w.Net("me", "owner"), keys, pipeline.Config{K: 4, M: 2})
	if err != nil {
		t.Fatal(err)
	}
	return &snapEnv{keys: keys, store: st, dht: newMemDHT()}
}

func (e *snapEnv) open(t *testing.T, dir string) *volume.Volume {
	t.Helper()
	v, err := volume.Open(volume.Config{Dir: dir, Logger: quietLog}, e.store)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// published decodes the record in the DHT.
func (e *snapEnv) published(t *testing.T) root.Record {
	t.Helper()
	rec, err := root.Get(t.Context(), e.dht, e.keys, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func writeFile(t *testing.T, v *volume.Volume, parent uint64, name string, data []byte) {
	t.Helper()
	ctx := t.Context()
	_, h, err := v.Create(ctx, parent, name, syscall.O_RDWR|syscall.O_EXCL, 0o640, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	h.Release()
}

// TestSnapshotsPublishAndRecover: Now publishes a snapshot of the tree, Close publishes
// the last change, and recoverDrive rebuilds the same tree in a fresh directory.
func TestSnapshotsPublishAndRecover(t *testing.T) {
	ctx := t.Context()
	e := newSnapEnv(t)
	v := e.open(t, t.TempDir())
	var out bytes.Buffer
	s, err := startSnapshots(v, e.store, e.keys, e.dht, 0, snapshotConfig{}, quietLog, &out)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := v.Mkdir(ctx, volume.RootIno, "docs", 0o750, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("scatter snapshots "), 100000) // beyond the inline limit
	writeFile(t, v, dir.Ino, "big", data)
	if err := v.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Now(ctx); err != nil {
		t.Fatal(err)
	}
	first := e.published(t)
	writeFile(t, v, dir.Ino, "late", []byte("written after the last Now"))
	if err := v.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Now(ctx); !errors.Is(err, errSnapshotsClosed) {
		t.Errorf("Now after Close: %v, want errSnapshotsClosed", err)
	}
	last := e.published(t)
	if last.Seq <= first.Seq || !strings.Contains(out.String(), "Metadata snapshot published") {
		t.Errorf("Close published sequence %d after %d; said %q", last.Seq, first.Seq, out.String())
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}

	// A fresh device: only the keys, the peers and the DHT.
	fresh := t.TempDir()
	out.Reset()
	rec, err := recoverDrive(ctx, e.dht, e.store, e.keys, volume.Config{Dir: fresh}, false, &out, quietLog)
	seq := rec.Seq
	if err != nil || seq != last.Seq {
		t.Fatalf("recoverDrive: sequence %d, %v; want %d", seq, err, last.Seq)
	}
	if !samePtr(rec.Root, last.Root) {
		t.Errorf("recoverDrive returned root %v, want the last published %v", rec.Root.Ref.ID, last.Root.Ref.ID)
	}
	v2 := e.open(t, fresh)
	defer v2.Close()
	for name, want := range map[string][]byte{"big": data, "late": []byte("written after the last Now")} {
		a, err := v2.Lookup(ctx, dir.Ino, name)
		if err != nil {
			t.Fatalf("lookup %s in the recovered drive: %v", name, err)
		}
		h, err := v2.Open(ctx, a.Ino, syscall.O_RDONLY)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want)+1)
		n, err := h.Read(ctx, got, 0)
		h.Release()
		if err != nil || !bytes.Equal(got[:n], want) || a.Mode&0o777 != 0o640 {
			t.Errorf("%s recovered: %d bytes (%v), mode %o", name, n, err, a.Mode)
		}
	}

	// The recovered drive knows the sequence: older records are replays, newer go above.
	s2, err := startSnapshots(v2, e.store, e.keys, e.dht, seq, snapshotConfig{}, quietLog, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := v2.SnapshotSeq(); got < seq {
		t.Errorf("SnapshotSeq after recovery %d, want at least %d", got, seq)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if after := e.published(t); after.Seq <= seq {
		t.Errorf("publication after recovery has sequence %d, not above %d", after.Seq, seq)
	}

	// A store that exists is never restored over, whatever the DHT says.
	if rec, err := recoverDrive(ctx, e.dht, e.store, e.keys, volume.Config{Dir: fresh}, false, io.Discard, quietLog); rec.Seq != 0 || err != nil {
		t.Errorf("recoverDrive over an existing store: %d, %v", rec.Seq, err)
	}
}

// TestSnapshotsSettle: a change is snapshotted and published by the loop on its own.
func TestSnapshotsSettle(t *testing.T) {
	ctx := t.Context()
	e := newSnapEnv(t)
	v := e.open(t, t.TempDir())
	defer v.Close()
	s, err := startSnapshots(v, e.store, e.keys, e.dht, 0,
		snapshotConfig{Quiet: 20 * time.Millisecond, Poll: 5 * time.Millisecond}, quietLog, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	<-e.dht.puts // the first run, at start
	if _, err := v.Mkdir(ctx, volume.RootIno, "settled", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	for {
		var rec []byte
		select {
		case rec = <-e.dht.puts:
		case <-ctx.Done():
			t.Fatal("no snapshot published after a change")
		}
		r, err := root.Decode(e.keys, rec)
		if err != nil {
			t.Fatal(err)
		}
		if p, _, _ := v.LastSnapshot(); bytes.Equal(snapMust(r.Root.MarshalBinary()), snapMust(p.MarshalBinary())) {
			if changed, _ := v.SnapshotChanged(); !changed {
				break // published the snapshot of the tree with "settled"
			}
		}
	}
}

func snapMust[T any](v T, err error) T {
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return v
}

// TestRecoverDrive: what a fresh data dir does for each answer of the DHT.
func TestRecoverDrive(t *testing.T) {
	defer func(d time.Duration) { recoverBackoff = d }(recoverBackoff)
	recoverBackoff = time.Millisecond
	ctx := t.Context()
	e := newSnapEnv(t)
	key, err := root.Key(e.keys.Public)
	if err != nil {
		t.Fatal(err)
	}

	// Nothing published: a drive that never was, started empty.
	dir := t.TempDir()
	var out bytes.Buffer
	if rec, err := recoverDrive(ctx, e.dht, e.store, e.keys, volume.Config{Dir: dir}, false, &out, quietLog); rec.Seq != 0 || err != nil {
		t.Errorf("no record: %d, %v", rec.Seq, err)
	}
	if !strings.Contains(out.String(), "starting it empty") {
		t.Errorf("no record: said %q", out.String())
	}

	// A record that does not verify: refused at once, nothing created.
	e.dht.PutValue(ctx, key, []byte("not a record"))
	if _, err := recoverDrive(ctx, e.dht, e.store, e.keys, volume.Config{Dir: dir}, false, io.Discard, quietLog); !errors.Is(err, root.ErrInvalid) ||
		!strings.Contains(err.Error(), "refusing to start an empty drive") {
		t.Errorf("invalid record: %v", err)
	}
	// The same DHT for a drive created just now: not asked.
	if rec, err := recoverDrive(ctx, e.dht, e.store, e.keys, volume.Config{Dir: dir}, true, io.Discard, quietLog); rec.Seq != 0 || err != nil {
		t.Errorf("new drive: %d, %v", rec.Seq, err)
	}

	// The DHT cannot answer: an error, never an empty drive.
	e.dht.getErr = errors.New("failed to find any peer in table")
	if _, err := recoverDrive(ctx, e.dht, e.store, e.keys, volume.Config{Dir: dir}, false, io.Discard, quietLog); err == nil {
		t.Error("unreachable DHT: no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "meta.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed recovery left a metadata store: %v", err)
	}
}

// TestSnapshotFigures measures docs/benchmarks.md "Metadata snapshots": a drive of N
// files (each one chunk of 8+4 fragments on 14 donors, with realistic peer IDs) is
// recovered from its snapshot on a fresh device, one file is changed, and the next
// snapshot's uploads are counted. The donors are in memory (memnet, no latency): the
// figures are the CPU and bytes, not network round trips. Set SCATTER_SNAP_FIGURES=1.
func TestSnapshotFigures(t *testing.T) {
	if os.Getenv("SCATTER_SNAP_FIGURES") == "" {
		t.Skip("set SCATTER_SNAP_FIGURES=1 to measure")
	}
	for _, n := range []int{10_000, 100_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { snapshotFigures(t, n) })
	}
}

func snapshotFigures(t *testing.T, files int) {
	ctx := t.Context()
	var s crypt.Secret
	s[0] = 9
	keys := s.Keys()
	w := memnet.NewWorld()
	w.AddPeers("donor", 14, 1<<40)
	store, err := pipeline.NewStore(w.Net("me", "owner"), keys, pipeline.Config{K: 8, M: 4})
	if err != nil {
		t.Fatal(err)
	}
	// 14 peer IDs as long as real ones, for the synthetic files' fragment holders.
	var peers []swarm.PeerID
	for i := range 14 {
		peers = append(peers, swarm.PeerID(fmt.Sprintf("12D3KooW%044d", i)))
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	perDir := 1000
	b := snapshot.NewBuilder(store, keys, nil)
	var top []snapshot.Entry
	ino := uint64(volume.RootIno)
	start := time.Now()
	for d := 0; d*perDir < files; d++ {
		var entries []snapshot.Entry
		for f := 0; f < perDir && d*perDir+f < files; f++ {
			ino++
			ref := pipeline.Ref{Size: 2 << 20, SealedLen: 2<<20 + 40, K: 8, M: 4}
			for i := range 32 {
				ref.ID[i] = byte(rnd.Uint32())
			}
			for range 12 {
				var fid chunker.FragmentID
				for j := range fid {
					fid[j] = byte(rnd.Uint32())
				}
				ref.Fragments = append(ref.Fragments, pipeline.Fragment{ID: fid, Peer: peers[rnd.IntN(len(peers))]})
			}
			entries = append(entries, snapshot.Entry{
				Name: fmt.Sprintf("file-%07d.jpg", d*perDir+f), Ino: ino,
				Attr:    snapshot.Attr{Mode: syscall.S_IFREG | 0o644, Nlink: 1, Size: 2 << 20, Atime: now, Mtime: now, Ctime: now},
				Extents: []snapshot.Extent{{Off: 0, Len: 2 << 20, Ref: &ref}},
			})
		}
		p, err := b.Dir(ctx, entries)
		if err != nil {
			t.Fatal(err)
		}
		ino++
		top = append(top, snapshot.Entry{Name: fmt.Sprintf("dir-%04d", d), Ino: ino, Dir: &p,
			Attr: snapshot.Attr{Mode: syscall.S_IFDIR | 0o755, Nlink: 2, Atime: now, Mtime: now, Ctime: now}})
	}
	tp, err := b.Dir(ctx, top)
	if err != nil {
		t.Fatal(err)
	}
	rootPtr, err := b.Root(ctx, snapshot.Info{Time: now, NextIno: ino}, snapshot.Entry{Ino: volume.RootIno, Dir: &tp,
		Attr: snapshot.Attr{Mode: syscall.S_IFDIR | 0o755, Nlink: 2, Atime: now, Mtime: now, Ctime: now}})
	if err != nil {
		t.Fatal(err)
	}
	full := b.Stats()
	t.Logf("%d files: full snapshot %d objects, %.1f MiB, built and put in %v",
		files, full.Objects, float64(full.UploadedBytes)/(1<<20), time.Since(start).Round(time.Millisecond))

	// A fresh device recovers the drive.
	dir := t.TempDir()
	start = time.Now()
	if err := volume.Restore(ctx, volume.Config{Dir: dir}, snapshot.NewReader(store), rootPtr); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files: recovered (fetch, open, decode %d objects, write meta.db) in %v",
		files, full.Objects, time.Since(start).Round(time.Millisecond))
	v, err := volume.Open(volume.Config{Dir: dir, Logger: quietLog}, store)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	d0, err := v.Lookup(ctx, volume.RootIno, "dir-0003")
	if err != nil {
		t.Fatal(err)
	}
	if ents, err := v.ReadDir(ctx, d0.Ino, 0, 2*perDir); err != nil || len(ents) != perDir {
		t.Fatalf("recovered directory: %d entries, %v", len(ents), err)
	}

	// The first snapshot after Open reads the whole tree (the volume keeps unchanged
	// directories' trees in memory from then on); it uploads only what Open's bookkeeping
	// changed.
	start = time.Now()
	if _, _, err := v.Snapshot(ctx, store, keys); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files: first snapshot after Open (whole tree read) in %v", files, time.Since(start).Round(time.Millisecond))

	// One file changes; the next snapshot reads, encodes and uploads the changed path only.
	f, err := v.Lookup(ctx, d0.Ino, "file-0003500.jpg")
	if err != nil {
		t.Fatal(err)
	}
	h, err := v.Open(ctx, f.Ino, syscall.O_RDWR|syscall.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write(ctx, []byte("a new, small content"), 0); err != nil {
		t.Fatal(err)
	}
	h.Release()
	if err := v.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, st, err := v.Snapshot(ctx, store, keys)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files: after changing one file, snapshot uploaded %d of %d objects, %.1f KiB, in %v",
		files, st.Uploaded, st.Objects, float64(st.UploadedBytes)/1024, time.Since(start).Round(time.Millisecond))
	if st.Uploaded > 8 {
		t.Errorf("one change uploaded %d objects", st.Uploaded)
	}
}
