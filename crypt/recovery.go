package crypt

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
)

// Recovery key, version 1 (docs/format.md, "Recovery key"): the 37 bytes
//
//	version 1 (1) | secret (32) | CRC-32C of the previous 33 bytes (4)
//
// written as 60 Crockford base32 characters (296 bits and 4 zero bits of padding) in 12
// groups of 5 joined by dashes. CRC-32C detects every error confined to 32 consecutive
// bits, so any single mistyped character (5 bits) and any two swapped neighbours (10 bits)
// are detected, not silently turned into another secret.
const (
	recoveryV1      = 1
	recoveryBytes   = 1 + SecretSize + 4
	recoveryChars   = (recoveryBytes*8 + 4) / 5 // 60
	recoveryGroup   = 5
	crockfordDigits = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crockfordValue maps an upper-case character to its 5-bit value, or -1. Like Crockford's
// spec, it reads I and L as 1 and O as 0, the characters they are mistaken for.
var crockfordValue = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i, c := range []byte(crockfordDigits) {
		t[c] = int8(i)
	}
	t['I'], t['L'], t['O'] = 1, 1, 0
	return t
}()

// RecoveryKey returns the secret as text a person can write down and type back with
// ParseRecoveryKey, e.g. "04ABC-...". Anyone who has it owns the drive.
func (s Secret) RecoveryKey() string { return encodeRecovery(recoveryV1, s) }

// encodeRecovery is RecoveryKey for any version byte, so tests can write other versions.
func encodeRecovery(version byte, s Secret) string {
	var b [recoveryBytes]byte
	b[0] = version
	copy(b[1:], s[:])
	binary.BigEndian.PutUint32(b[1+SecretSize:], crc32.Checksum(b[:1+SecretSize], castagnoli))

	var sb strings.Builder
	sb.Grow(recoveryChars + recoveryChars/recoveryGroup)
	var acc uint64 // bits not yet written, the oldest highest
	var n uint     // how many bits acc holds
	chars := 0
	emit := func(v uint64) {
		if chars > 0 && chars%recoveryGroup == 0 {
			sb.WriteByte('-')
		}
		sb.WriteByte(crockfordDigits[v&31])
		chars++
	}
	for _, c := range b {
		acc = acc<<8 | uint64(c)
		n += 8
		for n >= 5 {
			n -= 5
			emit(acc >> n)
		}
	}
	if n > 0 {
		emit(acc << (5 - n)) // pad with zero bits
	}
	return sb.String()
}

// ParseRecoveryKey parses a recovery key written by RecoveryKey. It ignores case, spaces,
// line breaks and dashes, and reads I and L as 1 and O as 0. A mistyped, missing or extra
// character gives ErrRecoveryKey; a well-formed key from a newer format gives
// ErrUnsupportedVersion.
func ParseRecoveryKey(text string) (Secret, error) {
	var b [recoveryBytes]byte
	var acc uint64
	var n uint
	chars, out := 0, 0
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch c {
		case ' ', '-', '\t', '\n', '\r':
			continue
		}
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		v := crockfordValue[c]
		if v < 0 {
			return Secret{}, fmt.Errorf("%w: character %q at offset %d is not in the alphabet %s",
				ErrRecoveryKey, text[i], i, crockfordDigits)
		}
		chars++
		if chars > recoveryChars {
			continue // counted for the error below
		}
		acc = acc<<5 | uint64(v)
		n += 5
		if n >= 8 {
			n -= 8
			b[out] = byte(acc >> n)
			out++
		}
	}
	if chars != recoveryChars {
		return Secret{}, fmt.Errorf("%w: %d characters, want %d", ErrRecoveryKey, chars, recoveryChars)
	}
	if acc&(1<<n-1) != 0 {
		// The last character carries 1 data bit and 4 zero bits; anything else there is a typo.
		return Secret{}, fmt.Errorf("%w: checksum mismatch (last character mistyped)", ErrRecoveryKey)
	}
	if crc32.Checksum(b[:1+SecretSize], castagnoli) != binary.BigEndian.Uint32(b[1+SecretSize:]) {
		return Secret{}, fmt.Errorf("%w: checksum mismatch (a character is mistyped)", ErrRecoveryKey)
	}
	if b[0] != recoveryV1 {
		return Secret{}, fmt.Errorf("crypt: recovery key version %d: %w", b[0], ErrUnsupportedVersion)
	}
	var s Secret
	copy(s[:], b[1:1+SecretSize])
	return s, nil
}
