package volume_test

import (
	"bytes"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/volume"
)

// Two restored snapshots opened with OpenShared use one cache: a chunk fetched through
// the first is read through the second with the network failing, and closing the first
// leaves the cache working for the second.
func TestOpenShared(t *testing.T) {
	e := newEnv(t, volume.Config{InlineMax: 1})
	want := make([]byte, 320<<10) // five 64 KiB chunks, all different
	for i := range want {
		want[i] = byte(rand.Uint32())
	}
	a, h := e.create(volume.RootIno, "f")
	e.write(h, want, 0)
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	if err := e.v.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	st := newSnapStore()
	root, _, err := e.v.Snapshot(ctx, st, st.Keys)
	if err != nil {
		t.Fatal(err)
	}

	cacheCfg := volume.Config{Dir: t.TempDir()}
	c, err := volume.OpenCache(cacheCfg)
	if err != nil {
		t.Fatal(err)
	}
	open := func() *volume.Volume {
		cfg := volume.Config{Dir: t.TempDir(), Logger: quiet}
		if err := volume.Restore(ctx, cfg, snapshot.NewReader(st), root); err != nil {
			t.Fatal(err)
		}
		v, err := volume.OpenShared(cfg, e.store, c)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	read := func(v *volume.Volume) ([]byte, error) {
		h, err := v.Open(ctx, a.Ino, syscall.O_RDONLY)
		if err != nil {
			return nil, err
		}
		defer h.Release()
		p := make([]byte, len(want)+1)
		n, err := h.Read(ctx, p, 0)
		return p[:n], err
	}
	v1, v2 := open(), open()
	defer v2.Close()
	if got, err := read(v1); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read through the first volume: %d bytes, %v", len(got), err)
	}
	if err := v1.Close(); err != nil {
		t.Fatal(err)
	}
	e.store.SetFailGet(true)
	if got, err := read(v2); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read through the second volume from the shared cache: %d bytes, %v", len(got), err)
	}
	if v2.CacheUsed() < int64(len(want)) {
		t.Errorf("shared cache holds %d bytes, want at least %d", v2.CacheUsed(), len(want))
	}
	if _, err := volume.OpenShared(volume.Config{Dir: t.TempDir()}, e.store, nil); err == nil {
		t.Error("OpenShared with no cache succeeded")
	}
}
