package main

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/root"
	"github.com/scatterfs/scatter/snapshot"
)

// putRecord publishes a root record with payload p under seq into e's DHT; a zero
// p.Root is replaced by a well-formed pointer.
func (e *snapEnv) putRecord(t *testing.T, seq uint64, p root.Payload) {
	t.Helper()
	if p.Root.Ref.K == 0 {
		id := e.keys.ChunkID([]byte("root"))
		p.Root = snapshot.Ptr{Ref: pipeline.Ref{ID: id, Size: 10, SealedLen: 27, K: 1, M: 1,
			Fragments: []pipeline.Fragment{{ID: chunker.FragmentID{1}, Peer: "p1"}, {ID: chunker.FragmentID{2}, Peer: "p2"}}},
			Key: e.keys.ChunkKey(id)}
	}
	b, err := root.Encode(e.keys, seq, p, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Put(t.Context(), e.dht, e.keys, b); err != nil {
		t.Fatal(err)
	}
}

func TestCheckWriter(t *testing.T) {
	e := newSnapEnv(t)
	now := time.Unix(1_800_000_000, 0)
	check := func(seen uint64, force bool) (string, error) {
		var out bytes.Buffer
		err := checkWriter(t.Context(), e.dht, e.keys, "me", seen, force, now, &out, quietLog)
		return out.String(), err
	}
	if _, err := check(0, false); err != nil {
		t.Errorf("a drive with no root record: %v", err)
	}

	e.putRecord(t, 7, root.Payload{Writer: "other", LeaseExpiry: now.Add(time.Minute)})
	_, err := check(7, false)
	if !errors.Is(err, errWriterLease) || !strings.Contains(err.Error(), "other") ||
		!strings.Contains(err.Error(), now.Add(time.Minute).UTC().Format(time.RFC3339)) || strings.Contains(err.Error(), "\n") {
		t.Errorf("another writer's lease: %v; want errWriterLease on one line naming it and the lease end", err)
	}
	if out, err := check(7, true); err != nil || !strings.Contains(out, "-force-takeover") {
		t.Errorf("-force-takeover over a lease: %v, said %q", err, out)
	}

	// Expired, or released at unmount: free, unless this device's store is older.
	for _, p := range []root.Payload{{Writer: "other", LeaseExpiry: now}, {Writer: "other"}} {
		e.putRecord(t, 8, p)
		if _, err := check(8, false); err != nil {
			t.Errorf("lease %+v: %v", p, err)
		}
		if _, err := check(0, false); err != nil {
			t.Errorf("lease %+v on a fresh device: %v", p, err)
		}
		if _, err := check(5, false); !errors.Is(err, errStaleMetadata) {
			t.Errorf("lease %+v, device last saw 5 of 8: %v, want errStaleMetadata", p, err)
		}
	}

	// This device's own lease (a crash before the release) is no obstacle.
	e.putRecord(t, 9, root.Payload{Writer: "me", LeaseExpiry: now.Add(time.Hour)})
	if _, err := check(3, false); err != nil {
		t.Errorf("own lease: %v", err)
	}

	// A record that cannot be read does not stop the mount; it says so.
	e.dht.getErr = errors.New("peers unreachable")
	if out, err := check(9, false); err != nil || !strings.Contains(out, "not checked") {
		t.Errorf("unreadable record: %v, said %q", err, out)
	}
}

// TestSnapshotsWriterLease: records carry the writer and a lease, renewed under new
// sequence numbers while mounted, released by the record published at Close.
func TestSnapshotsWriterLease(t *testing.T) {
	e := newSnapEnv(t)
	v := e.open(t, t.TempDir())
	defer v.Close()
	const lease = 300 * time.Millisecond
	start := time.Now()
	s, err := startSnapshots(v, e.store, e.keys, e.dht, 0,
		snapshotConfig{Quiet: 10 * time.Millisecond, Poll: 10 * time.Millisecond, Writer: "me", Lease: lease}, quietLog, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// The first record, then at least one renewal: same root, higher sequence, lease later.
	var first root.Record
	for n := 0; n < 2; {
		rec, err := root.Decode(e.keys, <-e.dht.puts)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Writer != "me" || !rec.Held(time.Now()) || rec.LeaseExpiry.Before(start.Add(lease)) {
			t.Errorf("record %d: writer %q, lease until %v; want me, held for %v", rec.Seq, rec.Writer, rec.LeaseExpiry, lease)
		}
		if n++; n == 1 {
			first = rec
		} else if rec.Seq <= first.Seq || !rec.LeaseExpiry.After(first.LeaseExpiry) || !samePtr(rec.Root, first.Root) {
			t.Errorf("renewal %d (lease %v) after %d (lease %v): want a higher sequence, a later lease, the same root",
				rec.Seq, rec.LeaseExpiry, first.Seq, first.LeaseExpiry)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	last := e.published(t)
	if last.Writer != "me" || !last.LeaseExpiry.IsZero() || last.Held(time.Now()) || !samePtr(last.Root, first.Root) {
		t.Errorf("record at Close: writer %q, lease until %v; want me, released", last.Writer, last.LeaseExpiry)
	}
}

func samePtr(a, b snapshot.Ptr) bool {
	x, _ := a.MarshalBinary()
	y, _ := b.MarshalBinary()
	return bytes.Equal(x, y)
}
