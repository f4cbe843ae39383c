package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/scatterfs/scatter/chunker"
)

var ctx = context.Background()

func fragment(seed, n int) ([]byte, chunker.FragmentID) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed*131 + i*7 + i>>8)
	}
	return b, chunker.FragmentIDOf(b)
}

func openStore(t *testing.T, dir string, quota int64) *Store {
	t.Helper()
	s, err := Open(dir, Config{Quota: quota, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var (
	alice = Owner{1}
	bob   = Owner{2}
)

func TestPutGetHas(t *testing.T) {
	s := openStore(t, t.TempDir(), 1<<20)
	data, id := fragment(1, 10000)
	_, other := fragment(2, 100)
	exp := time.Now().Add(time.Hour)
	if err := s.Put(ctx, id, alice, exp, data); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, id)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get = %d bytes, %v", len(got), err)
	}
	if has := s.Has([]chunker.FragmentID{other, id}); has[0] || !has[1] {
		t.Fatalf("Has = %v", has)
	}
	if _, err := s.Get(ctx, other); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(absent) = %v, want ErrNotFound", err)
	}
	st := s.Stat()
	if st.Fragments != 1 || st.Used != chargeFor(1, 10000) || st.Used != 12288 {
		t.Fatalf("Stat = %+v", st)
	}
	// The same PUT again charges nothing more.
	if err := s.Put(ctx, id, alice, exp, data); err != nil {
		t.Fatal(err)
	}
	if st2 := s.Stat(); st2 != st {
		t.Fatalf("Stat after second Put = %+v, want %+v", st2, st)
	}
}

func TestPutRejects(t *testing.T) {
	s := openStore(t, t.TempDir(), 1<<20)
	data, id := fragment(1, 1000)
	now := time.Now()
	for _, tc := range []struct {
		name string
		id   chunker.FragmentID
		exp  time.Time
		data []byte
		want error
	}{
		{"mismatch", chunker.FragmentID{9}, now.Add(time.Hour), data, ErrMismatch},
		{"empty", chunker.FragmentIDOf(nil), now.Add(time.Hour), nil, ErrTooLarge},
		{"expired", id, now.Add(-time.Second), data, ErrLease},
		{"too long", id, now.Add(DefaultMaxLease + time.Hour), data, ErrLease},
		{"over quota", chunker.FragmentIDOf(make([]byte, 1<<20)), now.Add(time.Hour), make([]byte, 1<<20), ErrFull},
	} {
		if err := s.Put(ctx, tc.id, alice, tc.exp, tc.data); !errors.Is(err, tc.want) {
			t.Errorf("%s: Put = %v, want %v", tc.name, err, tc.want)
		}
	}
	if st := s.Stat(); st.Used != 0 || st.Fragments != 0 {
		t.Fatalf("Stat after rejected Puts = %+v", st)
	}
	big := make([]byte, DefaultMaxFragmentSize+1)
	if err := s.Put(ctx, chunker.FragmentIDOf(big), alice, now.Add(time.Hour), big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Put(too large) = %v", err)
	}
}

func leaseOf(s *Store, id chunker.FragmentID, o Owner) int64 {
	e := s.lookup(id)
	if e == nil {
		return -1
	}
	for _, sl := range e.slots {
		if sl.owner == o {
			return sl.expires
		}
	}
	return -1
}

func TestLeasesAndOwners(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, 1<<20)
	data, id := fragment(1, 5000)
	t0 := time.Now().Truncate(time.Second)
	if err := s.Put(ctx, id, alice, t0.Add(2*time.Hour), data); err != nil {
		t.Fatal(err)
	}
	// An earlier expiry keeps the later one.
	if err := s.Put(ctx, id, alice, t0.Add(time.Hour), data); err != nil {
		t.Fatal(err)
	}
	if got := leaseOf(s, id, alice); got != t0.Add(2*time.Hour).Unix() {
		t.Fatalf("lease after shorter Put = %d", got)
	}
	if n, err := s.Renew(ctx, alice, []chunker.FragmentID{id, {7}}, t0.Add(3*time.Hour)); err != nil || n != 1 {
		t.Fatalf("Renew = %d, %v", n, err)
	}
	if got := leaseOf(s, id, alice); got != t0.Add(3*time.Hour).Unix() {
		t.Fatalf("lease after Renew = %d", got)
	}
	// Bob cannot renew or delete Alice's lease.
	if n, _ := s.Renew(ctx, bob, []chunker.FragmentID{id}, t0.Add(5*time.Hour)); n != 0 {
		t.Fatalf("Renew by non-owner renewed %d", n)
	}
	if freed, _ := s.Delete(ctx, bob, []chunker.FragmentID{id}); freed != 0 || !s.Has([]chunker.FragmentID{id})[0] {
		t.Fatalf("Delete by non-owner freed %d", freed)
	}
	// Bob puts the same fragment: both own it, the header grows by one slot.
	if err := s.Put(ctx, id, bob, t0.Add(time.Hour), data); err != nil {
		t.Fatal(err)
	}
	if st := s.Stat(); st.Fragments != 1 || st.Used != chargeFor(2, 5000) {
		t.Fatalf("Stat with two owners = %+v", st)
	}
	if freed, err := s.Delete(ctx, alice, []chunker.FragmentID{id}); err != nil || freed != 0 {
		t.Fatalf("Delete(alice) = %d, %v; Bob still owns it", freed, err)
	}
	if got, err := s.Get(ctx, id); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after one owner deleted: %v", err)
	}
	// Alice puts it again: her emptied slot is reused, the header does not grow.
	if err := s.Put(ctx, id, alice, t0.Add(time.Hour), data); err != nil {
		t.Fatal(err)
	}
	if e := s.lookup(id); len(e.slots) != 2 {
		t.Fatalf("%d slots, want 2", len(e.slots))
	}
	if _, err := s.Delete(ctx, alice, []chunker.FragmentID{id}); err != nil {
		t.Fatal(err)
	}
	freed, err := s.Delete(ctx, bob, []chunker.FragmentID{id})
	if err != nil || freed != chargeFor(2, 5000) {
		t.Fatalf("Delete(last owner) = %d, %v", freed, err)
	}
	if st := s.Stat(); st.Used != 0 || st.Fragments != 0 {
		t.Fatalf("Stat after delete = %+v", st)
	}
	if _, err := os.Stat(s.path(id)); !os.IsNotExist(err) {
		t.Fatalf("file still there: %v", err)
	}
}

func TestTooManyOwners(t *testing.T) {
	s := openStore(t, t.TempDir(), 1<<20)
	data, id := fragment(1, 100)
	exp := time.Now().Add(time.Hour)
	for i := range MaxOwners {
		if err := s.Put(ctx, id, Owner{byte(i + 1)}, exp, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, id, Owner{200}, exp, data); !errors.Is(err, ErrTooManyOwners) {
		t.Fatalf("Put(17th owner) = %v", err)
	}
}

// TestQuotaConcurrent puts from 32 goroutines into a store with room for a fraction of
// the fragments: the charge and the bytes on disk never exceed the quota.
func TestQuotaConcurrent(t *testing.T) {
	dir := t.TempDir()
	const quota = 40*chunkCharge + 1000
	s := openStore(t, dir, quota)
	exp := time.Now().Add(time.Hour)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		stored int
	)
	for g := range 32 {
		wg.Go(func() {
			for i := range 4 {
				data, id := fragment(g*4+i, chunkSize)
				err := s.Put(ctx, id, alice, exp, data)
				switch {
				case err == nil:
					mu.Lock()
					stored++
					mu.Unlock()
				case !errors.Is(err, ErrFull):
					t.Error(err)
				}
				if st := s.Stat(); st.Used > quota {
					t.Errorf("used %d > quota %d", st.Used, quota)
				}
			}
		})
	}
	wg.Wait()
	st := s.Stat()
	if stored != 40 || st.Fragments != 40 || st.Used != 40*chunkCharge {
		t.Fatalf("stored %d, Stat %+v", stored, st)
	}
	if disk := diskBytes(t, dir); disk > quota {
		t.Fatalf("%d bytes on disk > quota %d", disk, quota)
	}
}

const (
	chunkSize   = 100000
	chunkCharge = 102400 // 100000 + 88 rounded up to 4 KiB
)

// diskBytes sums the lengths of the files under dir/frag and dir/tmp.
func diskBytes(t *testing.T, dir string) int64 {
	var n int64
	for _, sub := range []string{"frag", "tmp"} {
		err := filepath.WalkDir(filepath.Join(dir, sub), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			fi, err := d.Info()
			n += fi.Size()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Config{Quota: 1 << 20, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Config{Quota: 1 << 20}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	t0 := time.Now().Truncate(time.Second)
	d1, id1 := fragment(1, 3000)
	d2, id2 := fragment(2, 70000)
	must(t, s.Put(ctx, id1, alice, t0.Add(time.Hour), d1))
	must(t, s.Put(ctx, id2, alice, t0.Add(time.Hour), d2))
	must(t, s.Put(ctx, id2, bob, t0.Add(2*time.Hour), d2))
	if _, err := s.Renew(ctx, alice, []chunker.FragmentID{id1}, t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	before := s.Stat()
	must(t, s.Close())
	// A write that never finished leaves a temporary file behind.
	must(t, os.WriteFile(filepath.Join(dir, "tmp", "leftover"), []byte("x"), 0o600))
	shardTmp := filepath.Join(filepath.Dir(s.path(id1)), tmpPrefix+id1.String()+".123")
	must(t, os.WriteFile(shardTmp, d1[:100], 0o600))

	s = openStore(t, dir, 1<<20)
	if st := s.Stat(); st != before {
		t.Fatalf("Stat after reopen = %+v, want %+v", st, before)
	}
	for _, c := range []struct {
		id  chunker.FragmentID
		o   Owner
		exp time.Time
	}{{id1, alice, t0.Add(3 * time.Hour)}, {id2, alice, t0.Add(time.Hour)}, {id2, bob, t0.Add(2 * time.Hour)}} {
		if got := leaseOf(s, c.id, c.o); got != c.exp.Unix() {
			t.Errorf("lease of %x on %s = %d, want %d", c.o[:1], c.id, got, c.exp.Unix())
		}
	}
	for _, c := range []struct {
		id   chunker.FragmentID
		data []byte
	}{{id1, d1}, {id2, d2}} {
		if got, err := s.Get(ctx, c.id); err != nil || !bytes.Equal(got, c.data) {
			t.Fatalf("Get(%s) after reopen: %v", c.id, err)
		}
	}
	if tmps, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmps) != 0 {
		t.Fatalf("temporary files left: %v", tmps)
	}
	if _, err := os.Stat(shardTmp); !os.IsNotExist(err) {
		t.Fatalf("temporary file in a shard left: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestGC(t *testing.T) {
	s, err := Open(t.TempDir(), Config{Quota: 1 << 20, GCInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Now()
	d1, id1 := fragment(1, 3000)
	d2, id2 := fragment(2, 3000)
	must(t, s.Put(ctx, id1, alice, t0.Add(time.Hour), d1))
	must(t, s.Put(ctx, id2, alice, t0.Add(3*time.Hour), d2))
	must(t, s.Put(ctx, id1, bob, t0.Add(2*time.Hour), d1))

	// At t0+90min Alice's lease on id1 has ended but Bob's runs: nothing is collected,
	// though an expired fragment is no longer served.
	if n, _, err := s.GC(t0.Add(90 * time.Minute)); err != nil || n != 0 {
		t.Fatalf("GC = %d, %v", n, err)
	}
	s.now = func() time.Time { return t0.Add(150 * time.Minute) }
	if has := s.Has([]chunker.FragmentID{id1, id2}); has[0] || !has[1] {
		t.Fatalf("Has at t0+150min = %v", has)
	}
	if _, err := s.Get(ctx, id1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(expired) = %v", err)
	}
	n, freed, err := s.GC(s.now())
	if err != nil || n != 1 || freed != chargeFor(2, 3000) {
		t.Fatalf("GC = %d, %d, %v", n, freed, err)
	}
	if st := s.Stat(); st.Fragments != 1 || st.Used != chargeFor(1, 3000) {
		t.Fatalf("Stat after GC = %+v", st)
	}
	if _, err := os.Stat(s.path(id1)); !os.IsNotExist(err) {
		t.Fatalf("collected file still on disk: %v", err)
	}
}

// TestCorruptFiles damages fragment files on disk in the ways a crash or a bad disk can and
// checks none is ever served: a bad payload is caught on Get, a bad header or length at Open.
func TestCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Config{Quota: 1 << 20, GCInterval: -1})
	must(t, err)
	exp := time.Now().Add(time.Hour)
	var ids []chunker.FragmentID
	for i := range 6 {
		d, id := fragment(i, 5000)
		must(t, s.Put(ctx, id, alice, exp, d))
		ids = append(ids, id)
	}
	damage := []func(p string){
		func(p string) { flipByte(t, p, headerLen(1)+100) },                   // payload bit rot
		func(p string) { must(t, os.Truncate(p, int64(headerLen(1))+4000)) },  // torn write
		func(p string) { flipByte(t, p, 50) },                                 // header slot
		func(p string) { flipByte(t, p, 9) },                                  // length field
		func(p string) { must(t, os.WriteFile(p, []byte("garbage"), 0o600)) }, // garbage
	}
	for i, f := range damage {
		f(s.path(ids[i]))
	}
	// The payload damage is found by Get on the open store, which drops the file.
	if _, err := s.Get(ctx, ids[0]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get(bit rot) = %v", err)
	}
	if _, err := s.Get(ctx, ids[1]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get(truncated) = %v", err)
	}
	if has := s.Has(ids[:2]); has[0] || has[1] {
		t.Fatalf("corrupt fragments still held: %v", has)
	}
	must(t, s.Close())
	// A stray file with a fragment-like name in the wrong shard is dropped too.
	_, stray := fragment(99, 10)
	wrong := filepath.Join(dir, "frag", "zz")
	must(t, os.MkdirAll(wrong, 0o700))
	must(t, os.WriteFile(filepath.Join(wrong, stray.String()), []byte("x"), 0o600))

	s = openStore(t, dir, 1<<20)
	if has := s.Has(ids); fmt.Sprint(has) != "[false false false false false true]" {
		t.Fatalf("Has after reopen = %v", has)
	}
	if st := s.Stat(); st.Fragments != 1 || st.Used != chargeFor(1, 5000) {
		t.Fatalf("Stat = %+v", st)
	}
	if _, err := os.Stat(filepath.Join(wrong, stray.String())); !os.IsNotExist(err) {
		t.Fatalf("stray file kept: %v", err)
	}
}

func flipByte(t *testing.T, p string, off int) {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	b[off] ^= 0x40
	must(t, os.WriteFile(p, b, 0o600))
}

// TestHeaderGolden pins the on-disk header layouts of docs/format.md: version 2, written
// today, and version 1, still read and rewritten in place.
func TestHeaderGolden(t *testing.T) {
	var id chunker.FragmentID
	for i := range id {
		id[i] = byte(i)
	}
	for _, v := range []uint8{1, 2} {
		h := header{version: v, id: id, size: 131072, slots: []slot{{owner: Owner{0xaa, 0xbb}, expires: 1767225600}, {owner: Owner{0xcc}, expires: 0}}}
		if v == 2 {
			h.sum = 0xdeadbeef
		}
		got := hex.EncodeToString(h.encode(nil))
		golden, err := os.ReadFile(fmt.Sprintf("testdata/header-v%d.hex", v))
		must(t, err)
		if want := string(bytes.TrimSpace(golden)); got != want {
			t.Fatalf("version %d header encoding changed:\n got %s\nwant %s", v, got, want)
		}
		back, err := parseHeader(h.encode(nil), DefaultMaxFragmentSize)
		must(t, err)
		if back.version != v || back.id != h.id || back.size != h.size || back.sum != h.sum || fmt.Sprint(back.slots) != fmt.Sprint(h.slots) {
			t.Fatalf("parseHeader = %+v", back)
		}
	}
}

// TestVersion1Store opens a store written before the payload CRC (FORMAT 1, version 1
// headers): its fragments are served, checked against their IDs, a damaged one is dropped,
// a renewal keeps the file's version, a new owner rewrites it as version 2, and the
// marker is upgraded so an older binary refuses the store instead of dropping new files.
func TestVersion1Store(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "frag"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, formatFile), []byte(formatLineV1), 0o600))
	exp := time.Now().Add(time.Hour).Unix()
	var ids []chunker.FragmentID
	var datas [][]byte
	for i := range 3 {
		d, id := fragment(i, 5000)
		h := header{version: 1, id: id, size: uint32(len(d)), slots: []slot{{owner: alice, expires: exp}}}
		p := filepath.Join(dir, "frag", id.String()[:2], id.String())
		must(t, os.MkdirAll(filepath.Dir(p), 0o700))
		must(t, os.WriteFile(p, append(h.encode(nil), d...), 0o600))
		ids, datas = append(ids, id), append(datas, d)
	}
	flipByte(t, filepath.Join(dir, "frag", ids[2].String()[:2], ids[2].String()), headerLenV(1, 1)+10)

	s := openStore(t, dir, 1<<20)
	if b, err := os.ReadFile(filepath.Join(dir, formatFile)); err != nil || string(b) != formatLine {
		t.Fatalf("FORMAT = %q, %v", b, err)
	}
	if st := s.Stat(); st.Fragments != 3 || st.Used != 3*chargeOf(int64(headerLenV(1, 1))+5000) {
		t.Fatalf("Stat = %+v", st)
	}
	for i := range 2 {
		got, err := s.Get(ctx, ids[i])
		if err != nil || !bytes.Equal(got, datas[i]) {
			t.Fatalf("Get(%d) = %d bytes, %v", i, len(got), err)
		}
	}
	if _, err := s.Get(ctx, ids[2]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get(damaged version 1 file) = %v, want ErrCorrupt", err)
	}
	must(t, s.Put(ctx, ids[0], alice, time.Now().Add(2*time.Hour), datas[0])) // renewal in place
	must(t, s.Put(ctx, ids[1], bob, time.Now().Add(2*time.Hour), datas[1]))   // a second owner
	must(t, s.Close())

	s = openStore(t, dir, 1<<20)
	for i, want := range []uint8{1, 2} {
		if e := s.lookup(ids[i]); e == nil || e.version != want || len(e.slots) != i+1 {
			t.Fatalf("fragment %d after reopen: %+v, want version %d with %d slots", i, e, want, i+1)
		}
		if got, err := s.Get(ctx, ids[i]); err != nil || !bytes.Equal(got, datas[i]) {
			t.Fatalf("Get(%d) after reopen = %d bytes, %v", i, len(got), err)
		}
	}
}

// TestUnknownFormat: a store marked by a newer layout is refused with a clear error.
func TestUnknownFormat(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, formatFile), []byte("scatter fragment store 3\n"), 0o600))
	if _, err := Open(dir, Config{Quota: 1 << 20, GCInterval: -1}); err == nil || !strings.Contains(err.Error(), "unknown store format") {
		t.Fatalf("Open = %v, want an unknown store format error", err)
	}
}

// FuzzHeader feeds arbitrary bytes to the header parser: it never panics, and whatever it
// accepts encodes back to the same bytes.
func FuzzHeader(f *testing.F) {
	_, id := fragment(1, 10)
	f.Add((&header{id: id, size: 10, slots: []slot{{owner: alice, expires: 5}}}).encode(nil))
	f.Add((&header{id: id, size: 1 << 20, slots: make([]slot, MaxOwners)}).encode(nil))
	f.Add([]byte("SCFR\x01\x00\x00\x00"))
	f.Add((&header{version: 1, id: id, size: 10, slots: []slot{{owner: alice, expires: 5}}}).encode(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeader(b, DefaultMaxFragmentSize)
		if err != nil {
			return
		}
		enc := h.encode(nil)
		if !bytes.Equal(enc, b[:len(enc)]) {
			t.Fatalf("re-encoded header differs:\n%x\n%x", enc, b[:len(enc)])
		}
	})
}

// TestGetInto: GetInto reads into the buffer given when it is large enough, into a new
// one otherwise, and returns the fragment's bytes either way.
func TestGetInto(t *testing.T) {
	s := openStore(t, t.TempDir(), 1<<20)
	d, id := fragment(7, 5000)
	must(t, s.Put(ctx, id, alice, time.Now().Add(time.Hour), d))
	big := make([]byte, 1, 8192)
	got, err := s.GetInto(ctx, id, big)
	if err != nil || !bytes.Equal(got, d) || &got[0] != &big[:1][0] {
		t.Fatalf("GetInto(8 KiB buffer) = %d bytes, %v, own buffer %v", len(got), err, err == nil && &got[0] == &big[:1][0])
	}
	small := make([]byte, 100)
	got, err = s.GetInto(ctx, id, small)
	if err != nil || !bytes.Equal(got, d) {
		t.Fatalf("GetInto(100 B buffer) = %d bytes, %v", len(got), err)
	}
}

// TestDirectAndBuffered writes fragments of awkward sizes with O_DIRECT (where the
// filesystem takes it) and through the page cache, and checks each file is exactly
// header plus payload long (the O_DIRECT padding cut off), reads back, and survives a
// restart.
func TestDirectAndBuffered(t *testing.T) {
	for _, buffered := range []bool{false, true} {
		t.Run(fmt.Sprintf("buffered=%v", buffered), func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Quota: 1 << 24, GCInterval: -1, BufferedIO: buffered}
			s, err := Open(dir, cfg)
			must(t, err)
			exp := time.Now().Add(time.Hour)
			sizes := []int{1, 4096 - headerLen(1), 4096 - headerLen(1) + 1, 5000, 65536, 200_000}
			datas := map[chunker.FragmentID][]byte{}
			for i, n := range sizes {
				d, id := fragment(100+i, n)
				must(t, s.Put(ctx, id, alice, exp, d))
				datas[id] = d
			}
			if !buffered && !s.direct.Load() {
				t.Logf("the filesystem of %s refuses O_DIRECT: both runs wrote through the page cache", dir)
			}
			must(t, s.Close())
			s = openStore(t, dir, 1<<24)
			if st := s.Stat(); st.Fragments != int64(len(sizes)) {
				t.Fatalf("after restart: %+v", st)
			}
			for id, d := range datas {
				st, err := os.Stat(s.path(id))
				must(t, err)
				if st.Size() != int64(headerLen(1)+len(d)) {
					t.Fatalf("file of a %d-byte fragment is %d bytes", len(d), st.Size())
				}
				got, err := s.Get(ctx, id)
				if err != nil || !bytes.Equal(got, d) {
					t.Fatalf("Get(%d bytes) = %d bytes, %v", len(d), len(got), err)
				}
			}
		})
	}
}

// TestAlignedBuffer: O_DIRECT buffers are 4 KiB aligned, a multiple of 4 KiB long, and
// go back to the pool they came from.
func TestAlignedBuffer(t *testing.T) {
	for _, n := range []int{1, 4096, 4097, 65536, 65537, 300_000, 16 << 20} {
		p := alignedBuffer(n)
		b := *p
		if len(b) < n || len(b)%directAlign != 0 || len(b)-n >= directAlign || uintptr(unsafe.Pointer(&b[0]))%directAlign != 0 {
			t.Fatalf("alignedBuffer(%d): len %d at %p", n, len(b), &b[0])
		}
		if alignedClass(cap(b)) != alignedClass(len(b)) {
			t.Fatalf("alignedBuffer(%d): capacity %d goes back to class %d, taken from %d", n, cap(b), alignedClass(cap(b)), alignedClass(len(b)))
		}
		putAligned(p)
	}
}
