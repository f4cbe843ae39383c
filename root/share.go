package root

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/routing"

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

// shareSealing is a share record's: under the share key, bound to the share identity
// and the record's sequence, so a payload cannot move into another share's record or
// another sequence.
func shareSealing(key [crypt.KeySize]byte) *Sealing {
	return &Sealing{Key: key, Version: sharePayloadV1, AD: "scatter share v1\x00",
		Invalid: ErrInvalid, What: "share payload", Whose: "with this capability"}
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
	sealed, err := shareSealing(sk.Cap.Key).Seal(sk.Cap.Public, seq, plain)
	if err != nil {
		return nil, err
	}
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
	plain, err := shareSealing(c.Key).Open(c.Public, seq, sealed)
	if err != nil {
		return ShareRecord{}, err
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
