package root

import (
	"context"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/boxo/ipns"
	ic "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/routing"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/scatterfs/scatter/crypt"
)

// Named records: the same IPNS envelope as the root record (V2 signature, the placeholder
// value, a sealed payload under the "_scatter" extensible-data key), signed by any Ed25519
// identity and carrying a payload the caller sealed. Other records of a drive (the repair
// manifest and the repair log, package delegate) use them, so only one piece of code
// speaks IPNS.

// EncodeNamed signs an IPNS record under sk with sequence seq, valid for validity from
// now, carrying payload (already encrypted by the caller).
func EncodeNamed(sk ed25519.PrivateKey, seq uint64, payload []byte, validity time.Duration) ([]byte, error) {
	if len(payload) > maxPayload {
		return nil, fmt.Errorf("root: named record payload of %d bytes, at most %d", len(payload), maxPayload)
	}
	k, err := ic.UnmarshalEd25519PrivateKey(sk)
	if err != nil {
		return nil, fmt.Errorf("root: signing key: %w", err)
	}
	rec, err := ipns.NewRecord(k, placeholder, seq, time.Now().Add(validity), time.Minute,
		ipns.WithV1Compatibility(false), ipns.WithMetadata(map[string]any{metaKey: payload}))
	if err != nil {
		return nil, fmt.Errorf("root: new record: %w", err)
	}
	b, err := ipns.MarshalRecord(rec)
	if err != nil {
		return nil, fmt.Errorf("root: marshal record: %w", err)
	}
	return b, nil
}

// DecodeNamed validates an IPNS record of the identity pub (signature, validity not
// passed, size) and returns its sequence and payload, still sealed. Anything else is
// ErrInvalid.
func DecodeNamed(pub ed25519.PublicKey, b []byte) (seq uint64, payload []byte, err error) {
	id, err := identity(pub)
	if err != nil {
		return 0, nil, err
	}
	rec, err := ipns.UnmarshalRecord(b)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := ipns.ValidateWithName(rec, ipns.NameFromPeer(id)); err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if seq, err = rec.Sequence(); err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	mv, err := rec.Metadata(metaKey)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: no payload: %w", ErrInvalid, err)
	}
	if payload, err = mv.AsBytes(); err != nil {
		return 0, nil, fmt.Errorf("%w: payload: %w", ErrInvalid, err)
	}
	if len(payload) > maxPayload {
		return 0, nil, fmt.Errorf("%w: payload of %d bytes", ErrInvalid, len(payload))
	}
	return seq, payload, nil
}

// PutNamed stores a record signed by pub's identity in the DHT, bounded by the lookup
// timeout.
func PutNamed(ctx context.Context, dht routing.ValueStore, pub ed25519.PublicKey, rec []byte) error {
	key, err := Key(pub)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	if err := dht.PutValue(ctx, key, rec); err != nil {
		return fmt.Errorf("root: put record: %w", err)
	}
	return nil
}

// GetNamed returns the best record of pub's identity the DHT holds, not yet validated
// beyond what the DHT's IPNS validator did: pass it to DecodeNamed. No record is
// ErrNotFound.
func GetNamed(ctx context.Context, dht routing.ValueStore, pub ed25519.PublicKey) ([]byte, error) {
	key, err := Key(pub)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	b, err := dht.GetValue(ctx, key)
	if err != nil {
		if errors.Is(err, routing.ErrNotFound) {
			return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return nil, fmt.Errorf("root: get record: %w", err)
	}
	return b, nil
}

// Sealing is how one kind of named record seals its payload; every kind (root, share,
// repair manifest, repair log) seals the same way:
//
//	version (1) | nonce (24) | XChaCha20-Poly1305 under Key of the plaintext
//
// with associated data AD | the record identity's public key | sequence (u64), so a
// payload cannot move to another kind of record, identity or sequence.
type Sealing struct {
	Key     [crypt.KeySize]byte
	Version byte
	AD      string // the kind's associated-data prefix, e.g. "scatter root v1\x00"
	// Invalid is the sentinel Open's errors wrap; What names the payload in them
	// ("payload", "share payload") and Whose the key ("with this drive's keys").
	Invalid     error
	What, Whose string
}

func (s *Sealing) aead() cipher.AEAD {
	aead, err := chacha20poly1305.NewX(s.Key[:])
	if err != nil {
		panic("BUG: root: xchacha: " + err.Error()) // only for a key of another size
	}
	return aead
}

func (s *Sealing) ad(pub []byte, seq uint64) []byte {
	ad := append([]byte(s.AD), pub...)
	return binary.BigEndian.AppendUint64(ad, seq)
}

// Seal encrypts plain as the payload of the record of identity pub with sequence seq.
func (s *Sealing) Seal(pub []byte, seq uint64, plain []byte) ([]byte, error) {
	aead := s.aead()
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(plain)+aead.Overhead())
	out[0] = s.Version
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("root: nonce: %w", err)
	}
	return aead.Seal(out, out[1:], plain, s.ad(pub, seq)), nil
}

// Open decrypts what Seal wrote for pub and seq. A payload too short, of another version
// or that does not decrypt is s.Invalid (wrapped).
func (s *Sealing) Open(pub []byte, seq uint64, b []byte) ([]byte, error) {
	aead := s.aead()
	n := 1 + aead.NonceSize()
	if len(b) < n+aead.Overhead() {
		return nil, fmt.Errorf("%w: %s of %d bytes", s.Invalid, s.What, len(b))
	}
	if b[0] != s.Version {
		return nil, fmt.Errorf("%w: %s version %d", s.Invalid, s.What, b[0])
	}
	plain, err := aead.Open(nil, b[1:n], b[n:], s.ad(pub, seq))
	if err != nil {
		return nil, fmt.Errorf("%w: %s does not decrypt %s", s.Invalid, s.What, s.Whose)
	}
	return plain, nil
}
