package main

import (
	"errors"
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/root"
	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/volume"
)

// The share verb: usage errors, and a clear message when no mount runs.
func TestShareVerb(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"share", "-data", dir},
		{"share", "-data", dir, "-list", "a/b"},
		{"share", "-data", dir, "-revoke", "00", "a/b"},
		{"share", "-data", dir, "a", "b"},
	} {
		if code, _, errs := scatter(t, args...); code != 2 || !strings.Contains(errs, "PATH") {
			t.Errorf("scatter %q: exit %d, %q; want a usage error", args, code, errs)
		}
	}
	for _, args := range [][]string{{"share", "-data", dir, "a/b"}, {"share", "-data", dir, "-list"}} {
		code, _, errs := scatter(t, args...)
		if code != 1 || !strings.Contains(errs, "no scatter mount is running on data directory") {
			t.Errorf("scatter %q with no mount: exit %d, %q", args, code, errs)
		}
	}
}

// mount -cap refuses a malformed capability, and one it cannot reach the swarm with,
// before touching anything.
func TestCapMountUsage(t *testing.T) {
	dir := t.TempDir()
	good := (&crypt.Secret{1}).Keys().Share(crypt.ShareID{1}).Cap.String()
	for _, c := range []struct{ cap, want string }{
		{"scatter-cap1:garbage", "invalid share capability"},
		{good[:len(good)-3], "invalid share capability"},
		{good, "-bootstrap"},
	} {
		code, _, errs := scatter(t, "mount", "-data", dir, "-cap", c.cap, dir)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("mount -cap %.30q: exit %d, %q; want a usage error about %s", c.cap, code, errs, c.want)
		}
	}
}

// TestSharerPublishes: after each root record the mount publishes the record of every
// active share, naming the shared directory's tree; a holder of the capability restores
// exactly that directory from it and follows changes; a revoked share's record is not
// updated any more.
func TestSharerPublishes(t *testing.T) {
	ctx := t.Context()
	e := newSnapEnv(t)
	v := e.open(t, t.TempDir())
	defer v.Close()
	s, err := startSnapshots(v, e.store, e.keys, e.dht, 0, snapshotConfig{}, quietLog, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := snapControl{snaps: s, mountControl: &mountControl{mountpoint: "/mnt/drive", vol: v}}
	pub, err := v.Mkdir(ctx, volume.RootIno, "pub", 0o755, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, v, pub.Ino, "f", []byte("version 1"))
	writeFile(t, v, volume.RootIno, "private", []byte("not shared"))
	if err := v.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Share(ctx, "/elsewhere/pub"); err == nil {
		t.Error("a path outside the mount was shared")
	}
	if _, err := c.Share(ctx, "private"); !errors.Is(err, volume.ErrNotDir) {
		t.Errorf("sharing a file: %v, want ErrNotDir", err)
	}
	sh, err := c.Share(ctx, "/mnt/drive/pub")
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := c.Share(ctx, ".")
	if err != nil {
		t.Fatal(err)
	}
	rid, err := crypt.ParseShareID(revoked.ID)
	if err != nil {
		t.Fatal(err)
	}
	rcap := e.keys.Share(rid).Cap
	before, err := root.GetShare(ctx, e.dht, rcap, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Revoke(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	cp, err := crypt.ParseCap(sh.Cap)
	if err != nil || sh.Path != "pub" || sh.Seq == 0 {
		t.Fatalf("share %+v: %v", sh, err)
	}

	// The holder: the record, then the subtree alone, opened with the snapshot's keys.
	read := func(minSeq uint64) (root.ShareRecord, []byte) {
		t.Helper()
		rec, err := root.GetShare(ctx, e.dht, cp, minSeq)
		if err != nil {
			t.Fatal(err)
		}
		cfg := volume.Config{Dir: t.TempDir(), Logger: quietLog}
		if err := volume.RestoreShare(ctx, cfg, snapshot.NewReader(e.store), rec.Dir, rec.Time); err != nil {
			t.Fatal(err)
		}
		hv, err := volume.OpenShare(cfg, e.store, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer hv.Close()
		if _, err := hv.Lookup(ctx, volume.RootIno, "private"); !errors.Is(err, volume.ErrNotFound) {
			t.Errorf("the share shows a file outside: %v", err)
		}
		a, err := hv.Lookup(ctx, volume.RootIno, "f")
		if err != nil {
			t.Fatal(err)
		}
		h, err := hv.Open(ctx, a.Ino, syscall.O_RDONLY)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Release()
		b := make([]byte, a.Size)
		n, err := h.Read(ctx, b, 0)
		if err != nil {
			t.Fatal(err)
		}
		return rec, b[:n]
	}
	rec1, b := read(0)
	if string(b) != "version 1" || rec1.Seq != sh.Seq {
		t.Fatalf("share shows %q at record %d; want version 1 at %d", b, rec1.Seq, sh.Seq)
	}

	// A change in the shared directory: the next publication updates the record.
	a, err := v.Lookup(ctx, pub.Ino, "f")
	if err != nil {
		t.Fatal(err)
	}
	h, err := v.Open(ctx, a.Ino, syscall.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write(ctx, []byte("version 2"), 0); err != nil {
		t.Fatal(err)
	}
	h.Release()
	if err := v.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Now(ctx); err != nil {
		t.Fatal(err)
	}
	rec2, b := read(rec1.Seq + 1)
	if string(b) != "version 2" || rec2.Dir.Ref.ID == rec1.Dir.Ref.ID {
		t.Fatalf("after a change the share shows %q (record %d)", b, rec2.Seq)
	}

	// The revoked share (of the whole drive, which changed too): its record stays put.
	if after, err := root.GetShare(ctx, e.dht, rcap, 0); err != nil || after.Seq != before.Seq || after.Dir.Ref.ID != before.Dir.Ref.ID {
		t.Errorf("revoked share's record: %d (%v), was %d", after.Seq, err, before.Seq)
	}
	list, err := c.Shares(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list %+v: %v", list, err)
	}
	for _, l := range list {
		if (l.ID == revoked.ID) != l.Revoked || l.ID == sh.ID && l.Seq != rec2.Seq {
			t.Errorf("listed %+v", l)
		}
	}
}

// The capability mount's source refuses a record older than one an earlier run saw.
func TestShareSourceReplayAcrossRuns(t *testing.T) {
	ctx := t.Context()
	keys := (&crypt.Secret{3}).Keys()
	sk := keys.Share(crypt.ShareID{3})
	d := newMemDHT()
	put := func(seq uint64) {
		t.Helper()
		rec, err := root.EncodeShare(sk, seq, snapshot.Ptr{Ref: pipeline.Ref{ID: crypt.ChunkID{byte(seq)}, Size: 1, SealedLen: 18, K: 1,
			Fragments: []pipeline.Fragment{{Peer: "p"}}}}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := root.PutNamed(ctx, d, sk.Cap.Public, rec); err != nil {
			t.Fatal(err)
		}
	}
	seqFile := filepath.Join(t.TempDir(), "share-seq")
	put(7)
	s, err := newShareSource(d, sk.Cap, seqFile)
	if err != nil {
		t.Fatal(err)
	}
	if p, seq, err := s.next(ctx); err != nil || p.Ref.ID[0] != 7 || s.last.Seq != 7 || seq != 7 {
		t.Fatalf("first record: %v %d %v", p.Ref.ID, seq, err)
	}
	put(5) // a stale donor answers an older record to the next run
	s, err = newShareSource(d, sk.Cap, seqFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.next(ctx); !errors.Is(err, root.ErrReplay) {
		t.Fatalf("older record after a restart: %v, want ErrReplay", err)
	}
	put(8)
	if p, seq, err := s.next(ctx); err != nil || p.Ref.ID[0] != 8 || seq != 8 {
		t.Fatalf("newer record: %v %d %v", p.Ref.ID, seq, err)
	}
}
