package crypt

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// cheapKDF makes tests fast; it is far too weak for real use.
var cheapKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

func TestKeyFileRoundTrip(t *testing.T) {
	s := testSecret(7)
	for _, tc := range []struct {
		name string
		pass string
		p    KDFParams
	}{
		{"cheap", "correct horse", cheapKDF},
		{"empty passphrase", "", cheapKDF},
		{"unicode passphrase", "pässwörd ✓", KDFParams{Time: 2, MemoryKiB: 256, Threads: 4}},
		{"defaults", "correct horse", DefaultKDFParams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "defaults" && testing.Short() {
				t.Skip("default parameters take about a second")
			}
			f1, err := EncodeKeyFile(s, []byte(tc.pass), tc.p)
			if err != nil {
				t.Fatal(err)
			}
			if tc.p == cheapKDF {
				f2, err := EncodeKeyFile(s, []byte(tc.pass), tc.p)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Equal(f1, f2) {
					t.Error("two encodings are equal: salt and nonce are not random")
				}
			}
			got, err := DecodeKeyFile(f1, []byte(tc.pass))
			if err != nil {
				t.Fatal(err)
			}
			if got != s {
				t.Fatal("decoded a different secret")
			}
			if tc.p == DefaultKDFParams {
				return // each Argon2 run takes a while; the cheap cases cover the rest
			}
			if _, err := DecodeKeyFile(f1, []byte(tc.pass+"x")); !errors.Is(err, ErrWrongPassphrase) {
				t.Fatalf("wrong passphrase: got %v", err)
			}
		})
	}
}

func TestWrongPassphraseMessage(t *testing.T) {
	f, err := EncodeKeyFile(testSecret(7), []byte("a"), cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	_, err = DecodeKeyFile(f, []byte("b"))
	if !errors.Is(err, ErrWrongPassphrase) || !strings.Contains(err.Error(), "wrong passphrase or corrupted key file") {
		t.Fatalf("got %v", err)
	}
	if errors.Is(err, ErrKeyFileCorrupt) {
		t.Fatal("a wrong passphrase is reported as a corrupt file")
	}
}

func TestEncodeKeyFileRejectsBadParams(t *testing.T) {
	for _, p := range []KDFParams{
		{Time: 0, MemoryKiB: 64, Threads: 1},
		{Time: 1, MemoryKiB: 64, Threads: 0},
		{Time: 1, MemoryKiB: 7, Threads: 1},
		{Time: 1, MemoryKiB: 64, Threads: 9}, // under 8 KiB per lane
		{Time: 1, MemoryKiB: 2 << 20, Threads: 1},
		{Time: 65, MemoryKiB: 64, Threads: 1},
		{Time: 1, MemoryKiB: 64, Threads: 65},
		{Time: 32, MemoryKiB: 1 << 20, Threads: 1}, // too much work in total
	} {
		if _, err := EncodeKeyFile(testSecret(1), nil, p); err == nil {
			t.Errorf("%+v: accepted", p)
		}
	}
}

func TestKeyFileLayout(t *testing.T) {
	salt := bytes.Repeat([]byte{0xaa}, 16)
	nonce := bytes.Repeat([]byte{0xbb}, 24)
	f, err := encodeKeyFile(testSecret(0), []byte("p"), KDFParams{Time: 2, MemoryKiB: 0x0102, Threads: 3}, salt, nonce)
	if err != nil {
		t.Fatal(err)
	}
	want := "scatterkey\x01\x00\x00\x00\x02\x00\x00\x01\x02\x03\x10" + string(salt) + string(nonce)
	if !strings.HasPrefix(string(f), want) || len(f) != len(want)+48 {
		t.Fatalf("layout changed:\n%q", f)
	}
}

// keyFileErr classifies an error for the corruption tests.
func keyFileErr(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, ErrWrongPassphrase):
		return "wrong passphrase"
	case errors.Is(err, ErrKeyFileCorrupt):
		return "corrupt"
	case errors.Is(err, ErrUnsupportedVersion):
		return "version"
	}
	return "other: " + err.Error()
}

func TestKeyFileTruncated(t *testing.T) {
	pass := []byte("pw")
	f, err := EncodeKeyFile(testSecret(1), pass, cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(f) {
		if got := keyFileErr(func() error { _, err := DecodeKeyFile(f[:n], pass); return err }()); got != "corrupt" {
			t.Errorf("prefix of %d bytes: %s, want corrupt", n, got)
		}
	}
	if got := keyFileErr(func() error { _, err := DecodeKeyFile(append(bytes.Clone(f), 0), pass); return err }()); got != "corrupt" {
		t.Errorf("extra byte: %s, want corrupt", got)
	}
}

func TestKeyFileEveryByteFlipped(t *testing.T) {
	pass := []byte("pw")
	f, err := EncodeKeyFile(testSecret(1), pass, cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f {
		for _, mask := range []byte{0x01, 0xff} {
			bad := bytes.Clone(f)
			bad[i] ^= mask
			_, err := DecodeKeyFile(bad, pass)
			got := keyFileErr(err)
			var ok bool
			switch {
			case i < offVersion:
				ok = got == "corrupt"
			case i == offVersion:
				ok = got == "version"
			case i < offSalt:
				// Parameters: out of bounds is corrupt; in bounds, Argon2 derives another
				// key and the authenticated header rejects it anyway.
				ok = got == "corrupt" || got == "wrong passphrase"
			default: // salt, nonce, ciphertext
				ok = got == "wrong passphrase"
			}
			if !ok {
				t.Errorf("byte %d ^ %#x: %s", i, mask, got)
			}
		}
	}
}

func TestKeyFileHostileParams(t *testing.T) {
	// Each would take a long time or a lot of memory; they must be rejected before Argon2.
	pass := []byte("pw")
	for _, p := range []KDFParams{
		{Time: 1, MemoryKiB: 0xffffffff, Threads: 1},
		{Time: 0xffffffff, MemoryKiB: 64, Threads: 1},
		{Time: 1, MemoryKiB: 64, Threads: 255},
		{Time: 64, MemoryKiB: 1 << 20, Threads: 4},
		{Time: 0, MemoryKiB: 64, Threads: 1},
	} {
		f, err := encodeKeyFile(testSecret(1), pass, cheapKDF, make([]byte, 16), make([]byte, 24))
		if err != nil {
			t.Fatal(err)
		}
		putParams(f, p)
		if _, err := DecodeKeyFile(f, pass); !errors.Is(err, ErrKeyFileCorrupt) {
			t.Errorf("%+v: got %v, want ErrKeyFileCorrupt", p, err)
		}
	}
}

func putParams(f []byte, p KDFParams) {
	f[offTime], f[offTime+1], f[offTime+2], f[offTime+3] = byte(p.Time>>24), byte(p.Time>>16), byte(p.Time>>8), byte(p.Time)
	m := p.MemoryKiB
	f[offMemory], f[offMemory+1], f[offMemory+2], f[offMemory+3] = byte(m>>24), byte(m>>16), byte(m>>8), byte(m)
	f[offThreads] = p.Threads
}

func TestKeyFileNotAKeyFile(t *testing.T) {
	for _, in := range []string{"", "s", "scatterke", "SCATTERKEY\x01", "hello world, this is not a key file at all......"} {
		if _, err := DecodeKeyFile([]byte(in), nil); !errors.Is(err, ErrKeyFileCorrupt) {
			t.Errorf("%q: got %v", in, err)
		}
	}
	if _, err := DecodeKeyFile([]byte("scatterkey\x02rest"), nil); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("version 2: got %v", err)
	}
}
