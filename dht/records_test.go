package dht

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipns"
	"github.com/ipfs/boxo/path"
	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	ic "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func TestRecordsStore(t *testing.T) {
	ctx := t.Context()
	file := filepath.Join(t.TempDir(), recordsFile)
	r, err := openRecords(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"/ipns/A", "/ipns/B", "/ipnsx/C", "/pk/D"} {
		if err := r.Put(ctx, ds.NewKey(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Put(ctx, ds.NewKey("/big"), make([]byte, maxRecordSize+1)); err == nil {
		t.Error("Put of an oversized record: no error")
	}
	if err := r.Delete(ctx, ds.NewKey("/pk/D")); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, ds.NewKey("/pk/none")); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	if _, err := r.Get(ctx, ds.NewKey("/pk/D")); !errors.Is(err, ds.ErrNotFound) {
		t.Errorf("Get of a deleted key: %v, want ErrNotFound", err)
	}
	if ok, err := r.Has(ctx, ds.NewKey("/ipns/A")); !ok || err != nil {
		t.Errorf("Has: %v, %v", ok, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened: the records are still there, the count too.
	r, err = openRecords(file)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if n := r.n.Load(); n != 3 {
		t.Errorf("count after reopening %d, want 3", n)
	}
	if v, err := r.Get(ctx, ds.NewKey("/ipns/B")); err != nil || string(v) != "v/ipns/B" {
		t.Errorf("Get: %q, %v", v, err)
	}
	for prefix, want := range map[string][]string{
		"/ipns": {"/ipns/A", "/ipns/B"},
		"":      {"/ipns/A", "/ipns/B", "/ipnsx/C"},
		"/pk":   nil,
	} {
		res, err := r.Query(ctx, dsq.Query{Prefix: prefix, Orders: []dsq.Order{dsq.OrderByKey{}}})
		if err != nil {
			t.Fatal(err)
		}
		all, err := res.Rest()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range all {
			got = append(got, e.Key)
			if string(e.Value) != "v"+e.Key {
				t.Errorf("query %q: %s = %q", prefix, e.Key, e.Value)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("query %q: %q, want %q", prefix, got, want)
		}
	}
}

func TestRecordsFull(t *testing.T) {
	ctx := t.Context()
	r, err := openRecords(filepath.Join(t.TempDir(), recordsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.n.Store(maxRecords - 1) // as if nearly full, without writing 65536 records
	if err := r.Put(ctx, ds.NewKey("/a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(ctx, ds.NewKey("/b"), []byte("2")); !errors.Is(err, errRecordsFull) {
		t.Errorf("Put beyond the bound: %v, want errRecordsFull", err)
	}
	// Replacing a stored record is always allowed.
	if err := r.Put(ctx, ds.NewKey("/a"), []byte("3")); err != nil {
		t.Errorf("Put replacing a record: %v", err)
	}
	if err := r.Delete(ctx, ds.NewKey("/a")); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(ctx, ds.NewKey("/b"), []byte("2")); err != nil {
		t.Errorf("Put after a delete: %v", err)
	}
}

// TestRecordSurvivesRestart puts an IPNS record through a client onto a lone donor,
// restarts the donor, and gets the record back through a fresh client.
func TestRecordSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	donor, err := New(t.Context(), Config{DataDir: dir, Mode: ModeServer})
	if err != nil {
		t.Fatal(err)
	}
	sk, pk, err := ic.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := peer.IDFromPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	p, err := path.NewPath("/ipfs/bafkqaaa")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := ipns.NewRecord(sk, p, 7, time.Now().Add(time.Hour), 0, ipns.WithV1Compatibility(false))
	if err != nil {
		t.Fatal(err)
	}
	val, err := ipns.MarshalRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	key := string(ipns.NameFromPeer(pid).RoutingKey())

	put := newTestNode(t, ModeClient, donor)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := put.DHT().PutValue(ctx, key, val); err != nil {
		t.Fatal(err)
	}
	if err := donor.Close(); err != nil {
		t.Fatal(err)
	}

	donor, err = New(t.Context(), Config{DataDir: dir, Mode: ModeServer})
	if err != nil {
		t.Fatal(err)
	}
	defer donor.Close()
	get := newTestNode(t, ModeClient, donor)
	got, err := get.DHT().GetValue(ctx, key)
	if err != nil {
		t.Fatalf("GetValue after the donor restarted: %v", err)
	}
	gotRec, err := ipns.UnmarshalRecord(got)
	if err != nil {
		t.Fatal(err)
	}
	if seq, err := gotRec.Sequence(); err != nil || seq != 7 {
		t.Errorf("record sequence %d (%v), want 7", seq, err)
	}
}
