package crypt

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/zeebo/blake3"
)

// Read-only shares (docs/format.md "Share capability and share record"). A share is
// named by a random ShareID; the drive derives from it a share identity (an Ed25519 key
// that signs the share's record in the DHT) and a share key (that encrypts the record's
// payload: the pointer to the shared subtree's newest snapshot). The capability handed to
// a reader is the identity's public key and the share key: it opens the record and,
// through the pointer, the subtree, and nothing else of the drive.

// HKDF info labels of the share keys; part of the format like the drive's labels.
const (
	labelShareSigning = "scatter v1 share signing"
	labelShareKey     = "scatter v1 share key"
)

// ErrCap means a capability string is malformed: wrong prefix, a character outside the
// alphabet, a bad length or field, or a checksum mismatch.
var ErrCap = errors.New("crypt: invalid share capability")

// ShareIDSize is the length of a share ID.
const ShareIDSize = 16

// ShareID names one share of a drive. It is random, so shares of one drive are unrelated
// to each other, and it is not secret on the writer's device (it is the share's name
// in `scatter share -list`); the keys derived from it are secret.
type ShareID [ShareIDSize]byte

// NewShareID returns a random share ID.
func NewShareID() (ShareID, error) {
	var id ShareID
	if _, err := rand.Read(id[:]); err != nil {
		return id, fmt.Errorf("crypt: share ID: %w", err)
	}
	return id, nil
}

// String returns the ID in lower-case hex.
func (id ShareID) String() string { return hex.EncodeToString(id[:]) }

// ParseShareID parses what String returns.
func ParseShareID(s string) (ShareID, error) {
	var id ShareID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != ShareIDSize || hex.EncodeToString(b) != s {
		return id, fmt.Errorf("crypt: share ID %q: want %d lower-case hex digits", s, 2*ShareIDSize)
	}
	copy(id[:], b)
	return id, nil
}

// ShareKeys are the keys of one share, on the writer's side.
type ShareKeys struct {
	// Signing signs the share record; its public key is Cap.Public.
	Signing ed25519.PrivateKey
	// Cap is what a reader of the share gets: the public key and the record key.
	Cap Cap
}

// Share derives the keys of share id:
//
//	seed = HKDF-SHA256(IKM = metadata key, salt = id, info = "scatter v1 share signing")
//	key  = HKDF-SHA256(IKM = metadata key, salt = id, info = "scatter v1 share key")
//
// The metadata key (itself HKDF of the drive secret) is the input because Keys does not
// keep the secret; it never leaves the writer's device, so the share keys are as
// secret as the drive's, and each share's are independent of every other's.
func (k *Keys) Share(id ShareID) *ShareKeys {
	seed := deriveFrom(&k.Metadata, id[:], labelShareSigning)
	sk := ed25519.NewKeyFromSeed(seed[:])
	return &ShareKeys{
		Signing: sk,
		Cap: Cap{
			Public: sk.Public().(ed25519.PublicKey),
			Key:    deriveFrom(&k.Metadata, id[:], labelShareKey),
		},
	}
}

// Cap is a read-only share capability: the share identity's public key (the record's
// name in the DHT and the key that must have signed it) and the share key (which opens
// the record's payload), and optional hints, multiaddrs of peers to join the swarm
// through. It holds no drive key: everything it opens is reached through the record.
type Cap struct {
	Public ed25519.PublicKey
	Key    [KeySize]byte
	Hints  []string
}

// Capability text, version 1 (docs/format.md "Share capability and share record"):
//
//	"scatter-cap1:" base32(version 1 (1) | public key (32) | share key (32) |
//	    hint count (1) | { hint length (1) | hint (ASCII) } | checksum (4))
//
// base32 is RFC 4648's alphabet in lower case, without padding; checksum is the first
// 4 bytes of BLAKE3-256 of everything before it.
const (
	capPrefix   = "scatter-cap1:"
	capV1       = 1
	capChecksum = 4
	// MaxCapHints bounds the hints of a capability.
	MaxCapHints = 8
	// maxCapHint bounds one hint (a multiaddr with a peer ID fits with room to spare).
	maxCapHint  = 200
	capMinBytes = 1 + ed25519.PublicKeySize + KeySize + 1 + capChecksum
	capMaxBytes = capMinBytes + MaxCapHints*(1+maxCapHint)
)

// textEncoding is the base32 of the capabilities' text forms (share and repair): RFC
// 4648's alphabet in lower case, without padding.
var textEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// decodeText decodes s, a capability's text after its prefix. Only the canonical text is
// accepted: the decoder ignores the unused bits of the last character, so re-encoding
// must give s back, or one capability would have several texts.
func decodeText(s string) ([]byte, error) {
	b, err := textEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if textEncoding.EncodeToString(b) != s {
		return nil, errors.New("not in canonical form")
	}
	return b, nil
}

// String returns the capability as text, e.g. "scatter-cap1:aeb…". It panics only on a
// Cap that ParseCap could never return (a broken invariant of the caller).
func (c Cap) String() string {
	b, err := c.marshal(capV1)
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return capPrefix + textEncoding.EncodeToString(b)
}

func (c Cap) marshal(version byte) ([]byte, error) {
	if len(c.Public) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("crypt: capability public key of %d bytes", len(c.Public))
	}
	if len(c.Hints) > MaxCapHints {
		return nil, fmt.Errorf("crypt: capability with %d hints, at most %d", len(c.Hints), MaxCapHints)
	}
	b := make([]byte, 0, capMinBytes)
	b = append(b, version)
	b = append(b, c.Public...)
	b = append(b, c.Key[:]...)
	b = append(b, byte(len(c.Hints)))
	for _, h := range c.Hints {
		if !validHint(h) {
			return nil, fmt.Errorf("crypt: capability hint %q", h)
		}
		b = append(b, byte(len(h)))
		b = append(b, h...)
	}
	sum := blake3.Sum256(b)
	return append(b, sum[:capChecksum]...), nil
}

// validHint accepts printable ASCII without spaces, 1 to maxCapHint bytes: the text form
// of a multiaddr, checked as such by whoever dials it.
func validHint(h string) bool {
	if len(h) == 0 || len(h) > maxCapHint {
		return false
	}
	for i := 0; i < len(h); i++ {
		if h[i] <= ' ' || h[i] > '~' {
			return false
		}
	}
	return true
}

// ParseCap parses a capability written by Cap.String. It is strict: the exact prefix,
// lower-case base32 in its canonical form, version 1, every field within its bounds, no
// trailing bytes and a matching checksum; anything else is ErrCap (wrapped).
func ParseCap(s string) (Cap, error) {
	rest, ok := strings.CutPrefix(s, capPrefix)
	if !ok {
		return Cap{}, fmt.Errorf("%w: does not start with %q", ErrCap, capPrefix)
	}
	if len(rest) > textEncoding.EncodedLen(capMaxBytes) {
		return Cap{}, fmt.Errorf("%w: %d characters, too long", ErrCap, len(s))
	}
	b, err := decodeText(rest)
	if err != nil {
		return Cap{}, fmt.Errorf("%w: %v", ErrCap, err)
	}
	if len(b) < capMinBytes {
		return Cap{}, fmt.Errorf("%w: %d bytes, need at least %d", ErrCap, len(b), capMinBytes)
	}
	body, sum := b[:len(b)-capChecksum], b[len(b)-capChecksum:]
	if want := blake3.Sum256(body); string(want[:capChecksum]) != string(sum) {
		return Cap{}, fmt.Errorf("%w: checksum mismatch (mistyped or cut short?)", ErrCap)
	}
	if body[0] != capV1 {
		return Cap{}, fmt.Errorf("%w: version %d: %w", ErrCap, body[0], ErrUnsupportedVersion)
	}
	body = body[1:]
	c := Cap{Public: ed25519.PublicKey(append([]byte(nil), body[:ed25519.PublicKeySize]...))}
	body = body[ed25519.PublicKeySize:]
	copy(c.Key[:], body)
	body = body[KeySize:]
	n := int(body[0])
	body = body[1:]
	if n > MaxCapHints {
		return Cap{}, fmt.Errorf("%w: %d hints, at most %d", ErrCap, n, MaxCapHints)
	}
	for range n {
		if len(body) < 1 || len(body) < 1+int(body[0]) {
			return Cap{}, fmt.Errorf("%w: hint truncated", ErrCap)
		}
		h := string(body[1 : 1+int(body[0])])
		if !validHint(h) {
			return Cap{}, fmt.Errorf("%w: hint %q", ErrCap, h)
		}
		c.Hints = append(c.Hints, h)
		body = body[1+len(h):]
	}
	if len(body) != 0 {
		return Cap{}, fmt.Errorf("%w: %d trailing bytes", ErrCap, len(body))
	}
	return c, nil
}
