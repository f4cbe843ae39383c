package crypt

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// Golden fixtures pin every format of this package. They were written once by
// `go test ./crypt -run Golden -update`; after that, a change to a format, a label or an
// algorithm fails here. Do not regenerate them to make a test pass: bump the format's
// version, keep the old fixture decoding, and add a new one.
var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	goldenKeyFile    = "testdata/keyfile-v1.bin"
	goldenChunk      = "testdata/chunk-v1.bin"
	goldenKeys       = "testdata/keys-v1.json"
	goldenPassphrase = "correct horse battery staple"
	goldenPlaintext  = "scatter golden chunk, format 1\n"
)

var goldenKDF = KDFParams{Time: 2, MemoryKiB: 256, Threads: 2}

// goldenSecret is 00 01 02 ... 1f.
func goldenSecret() Secret { return testSecret(0) }

func goldenSalt() []byte  { return seq(0x40, 16) }
func goldenNonce() []byte { return seq(0x80, 24) }

func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// goldenValues are the derived values of goldenSecret, hex-encoded except RecoveryKey.
type goldenValues struct {
	Secret      string `json:"secret"`
	Metadata    string `json:"metadata_key"`
	Chunker     string `json:"chunker_key"`
	Content     string `json:"content_key"`
	ChunkIDKey  string `json:"chunk_id_key"`
	SigningSeed string `json:"signing_seed"`
	Public      string `json:"public_key"`
	StorageSeed string `json:"storage_seed"`
	StoragePub  string `json:"storage_public_key"`
	Plaintext   string `json:"plaintext"`
	ChunkID     string `json:"chunk_id"`
	ChunkKey    string `json:"chunk_key"`
	RecoveryKey string `json:"recovery_key"`
}

func computeGolden() goldenValues {
	s := goldenSecret()
	k := s.Keys()
	id := k.ChunkID([]byte(goldenPlaintext))
	chunkKey := keyedSum(&k.keyHashers, id[:])
	h := hex.EncodeToString
	return goldenValues{
		Secret:      h(s[:]),
		Metadata:    h(k.Metadata[:]),
		Chunker:     h(k.Chunker[:]),
		Content:     h(k.content[:]),
		ChunkIDKey:  h(k.chunkID[:]),
		SigningSeed: h(k.Signing.Seed()),
		Public:      h(k.Public),
		StorageSeed: h(k.Storage.Seed()),
		StoragePub:  h(k.StoragePublic),
		Plaintext:   goldenPlaintext,
		ChunkID:     id.String(),
		ChunkKey:    h(chunkKey[:]),
		RecoveryKey: s.RecoveryKey(),
	}
}

func TestGoldenUpdate(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite the golden files")
	}
	kf, err := encodeKeyFile(goldenSecret(), []byte(goldenPassphrase), goldenKDF, goldenSalt(), goldenNonce())
	if err != nil {
		t.Fatal(err)
	}
	k := goldenSecret().Keys()
	plain := []byte(goldenPlaintext)
	sealed := k.Seal(nil, k.ChunkID(plain), plain)
	js, err := json.MarshalIndent(computeGolden(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{goldenKeyFile: kf, goldenChunk: sealed, goldenKeys: append(js, '\n')} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("%v (write the fixtures once with -update)", err)
	}
	return b
}

func TestGoldenKeyFile(t *testing.T) {
	want := readGolden(t, goldenKeyFile)
	s, err := DecodeKeyFile(want, []byte(goldenPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	if s != goldenSecret() {
		t.Fatal("golden key file decodes to another secret")
	}
	got, err := encodeKeyFile(goldenSecret(), []byte(goldenPassphrase), goldenKDF, goldenSalt(), goldenNonce())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("key file encoding changed:\ngot  %x\nwant %x", got, want)
	}
}

func TestGoldenKeys(t *testing.T) {
	var want goldenValues
	if err := json.Unmarshal(readGolden(t, goldenKeys), &want); err != nil {
		t.Fatal(err)
	}
	if got := computeGolden(); got != want {
		t.Fatalf("derived values changed:\ngot  %+v\nwant %+v", got, want)
	}
	s, err := ParseRecoveryKey(want.RecoveryKey)
	if err != nil || s != goldenSecret() {
		t.Fatalf("golden recovery key: %v", err)
	}
}

func TestGoldenChunk(t *testing.T) {
	sealed := readGolden(t, goldenChunk)
	k := goldenSecret().Keys()
	plain := []byte(goldenPlaintext)
	id := k.ChunkID(plain)
	got, err := k.Open(nil, id, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != goldenPlaintext {
		t.Fatalf("golden chunk opens to %q", got)
	}
	if resealed := k.Seal(nil, id, plain); !bytes.Equal(resealed, sealed) {
		t.Fatalf("sealing changed:\ngot  %x\nwant %x", resealed, sealed)
	}
}
