package root

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipns"
	ic "github.com/libp2p/go-libp2p/core/crypto"
	"go.uber.org/goleak"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/dht"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/snapshot"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func keysOf(b byte) *crypt.Keys {
	var s crypt.Secret
	for i := range s {
		s[i] = b + byte(i)
	}
	return s.Keys()
}

func samplePayload(keys *crypt.Keys, n byte) Payload {
	id := keys.ChunkID([]byte{n})
	ref := pipeline.Ref{ID: id, Size: 100, SealedLen: 117, K: 2, M: 1}
	for i := range 3 {
		ref.Fragments = append(ref.Fragments, pipeline.Fragment{ID: chunker.FragmentID{n, byte(i)}, Peer: "12D3KooWholder"})
	}
	return Payload{Root: snapshot.Ptr{Ref: ref, Key: keys.ChunkKey(id)}, Writer: "12D3KooWwriter",
		LeaseExpiry: time.Unix(1800000000, 5)}
}

type memSeq struct {
	mu  sync.Mutex
	seq uint64
}

func (m *memSeq) SnapshotSeq() (uint64, error) { m.mu.Lock(); defer m.mu.Unlock(); return m.seq, nil }
func (m *memSeq) SetSnapshotSeq(s uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq = max(m.seq, s)
	return nil
}

func TestEncodeDecode(t *testing.T) {
	k := keysOf(0)
	p := samplePayload(k, 1)
	b, err := Encode(k, 7, p, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := Decode(k, b)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Seq != 7 || rec.Writer != p.Writer || !rec.LeaseExpiry.Equal(p.LeaseExpiry) || rec.Root.Ref.ID != p.Root.Ref.ID || rec.Root.Key != p.Root.Key {
		t.Fatalf("decoded %+v, want seq 7 and %+v", rec, p)
	}

	// Every single flipped bit is rejected (signature, CBOR or payload).
	for i := range len(b) {
		bad := append([]byte(nil), b...)
		bad[i] ^= 0x01
		if _, err := Decode(k, bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("byte %d flipped: err = %v, want ErrInvalid", i, err)
		}
	}
	// Another drive's record, or this record read by another drive, is rejected.
	other := keysOf(1)
	ob, err := Encode(other, 8, samplePayload(other, 1), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(k, ob); !errors.Is(err, ErrInvalid) {
		t.Fatalf("other drive's record: %v", err)
	}
	if _, err := Decode(other, b); !errors.Is(err, ErrInvalid) {
		t.Fatalf("record read with other keys: %v", err)
	}
	// An expired record is rejected.
	old, err := Encode(k, 9, p, -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(k, old); !errors.Is(err, ErrInvalid) {
		t.Fatalf("expired record: %v", err)
	}
}

// A record signed by the drive key but whose payload was sealed for another sequence
// (a payload moved from an older record) is rejected.
func TestPayloadBoundToSequence(t *testing.T) {
	k := keysOf(0)
	sealed, err := sealPayload(k, 3, samplePayload(k, 1))
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := ic.UnmarshalEd25519PrivateKey(k.Signing)
	rec, err := ipns.NewRecord(sk, placeholder, 4, time.Now().Add(time.Hour), time.Minute,
		ipns.WithV1Compatibility(false), ipns.WithMetadata(map[string]any{metaKey: sealed}))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ipns.MarshalRecord(rec)
	if _, err := Decode(k, b); !errors.Is(err, ErrInvalid) {
		t.Fatalf("payload of seq 3 in a record of seq 4: %v", err)
	}
}

// The record goes through the DHT of real loopback donors: a client publishes, another
// client resolves; a newer sequence wins; a tampered record is refused by the DHT's
// validator; an older record is a replay for a reader that has seen a newer one.
func TestDHT(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	local, err := dht.StartLocal(ctx, dht.LocalConfig{Dir: t.TempDir(), Donors: 4, Quota: 1 << 20, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	client := func() *dht.Node {
		n, err := dht.New(ctx, dht.Config{DataDir: t.TempDir(), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
			Bootstrap: local.Bootstrap(), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		return n
	}
	writer, reader := client(), client()
	defer writer.Close()
	defer reader.Close()

	k := keysOf(0)
	if _, err := Get(ctx, reader.DHT(), k, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before any publish: %v", err)
	}
	seqs := &memSeq{}
	pub := NewPublisher(writer.DHT(), k, seqs, time.Hour, time.Hour)
	s1, err := pub.Publish(ctx, samplePayload(k, 1))
	if err != nil {
		t.Fatal(err)
	}
	first, err := Encode(k, s1, samplePayload(k, 1), time.Hour) // kept to replay later
	if err != nil {
		t.Fatal(err)
	}
	s2, err := pub.Publish(ctx, samplePayload(k, 2))
	if err != nil {
		t.Fatal(err)
	}
	if s1 != 1 || s2 != 2 {
		t.Fatalf("sequences %d, %d", s1, s2)
	}
	rec, err := Get(ctx, reader.DHT(), k, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Seq != 2 || rec.Root.Ref.ID != samplePayload(k, 2).Root.Ref.ID {
		t.Fatalf("resolved seq %d, want 2", rec.Seq)
	}
	if err := pub.Republish(ctx); err != nil {
		t.Fatal(err)
	}

	// Replaying the older record: the donors keep the newer one (ipns Select), and a
	// reader that has seen 2 refuses 1 wherever it comes from.
	if err := Put(ctx, writer.DHT(), k, first); err == nil {
		t.Log("older record accepted by put (kept out by the donors' selection)")
	}
	if rec, err := Get(ctx, reader.DHT(), k, 2); err != nil || rec.Seq != 2 {
		t.Fatalf("after replay: %+v, %v", rec, err)
	}
	old, err := Decode(k, first)
	if err != nil {
		t.Fatal(err)
	}
	if old.Seq >= 2 {
		t.Fatal("replayed record has a newer sequence")
	}
	if _, err := Get(ctx, reader.DHT(), k, 3); !errors.Is(err, ErrReplay) {
		t.Fatalf("reader that saw 3: %v, want ErrReplay", err)
	}

	// A tampered record is refused by the DHT's IPNS validator before it is sent.
	bad, _ := Encode(k, 5, samplePayload(k, 3), time.Hour)
	bad[len(bad)-3] ^= 0x40
	if err := Put(ctx, writer.DHT(), k, bad); err == nil {
		t.Fatal("tampered record accepted by the DHT")
	}
	// A record of another drive cannot be stored under this drive's key.
	other := keysOf(1)
	ob, _ := Encode(other, 9, samplePayload(other, 1), time.Hour)
	if err := Put(ctx, writer.DHT(), k, ob); err == nil {
		t.Fatal("another drive's record accepted under this drive's name")
	}
	if rec, err := Get(ctx, reader.DHT(), k, 0); err != nil || rec.Seq != 2 {
		t.Fatalf("after tampering: %+v, %v", rec, err)
	}
}

func TestPayloadHeld(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, c := range []struct {
		p    Payload
		want bool
	}{
		{Payload{Writer: "w", LeaseExpiry: now.Add(time.Second)}, true},
		{Payload{Writer: "w", LeaseExpiry: now}, false}, // ends at its expiry
		{Payload{Writer: "w", LeaseExpiry: now.Add(-time.Hour)}, false},
		{Payload{Writer: "w"}, false}, // released at unmount
		{Payload{LeaseExpiry: now.Add(time.Hour)}, false},
	} {
		if got := c.p.Held(now); got != c.want {
			t.Errorf("%+v Held = %v, want %v", c.p, got, c.want)
		}
	}
}
