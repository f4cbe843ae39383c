package crypt

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"testing"
)

func testSecret(b byte) Secret {
	var s Secret
	for i := range s {
		s[i] = b + byte(i)
	}
	return s
}

func TestNewSecret(t *testing.T) {
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || a == (Secret{}) {
		t.Fatalf("two new secrets equal or zero")
	}
}

func TestSecretRedacted(t *testing.T) {
	s := testSecret(0xa0)
	for _, f := range []string{"%v", "%s", "%x", "%#v", "%+v", "%q"} {
		out := fmt.Sprintf(f, s)
		if bytes.Contains([]byte(out), []byte("a0a1")) || bytes.Contains([]byte(out), []byte("160")) {
			t.Errorf("%s printed the secret: %s", f, out)
		}
	}
}

func TestKeysDeterministicAndDistinct(t *testing.T) {
	s := testSecret(1)
	k1, k2 := s.Keys(), s.Keys()
	if k1.Metadata != k2.Metadata || k1.Chunker != k2.Chunker || k1.content != k2.content ||
		k1.chunkID != k2.chunkID || !k1.Public.Equal(k2.Public) || !k1.Signing.Equal(k2.Signing) {
		t.Fatal("Keys is not deterministic")
	}
	seed := [KeySize]byte(k1.Signing.Seed())
	all := map[[KeySize]byte]string{}
	for name, key := range map[string][KeySize]byte{
		"metadata": k1.Metadata, "chunker": k1.Chunker, "content": k1.content,
		"chunk-id": k1.chunkID, "signing": seed, "secret": [KeySize]byte(s),
	} {
		if prev, ok := all[key]; ok {
			t.Errorf("keys %s and %s are equal", prev, name)
		}
		all[key] = name
	}
	other := testSecret(2).Keys()
	if other.Metadata == k1.Metadata || other.Chunker == k1.Chunker || other.Public.Equal(k1.Public) {
		t.Error("different secrets give equal keys")
	}
}

func TestSigningKey(t *testing.T) {
	k := testSecret(3).Keys()
	msg := []byte("root record")
	sig := ed25519.Sign(k.Signing, msg)
	if !ed25519.Verify(k.Public, msg, sig) {
		t.Fatal("signature does not verify under Public")
	}
	if ed25519.Verify(testSecret(4).Keys().Public, msg, sig) {
		t.Fatal("signature verifies under another drive's key")
	}
}
