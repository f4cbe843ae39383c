package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
)

// ChunkKey is the key that opens one sealed chunk and nothing else: the per-chunk key Seal
// derives from the content key and the chunk ID. Handing it out (in a metadata snapshot,
// or in a share capability through the snapshot objects) lets the holder read that chunk
// without the drive's secret, and tells nothing about any other chunk's key: it is a
// keyed BLAKE3 output, which does not reveal its key.
type ChunkKey [KeySize]byte

// ChunkKey returns the read key of chunk id: OpenWithKey(dst, k.ChunkKey(id), id, sealed)
// opens exactly what k.Open(dst, id, sealed) opens.
func (k *Keys) ChunkKey(id ChunkID) ChunkKey {
	return ChunkKey(keyedSum(&k.keyHashers, id[:]))
}

// OpenWithKey is Keys.Open for a reader that holds only the chunk's read key (from
// Keys.ChunkKey), not the drive's keys. The sealed format, the associated data and the
// errors are the same: ErrTruncated, ErrUnsupportedVersion, ErrAuth (modified chunk, wrong
// key or wrong ID). sealed and dst must not overlap.
func OpenWithKey(dst []byte, key ChunkKey, id ChunkID, sealed []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("crypt: open chunk %s: %d bytes, need at least %d: %w",
			id, len(sealed), Overhead, ErrTruncated)
	}
	if sealed[0] != sealAESGCM {
		return nil, fmt.Errorf("crypt: open chunk %s: format %d: %w", id, sealed[0], ErrUnsupportedVersion)
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic("BUG: crypt: aes: " + err.Error()) // only fails for a bad key length
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("BUG: crypt: gcm: " + err.Error())
	}
	out, err := aead.Open(dst, zeroNonce[:], sealed[1:], additionalData(sealAESGCM, id))
	if err != nil {
		return nil, fmt.Errorf("crypt: open chunk %s: %w", id, ErrAuth)
	}
	return out, nil
}
