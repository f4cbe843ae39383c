package dht

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/dht/store"
	"github.com/scatterfs/scatter/swarm"
)

// fragHost starts a bare libp2p host on loopback TCP with TLS, closed at cleanup.
func fragHost(t testing.TB, opts ...libp2p.Option) host.Host {
	t.Helper()
	opts = append([]libp2p.Option{
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.DisableRelay(),
	}, opts...)
	h, err := libp2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// fragEnv is a donor (host, store, server) and a client host connected to it.
type fragEnv struct {
	donor  host.Host
	dir    string
	st     *store.Store
	srv    *Server
	ch     host.Host
	client *Client
	key    ed25519.PrivateKey
}

func testOwnerKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func newFragEnv(t testing.TB, quota int64, scfg ServerConfig, donorOpts ...libp2p.Option) *fragEnv {
	t.Helper()
	e := &fragEnv{dir: t.TempDir(), key: testOwnerKey(1)}
	e.donor = fragHost(t, donorOpts...)
	e.ch = fragHost(t)
	var err error
	e.st, err = store.Open(e.dir, store.Config{Quota: quota, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	e.srv, err = NewServer(e.donor, e.st, scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.srv.Close() })
	if err := e.ch.Connect(context.Background(), peer.AddrInfo{ID: e.donor.ID(), Addrs: e.donor.Addrs()}); err != nil {
		t.Fatal(err)
	}
	e.client = NewClient(e.ch, e.key, ClientConfig{})
	return e
}

func testFragment(seed, n int) ([]byte, chunker.FragmentID) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed*31 + i*13 + i>>9)
	}
	return b, chunker.FragmentIDOf(b)
}

func TestFragmentRoundTrip(t *testing.T) {
	e := newFragEnv(t, 10<<20, ServerConfig{})
	ctx, p := t.Context(), e.donor.ID()
	t0 := time.Now()
	d1, id1 := testFragment(1, 128<<10)
	d2, id2 := testFragment(2, 1000)
	_, absent := testFragment(3, 10)
	if err := e.client.Put(ctx, p, id1, d1, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Put(ctx, p, id2, d2, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := e.client.Get(ctx, p, id1)
	if err != nil || chunker.FragmentIDOf(got) != id1 {
		t.Fatalf("Get = %d bytes, %v", len(got), err)
	}
	if _, err := e.client.Get(ctx, p, absent); !errors.Is(err, swarm.ErrNotFound) {
		t.Fatalf("Get(absent) = %v, want ErrNotFound", err)
	}
	has, err := e.client.Has(ctx, p, []chunker.FragmentID{absent, id2, id1, absent, absent, absent, absent, absent, id1})
	if err != nil || len(has) != 9 || has[0] || !has[1] || !has[2] || has[3] || !has[8] {
		t.Fatalf("Has = %v, %v", has, err)
	}
	st, err := e.client.Stat(ctx, p)
	if err != nil || st != e.st.Stat() || st.Fragments != 2 || st.Quota != 10<<20 {
		t.Fatalf("Stat = %+v, %v; store says %+v", st, err, e.st.Stat())
	}
	// Renew id1 past its first lease: a GC between the two expiries keeps it only.
	if err := e.client.Renew(ctx, p, []chunker.FragmentID{id1, absent}, t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, _, err := e.st.GC(t0.Add(2 * time.Hour)); err != nil || n != 1 {
		t.Fatalf("GC = %d, %v", n, err)
	}
	if has, _ := e.client.Has(ctx, p, []chunker.FragmentID{id1, id2}); !has[0] || has[1] {
		t.Fatalf("Has after GC = %v", has)
	}
	if err := e.client.Delete(ctx, p, []chunker.FragmentID{id1, absent}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Get(ctx, p, id1); !errors.Is(err, swarm.ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
	if st, _ := e.client.Stat(ctx, p); st.Used != 0 || st.Fragments != 0 {
		t.Fatalf("Stat after Delete = %+v", st)
	}
	// Empty lists need no request.
	if has, err := e.client.Has(ctx, p, nil); err != nil || len(has) != 0 {
		t.Fatalf("Has(nil) = %v, %v", has, err)
	}
}

func TestFragmentBatchSplit(t *testing.T) {
	e := newFragEnv(t, 10<<20, ServerConfig{MaxBatch: 3})
	e.client = NewClient(e.ch, e.key, ClientConfig{MaxBatch: 3})
	ctx, p := t.Context(), e.donor.ID()
	var ids []chunker.FragmentID
	for i := range 8 {
		d, id := testFragment(i, 100)
		ids = append(ids, id)
		if i%2 == 0 {
			if err := e.client.Put(ctx, p, id, d, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	}
	has, err := e.client.Has(ctx, p, ids)
	if err != nil || len(has) != 8 {
		t.Fatal(has, err)
	}
	for i, h := range has {
		if h != (i%2 == 0) {
			t.Fatalf("Has = %v", has)
		}
	}
	if err := e.client.Delete(ctx, p, ids); err != nil {
		t.Fatal(err)
	}
	if st := e.st.Stat(); st.Fragments != 0 {
		t.Fatalf("Stat after Delete = %+v", st)
	}
}

func TestFragmentPutRejected(t *testing.T) {
	e := newFragEnv(t, 1<<20, ServerConfig{MaxFragmentSize: 64 << 10})
	ctx, p := t.Context(), e.donor.ID()
	d, id := testFragment(1, 1000)
	other := append([]byte{}, d...)
	other[0] ^= 1
	if err := e.client.Put(ctx, p, id, other, time.Now().Add(time.Hour)); !errors.Is(err, swarm.ErrDenied) {
		t.Fatalf("Put(bytes not matching ID) = %v, want ErrDenied", err)
	}
	if err := e.client.Put(ctx, p, id, d, time.Now().Add(-time.Hour)); !errors.Is(err, swarm.ErrDenied) {
		t.Fatalf("Put(expired lease) = %v, want ErrDenied", err)
	}
	big, bigID := testFragment(2, 100<<10)
	if err := e.client.Put(ctx, p, bigID, big, time.Now().Add(time.Hour)); !errors.Is(err, swarm.ErrDenied) {
		t.Fatalf("Put(above server max) = %v, want ErrDenied", err)
	}
	if err := e.client.Put(ctx, p, id, nil, time.Now().Add(time.Hour)); !errors.Is(err, swarm.ErrDenied) {
		t.Fatalf("Put(empty) = %v, want ErrDenied", err)
	}
	full, fullID := testFragment(3, 60<<10)
	e2 := newFragEnv(t, 16<<10, ServerConfig{})
	if err := e2.client.Put(ctx, e2.donor.ID(), fullID, full, time.Now().Add(time.Hour)); !errors.Is(err, swarm.ErrFull) {
		t.Fatalf("Put(over quota) = %v, want ErrFull", err)
	}
	if st := e.st.Stat(); st.Fragments != 0 || st.Used != 0 {
		t.Fatalf("donor stored something: %+v", st)
	}
}

// TestFragmentQuotaConcurrent: 32 clients PUT at once into a donor with room for 40 of
// their 128 fragments; the donor never goes over its quota, in its accounting or on disk.
func TestFragmentQuotaConcurrent(t *testing.T) {
	const (
		size   = 100000
		charge = 102400 // size + 92-byte header, rounded up to 4 KiB
		quota  = 40*charge + 4000
	)
	e := newFragEnv(t, quota, ServerConfig{})
	ctx, p := t.Context(), e.donor.ID()
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		ok, full   int
		overQuotas int
	)
	for g := range 32 {
		wg.Go(func() {
			for i := range 4 {
				d, id := testFragment(g*4+i, size)
				err := e.client.Put(ctx, p, id, d, time.Now().Add(time.Hour))
				st := e.st.Stat()
				mu.Lock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, swarm.ErrFull):
					full++
				default:
					t.Error(err)
				}
				if st.Used > quota {
					overQuotas++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	st, err := e.client.Stat(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if ok != 40 || full != 88 || overQuotas != 0 || st.Fragments != 40 || st.Used != 40*charge {
		t.Fatalf("%d stored, %d full, %d over quota; Stat %+v", ok, full, overQuotas, st)
	}
	var disk int64
	filepath.WalkDir(e.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && filepath.Base(filepath.Dir(filepath.Dir(p))) == "frag" {
			fi, _ := d.Info()
			disk += fi.Size()
		}
		return err
	})
	if disk > quota || disk < 40*size {
		t.Fatalf("%d bytes of fragment files on disk, quota %d", disk, quota)
	}
}

func TestFragmentCorruptNotServed(t *testing.T) {
	e := newFragEnv(t, 1<<20, ServerConfig{})
	ctx, p := t.Context(), e.donor.ID()
	d, id := testFragment(1, 5000)
	if err := e.client.Put(ctx, p, id, d, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.dir, "frag", id.String()[:2], id.String())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := e.client.Get(ctx, p, id); !errors.Is(err, swarm.ErrNotFound) {
		t.Fatalf("Get(corrupt) = %d bytes, %v; want ErrNotFound", len(got), err)
	}
	if has, _ := e.client.Has(ctx, p, []chunker.FragmentID{id}); has[0] {
		t.Fatal("corrupt fragment still announced")
	}
	// The owner can store it again.
	if err := e.client.Put(ctx, p, id, d, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, err := e.client.Get(ctx, p, id); err != nil || !bytes.Equal(got, d) {
		t.Fatalf("Get after re-PUT: %v", err)
	}
}

func TestFragmentRestart(t *testing.T) {
	e := newFragEnv(t, 1<<20, ServerConfig{})
	ctx, p := t.Context(), e.donor.ID()
	d, id := testFragment(1, 5000)
	if err := e.client.Put(ctx, p, id, d, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	before := e.st.Stat()
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Put(ctx, p, id, d, time.Now().Add(time.Hour)); !errors.Is(err, swarm.ErrUnreachable) {
		t.Fatalf("Put to a donor that stopped serving = %v, want ErrUnreachable", err)
	}
	st, err := store.Open(e.dir, store.Config{Quota: 1 << 20, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := NewServer(e.donor, st, ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if got, err := e.client.Get(ctx, p, id); err != nil || !bytes.Equal(got, d) {
		t.Fatalf("Get after restart: %v", err)
	}
	if s, err := e.client.Stat(ctx, p); err != nil || s != before {
		t.Fatalf("Stat after restart = %+v, %v; want %+v", s, err, before)
	}
	// The owner recorded before the restart can still delete it.
	if err := e.client.Delete(ctx, p, []chunker.FragmentID{id}); err != nil {
		t.Fatal(err)
	}
	if s := st.Stat(); s.Fragments != 0 {
		t.Fatalf("Stat after Delete = %+v", s)
	}
}

// rawRequest sends b on a new fragment-protocol stream, closes the write side and returns
// everything the server answers before closing or resetting the stream.
func rawRequest(t *testing.T, h host.Host, p peer.ID, b []byte) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s, err := h.NewStream(ctx, p, FragmentProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	s.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		s.Write(b)
		s.CloseWrite()
	}()
	return io.ReadAll(s)
}

func signedRequest(o op, key ed25519.PrivateKey, ts time.Time, exp time.Time, ids ...chunker.FragmentID) request {
	req := request{op: o, ids: ids, timestamp: ts.UnixNano(), expires: exp.Unix()}
	req.sign(key)
	return req
}

func TestFragmentSignedRequests(t *testing.T) {
	e := newFragEnv(t, 1<<20, ServerConfig{})
	ctx, p := t.Context(), e.donor.ID()
	d, id := testFragment(1, 5000)
	now := time.Now()
	if err := e.client.Put(ctx, p, id, d, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	alice, mallory := e.key, testOwnerKey(9)
	unsigned := request{op: opDelete, ids: []chunker.FragmentID{id}, timestamp: now.UnixNano()}
	copy(unsigned.owner[:], alice.Public().(ed25519.PublicKey))
	forged := signedRequest(opDelete, mallory, now, now, id)
	copy(forged.owner[:], alice.Public().(ed25519.PublicKey)) // claims to be alice
	tampered := signedRequest(opRenew, alice, now, now.Add(2*time.Hour), id)
	tampered.expires += 3600 // signature no longer covers the request
	asDelete := signedRequest(opRenew, alice, now, now.Add(2*time.Hour), id)
	asDelete.op = opDelete // a RENEW signature replayed as a DELETE
	for _, tc := range []struct {
		name string
		req  request
	}{
		{"unsigned", unsigned},
		{"forged", forged},
		{"tampered", tampered},
		{"renew signature on delete", asDelete},
		{"stale", signedRequest(opDelete, alice, now.Add(-11*time.Minute), now, id)},
		{"future", signedRequest(opDelete, alice, now.Add(11*time.Minute), now, id)},
		{"stale renew", signedRequest(opRenew, alice, now.Add(-time.Hour), now.Add(3*time.Hour), id)},
	} {
		resp, err := rawRequest(t, e.ch, p, appendRequest(nil, &tc.req))
		if err != nil || len(resp) == 0 || status(resp[0]) != statusDenied {
			t.Errorf("%s: response %q, %v; want DENIED", tc.name, resp, err)
		}
	}
	// Mallory signing for herself is valid but owns nothing here: no effect.
	if err := NewClient(e.ch, mallory, ClientConfig{}).Delete(ctx, p, []chunker.FragmentID{id}); err != nil {
		t.Fatal(err)
	}
	if has, _ := e.client.Has(ctx, p, []chunker.FragmentID{id}); !has[0] {
		t.Fatal("fragment deleted by a rejected request")
	}
	// Replay: alice deletes, then stores the fragment again; a replay of her DELETE within
	// the time window is answered OK but does not drop the new copy.
	del := appendRequest(nil, ptr(signedRequest(opDelete, alice, time.Now(), time.Time{}, id)))
	if resp, err := rawRequest(t, e.ch, p, del); err != nil || !bytes.Equal(resp, []byte{0}) {
		t.Fatalf("DELETE: %q, %v", resp, err)
	}
	if e.st.Has([]chunker.FragmentID{id})[0] {
		t.Fatal("DELETE had no effect")
	}
	if err := e.client.Put(ctx, p, id, d, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if resp, err := rawRequest(t, e.ch, p, del); err != nil || !bytes.Equal(resp, []byte{0}) {
		t.Fatalf("replayed DELETE: %q, %v", resp, err)
	}
	if !e.st.Has([]chunker.FragmentID{id})[0] {
		t.Fatal("replayed DELETE dropped the fragment stored again")
	}
}

func ptr[T any](v T) *T { return &v }

// TestFragmentMalformed writes broken requests by hand; each is refused and the server
// keeps serving.
func TestFragmentMalformed(t *testing.T) {
	e := newFragEnv(t, 1<<20, ServerConfig{MaxFragmentSize: 1 << 20, MaxBatch: 100})
	p := e.donor.ID()
	_, id := testFragment(1, 10)
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	putHead := func(size uint32) []byte {
		b := append([]byte{1, byte(opPut)}, id[:]...)
		b = append(b, make([]byte, 32)...)
		b = binary.BigEndian.AppendUint64(b, uint64(time.Now().Add(time.Hour).Unix()))
		return append(b, u32(size)...)
	}
	for _, tc := range []struct {
		name  string
		req   []byte
		reply bool // a BAD_REQUEST response is expected; otherwise a reset or a bare close
	}{
		{"bad version", []byte{2, byte(opStat)}, true},
		{"unknown op", []byte{1, 99}, true},
		{"op zero", []byte{1, 0}, true},
		{"oversized PUT", putHead(1<<20 + 1), true},
		{"PUT of 4 GiB", putHead(0xffffffff), true},
		{"empty PUT", putHead(0), true},
		{"HAS of nothing", append([]byte{1, byte(opHas)}, u32(0)...), true},
		{"HAS over batch", append([]byte{1, byte(opHas)}, u32(101)...), true},
		{"HAS of 2^32-1", append([]byte{1, byte(opHas)}, u32(0xffffffff)...), true},
		{"empty", nil, false},
		{"version only", []byte{1}, false},
		{"truncated GET", append([]byte{1, byte(opGet)}, id[:10]...), false},
		{"truncated PUT payload", append(putHead(1000), 1, 2, 3), false},
		{"truncated HAS", append(append([]byte{1, byte(opHas)}, u32(2)...), id[:]...), false},
		{"truncated DELETE signature", append(append(append([]byte{1, byte(opDelete)}, make([]byte, 40)...), u32(1)...), id[:]...), false},
	} {
		resp, _ := rawRequest(t, e.ch, p, tc.req)
		if tc.reply {
			if len(resp) < 3 || status(resp[0]) != statusBadRequest {
				t.Errorf("%s: response %q, want BAD_REQUEST", tc.name, resp)
			}
		} else if len(resp) != 0 {
			t.Errorf("%s: response %q, want none", tc.name, resp)
		}
	}
	if _, err := e.client.Stat(t.Context(), p); err != nil {
		t.Fatalf("server stopped serving: %v", err)
	}
}

// TestFragmentBusy: a request beyond the concurrency limit or the resource manager's
// memory limit is answered BUSY.
func TestFragmentBusy(t *testing.T) {
	limits := rcmgr.PartialLimitConfig{
		Stream: rcmgr.ResourceLimits{Memory: rcmgr.LimitVal64(1 << 20)},
	}.Build(rcmgr.DefaultLimits.AutoScale())
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits))
	if err != nil {
		t.Fatal(err)
	}
	e := newFragEnv(t, 10<<20, ServerConfig{}, libp2p.ResourceManager(rm))
	ctx, p := t.Context(), e.donor.ID()
	// 800 KiB is above 60% (ReservationPriorityMedium) of the stream's 1 MiB.
	d, id := testFragment(1, 800<<10)
	if err := e.client.Put(ctx, p, id, d, time.Now().Add(time.Hour)); !errors.Is(err, swarm.ErrBusy) {
		t.Fatalf("Put beyond the memory limit = %v, want ErrBusy", err)
	}
	small, sid := testFragment(2, 100<<10)
	if err := e.client.Put(ctx, p, sid, small, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Take every concurrency slot.
	for range cap(e.srv.sem) {
		e.srv.sem <- struct{}{}
	}
	if _, err := e.client.Stat(ctx, p); !errors.Is(err, swarm.ErrBusy) {
		t.Fatalf("Stat with no free slot = %v, want ErrBusy", err)
	}
	<-e.srv.sem
	if _, err := e.client.Stat(ctx, p); err != nil {
		t.Fatal(err)
	}
}

func TestFragmentBandwidthLimit(t *testing.T) {
	e := newFragEnv(t, 10<<20, ServerConfig{Bandwidth: 64 << 20, Burst: 16 << 10})
	ctx, p := t.Context(), e.donor.ID()
	d, id := testFragment(1, 300<<10)
	if err := e.client.Put(ctx, p, id, d, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, err := e.client.Get(ctx, p, id); err != nil || !bytes.Equal(got, d) {
		t.Fatalf("Get: %v", err)
	}
}

// TestFragmentHostileDonor: a donor that answers with impossible sizes, wrong counts or
// never answers cannot make the client allocate, hang or accept the answer.
func TestFragmentHostileDonor(t *testing.T) {
	donor, ch := fragHost(t), fragHost(t)
	if err := ch.Connect(t.Context(), peer.AddrInfo{ID: donor.ID(), Addrs: donor.Addrs()}); err != nil {
		t.Fatal(err)
	}
	var answer []byte // nil: never answer
	var mu sync.Mutex
	silent, release, exited := 0, make(chan struct{}), make(chan struct{}, 8)
	t.Cleanup(func() { // runs before the hosts close
		close(release)
		mu.Lock()
		n := silent
		mu.Unlock()
		for range n {
			<-exited
		}
	})
	donor.SetStreamHandler(FragmentProtocol, func(s network.Stream) {
		mu.Lock()
		a := answer
		if a == nil {
			silent++
		}
		mu.Unlock()
		if a == nil {
			<-release
			s.Reset()
			exited <- struct{}{}
			return
		}
		s.Write(a)
		s.Close()
	})
	c := NewClient(ch, testOwnerKey(1), ClientConfig{MaxFragmentSize: 1 << 20})
	p := donor.ID()
	set := func(b []byte) { mu.Lock(); answer = b; mu.Unlock() }
	ctx := t.Context()

	set(appendGetHead(nil, 1<<31))
	if _, err := c.Get(ctx, p, chunker.FragmentID{}); !errors.Is(err, swarm.ErrUnreachable) {
		t.Fatalf("Get with a 2 GiB length = %v", err)
	}
	set(append(appendGetHead(nil, 100), 1, 2, 3))
	if _, err := c.Get(ctx, p, chunker.FragmentID{}); !errors.Is(err, swarm.ErrUnreachable) {
		t.Fatalf("Get with a short payload = %v", err)
	}
	set(appendHas(nil, []bool{true, true}))
	if _, err := c.Has(ctx, p, make([]chunker.FragmentID, 3)); !errors.Is(err, swarm.ErrUnreachable) {
		t.Fatalf("Has answering the wrong count = %v", err)
	}
	set([]byte{200})
	if _, err := c.Stat(ctx, p); !errors.Is(err, swarm.ErrUnreachable) {
		t.Fatalf("unknown status = %v", err)
	}
	set(appendError(nil, statusInternal, "disk on fire"))
	if _, err := c.Stat(ctx, p); !errors.Is(err, swarm.ErrBusy) {
		t.Fatalf("INTERNAL = %v, want ErrBusy", err)
	}
	set(nil)
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := c.Stat(tctx, p); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stat to a silent donor = %v, want the ctx's deadline", err)
	}
	cctx, cancel2 := context.WithCancel(ctx)
	cancel2()
	if err := c.Put(cctx, p, chunker.FragmentID{}, []byte{1}, time.Now().Add(time.Hour)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled ctx = %v", err)
	}
}

// TestFragmentServerClose: Close ends requests in flight (here one that stalls in its
// payload) and returns; the stalled client sees a broken stream.
func TestFragmentServerClose(t *testing.T) {
	e := newFragEnv(t, 1<<20, ServerConfig{})
	p := e.donor.ID()
	s, err := e.ch.NewStream(t.Context(), p, FragmentProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	_, id := testFragment(1, 1000)
	head := appendRequest(nil, &request{op: opPut, id: id, expires: time.Now().Add(time.Hour).Unix(), size: 1000})
	if _, err := s.Write(append(head, 1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	s.SetDeadline(time.Now().Add(20 * time.Second))
	if b, err := io.ReadAll(s); err == nil && len(b) > 0 {
		t.Fatalf("stalled request answered %q after Close", b)
	}
	if _, err := e.client.Stat(t.Context(), p); !errors.Is(err, swarm.ErrUnreachable) {
		t.Fatalf("Stat after Close = %v, want ErrUnreachable", err)
	}
}

// benchFragmentEnv is a donor and a client on loopback TCP+TLS+yamux, as in production.
func benchFragmentEnv(b *testing.B) *fragEnv {
	return newFragEnv(b, 1<<40, ServerConfig{MaxConcurrent: 256})
}

const benchFragSize = 128 << 10

// BenchmarkFragmentPut: 4 concurrent streams PUT distinct 128 KiB fragments (client hash,
// transfer, donor hash check and store write). MB/s counts fragment bytes.
func BenchmarkFragmentPut(b *testing.B) {
	e := benchFragmentEnv(b)
	var next atomic.Uint64
	exp := time.Now().Add(time.Hour)
	b.SetBytes(benchFragSize)
	b.SetParallelism(2) // 4 streams on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		data, _ := testFragment(1, benchFragSize)
		for pb.Next() {
			binary.BigEndian.PutUint64(data, next.Add(1))
			if err := e.client.Put(context.Background(), e.donor.ID(), chunker.FragmentIDOf(data), data, exp); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkFragmentGet: 4 concurrent streams GET 128 KiB fragments; the donor verifies
// each, the client (as a real reader would) hashes it too.
func BenchmarkFragmentGet(b *testing.B) {
	e := benchFragmentEnv(b)
	var ids []chunker.FragmentID
	for i := range 64 {
		d, id := testFragment(i, benchFragSize)
		if err := e.client.Put(context.Background(), e.donor.ID(), id, d, time.Now().Add(time.Hour)); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, id)
	}
	var next atomic.Uint64
	b.SetBytes(benchFragSize)
	b.SetParallelism(2)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := ids[next.Add(1)%uint64(len(ids))]
			d, err := e.client.Get(context.Background(), e.donor.ID(), id)
			if err != nil || chunker.FragmentIDOf(d) != id {
				b.Error(err)
				return
			}
		}
	})
}

// TestPayloadClasses: a payload buffer has the length asked for and the smallest
// power-of-two capacity (64 KiB at least) that holds it, and goes back to that class.
func TestPayloadClasses(t *testing.T) {
	for _, c := range []struct{ n, cap int }{
		{1, 64 << 10}, {64 << 10, 64 << 10}, {64<<10 + 1, 128 << 10},
		{300 << 10, 512 << 10}, {512 << 10, 512 << 10}, {DefaultMaxFragmentSize, DefaultMaxFragmentSize},
	} {
		p := payload(c.n)
		if len(*p) != c.n || cap(*p) != c.cap {
			t.Fatalf("payload(%d): len %d cap %d, want cap %d", c.n, len(*p), cap(*p), c.cap)
		}
		if got := payloadClass(cap(*p)); got != payloadClass(c.n) {
			t.Fatalf("payload(%d) would go back to class %d, taken from %d", c.n, got, payloadClass(c.n))
		}
		putPayload(p)
	}
}
