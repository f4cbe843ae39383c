package crypt

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// Key file layout, version 1 (docs/format.md, "Key file"):
//
//	magic "scatterkey" (10) | version 1 (1) | time (4) | memory KiB (4) | threads (1) |
//	salt length (1) | salt | nonce (24) | XChaCha20-Poly1305(secret) (32 + 16)
//
// The wrapping key is Argon2id(passphrase, salt, time, memory, threads), 32 bytes, and
// everything before the ciphertext is the associated data, so changing a stored parameter,
// the salt or the nonce makes the file fail to open.
const (
	keyFileMagic   = "scatterkey"
	keyFileV1      = 1
	keyFileSaltLen = 16 // written by EncodeKeyFile; DecodeKeyFile accepts minSaltLen..maxSaltLen

	minSaltLen = 16
	maxSaltLen = 64

	offVersion  = len(keyFileMagic)
	offTime     = offVersion + 1
	offMemory   = offTime + 4
	offThreads  = offMemory + 4
	offSaltLen  = offThreads + 1
	offSalt     = offSaltLen + 1
	wrappedSize = SecretSize + chacha20poly1305.Overhead
)

// KDFParams are the Argon2id parameters of a key file. They are stored in the file, so a
// file keeps opening after the defaults change.
type KDFParams struct {
	Time      uint32 // passes over memory
	MemoryKiB uint32 // memory in KiB
	Threads   uint8  // lanes (parallelism); the result depends on it
}

// DefaultKDFParams are the parameters EncodeKeyFile callers should use: 128 MiB, 6 passes,
// 4 lanes, about 0.35 s to open on the project's 2-core machine (docs/benchmarks.md, "crypt")
// and a few times that on a phone, paid once per mount. 4 lanes let 4-core devices go
// faster and cost nothing on 2 cores; the memory is what makes guessing expensive on GPUs.
var DefaultKDFParams = KDFParams{Time: 6, MemoryKiB: 128 << 10, Threads: 4}

// kdfLimits bound the parameters a key file may ask for. They are checked before Argon2
// runs, so a hostile or damaged file cannot make us allocate gigabytes or spin for hours.
type kdfLimits struct {
	maxTime      uint32
	maxMemoryKiB uint32
	maxThreads   uint8
	maxWork      uint64 // time * memory KiB, roughly proportional to the running time
}

// defaultLimits allow 8x the default memory and about 20x its work: at most 1 GiB and a
// few seconds on the project's machine.
var defaultLimits = kdfLimits{
	maxTime:      64,
	maxMemoryKiB: 1 << 20,
	maxThreads:   64,
	maxWork:      16 << 20,
}

func (p KDFParams) check(l kdfLimits) error {
	switch {
	case p.Time < 1 || p.Time > l.maxTime:
		return fmt.Errorf("time %d outside 1..%d", p.Time, l.maxTime)
	case p.Threads < 1 || p.Threads > l.maxThreads:
		return fmt.Errorf("threads %d outside 1..%d", p.Threads, l.maxThreads)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > l.maxMemoryKiB:
		// Argon2 needs 8 KiB per lane; it would silently raise a smaller figure.
		return fmt.Errorf("memory %d KiB outside %d..%d", p.MemoryKiB, 8*uint32(p.Threads), l.maxMemoryKiB)
	case uint64(p.Time)*uint64(p.MemoryKiB) > l.maxWork:
		return fmt.Errorf("time %d x memory %d KiB exceeds %d", p.Time, p.MemoryKiB, l.maxWork)
	}
	return nil
}

// EncodeKeyFile wraps s under passphrase with Argon2id parameters p and returns the key
// file, with a fresh random salt and nonce. p must be within the bounds DecodeKeyFile
// accepts, so that every file written can be read back.
func EncodeKeyFile(s Secret, passphrase []byte, p KDFParams) ([]byte, error) {
	var salt [keyFileSaltLen]byte
	var nonce [chacha20poly1305.NonceSizeX]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return nil, fmt.Errorf("crypt: key file salt: %w", err)
	}
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("crypt: key file nonce: %w", err)
	}
	return encodeKeyFile(s, passphrase, p, salt[:], nonce[:])
}

// encodeKeyFile is EncodeKeyFile with a given salt and nonce, for golden fixtures.
func encodeKeyFile(s Secret, passphrase []byte, p KDFParams, salt, nonce []byte) ([]byte, error) {
	if err := p.check(defaultLimits); err != nil {
		return nil, fmt.Errorf("crypt: key file parameters: %s", err)
	}
	if len(salt) < minSaltLen || len(salt) > maxSaltLen || len(nonce) != chacha20poly1305.NonceSizeX {
		panic("BUG: crypt: key file salt or nonce of the wrong size")
	}
	b := make([]byte, 0, offSalt+len(salt)+len(nonce)+wrappedSize)
	b = append(b, keyFileMagic...)
	b = append(b, keyFileV1)
	b = binary.BigEndian.AppendUint32(b, p.Time)
	b = binary.BigEndian.AppendUint32(b, p.MemoryKiB)
	b = append(b, p.Threads, byte(len(salt)))
	b = append(b, salt...)
	b = append(b, nonce...)
	aead := wrapAEAD(passphrase, salt, p)
	return aead.Seal(b, nonce, s[:], b), nil
}

// DecodeKeyFile opens a key file with passphrase and returns the secret. Errors:
// ErrKeyFileCorrupt for a file that is not a well-formed key file (checked before any
// expensive work, parameters included); ErrUnsupportedVersion for a key file from a newer
// format; ErrWrongPassphrase when the file does not open, which is a wrong passphrase or
// damage to the salt, nonce or ciphertext (authenticated encryption cannot tell them apart).
func DecodeKeyFile(data, passphrase []byte) (Secret, error) {
	return decodeKeyFile(data, passphrase, defaultLimits)
}

func decodeKeyFile(data, passphrase []byte, l kdfLimits) (Secret, error) {
	n := min(len(data), len(keyFileMagic))
	if string(data[:n]) != keyFileMagic[:n] {
		return Secret{}, fmt.Errorf("%w: not a scatter key file", ErrKeyFileCorrupt)
	}
	if len(data) > offVersion && data[offVersion] != keyFileV1 {
		return Secret{}, fmt.Errorf("crypt: key file version %d: %w", data[offVersion], ErrUnsupportedVersion)
	}
	if len(data) < offSalt {
		return Secret{}, fmt.Errorf("%w: truncated to %d bytes", ErrKeyFileCorrupt, len(data))
	}
	p := KDFParams{
		Time:      binary.BigEndian.Uint32(data[offTime:]),
		MemoryKiB: binary.BigEndian.Uint32(data[offMemory:]),
		Threads:   data[offThreads],
	}
	saltLen := int(data[offSaltLen])
	if saltLen < minSaltLen || saltLen > maxSaltLen {
		return Secret{}, fmt.Errorf("%w: salt length %d outside %d..%d", ErrKeyFileCorrupt, saltLen, minSaltLen, maxSaltLen)
	}
	if want := offSalt + saltLen + chacha20poly1305.NonceSizeX + wrappedSize; len(data) != want {
		return Secret{}, fmt.Errorf("%w: %d bytes, want %d", ErrKeyFileCorrupt, len(data), want)
	}
	if err := p.check(l); err != nil {
		return Secret{}, fmt.Errorf("%w: %s", ErrKeyFileCorrupt, err)
	}
	salt := data[offSalt : offSalt+saltLen]
	offNonce := offSalt + saltLen
	nonce := data[offNonce : offNonce+chacha20poly1305.NonceSizeX]
	header := data[:offNonce+chacha20poly1305.NonceSizeX]
	var s Secret
	aead := wrapAEAD(passphrase, salt, p)
	if _, err := aead.Open(s[:0], nonce, data[len(header):], header); err != nil {
		return Secret{}, ErrWrongPassphrase
	}
	return s, nil
}

// wrapAEAD returns the XChaCha20-Poly1305 keyed with Argon2id(passphrase, salt, p).
func wrapAEAD(passphrase, salt []byte, p KDFParams) cipher.AEAD {
	key := argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, chacha20poly1305.KeySize)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		panic("BUG: crypt: xchacha20poly1305: " + err.Error()) // only fails for a bad key length
	}
	return aead
}
