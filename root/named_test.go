package root

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"
)

func TestNamedRoundTrip(t *testing.T) {
	pub, sk, _ := ed25519.GenerateKey(nil)
	otherPub, _, _ := ed25519.GenerateKey(nil)
	payload := []byte("sealed elsewhere")
	b, err := EncodeNamed(sk, 42, payload, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	seq, got, err := DecodeNamed(pub, b)
	if err != nil || seq != 42 || !bytes.Equal(got, payload) {
		t.Fatalf("decode: %d %q %v", seq, got, err)
	}
	if _, _, err := DecodeNamed(otherPub, b); !errors.Is(err, ErrInvalid) {
		t.Fatalf("another identity: %v, want ErrInvalid", err)
	}
	for i := range b {
		bad := bytes.Clone(b)
		bad[i] ^= 1
		if s, p, err := DecodeNamed(pub, bad); err == nil && (s != 42 || !bytes.Equal(p, payload)) {
			t.Fatalf("byte %d flipped: decodes to %d %q", i, s, p)
		}
	}
	old, err := EncodeNamed(sk, 1, payload, -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := DecodeNamed(pub, old); !errors.Is(err, ErrInvalid) {
		t.Fatalf("expired: %v, want ErrInvalid", err)
	}
	if _, err := EncodeNamed(sk, 1, make([]byte, maxPayload+1), time.Hour); err == nil {
		t.Fatal("oversized payload encoded")
	}
}
