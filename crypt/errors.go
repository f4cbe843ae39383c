package crypt

import "errors"

// Sentinel errors. Functions wrap them with context; test with errors.Is.
var (
	// ErrWrongPassphrase means a key file did not open under the given passphrase. The key
	// file is authenticated encryption, which cannot tell a wrong passphrase from damage to
	// the encrypted part of the file, hence the message; structural damage (truncation, a
	// bad magic, impossible parameters) is reported as ErrKeyFileCorrupt instead.
	ErrWrongPassphrase = errors.New("crypt: wrong passphrase or corrupted key file")

	// ErrKeyFileCorrupt means the key file is not well formed: truncated, not a key file,
	// inconsistent lengths or parameters outside the accepted bounds.
	ErrKeyFileCorrupt = errors.New("crypt: key file corrupt")

	// ErrUnsupportedVersion means a key file, sealed chunk or recovery key carries a format
	// version this build does not know (written by a newer scatter, or damaged).
	ErrUnsupportedVersion = errors.New("crypt: unsupported format version")

	// ErrAuth means a sealed chunk failed authentication: it was modified, or it is opened
	// with the wrong drive keys or under the wrong chunk ID.
	ErrAuth = errors.New("crypt: chunk authentication failed")

	// ErrTruncated means a sealed chunk is shorter than the smallest valid one (Overhead).
	ErrTruncated = errors.New("crypt: sealed chunk truncated")

	// ErrRecoveryKey means a recovery key string is malformed or mistyped: wrong length, a
	// character outside the alphabet, or a checksum mismatch.
	ErrRecoveryKey = errors.New("crypt: invalid recovery key")

	// ErrRepairCap means a repair capability text is malformed: wrong prefix or length,
	// not base32, or a checksum mismatch.
	ErrRepairCap = errors.New("crypt: invalid repair capability")
)
