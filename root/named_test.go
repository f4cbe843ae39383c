package root

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
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

// A sealed payload opens only with its key, kind, identity and sequence; every failure
// wraps the sealing's own sentinel and names its payload.
func TestSealing(t *testing.T) {
	errMine := errors.New("mine")
	s := &Sealing{Key: [32]byte{1}, Version: 3, AD: "kind\x00", Invalid: errMine, What: "test payload", Whose: "with this key"}
	plain := []byte("plaintext")
	b, err := s.Seal([]byte("pub"), 7, plain)
	if err != nil || b[0] != 3 || len(b) != 1+24+len(plain)+16 {
		t.Fatalf("seal: %x, %v", b, err)
	}
	if got, err := s.Open([]byte("pub"), 7, b); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: %q, %v", got, err)
	}
	other := func(f func(*Sealing)) *Sealing { c := *s; f(&c); return &c }
	for name, open := range map[string]func() error{
		"other key": func() error { _, err := other(func(c *Sealing) { c.Key[0] = 2 }).Open([]byte("pub"), 7, b); return err },
		"other kind": func() error {
			_, err := other(func(c *Sealing) { c.AD = "kinds" }).Open([]byte("pub"), 7, b)
			return err
		},
		"other version": func() error {
			_, err := other(func(c *Sealing) { c.Version = 4 }).Open([]byte("pub"), 7, b)
			return err
		},
		"other identity": func() error { _, err := s.Open([]byte("puc"), 7, b); return err },
		"other sequence": func() error { _, err := s.Open([]byte("pub"), 8, b); return err },
		"truncated":      func() error { _, err := s.Open([]byte("pub"), 7, b[:40]); return err },
	} {
		if err := open(); !errors.Is(err, errMine) || !strings.Contains(err.Error(), "test payload") {
			t.Errorf("%s: %v, want the sealing's error", name, err)
		}
	}
}
