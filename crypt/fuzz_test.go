package crypt

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzLimits keep each fuzzed Argon2 run to a millisecond or so; the parser and the bounds
// checks are the same as with defaultLimits.
var fuzzLimits = kdfLimits{maxTime: 3, maxMemoryKiB: 512, maxThreads: 4, maxWork: 1024}

func FuzzDecodeKeyFile(f *testing.F) {
	pass := []byte(goldenPassphrase)
	valid, err := encodeKeyFile(goldenSecret(), pass, goldenKDF, goldenSalt(), goldenNonce())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, pass)
	f.Add(valid, []byte("wrong"))
	f.Add(valid[:40], pass)
	f.Add([]byte("scatterkey\x02"), pass)
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, data, passphrase []byte) {
		s, err := decodeKeyFile(data, passphrase, fuzzLimits)
		if err != nil {
			if !errors.Is(err, ErrKeyFileCorrupt) && !errors.Is(err, ErrWrongPassphrase) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		// A file that opens must be exactly what the encoder writes for its fields.
		p := KDFParams{
			Time:      uint32(data[offTime])<<24 | uint32(data[offTime+1])<<16 | uint32(data[offTime+2])<<8 | uint32(data[offTime+3]),
			MemoryKiB: uint32(data[offMemory])<<24 | uint32(data[offMemory+1])<<16 | uint32(data[offMemory+2])<<8 | uint32(data[offMemory+3]),
			Threads:   data[offThreads],
		}
		saltEnd := offSalt + int(data[offSaltLen])
		again, err := encodeKeyFile(s, passphrase, p, data[offSalt:saltEnd], data[saltEnd:saltEnd+24])
		if err != nil {
			t.Fatalf("decoded file does not re-encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("decoded file re-encodes differently:\n%x\n%x", data, again)
		}
	})
}

func FuzzParseRecoveryKey(f *testing.F) {
	good := goldenSecret().RecoveryKey()
	f.Add(good)
	f.Add(good[:10])
	f.Add(encodeRecovery(2, goldenSecret()))
	f.Add("")
	f.Add("iloU-*")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseRecoveryKey(text)
		if err != nil {
			if !errors.Is(err, ErrRecoveryKey) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		again, err := ParseRecoveryKey(s.RecoveryKey())
		if err != nil || again != s {
			t.Fatalf("accepted %q but its canonical form does not round trip: %v", text, err)
		}
	})
}

func FuzzOpen(f *testing.F) {
	k := goldenSecret().Keys()
	plain := []byte(goldenPlaintext)
	id := k.ChunkID(plain)
	f.Add(k.Seal(nil, id, plain))
	f.Add(k.Seal(nil, k.ChunkID(nil), nil))
	f.Add([]byte{1})
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	emptyID := k.ChunkID(nil)
	f.Fuzz(func(t *testing.T, sealed []byte) {
		for _, id := range []ChunkID{id, emptyID} {
			got, err := k.Open(nil, id, sealed)
			if err != nil {
				if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrUnsupportedVersion) {
					t.Fatalf("unclassified error: %v", err)
				}
				continue
			}
			// Sealing is deterministic, so the only chunk that opens is the one Seal writes.
			if !bytes.Equal(k.Seal(nil, id, got), sealed) {
				t.Fatalf("opened a chunk that Seal would not write: %x", sealed)
			}
		}
	})
}
