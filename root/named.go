package root

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/boxo/ipns"
	ic "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/routing"
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
