package root

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/scatterfs/scatter/crypt"
)

// memValues is a routing.ValueStore in memory: the last value put under a key wins.
type memValues map[string][]byte

func (m memValues) PutValue(_ context.Context, k string, v []byte, _ ...routing.Option) error {
	m[k] = v
	return nil
}

func (m memValues) GetValue(_ context.Context, k string, _ ...routing.Option) ([]byte, error) {
	v, ok := m[k]
	if !ok {
		return nil, routing.ErrNotFound
	}
	return v, nil
}

func (m memValues) SearchValue(ctx context.Context, k string, _ ...routing.Option) (<-chan []byte, error) {
	v, err := m.GetValue(ctx, k)
	if err != nil {
		return nil, err
	}
	ch := make(chan []byte, 1)
	ch <- v
	close(ch)
	return ch, nil
}

func TestShareRecord(t *testing.T) {
	k := keysOf(0)
	sk := k.Share(crypt.ShareID{1})
	dir := samplePayload(k, 3).Root
	at := time.Unix(1800000000, 42)
	b, err := EncodeShare(sk, 5, dir, at, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeShare(sk.Cap, b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Seq != 5 || !r.Time.Equal(at) || r.Dir.Ref.ID != dir.Ref.ID || r.Dir.Key != dir.Key || len(r.Dir.Ref.Fragments) != 3 {
		t.Fatalf("decoded %+v", r)
	}
	// Every flipped bit is rejected.
	for i := range len(b) {
		bad := append([]byte(nil), b...)
		bad[i] ^= 0x01
		if _, err := DecodeShare(sk.Cap, bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("byte %d flipped: err = %v, want ErrInvalid", i, err)
		}
	}
	// Another share's capability opens nothing, nor does this share's public key with
	// another share's symmetric key (a record re-signed by someone who knows only the
	// capability cannot be told apart, which is why the payload key is secret too).
	other := k.Share(crypt.ShareID{2})
	if _, err := DecodeShare(other.Cap, b); !errors.Is(err, ErrInvalid) {
		t.Fatalf("another share's cap: %v", err)
	}
	mixed := sk.Cap
	mixed.Key = other.Cap.Key
	if _, err := DecodeShare(mixed, b); !errors.Is(err, ErrInvalid) {
		t.Fatalf("wrong share key: %v", err)
	}
	// The drive's root record does not decode as a share record of any share.
	rb, err := Encode(k, 5, samplePayload(k, 1), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeShare(sk.Cap, rb); !errors.Is(err, ErrInvalid) {
		t.Fatalf("root record as share record: %v", err)
	}
	// An expired record is rejected.
	old, err := EncodeShare(sk, 6, dir, at, -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeShare(sk.Cap, old); !errors.Is(err, ErrInvalid) {
		t.Fatalf("expired: %v", err)
	}
}

// A payload sealed for one sequence cannot be replayed under another: the signature
// covers the sequence, and the payload's associated data binds it too.
func TestShareRecordReplay(t *testing.T) {
	ctx := context.Background()
	k := keysOf(0)
	sk := k.Share(crypt.ShareID{1})
	vals := memValues{}
	if _, err := GetShare(ctx, vals, sk.Cap, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty DHT: %v", err)
	}
	put := func(seq uint64, n byte) []byte {
		t.Helper()
		b, err := EncodeShare(sk, seq, samplePayload(k, n).Root, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := PutNamed(ctx, vals, sk.Cap.Public, b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	old := put(3, 1)
	put(4, 2)
	r, err := GetShare(ctx, vals, sk.Cap, 4)
	if err != nil || r.Seq != 4 {
		t.Fatalf("newest: %+v %v", r, err)
	}
	// A stale peer serves the older record: refused once 4 was seen.
	key, err := Key(sk.Cap.Public)
	if err != nil {
		t.Fatal(err)
	}
	vals[key] = old
	if _, err := GetShare(ctx, vals, sk.Cap, 4); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed record: %v, want ErrReplay", err)
	}
}

// FuzzDecodeShare: a share record from the DHT is untrusted input; decoding never
// panics, and anything that decodes was signed by the share and sealed with its key.
func FuzzDecodeShare(f *testing.F) {
	k := keysOf(0)
	sk := k.Share(crypt.ShareID{1})
	valid, err := EncodeShare(sk, 5, samplePayload(k, 3).Root, time.Unix(1800000000, 0), 24*time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeShare(sk.Cap, b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if r.Seq != 5 {
			t.Fatalf("a forged record decoded: seq %d", r.Seq)
		}
	})
}
