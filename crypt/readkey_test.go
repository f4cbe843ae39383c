package crypt

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

func TestOpenWithKey(t *testing.T) {
	k := goldenSecret().Keys()
	other := testSecret(1).Keys()
	plain := []byte("read with the chunk key only")
	id := k.ChunkID(plain)
	sealed := k.Seal(nil, id, plain)

	got, err := OpenWithKey(nil, k.ChunkKey(id), id, sealed)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("OpenWithKey = %q, %v", got, err)
	}
	// Another chunk's key, another drive's key for this ID, or another ID: ErrAuth.
	id2 := k.ChunkID([]byte("another chunk"))
	for name, key := range map[string]ChunkKey{"other chunk": k.ChunkKey(id2), "other drive": other.ChunkKey(id)} {
		if _, err := OpenWithKey(nil, key, id, sealed); !errors.Is(err, ErrAuth) {
			t.Errorf("%s: err = %v, want ErrAuth", name, err)
		}
	}
	if _, err := OpenWithKey(nil, k.ChunkKey(id), id2, sealed); !errors.Is(err, ErrAuth) {
		t.Errorf("wrong ID: err = %v, want ErrAuth", err)
	}
	flipped := bytes.Clone(sealed)
	flipped[5] ^= 1
	if _, err := OpenWithKey(nil, k.ChunkKey(id), id, flipped); !errors.Is(err, ErrAuth) {
		t.Errorf("flipped bit: err = %v, want ErrAuth", err)
	}
	if _, err := OpenWithKey(nil, k.ChunkKey(id), id, sealed[:Overhead-1]); !errors.Is(err, ErrTruncated) {
		t.Errorf("short: err = %v, want ErrTruncated", err)
	}
}

// The golden sealed chunk opens with its chunk key alone, and that key is the one the
// golden key file lists (chunk key of the golden chunk ID).
func TestOpenWithKeyGolden(t *testing.T) {
	sealed, err := os.ReadFile(goldenChunk)
	if err != nil {
		t.Fatal(err)
	}
	k := goldenSecret().Keys()
	id := k.ChunkID([]byte(goldenPlaintext))
	got, err := OpenWithKey(nil, k.ChunkKey(id), id, sealed)
	if err != nil || string(got) != goldenPlaintext {
		t.Fatalf("OpenWithKey(golden) = %q, %v", got, err)
	}
}
