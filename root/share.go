package root

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/routing"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/snapshot"
)

// Share records (docs/format.md "Share capability and share record"): one per active
// read-only share, built like the root record but signed by the share's own identity
// (crypt.ShareKeys.Signing) and stored under its IPNS name, so a capability holder finds
// it with the capability alone. Its payload, encrypted under the share key, names the
// shared directory's tree in the newest snapshot; the writer publishes it again after
// every snapshot it publishes, under the next sequence number.

// sharePayloadV1 is the version byte of a share record's payload.
const sharePayloadV1 = 1

// ShareRecord is a decoded, valid share record.
type ShareRecord struct {
	Seq uint64
	// Dir is the shared directory's tree (its snapshot.Entry.Dir) in the newest snapshot
	// the writer published: a capability for that subtree only.
	Dir snapshot.Ptr
	// Time is when the snapshot was taken, which a reader shows as the directory's times.
	Time time.Time
}

// shareAD binds a share payload to the share identity and the record's sequence number,
// so a payload cannot be moved into another share's record or another sequence.
func shareAD(pub ed25519.PublicKey, seq uint64) []byte {
	ad := append([]byte("scatter share v1\x00"), pub...)
	return binary.BigEndian.AppendUint64(ad, seq)
}

// EncodeShare signs a share record for seq naming dir, taken at t, valid for validity
// from now.
func EncodeShare(sk *crypt.ShareKeys, seq uint64, dir snapshot.Ptr, t time.Time, validity time.Duration) ([]byte, error) {
	pb, err := dir.MarshalBinary()
	if err != nil {
		return nil, err
	}
	plain := binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
	plain = append(plain, pb...)
	aead, err := chacha20poly1305.NewX(sk.Cap.Key[:])
	if err != nil {
		panic("BUG: root: xchacha: " + err.Error())
	}
	sealed := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(plain)+aead.Overhead())
	sealed[0] = sharePayloadV1
	if _, err := rand.Read(sealed[1:]); err != nil {
		return nil, fmt.Errorf("root: nonce: %w", err)
	}
	sealed = aead.Seal(sealed, sealed[1:], plain, shareAD(sk.Cap.Public, seq))
	return EncodeNamed(sk.Signing, seq, sealed, validity)
}

// DecodeShare validates a share record against the capability c (signature by the
// share identity, validity not passed) and decrypts its payload with the share key.
// Anything else is ErrInvalid.
func DecodeShare(c crypt.Cap, b []byte) (ShareRecord, error) {
	seq, sealed, err := DecodeNamed(c.Public, b)
	if err != nil {
		return ShareRecord{}, err
	}
	aead, err := chacha20poly1305.NewX(c.Key[:])
	if err != nil {
		panic("BUG: root: xchacha: " + err.Error())
	}
	n := 1 + aead.NonceSize()
	if len(sealed) < n+aead.Overhead() {
		return ShareRecord{}, fmt.Errorf("%w: share payload of %d bytes", ErrInvalid, len(sealed))
	}
	if sealed[0] != sharePayloadV1 {
		return ShareRecord{}, fmt.Errorf("%w: share payload version %d", ErrInvalid, sealed[0])
	}
	plain, err := aead.Open(nil, sealed[1:n], sealed[n:], shareAD(c.Public, seq))
	if err != nil {
		return ShareRecord{}, fmt.Errorf("%w: share payload does not decrypt with this capability", ErrInvalid)
	}
	if len(plain) < 8 {
		return ShareRecord{}, fmt.Errorf("%w: malformed share payload", ErrInvalid)
	}
	r := ShareRecord{Seq: seq, Time: time.Unix(0, int64(binary.BigEndian.Uint64(plain)))}
	if err := r.Dir.UnmarshalBinary(plain[8:]); err != nil {
		return ShareRecord{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return r, nil
}

// GetShare finds the newest record of the share c opens and decodes it. A record whose
// sequence is below minSeq (the highest the caller has seen) is ErrReplay. The writer
// puts records with PutNamed(ctx, dht, sk.Cap.Public, rec).
func GetShare(ctx context.Context, dht routing.ValueStore, c crypt.Cap, minSeq uint64) (ShareRecord, error) {
	b, err := GetNamed(ctx, dht, c.Public)
	if err != nil {
		return ShareRecord{}, err
	}
	r, err := DecodeShare(c, b)
	if err != nil {
		return ShareRecord{}, err
	}
	if r.Seq < minSeq {
		return ShareRecord{}, fmt.Errorf("%w: share record sequence %d, seen %d", ErrReplay, r.Seq, minSeq)
	}
	return r, nil
}
