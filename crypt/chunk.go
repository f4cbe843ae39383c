package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"slices"
)

// Sealed chunk format bytes. A sealed chunk starts with one of them; Open rejects others.
const (
	// sealAESGCM: AES-256-GCM, per-chunk key = keyed BLAKE3(content key, chunk ID), all-zero
	// 96-bit nonce, associated data = format byte || chunk ID. Chosen over
	// XChaCha20-Poly1305 by measurement (docs/benchmarks.md, "crypt"): 2-3x faster here.
	sealAESGCM byte = 1
)

const tagSize = 16 // GCM tag

// Overhead is how many bytes sealing adds to a chunk: the format byte and the
// authentication tag. It is also the size of the smallest valid sealed chunk (an empty
// plaintext).
const Overhead = 1 + tagSize

// zeroNonce is the nonce of every sealed chunk. Each per-chunk key seals exactly one
// plaintext (see Seal), so a fixed nonce never repeats under one key with different data.
// It is never written to.
var zeroNonce [12]byte

// SealedSize returns the length of the sealed form of a plaintext of plainLen bytes.
func SealedSize(plainLen int) int { return plainLen + Overhead }

// ChunkID returns the ID of the chunk plain: BLAKE3-256 in keyed mode under the drive's
// chunk-ID key. Equal plaintexts of one drive have equal IDs; other drives, and anyone
// without the drive's secret, get unrelated IDs for the same plaintext. It does not
// allocate.
func (k *Keys) ChunkID(plain []byte) ChunkID {
	return ChunkID(keyedSum(&k.idHashers, plain))
}

// chunkAEAD returns the AEAD that seals the chunk id. Its key is derived from the chunk ID
// together with the content key: the ID alone is public (it is in fragment headers and is
// the DHT key), so a key derived from it alone would let anyone who can guess a plaintext
// confirm it, or simply decrypt.
func (k *Keys) chunkAEAD(id ChunkID) cipher.AEAD {
	key := keyedSum(&k.keyHashers, id[:])
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic("BUG: crypt: aes: " + err.Error()) // only fails for a bad key length
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("BUG: crypt: gcm: " + err.Error()) // only fails for unusual block ciphers
	}
	return aead
}

// additionalData binds a sealed chunk to its format and to its chunk ID, so a sealed chunk
// cannot be presented under another ID or reinterpreted under another format.
func additionalData(format byte, id ChunkID) []byte {
	ad := make([]byte, 1+len(id))
	ad[0] = format
	copy(ad[1:], id[:])
	return ad
}

// Seal appends the sealed form of plain, the chunk named id, to dst and returns the
// updated slice, like cipher.AEAD.Seal. id must be k.ChunkID(plain): that is what makes
// sealing deterministic and the fixed nonce safe (one key, one plaintext), and what lets
// equal chunks of one drive deduplicate after sealing. plain and dst must not overlap.
// If dst has room for SealedSize(len(plain)) more bytes, Seal does not allocate in
// proportion to the chunk (only a small, fixed amount for the per-chunk cipher).
func (k *Keys) Seal(dst []byte, id ChunkID, plain []byte) []byte {
	aead := k.chunkAEAD(id)
	dst = slices.Grow(dst, SealedSize(len(plain)))
	dst = append(dst, sealAESGCM)
	return aead.Seal(dst, zeroNonce[:], plain, additionalData(sealAESGCM, id))
}

// Open authenticates and decrypts sealed, the chunk named id, appends the plaintext to dst
// and returns the updated slice, like cipher.AEAD.Open. sealed and dst must not overlap.
// Errors: ErrTruncated if sealed is shorter than Overhead; ErrUnsupportedVersion for an
// unknown format byte; ErrAuth if the chunk was modified, belongs to another drive or is
// not the chunk id.
func (k *Keys) Open(dst []byte, id ChunkID, sealed []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("crypt: open chunk %s: %d bytes, need at least %d: %w",
			id, len(sealed), Overhead, ErrTruncated)
	}
	if sealed[0] != sealAESGCM {
		return nil, fmt.Errorf("crypt: open chunk %s: format %d: %w", id, sealed[0], ErrUnsupportedVersion)
	}
	aead := k.chunkAEAD(id)
	out, err := aead.Open(dst, zeroNonce[:], sealed[1:], additionalData(sealAESGCM, id))
	if err != nil {
		return nil, fmt.Errorf("crypt: open chunk %s: %w", id, ErrAuth)
	}
	return out, nil
}
