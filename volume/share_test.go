package volume_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	chunk "github.com/ipfs/boxo/chunker"

	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/volume"
)

// cryptChunks is a volume.Chunks that seals data chunks with real drive keys (snapStore),
// so a share's per-chunk read keys can be checked to open them.
type cryptChunks struct{ *snapStore }

func (c cryptChunks) Split(r io.Reader) chunk.Splitter { return chunk.NewSizeSplitter(r, 64<<10) }
func (c cryptChunks) Open(dst []byte, ref pipeline.Ref, sealed []byte) ([]byte, error) {
	return c.Keys.Open(dst, ref.ID, sealed)
}
func (c cryptChunks) Capacity(context.Context) (int64, error) { return 1 << 40, nil }

// fetchOnly is what a capability holder has: the network, and no drive keys.
type fetchOnly struct{ cryptChunks }

func (fetchOnly) Open([]byte, pipeline.Ref, []byte) ([]byte, error) {
	return nil, errors.New("fetchOnly: no drive keys")
}

func TestShareRestore(t *testing.T) {
	st := newSnapStore()
	w, err := volume.Open(volume.Config{Dir: t.TempDir(), Logger: quiet}, cryptChunks{st})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	e := &env{t: t, v: w}
	fill(t, e)
	// A hard link from outside the shared directory, and a file outside it.
	dir := must[volume.Attr](t)(w.Lookup(ctx, volume.RootIno, "dir"))
	small := must[volume.Attr](t)(w.Lookup(ctx, dir.Ino, "small"))
	must[volume.Attr](t)(w.Link(ctx, small.Ino, volume.RootIno, "outside-link"))
	// What a holder must not get as written: a device node and a set-user-ID file.
	must[volume.Attr](t)(w.Mknod(ctx, dir.Ino, "dev", syscall.S_IFCHR|0o666, 0x0801, 0, 0))
	suid, sh0 := e.create(dir.Ino, "suid")
	e.write(sh0, []byte("#!/bin/sh\n"), 0)
	sh0.Release()
	suidMode := uint32(syscall.S_ISUID | syscall.S_ISGID | 0o755)
	must[volume.Attr](t)(w.Setattr(ctx, suid.Ino, volume.SetAttr{Mode: &suidMode}))
	_, h := e.create(volume.RootIno, "outside")
	e.write(h, bytes.Repeat([]byte("secret"), 20000), 0)
	h.Release()
	if err := w.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}

	// Shares: only existing directories, no climbing.
	for p, want := range map[string]error{"dir/small": volume.ErrNotDir, "nope": volume.ErrNotFound, "dir/../dir": volume.ErrInvalid} {
		if _, err := w.AddShare(ctx, p); !errors.Is(err, want) {
			t.Errorf("AddShare(%q): %v, want %v", p, err, want)
		}
	}
	sh := must[volume.Share](t)(w.AddShare(ctx, "/dir/"))
	if sh.Path != "dir" || sh.Ino != dir.Ino || sh.Revoked {
		t.Fatalf("share %+v", sh)
	}
	other := must[volume.Share](t)(w.AddShare(ctx, "empty-dir"))
	if _, err := w.RevokeShare(other.ID); err != nil {
		t.Fatal(err)
	}
	list := must[[]volume.Share](t)(w.Shares())
	if len(list) != 2 {
		t.Fatalf("%d shares listed", len(list))
	}
	for _, s := range list {
		if s.Revoked != (s.ID == other.ID) {
			t.Errorf("share %+v: revoked wrong", s)
		}
	}

	want := dump(t, w)
	root, _, err := w.Snapshot(ctx, st, st.Keys)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := volume.ShareDir(ctx, snapshot.NewReader(st), root, sh)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 0)
	cfg := volume.Config{Dir: t.TempDir(), Logger: quiet, RootUID: 4242, RootGID: 43}
	if err := volume.RestoreShare(ctx, cfg, snapshot.NewReader(st), dp, at); err != nil {
		t.Fatal(err)
	}
	if err := volume.RestoreShare(ctx, cfg, snapshot.NewReader(st), dp, at); err != volume.ErrRestoreExists {
		t.Fatalf("second restore: %v", err)
	}
	r, err := volume.OpenShare(cfg, fetchOnly{cryptChunks{st}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := dump(t, r)
	top := got["/"].Attr
	if top.Ino != volume.RootIno || top.UID != 4242 || top.GID != 43 || !top.Mtime.Equal(at) || top.Nlink != 3 {
		t.Errorf("share root %+v", top)
	}
	if !reflect.DeepEqual(got["/"].Xattrs, map[string]string{}) {
		t.Errorf("share root has xattrs %v (the shared directory's own are its parent's business)", got["/"].Xattrs)
	}
	n := 0
	for p, wn := range want {
		rel, ok := strings.CutPrefix(p, "/dir/")
		if !ok || rel == "dev" {
			continue
		}
		n++
		gn, ok := got["/"+rel]
		if !ok {
			t.Errorf("%s missing from the share", p)
			continue
		}
		if rel == "small" {
			// Two links in the drive, one of them outside: the share shows its one.
			if gn.Attr.Nlink != 1 || wn.Attr.Nlink != 2 {
				t.Errorf("small: nlink %d in the share, %d in the drive", gn.Attr.Nlink, wn.Attr.Nlink)
			}
			gn.Attr.Nlink = wn.Attr.Nlink
		}
		// Owned by the mounting user; set-ID bits cleared on files.
		if gn.Attr.UID != 4242 || gn.Attr.GID != 43 {
			t.Errorf("%s: owner %d:%d in the share, want the mounting user", p, gn.Attr.UID, gn.Attr.GID)
		}
		gn.Attr.UID, gn.Attr.GID = wn.Attr.UID, wn.Attr.GID
		if rel == "suid" {
			if gn.Attr.Mode != syscall.S_IFREG|0o755 || wn.Attr.Mode&syscall.S_ISUID == 0 {
				t.Errorf("suid: mode %o in the share, %o in the drive", gn.Attr.Mode, wn.Attr.Mode)
			}
			gn.Attr.Mode = wn.Attr.Mode
		}
		if !reflect.DeepEqual(gn.Attr, wn.Attr) || !reflect.DeepEqual(gn.Xattrs, wn.Xattrs) ||
			!bytes.Equal(gn.Content, wn.Content) || gn.Target != wn.Target {
			t.Errorf("%s differs in the share:\n got %+v %v\nwant %+v %v", p, gn.Attr, gn.Xattrs, wn.Attr, wn.Xattrs)
		}
	}
	if n < 300 || len(got) != n+1 {
		t.Errorf("share holds %d paths, the shared directory %d (+ its root)", len(got), n)
	}
	if got["/big"].Attr.Ino != got["/sub/hardlink-to-big"].Attr.Ino || got["/big"].Attr.Nlink != 2 {
		t.Error("hard link inside the share lost")
	}
	if got["/link"].Target != "sub/f001" || got["/big"].Xattrs["user.tag"] != "value" {
		t.Errorf("symlink %q or xattr %q lost", got["/link"].Target, got["/big"].Xattrs["user.tag"])
	}
	if _, ok := got["/outside"]; ok {
		t.Error("a file outside the shared directory is in the share")
	}
	if _, ok := got["/dev"]; ok {
		t.Error("a device node is in the share")
	}

	// The share follows the directory's inode: moved away and replaced, it is not updated.
	if err := w.Rename(ctx, volume.RootIno, "dir", volume.RootIno, "moved", 0); err != nil {
		t.Fatal(err)
	}
	if err := w.SyncAll(ctx); err != nil { // namespace changes durable before the snapshot
		t.Fatal(err)
	}
	root2, _, err := w.Snapshot(ctx, st, st.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := volume.ShareDir(ctx, snapshot.NewReader(st), root2, sh); !errors.Is(err, volume.ErrNotFound) {
		t.Errorf("shared directory moved away: %v, want ErrNotFound", err)
	}
	must[volume.Attr](t)(w.Mkdir(ctx, volume.RootIno, "dir", 0o755, 0, 0))
	if err := w.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	root3, _, err := w.Snapshot(ctx, st, st.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := volume.ShareDir(ctx, snapshot.NewReader(st), root3, sh); !errors.Is(err, volume.ErrInvalid) {
		t.Errorf("shared directory replaced: %v, want ErrInvalid", err)
	}
}

// A share of the drive's root is the whole tree.
func TestShareRoot(t *testing.T) {
	st := newSnapStore()
	w, err := volume.Open(volume.Config{Dir: t.TempDir(), Logger: quiet}, cryptChunks{st})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	must[volume.Attr](t)(w.Mkdir(ctx, volume.RootIno, "a", 0o755, 0, 0))
	sh := must[volume.Share](t)(w.AddShare(ctx, ""))
	if err := w.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	root, _, err := w.Snapshot(ctx, st, st.Keys)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := volume.ShareDir(ctx, snapshot.NewReader(st), root, sh)
	if err != nil {
		t.Fatal(err)
	}
	cfg := volume.Config{Dir: t.TempDir(), Logger: quiet}
	if err := volume.RestoreShare(ctx, cfg, snapshot.NewReader(st), dp, time.Now()); err != nil {
		t.Fatal(err)
	}
	r, err := volume.OpenShare(cfg, fetchOnly{cryptChunks{st}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if a, err := r.Lookup(ctx, volume.RootIno, "a"); err != nil || a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		t.Fatalf("lookup a: %+v %v", a, err)
	}
}
