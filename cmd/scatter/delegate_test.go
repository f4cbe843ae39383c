package main

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/delegate"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/swarm/memnet"
	"github.com/scatterfs/scatter/upkeep"
	"github.com/scatterfs/scatter/volume"
)

// TestDelegationRound: a mount's round publishes the repair manifest of the volume's
// live Refs; a repairer holding only the capability rebuilds what two dead donors held
// and logs it; the next round merges the log into the volume, whose file then reads from
// the new holders.
func TestDelegationRound(t *testing.T) {
	ctx := t.Context()
	var s crypt.Secret
	s[0] = 7
	keys := s.Keys()
	w := memnet.NewWorld()
	w.AddPeers("donor", 9, 1<<30)
	cfg := pipeline.Config{K: 4, M: 2, Chunking: chunker.Params{Min: 64 << 10, Normal: 128 << 10, Max: 256 << 10}}
	st, err := pipeline.NewStore(w.Net("me", "owner"), keys, cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := volume.Open(volume.Config{Dir: t.TempDir(), Logger: quietLog}, st)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	data := make([]byte, 700<<10) // several chunks
	rand.NewChaCha8([32]byte{7}).Read(data)
	writeFile(t, v, 1, "f", data)
	if err := v.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	records := newMemDHT()
	d := &delegation{vol: v, owner: delegate.NewOwner(records, w.Net("me", "owner"), keys,
		delegate.OwnerConfig{Pages: pipeline.Config{K: 4, M: 2}}), log: quietLog}
	if err := d.round(ctx, true); err != nil {
		t.Fatal(err)
	}

	// The owner is away; two donors holding its fragments die; the helper repairs.
	refs, err := v.LiveRefs(ctx)
	if err != nil || len(refs) < 2 {
		t.Fatalf("live refs: %d, %v", len(refs), err)
	}
	var dead []swarm.PeerID
	for _, f := range refs[0].Fragments[:2] {
		w.Kill(f.Peer)
		dead = append(dead, f.Peer)
	}
	helperNet := w.Net("helper", "owner") // the same fragment owner: the capability's storage key
	rep, err := delegate.NewRepairer(records, helperNet, keys.RepairCap(), delegate.RepairerConfig{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	loop := upkeep.Start(upkeep.New(helperNet, upkeep.Config{}), rep.Drive(),
		upkeep.LoopConfig{RenewEvery: time.Hour, CheckEvery: -1, Logger: quietLog}) // the check is Run below
	defer loop.Close()
	if r, err := loop.Run(ctx, true, false, nil); err != nil || r.Repair == nil || r.Repair.Repaired == 0 {
		t.Fatalf("helper's repair: %+v, %v", r.Repair, err)
	}

	// The owner is back: the next round merges.
	if err := d.round(ctx, true); err != nil {
		t.Fatal(err)
	}
	after, err := v.LiveRefs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range after {
		for _, f := range r.Fragments {
			if slices.Contains(dead, f.Peer) {
				t.Fatalf("chunk %s still recorded on dead donor %s after the merge", r.ID, f.Peer)
			}
		}
	}
	if _, cst, err := upkeep.New(w.Net("me", "owner"), upkeep.Config{}).Check(ctx, after, upkeep.CheckOptions{}); err != nil || cst.Complete != len(after) {
		t.Fatalf("owner's check after the merge: %+v, %v", cst, err)
	}
	attr, err := v.Lookup(ctx, 1, "f")
	if err != nil {
		t.Fatal(err)
	}
	h, err := v.Open(ctx, attr.Ino, syscall.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release()
	got := make([]byte, len(data))
	if n, err := h.Read(ctx, got, 0); err != nil || n != len(data) || !bytes.Equal(got, data) {
		t.Fatalf("read after the merge: %d bytes, %v", n, err)
	}
}
