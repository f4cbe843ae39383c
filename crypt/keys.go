package crypt

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"sync"

	"github.com/zeebo/blake3"
)

// KeySize is the length of every derived symmetric key.
const KeySize = 32

// HKDF info labels, one per purpose. They are part of the format (docs/format.md, "Key
// derivation"): changing one changes every key of every drive. The "v1" names the derivation
// scheme, so a future scheme can use new labels and the old keys stay derivable.
const (
	labelContent  = "scatter v1 content"
	labelMetadata = "scatter v1 metadata"
	labelChunker  = "scatter v1 chunker"
	labelChunkID  = "scatter v1 chunk-id"
	labelSigning  = "scatter v1 signing"
	labelStorage  = "scatter v1 storage"
)

// Keys are the sub-keys of one drive, derived from its Secret with HKDF-SHA256. Create them
// with Secret.Keys; the zero value is not usable. A *Keys is safe for concurrent use and
// must not be copied. The exported fields must not be modified.
type Keys struct {
	// Metadata is the key for the drive's metadata objects (directories, manifests, the root
	// record's payload), kept apart from the content key so the two uses never share a key.
	Metadata [KeySize]byte

	// Chunker is the key of the keyed content-defined chunker: chunk boundaries depend on
	// it, so they do not fingerprint known files.
	Chunker [KeySize]byte

	// Signing is the drive identity's Ed25519 private key; its seed comes from HKDF, so the
	// identity is a pure function of the secret. It signs the root record; fragments are
	// owned by Storage instead.
	Signing ed25519.PrivateKey

	// Public is Signing's public key: the drive's identity as donors and the DHT see it.
	Public ed25519.PublicKey

	// Storage is the Ed25519 private key that owns the drive's fragments on donors: it is
	// recorded at PUT and signs DELETE and lease renewal. It is apart from Signing so that
	// the repair capability (this key and the chunk Refs) can be handed to a helper that
	// keeps the fragments alive without being able to sign the drive's root record.
	Storage ed25519.PrivateKey

	// StoragePublic is Storage's public key: the fragment owner as donors see it.
	StoragePublic ed25519.PublicKey

	content [KeySize]byte // per-chunk sealing keys are derived from it and the chunk ID
	chunkID [KeySize]byte // BLAKE3 key of chunk IDs

	// BLAKE3 hashers carry an 8 KiB buffer, so they are pooled to keep ChunkID and Seal/Open
	// free of per-call allocations. Each pool's hashers are keyed with the key named.
	idHashers  sync.Pool // *blake3.Hasher keyed with chunkID
	keyHashers sync.Pool // *blake3.Hasher keyed with content
}

// Keys derives the drive's sub-keys from s. It is deterministic: the same secret always
// gives the same keys, on every device.
func (s Secret) Keys() *Keys {
	k := &Keys{
		Metadata: derive(s, labelMetadata),
		Chunker:  derive(s, labelChunker),
		content:  derive(s, labelContent),
		chunkID:  derive(s, labelChunkID),
	}
	seed := derive(s, labelSigning)
	k.Signing = ed25519.NewKeyFromSeed(seed[:])
	k.Public = k.Signing.Public().(ed25519.PublicKey)
	seed = derive(s, labelStorage)
	k.Storage = ed25519.NewKeyFromSeed(seed[:])
	k.StoragePublic = k.Storage.Public().(ed25519.PublicKey)
	k.idHashers.New = func() any { return newKeyed(&k.chunkID) }
	k.keyHashers.New = func() any { return newKeyed(&k.content) }
	return k
}

// derive returns HKDF-SHA256(IKM = secret, salt = none, info = label) truncated to 32 bytes.
// The secret is already uniformly random, so no salt is needed for the extract step.
func derive(s Secret, label string) [KeySize]byte {
	b, err := hkdf.Key(sha256.New, s[:], nil, label, KeySize)
	if err != nil {
		panic("BUG: crypt: hkdf: " + err.Error()) // only fails for lengths > 255*32
	}
	return [KeySize]byte(b)
}

func newKeyed(key *[KeySize]byte) *blake3.Hasher {
	h, err := blake3.NewKeyed(key[:])
	if err != nil {
		panic("BUG: crypt: blake3 keyed: " + err.Error()) // only fails for a key not 32 bytes long
	}
	return h
}

// keyedSum returns the keyed BLAKE3-256 of b with a hasher from pool.
func keyedSum(pool *sync.Pool, b []byte) (sum [32]byte) {
	h, ok := pool.Get().(*blake3.Hasher)
	if !ok {
		panic("BUG: crypt: Keys used without Secret.Keys")
	}
	h.Reset()
	_, _ = h.Write(b) // never fails
	h.Sum(sum[:0])
	pool.Put(h)
	return sum
}
