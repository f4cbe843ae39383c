package crypt

import (
	"crypto/hmac"
	"crypto/sha256"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// The benchmarks behind the choices in docs/format.md; figures in docs/benchmarks.md.
//
//	go test ./crypt -run '^$' -bench . -benchtime 2s -count 3

const benchSize = 1 << 20

// BenchmarkChunkID compares the two candidate keyed hashes for chunk IDs.
func BenchmarkChunkID(b *testing.B) {
	k := testSecret(1).Keys()
	plain := randomBytes(1, benchSize)
	b.Run("blake3-keyed", func(b *testing.B) {
		b.SetBytes(benchSize)
		b.ReportAllocs()
		for b.Loop() {
			k.ChunkID(plain)
		}
	})
	b.Run("hmac-sha256", func(b *testing.B) {
		b.SetBytes(benchSize)
		b.ReportAllocs()
		h := hmac.New(sha256.New, k.chunkID[:])
		var sum [32]byte
		for b.Loop() {
			h.Reset()
			h.Write(plain)
			h.Sum(sum[:0])
		}
	})
}

// xchachaAEAD is the alternative sealing construction the benchmark compares against: the
// same per-chunk key derivation, XChaCha20-Poly1305 instead of AES-256-GCM.
func xchachaAEAD(k *Keys, id ChunkID) (aead interface {
	Seal(dst, nonce, plaintext, additionalData []byte) []byte
	Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
}) {
	key := keyedSum(&k.keyHashers, id[:])
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		panic(err)
	}
	return aead
}

// BenchmarkSeal and BenchmarkOpen compare the candidate AEADs on 1 MiB chunks, each with
// its per-chunk key setup included, as it is paid once per chunk.
func BenchmarkSeal(b *testing.B) {
	k := testSecret(1).Keys()
	plain := randomBytes(1, benchSize)
	id := k.ChunkID(plain)
	dst := make([]byte, 0, SealedSize(benchSize))
	b.Run("aes-256-gcm", func(b *testing.B) {
		b.SetBytes(benchSize)
		b.ReportAllocs()
		for b.Loop() {
			k.Seal(dst[:0], id, plain)
		}
	})
	b.Run("xchacha20-poly1305", func(b *testing.B) {
		b.SetBytes(benchSize)
		b.ReportAllocs()
		var nonce [chacha20poly1305.NonceSizeX]byte
		for b.Loop() {
			ad := additionalData(2, id)
			xchachaAEAD(k, id).Seal(append(dst[:0], 2), nonce[:], plain, ad)
		}
	})
}

func BenchmarkOpen(b *testing.B) {
	k := testSecret(1).Keys()
	plain := randomBytes(1, benchSize)
	id := k.ChunkID(plain)
	dst := make([]byte, 0, benchSize)
	b.Run("aes-256-gcm", func(b *testing.B) {
		sealed := k.Seal(nil, id, plain)
		b.SetBytes(benchSize)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.Open(dst[:0], id, sealed); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("xchacha20-poly1305", func(b *testing.B) {
		var nonce [chacha20poly1305.NonceSizeX]byte
		sealed := xchachaAEAD(k, id).Seal([]byte{2}, nonce[:], plain, additionalData(2, id))
		b.SetBytes(benchSize)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := xchachaAEAD(k, id).Open(dst[:0], nonce[:], sealed[1:], additionalData(2, id)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkKeyFile times opening a key file with DefaultKDFParams: one Argon2id run, the
// wait a user has when unlocking the drive.
func BenchmarkKeyFileDefault(b *testing.B) {
	pass := []byte("correct horse battery staple")
	f, err := EncodeKeyFile(testSecret(1), pass, DefaultKDFParams)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeKeyFile(f, pass); err != nil {
			b.Fatal(err)
		}
	}
}
