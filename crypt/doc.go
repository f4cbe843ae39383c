// Package crypt holds scatter's cryptography: the drive secret and the passphrase-protected
// key file that stores it, the recovery key a person can write down, the sub-keys derived
// from the secret, chunk IDs and the sealing of chunks.
//
// Everything here is a pure function on bytes: crypt does no network or disk I/O, so the
// formats are tested byte for byte (see testdata/) and fuzzed without a filesystem. The
// byte layouts are specified in docs/format.md.
//
// The pieces fit together like this:
//
//	secret, err := NewSecret()                                   // 32 random bytes, the root key
//	file, err := EncodeKeyFile(secret, pass, DefaultKDFParams)   // Argon2id + XChaCha20-Poly1305
//	text := secret.RecoveryKey()                                 // for the user to write down
//	keys := secret.Keys()                                        // HKDF-SHA256 sub-keys
//	id := keys.ChunkID(plain)                                    // keyed BLAKE3 of the plaintext
//	sealed := keys.Seal(nil, id, plain)                          // AES-256-GCM, per-chunk key
//	plain, err = keys.Open(nil, id, sealed)
package crypt
