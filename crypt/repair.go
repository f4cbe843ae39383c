package crypt

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
)

// The repair capability (docs/format.md, "Repair capability and manifest"; what it reveals:
// docs/security.md, "The repair capability"). It lets a helper the owner trusts keep the
// drive's fragments alive - check, rebuild, renew - while the owner's device is off, and
// nothing more: it holds the fragment owner key, the repair secret (which opens the drive's
// repair manifest and signs the helper's repair log) and the public half of the manifest
// identity (to tell the owner's manifest from a forgery). It holds no read key: no content,
// metadata or chunk-ID key derives from it.

// HKDF labels of the repair capability, from the metadata key and from the repair secret.
// They are part of the format (docs/format.md, "Key derivation").
const (
	labelRepair   = "scatter v1 repair"   // metadata key -> repair secret
	labelManifest = "scatter v1 manifest" // metadata key -> manifest identity seed (owner only)

	labelRepairLog        = "scatter v1 repair log"              // repair secret -> log identity seed
	labelRepairManifestPL = "scatter v1 repair manifest-payload" // repair secret -> manifest record payload key
	labelRepairLogPL      = "scatter v1 repair log-payload"      // repair secret -> log record payload key
	labelRepairObjects    = "scatter v1 repair objects"          // repair secret -> secret of the pages' Keys
)

// RepairCap is a drive's repair capability. Make one with Secret.RepairCap or
// ParseRepairCap; the zero value is not usable. Its String redacts it; Text gives the
// form to hand over.
type RepairCap struct {
	// Storage is the fragment owner key (the same as Keys.Storage): PUT owner of rebuilt
	// fragments, signs RENEW (and could sign DELETE).
	Storage ed25519.PrivateKey
	// Secret is the repair secret: the keys of the manifest and of the repair log derive
	// from it (see its methods).
	Secret [KeySize]byte
	// Manifest is the public key of the drive's manifest identity: only the owner, who has
	// the drive keys, signs manifest records.
	Manifest ed25519.PublicKey
}

// RepairCap returns the drive's repair capability. Its secret derives from the drive's
// metadata key (itself from the drive secret) rather than from the secret directly, so a
// mount, which keeps only Keys in memory, can publish the manifest; HKDF with its own label
// makes it independent of every other use of that key.
func (k *Keys) RepairCap() RepairCap {
	return RepairCap{
		Storage:  k.Storage,
		Secret:   deriveFrom(&k.Metadata, nil, labelRepair),
		Manifest: k.ManifestKey().Public().(ed25519.PublicKey),
	}
}

// ManifestKey returns the private key of the drive's manifest identity, which signs the
// repair manifest's records. It derives from the metadata key and is not in the
// capability, so a repairer can read the manifest but not forge one.
func (k *Keys) ManifestKey() ed25519.PrivateKey {
	seed := deriveFrom(&k.Metadata, nil, labelManifest)
	return ed25519.NewKeyFromSeed(seed[:])
}

// deriveFrom is derive with any 32-byte input key and a salt (nil for none): the share
// keys are salted with the share ID, the repair keys are not.
func deriveFrom(ikm *[KeySize]byte, salt []byte, label string) [KeySize]byte {
	b, err := hkdf.Key(sha256.New, ikm[:], salt, label, KeySize)
	if err != nil {
		panic("BUG: crypt: hkdf: " + err.Error()) // only fails for lengths > 255*32
	}
	return [KeySize]byte(b)
}

// StoragePublic returns the public half of Storage: the fragment owner as donors see it.
func (c RepairCap) StoragePublic() ed25519.PublicKey {
	return c.Storage.Public().(ed25519.PublicKey)
}

// LogKey returns the private key of the repair log identity: the repairer signs its log
// records with it. Whoever holds the capability holds it.
func (c RepairCap) LogKey() ed25519.PrivateKey {
	seed := deriveFrom(&c.Secret, nil, labelRepairLog)
	return ed25519.NewKeyFromSeed(seed[:])
}

// ManifestPayloadKey returns the key that encrypts manifest record payloads.
func (c RepairCap) ManifestPayloadKey() [KeySize]byte {
	return deriveFrom(&c.Secret, nil, labelRepairManifestPL)
}

// LogPayloadKey returns the key that encrypts repair log record payloads.
func (c RepairCap) LogPayloadKey() [KeySize]byte {
	return deriveFrom(&c.Secret, nil, labelRepairLogPL)
}

// ObjectKeys returns the Keys that seal the manifest's and the log's pages, stored as
// chunks through the ordinary pipeline: a second key tree derived from the repair secret,
// unrelated to the drive's own, so the repairer opens these pages and nothing else of the
// drive.
func (c RepairCap) ObjectKeys() *Keys {
	return Secret(deriveFrom(&c.Secret, nil, labelRepairObjects)).Keys()
}

// String returns a fixed placeholder: the capability can delete the drive's fragments.
func (c RepairCap) String() string { return "crypt.RepairCap(REDACTED)" }

// GoString returns a fixed placeholder.
func (c RepairCap) GoString() string { return c.String() }

// Repair capability text, version 1: RepairCapPrefix followed by the lower-case RFC 4648
// base32 (no padding, textEncoding) of the 101 bytes
//
//	version 1 (1) | storage seed (32) | repair secret (32) | manifest public key (32) |
//	CRC-32C of the previous 97 bytes (4)
//
// 162 characters. It is meant for files and copy-paste, not for typing.
const (
	// RepairCapPrefix starts every repair capability text.
	RepairCapPrefix = "scatter-repair1:"
	repairCapV1     = 1
	repairCapBytes  = 1 + 3*KeySize + 4
)

// Text returns the capability's text form, for ParseRepairCap.
func (c RepairCap) Text() string { return encodeRepairCap(repairCapV1, c) }

func encodeRepairCap(version byte, c RepairCap) string {
	b := make([]byte, 0, repairCapBytes)
	b = append(b, version)
	b = append(b, c.Storage.Seed()...)
	b = append(b, c.Secret[:]...)
	b = append(b, c.Manifest...)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return RepairCapPrefix + textEncoding.EncodeToString(b)
}

// ParseRepairCap parses the text Text wrote, exactly: no spaces, upper case or other
// variants (callers trim a file's trailing newline). Anything malformed gives ErrRepairCap;
// a well-formed capability of a newer version gives ErrUnsupportedVersion.
func ParseRepairCap(text string) (RepairCap, error) {
	body, ok := strings.CutPrefix(text, RepairCapPrefix)
	if !ok {
		return RepairCap{}, fmt.Errorf("%w: does not start with %q", ErrRepairCap, RepairCapPrefix)
	}
	if want := textEncoding.EncodedLen(repairCapBytes); len(body) != want {
		return RepairCap{}, fmt.Errorf("%w: %d characters after the prefix, want %d", ErrRepairCap, len(body), want)
	}
	b, err := decodeText(body)
	if err != nil || len(b) != repairCapBytes {
		return RepairCap{}, fmt.Errorf("%w: not lower-case base32", ErrRepairCap)
	}
	n := repairCapBytes - 4
	if crc32.Checksum(b[:n], castagnoli) != binary.BigEndian.Uint32(b[n:]) {
		return RepairCap{}, fmt.Errorf("%w: checksum mismatch", ErrRepairCap)
	}
	if b[0] != repairCapV1 {
		return RepairCap{}, fmt.Errorf("crypt: repair capability version %d: %w", b[0], ErrUnsupportedVersion)
	}
	c := RepairCap{
		Storage:  ed25519.NewKeyFromSeed(b[1 : 1+KeySize]),
		Manifest: ed25519.PublicKey(append([]byte(nil), b[1+2*KeySize:1+3*KeySize]...)),
	}
	copy(c.Secret[:], b[1+KeySize:1+2*KeySize])
	return c, nil
}
