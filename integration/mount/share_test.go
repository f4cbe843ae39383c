package mount_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/unix"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/dht"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/root"
	snap "github.com/scatterfs/scatter/snapshot"
)

// scatter runs a scatter verb against d's running mount and returns its output.
func (d *drive) scatter(args ...string) string {
	d.t.Helper()
	return runEnv(d.t, []string{"XDG_CONFIG_HOME=" + filepath.Join(d.root, "cfg"), "XDG_DATA_HOME=" + d.data},
		d.root, scatterBin, args...)
}

// shareCap runs `scatter share rel` on d and returns the capability it prints.
func (d *drive) shareCap(rel string) string {
	d.t.Helper()
	out := d.scatter("share", rel)
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "scatter-cap1:") {
			return f
		}
	}
	d.t.Fatalf("scatter share %s printed no capability:\n%s", rel, out)
	return ""
}

// driveKeys returns d's drive keys, from its recovery key: what the test (not the
// capability holder) uses to find objects outside the share.
func (d *drive) driveKeys() *crypt.Keys {
	d.t.Helper()
	for _, line := range strings.Split(string(d.keyCmd(nil, "export")), "\n") {
		if s, err := crypt.ParseRecoveryKey(strings.TrimSpace(line)); err == nil {
			return s.Keys()
		}
	}
	d.t.Fatal("scatter key export printed no recovery key")
	return nil
}

// TestShare: a writer shares a directory of its drive; another "device" holding only the
// capability (no drive key, its own state, the same donors) mounts it and sees exactly
// that subtree, byte for byte, read-only, following the writer's changes. The capability
// opens nothing outside: the drive's root record, a sibling directory's snapshot object
// and a data chunk of a file outside, fetched from the donors, all fail authentication
// under every key the holder can reach. A revoked share's record is no longer updated.
func TestShare(t *testing.T) {
	needFUSE(t)
	sw := startSwarm(t, t.TempDir())
	w := newDrive(t, append(sw.bootstrapFlags(), "-staging", "64M")...)
	w.start()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// The shared subtree: inline, multi-chunk and empty files, a nested directory, a
	// symlink, a hard link inside it, xattrs, modes and times. Around it: a sibling
	// directory and a file at the top, both secret.
	shared := w.path("sub/dir")
	must(os.MkdirAll(filepath.Join(shared, "nested/deeper"), 0o750))
	must(os.MkdirAll(w.path("sub/sibling"), 0o755))
	big := bytes.Repeat([]byte("shared bytes 0123456789\n"), 5<<20/24) // several chunks
	secret := bytes.Repeat([]byte("not for the share holder\n"), 3<<20/25)
	must(writeFile(filepath.Join(shared, "big"), 31, int64(len(big)), nil))
	must(os.WriteFile(filepath.Join(shared, "small"), []byte("small shared file\n"), 0o640))
	must(os.WriteFile(filepath.Join(shared, "empty"), nil, 0o600))
	must(os.WriteFile(filepath.Join(shared, "nested/deeper/leaf"), big, 0o644))
	must(os.Link(filepath.Join(shared, "small"), filepath.Join(shared, "nested/small-again")))
	must(os.Symlink("nested/deeper/leaf", filepath.Join(shared, "to-leaf")))
	must(unix.Setxattr(filepath.Join(shared, "small"), "user.note", []byte("shared xattr"), 0))
	must(unix.Setxattr(filepath.Join(shared, "nested"), "user.dir", []byte("on a directory"), 0))
	must(os.WriteFile(w.path("sub/sibling/secret"), secret, 0o644))
	must(os.WriteFile(w.path("top-secret"), secret, 0o644))
	ts := unix.NsecToTimespec(1_600_000_000_123_456_789)
	must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(shared, "small"), []unix.Timespec{ts, ts}, 0))
	w.sync()

	capText := w.shareCap("sub/dir")
	c, err := crypt.ParseCap(capText)
	must(err)

	// The holder: its own config and data, no drive key, the same donors.
	r := newDrive(t, append(sw.bootstrapFlags(), "-cap", capText, "-follow-interval", "300ms")...)
	r.start()
	if fileExists(filepath.Join(r.root, "cfg", "scatter", "drive.key")) {
		t.Fatal("the capability mount created a drive key")
	}
	want, got := snapshot(t, shared), snapshot(t, r.mnt)
	delete(want, ".") // the shared directory's own attributes are its parent's; see below
	top := got["."]
	delete(got, ".")
	if !reflect.DeepEqual(want, got) {
		for _, k := range unionKeys(want, got) {
			if !reflect.DeepEqual(want[k], got[k]) {
				t.Errorf("%s: writer %+v, share %+v", k, want[k], got[k])
			}
		}
		t.Fatal("the share mount differs from the shared directory")
	}
	if top.Mode&unix.S_IFMT != unix.S_IFDIR || top.UID != uint32(os.Getuid()) {
		t.Errorf("share root: %+v", top)
	}
	if len(got) < 8 {
		t.Fatalf("the share shows %d names", len(got))
	}

	// Read-only: EROFS, whatever the call.
	for op, err := range map[string]error{
		"create": os.WriteFile(r.path("x"), []byte("x"), 0o644),
		"write":  func() error { _, err := os.OpenFile(r.path("small"), os.O_WRONLY, 0); return err }(),
		"mkdir":  os.Mkdir(r.path("d"), 0o755),
		"rename": os.Rename(r.path("small"), r.path("small3")),
		"remove": os.Remove(r.path("big")),
		"chmod":  os.Chmod(r.path("big"), 0o600),
		"xattr":  unix.Setxattr(r.path("big"), "user.x", []byte("x"), 0),
	} {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s on the share mount: %v, want EROFS", op, err)
		}
	}

	// Outside the subtree, with what the holder has.
	tryOutside(t, w, sw, c)

	// The writer changes a file in the subtree and syncs: the share mount follows.
	changed := []byte("changed by the writer after sharing\n")
	must(os.WriteFile(filepath.Join(shared, "small"), changed, 0o640))
	must(os.WriteFile(filepath.Join(shared, "added"), changed, 0o644))
	w.sync()
	waitShown(t, "the writer's change in the share", func() error {
		if err := hasContent(r.path("small"), changed)(); err != nil {
			return err
		}
		return hasContent(r.path("added"), changed)()
	})

	// Revoked, the record stays where it was however the writer changes the directory.
	out := w.scatter("share", "-list")
	id := strings.Fields(out)[0]
	if !strings.Contains(out, "sub/dir") || !strings.Contains(out, capText) {
		t.Fatalf("scatter share -list:\n%s", out)
	}
	w.scatter("share", "-revoke", id)
	before := shareSeq(t, sw, c)
	must(os.WriteFile(filepath.Join(shared, "after-revoke"), changed, 0o644))
	w.sync()
	if after := shareSeq(t, sw, c); after != before {
		t.Errorf("share record %d after the revocation and a sync, %d before", after, before)
	}
	if out := w.scatter("share", "-list"); !strings.Contains(out, "revoked") {
		t.Errorf("scatter share -list after -revoke:\n%s", out)
	}
	r.stop()
	w.stop()
}

// swarmClient is a DHT client of sw's donors, in the test process.
func swarmClient(t *testing.T, sw *swarmProc) (*dht.Node, *dht.Network) {
	t.Helper()
	s, err := crypt.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	node, err := dht.New(context.Background(), dht.Config{
		DataDir: t.TempDir(), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Bootstrap: sw.addrs[:min(3, len(sw.addrs))],
		Mode: dht.ModeClient, Owner: s.Keys().Storage, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	net, err := dht.NewNetwork(node, dht.NetworkConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return node, net
}

// shareSeq returns the sequence of the share record c opens, as the DHT has it now.
func shareSeq(t *testing.T, sw *swarmProc, c crypt.Cap) uint64 {
	t.Helper()
	node, _ := swarmClient(t, sw)
	rec, err := root.GetShare(context.Background(), node.DHT(), c, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Seq
}

// tryOutside shows that c opens nothing of w's drive outside the shared directory: the
// root record, the sibling directory's snapshot object and a data chunk of a file outside,
// each fetched from the donors, fail authentication under the share key and under every
// object and chunk key the share's tree holds.
func tryOutside(t *testing.T, w *drive, sw *swarmProc, c crypt.Cap) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	node, net := swarmClient(t, sw)

	// What the holder can reach: the share record, and through it the share's tree.
	rec, err := root.GetShare(ctx, node.DHT(), c, 0)
	if err != nil {
		t.Fatal(err)
	}
	store, err := pipeline.NewStore(net, w.driveKeys(), pipeline.Config{K: int(rec.Dir.Ref.K), M: int(rec.Dir.Ref.M)})
	if err != nil {
		t.Fatal(err)
	}
	holderKeys := map[crypt.ChunkKey]bool{crypt.ChunkKey(c.Key): true}
	shareReader := snap.NewReader(store)
	var walk func(p snap.Ptr)
	walk = func(p snap.Ptr) {
		holderKeys[p.Key] = true
		entries, err := shareReader.Dir(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			for _, x := range e.Extents {
				if x.Ref != nil {
					holderKeys[x.Key] = true
				}
			}
			if e.Dir != nil {
				walk(*e.Dir)
			}
		}
	}
	walk(rec.Dir)
	if len(holderKeys) < 4 {
		t.Fatalf("the share's tree holds only %d keys", len(holderKeys))
	}

	// The drive's root record: signed by another key, its payload sealed under another.
	keys := w.driveKeys()
	rootBytes, err := root.GetNamed(ctx, node.DHT(), keys.Public)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.DecodeShare(c, rootBytes); !errors.Is(err, root.ErrInvalid) {
		t.Errorf("the root record as the share's record: %v, want ErrInvalid", err)
	}
	_, payload, err := root.DecodeNamed(keys.Public, rootBytes)
	if err != nil {
		t.Fatal(err)
	}
	for k := range holderKeys {
		aead, err := chacha20poly1305.NewX(k[:])
		if err != nil {
			t.Fatal(err)
		}
		n := 1 + aead.NonceSize()
		if _, err := aead.Open(nil, payload[1:n], payload[n:], nil); err == nil {
			t.Fatal("a key of the share opens the drive's root record payload")
		}
	}

	// The sibling directory's tree and a data chunk of a file outside, found with the
	// drive's keys (the test's, not the holder's) and fetched from the donors.
	drive, err := root.Get(ctx, node.DHT(), keys, 0)
	if err != nil {
		t.Fatal(err)
	}
	dr := snap.NewReader(store)
	_, topEntry, err := dr.Root(ctx, drive.Root)
	if err != nil {
		t.Fatal(err)
	}
	find := func(dir snap.Ptr, name string) snap.Entry {
		t.Helper()
		entries, err := dr.Dir(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name == name {
				return e
			}
		}
		t.Fatalf("%s not in the drive's snapshot", name)
		return snap.Entry{}
	}
	sub := find(*topEntry.Dir, "sub")
	sibling := find(*sub.Dir, "sibling")
	outside := find(*topEntry.Dir, "top-secret")
	targets := map[string]pipeline.Ref{"the sibling directory's tree": sibling.Dir.Ref, "the root object": drive.Root.Ref}
	for _, x := range outside.Extents {
		if x.Ref != nil {
			targets["a data chunk of top-secret"] = *x.Ref
			break
		}
	}
	if len(targets) != 3 {
		t.Fatal("top-secret has no chunk extent")
	}
	for what, ref := range targets {
		sealed, err := store.GetSealed(ctx, ref)
		if err != nil {
			t.Fatalf("fetching %s: %v", what, err)
		}
		for k := range holderKeys {
			if _, err := crypt.OpenWithKey(nil, k, ref.ID, sealed); !errors.Is(err, crypt.ErrAuth) {
				t.Fatalf("%s under a key of the share: %v, want crypt.ErrAuth", what, err)
			}
		}
	}
	t.Logf("%d keys of the share tried on the root record, the root object, the sibling's tree and a chunk outside: all refused",
		len(holderKeys))
}

// TestShareFigures measures docs/benchmarks.md "Read-only shares": what `scatter share`
// costs, how long a capability mount takes to restore a 1000-file subtree of a drive of
// 6000 files, how long after scatter sync it shows a change, and what the share records
// add to each publication (scatter sync of a one-file change with 0 and with 8 shares).
// Set SCATTER_SHARE_FIGURES=1.
func TestShareFigures(t *testing.T) {
	if os.Getenv("SCATTER_SHARE_FIGURES") == "" {
		t.Skip("set SCATTER_SHARE_FIGURES=1 to measure")
	}
	needFUSE(t)
	sw := startSwarm(t, t.TempDir())
	w := newDrive(t, append(sw.bootstrapFlags(), "-staging", "64M")...)
	w.start()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for d := range 6 {
		dir := w.path(filepath.Join("tree", "d"+strconv.Itoa(d)))
		must(os.MkdirAll(dir, 0o755))
		for i := range 1000 {
			must(os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), []byte(fmt.Sprintf("file %d of d%d\n", i, d)), 0o644))
		}
	}
	w.sync()
	timed := func(f func()) time.Duration {
		start := time.Now()
		f()
		return time.Since(start)
	}
	change := func(n int) time.Duration {
		must(os.WriteFile(w.path("tree/changed"), []byte(strconv.Itoa(n)), 0o644))
		return timed(w.sync)
	}
	var noShares []time.Duration
	for n := range 3 {
		noShares = append(noShares, change(n).Round(time.Millisecond))
	}
	var capText string
	took := timed(func() { capText = w.shareCap("tree/d0") })
	t.Logf("scatter share of a 1000-file directory: %v", took.Round(time.Millisecond))

	r := newDrive(t, append(sw.bootstrapFlags(), "-cap", capText, "-follow-interval", "1s")...)
	took = timed(r.start)
	b, _ := os.ReadFile(r.logPath)
	restored := ""
	if i := bytes.Index(b, []byte("Restored the shared directory")); i >= 0 {
		restored = string(bytes.SplitN(b[i:], []byte("\n"), 2)[0])
	}
	t.Logf("capability mount ready in %v; %s", took.Round(time.Millisecond), restored)
	if ents, err := os.ReadDir(r.mnt); err != nil || len(ents) != 1000 {
		t.Fatalf("the share shows %d names: %v", len(ents), err)
	}
	for round := range 3 {
		p := filepath.Join("tree/d0", "new"+strconv.Itoa(round))
		must(os.WriteFile(w.path(p), []byte("new"), 0o644))
		w.sync()
		synced := time.Now()
		waitShown(t, p, hasContent(r.path(filepath.Base(p)), []byte("new")))
		t.Logf("round %d: the capability mount showed the change %v after scatter sync returned (-follow-interval 1s)",
			round, time.Since(synced).Round(time.Millisecond))
	}
	for d := 1; d < 6; d++ {
		w.shareCap("tree/d" + strconv.Itoa(d))
	}
	for i := range 2 {
		dir := filepath.Join("tree", "extra"+strconv.Itoa(i))
		must(os.Mkdir(w.path(dir), 0o755))
		w.shareCap(dir)
	}
	var eightShares []time.Duration
	for n := range 3 {
		eightShares = append(eightShares, change(10+n).Round(time.Millisecond))
	}
	t.Logf("scatter sync of a one-file change: %v with no share, %v with 8 shares", noShares, eightShares)
	r.stop()
	w.stop()
}
