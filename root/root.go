// Package root is the drive's root record: an IPNS record (boxo ipns, V2 signature only)
// signed by the drive identity key (crypt.Keys.Signing), stored in the DHT under the
// identity's IPNS name. Its signed data carries, besides the IPNS fields (sequence,
// validity), the payload: which snapshot is the newest and who holds the writer lease,
// encrypted under the drive's metadata key so the DHT and its peers learn nothing but
// that the drive exists and when it changes. Byte layout: docs/format.md "Root record".
package root

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ipfs/boxo/ipns"
	"github.com/ipfs/boxo/path"
	ic "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/snapshot"
)

// Errors.
var (
	// ErrInvalid means a record is not a valid root record of this drive: bad signature,
	// another key, expired, or a payload that does not decrypt under the drive's keys.
	ErrInvalid = errors.New("root: invalid root record")
	// ErrReplay means a valid record carries a sequence number below one already seen: an
	// old record replayed (or a stale DHT peer); it is not used.
	ErrReplay = errors.New("root: root record older than one already seen")
	// ErrNotFound means the DHT holds no root record for the drive.
	ErrNotFound = errors.New("root: no root record found")
)

const (
	payloadV1 = 1
	// metaKey is the IPNS extensible-data key that holds the sealed payload.
	metaKey = "_scatter"
	// DefaultValidity is how long a record is valid after it is signed: the DHT's own
	// record age limit (kad-dht's 48 h), beyond which donors drop a record anyway.
	DefaultValidity = 48 * time.Hour
	// DefaultRepublish is how often the record is signed and put again: an eighth of its
	// validity, so a device offline for most of a day still leaves a valid record behind.
	DefaultRepublish = 6 * time.Hour
	// maxPayload bounds a payload before decryption.
	maxPayload = 8 << 10
)

// placeholder is the IPNS value: the record's meaning is in the sealed payload, and IPNS
// requires a path. It is the identity CID of empty bytes.
var placeholder = func() path.Path {
	p, err := path.NewPath("/ipfs/bafkqaaa")
	if err != nil {
		panic("BUG: root: placeholder path: " + err.Error())
	}
	return p
}()

// Payload is what a root record says, once decrypted.
type Payload struct {
	Root        snapshot.Ptr // the newest snapshot's root object
	Writer      string       // peer ID of the device holding the writer lease; "" for none
	LeaseExpiry time.Time    // end of the writer lease
}

// Held reports whether p names a writer whose lease has not ended at now. A record
// published at a clean unmount keeps its writer's name with no lease: the drive is free.
func (p Payload) Held(now time.Time) bool {
	return p.Writer != "" && now.Before(p.LeaseExpiry)
}

// Record is a decoded, valid root record.
type Record struct {
	Seq uint64
	Payload
}

// Key returns the DHT key of the drive whose identity is pub: /ipns/<peer ID>.
func Key(pub ed25519.PublicKey) (string, error) {
	id, err := identity(pub)
	if err != nil {
		return "", err
	}
	return string(ipns.NameFromPeer(id).RoutingKey()), nil
}

func identity(pub ed25519.PublicKey) (peer.ID, error) {
	pk, err := ic.UnmarshalEd25519PublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("root: identity key: %w", err)
	}
	return peer.IDFromPublicKey(pk)
}

// payloadSealing is the root record's: under the drive's metadata key, bound to the
// drive identity and the record's sequence.
func payloadSealing(keys *crypt.Keys) *Sealing {
	return &Sealing{Key: keys.Metadata, Version: payloadV1, AD: "scatter root v1\x00",
		Invalid: ErrInvalid, What: "payload", Whose: "with this drive's keys"}
}

// sealPayload encrypts p (Sealing): pointer length u16 ‖ pointer ‖ writer length u8 ‖
// writer ‖ lease expiry i64 (Unix ns).
func sealPayload(keys *crypt.Keys, seq uint64, p Payload) ([]byte, error) {
	pb, err := p.Root.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if len(p.Writer) > 255 || len(pb) > 0xffff {
		return nil, fmt.Errorf("root: payload too large")
	}
	plain := binary.BigEndian.AppendUint16(nil, uint16(len(pb)))
	plain = append(plain, pb...)
	plain = append(plain, byte(len(p.Writer)))
	plain = append(plain, p.Writer...)
	var lease int64
	if !p.LeaseExpiry.IsZero() {
		lease = p.LeaseExpiry.UnixNano()
	}
	plain = binary.BigEndian.AppendUint64(plain, uint64(lease))
	return payloadSealing(keys).Seal(keys.Public, seq, plain)
}

func openPayload(keys *crypt.Keys, seq uint64, b []byte) (Payload, error) {
	if len(b) > maxPayload {
		return Payload{}, fmt.Errorf("%w: payload of %d bytes", ErrInvalid, len(b))
	}
	plain, err := payloadSealing(keys).Open(keys.Public, seq, b)
	if err != nil {
		return Payload{}, err
	}
	return parsePayload(plain)
}

func parsePayload(plain []byte) (Payload, error) {
	var p Payload
	bad := fmt.Errorf("%w: malformed payload", ErrInvalid)
	if len(plain) < 2 {
		return p, bad
	}
	pl := int(binary.BigEndian.Uint16(plain))
	plain = plain[2:]
	if len(plain) < pl+1 {
		return p, bad
	}
	if err := p.Root.UnmarshalBinary(plain[:pl]); err != nil {
		return p, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	plain = plain[pl:]
	wl := int(plain[0])
	plain = plain[1:]
	if len(plain) != wl+8 {
		return p, bad
	}
	p.Writer = string(plain[:wl])
	if ns := int64(binary.BigEndian.Uint64(plain[wl:])); ns != 0 {
		p.LeaseExpiry = time.Unix(0, ns)
	}
	return p, nil
}

// Encode signs a root record for seq and p, valid for validity from now.
func Encode(keys *crypt.Keys, seq uint64, p Payload, validity time.Duration) ([]byte, error) {
	sealed, err := sealPayload(keys, seq, p)
	if err != nil {
		return nil, err
	}
	return EncodeNamed(keys.Signing, seq, sealed, validity)
}

// Decode validates a root record of the drive whose keys are keys (signature by the
// drive identity, validity not passed, size) and decrypts its payload. Anything else is
// ErrInvalid.
func Decode(keys *crypt.Keys, b []byte) (Record, error) {
	seq, sealed, err := DecodeNamed(keys.Public, b)
	if err != nil {
		return Record{}, err
	}
	p, err := openPayload(keys, seq, sealed)
	if err != nil {
		return Record{}, err
	}
	return Record{Seq: seq, Payload: p}, nil
}

// lookupTimeout bounds one DHT put or get: kad-dht's GetValue with a quorum leaks
// goroutines on a context that never ends, so every call gets a deadline.
const lookupTimeout = 30 * time.Second

// Put stores a signed record in the DHT.
func Put(ctx context.Context, dht routing.ValueStore, keys *crypt.Keys, rec []byte) error {
	return PutNamed(ctx, dht, keys.Public, rec)
}

// Get finds the drive's newest root record in the DHT and decodes it. A record whose
// sequence is below minSeq (the highest the caller has seen) is ErrReplay.
func Get(ctx context.Context, dht routing.ValueStore, keys *crypt.Keys, minSeq uint64) (Record, error) {
	b, err := GetNamed(ctx, dht, keys.Public)
	if err != nil {
		return Record{}, err
	}
	rec, err := Decode(keys, b)
	if err != nil {
		return Record{}, err
	}
	if rec.Seq < minSeq {
		return Record{}, fmt.Errorf("%w: sequence %d, seen %d", ErrReplay, rec.Seq, minSeq)
	}
	return rec, nil
}

// SeqStore keeps the highest root record sequence seen, across restarts: a record below
// it is a replay. volume.Volume implements it.
type SeqStore interface {
	SnapshotSeq() (uint64, error)
	SetSnapshotSeq(seq uint64) error
}

// Publisher publishes the drive's root record and republishes it before it expires. It
// is safe for concurrent use.
type Publisher struct {
	dht       routing.ValueStore
	keys      *crypt.Keys
	seqs      SeqStore
	validity  time.Duration
	republish time.Duration

	mu   sync.Mutex // guards last, seq; held across a put so records go out in order
	last *Payload
	seq  uint64
}

// NewPublisher returns a Publisher; validity and republish of 0 take DefaultValidity and
// DefaultRepublish.
func NewPublisher(dht routing.ValueStore, keys *crypt.Keys, seqs SeqStore, validity, republish time.Duration) *Publisher {
	return &Publisher{dht: dht, keys: keys, seqs: seqs,
		validity: cmp.Or(validity, DefaultValidity), republish: cmp.Or(republish, DefaultRepublish)}
}

// Publish signs p under the next sequence number (one above the highest seen), puts it
// into the DHT and records the sequence. It returns the sequence used.
func (pub *Publisher) Publish(ctx context.Context, p Payload) (uint64, error) {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	seen, err := pub.seqs.SnapshotSeq()
	if err != nil {
		return 0, err
	}
	seq := max(seen, pub.seq) + 1
	// The sequence is recorded before the put: a record that reached some peers must
	// never be followed by another one with the same number and different content.
	if err := pub.seqs.SetSnapshotSeq(seq); err != nil {
		return 0, err
	}
	rec, err := Encode(pub.keys, seq, p, pub.validity)
	if err != nil {
		return 0, err
	}
	pub.last, pub.seq = &p, seq
	if err := Put(ctx, pub.dht, pub.keys, rec); err != nil {
		return seq, err
	}
	return seq, nil
}

// Republish signs the last published payload again, same sequence, new validity, and
// puts it. With nothing published yet it does nothing.
func (pub *Publisher) Republish(ctx context.Context) error {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if pub.last == nil {
		return nil
	}
	rec, err := Encode(pub.keys, pub.seq, *pub.last, pub.validity)
	if err != nil {
		return err
	}
	return Put(ctx, pub.dht, pub.keys, rec)
}

// Run republishes every republish interval until ctx ends. Failures are returned to
// onErr (may be nil) and retried at the next interval.
func (pub *Publisher) Run(ctx context.Context, onErr func(error)) {
	t := time.NewTicker(pub.republish)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := pub.Republish(ctx); err != nil && onErr != nil {
				onErr(err)
			}
		}
	}
}
