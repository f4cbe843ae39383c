package crypt

import (
	"crypto/rand"
	"fmt"
)

// SecretSize is the length of a drive secret in bytes.
const SecretSize = 32

// Secret is a drive's root key: 32 uniformly random bytes from which every other key of the
// drive is derived (see Keys). Whoever holds it can read and change the whole drive.
//
// String and GoString redact it, so a Secret printed by accident in a log leaks nothing.
type Secret [SecretSize]byte

// NewSecret returns a fresh random secret from crypto/rand.
func NewSecret() (Secret, error) {
	var s Secret
	if _, err := rand.Read(s[:]); err != nil {
		// Since Go 1.24 rand.Read never returns an error (it crashes the program instead);
		// the check stays so that a zero secret can never escape if that changes.
		return Secret{}, fmt.Errorf("crypt: new secret: %w", err)
	}
	return s, nil
}

// String returns a fixed placeholder, never the secret itself.
func (s Secret) String() string { return "crypt.Secret(REDACTED)" }

// GoString returns a fixed placeholder, never the secret itself.
func (s Secret) GoString() string { return s.String() }
