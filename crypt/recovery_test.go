package crypt

import (
	"errors"
	"strings"
	"testing"
)

func TestRecoveryKeyRoundTrip(t *testing.T) {
	for _, s := range []Secret{{}, testSecret(1), testSecret(0xe0), func() Secret {
		var s Secret
		for i := range s {
			s[i] = 0xff
		}
		return s
	}()} {
		text := s.RecoveryKey()
		if len(text) != 71 || strings.Count(text, "-") != 11 {
			t.Fatalf("unexpected shape %q", text)
		}
		for _, variant := range []string{
			text,
			strings.ToLower(text),
			strings.ReplaceAll(text, "-", ""),
			strings.ReplaceAll(text, "-", " "),
			"  " + strings.ReplaceAll(text, "-", " - ") + "\n",
			strings.ReplaceAll(strings.ReplaceAll(text, "1", "l"), "0", "O"),
			strings.ReplaceAll(text, "1", "I"),
		} {
			got, err := ParseRecoveryKey(variant)
			if err != nil {
				t.Fatalf("%q: %v", variant, err)
			}
			if got != s {
				t.Fatalf("%q: parsed a different secret", variant)
			}
		}
	}
}

func TestRecoveryKeyEveryTypo(t *testing.T) {
	text := strings.ReplaceAll(testSecret(5).RecoveryKey(), "-", "")
	// Every single substitution of a character by another of the alphabet.
	for i := range len(text) {
		for _, c := range crockfordDigits {
			if byte(c) == text[i] {
				continue
			}
			typo := text[:i] + string(c) + text[i+1:]
			if _, err := ParseRecoveryKey(typo); !errors.Is(err, ErrRecoveryKey) {
				t.Fatalf("typo %c at %d: got %v", c, i, err)
			}
		}
	}
	// Every swap of two neighbours that differ.
	for i := 0; i+1 < len(text); i++ {
		if text[i] == text[i+1] {
			continue
		}
		swapped := text[:i] + text[i+1:i+2] + text[i:i+1] + text[i+2:]
		if _, err := ParseRecoveryKey(swapped); !errors.Is(err, ErrRecoveryKey) {
			t.Fatalf("swap at %d: got %v", i, err)
		}
	}
	// Every missing character.
	for i := range len(text) {
		if _, err := ParseRecoveryKey(text[:i] + text[i+1:]); !errors.Is(err, ErrRecoveryKey) {
			t.Fatalf("missing character %d: got %v", i, err)
		}
	}
}

func TestRecoveryKeyErrors(t *testing.T) {
	good := testSecret(5).RecoveryKey()
	for _, tc := range []struct{ in, msg string }{
		{"", "0 characters"},
		{good + "0", "61 characters"},
		{good[:len(good)-1], "59 characters"},
		{strings.Replace(good, "-", "U", 1), `'U'`},
		{strings.Replace(good, "-", "*", 1), `'*'`},
		{strings.Replace(good, "-", "é", 1), "not in the alphabet"},
	} {
		_, err := ParseRecoveryKey(tc.in)
		if !errors.Is(err, ErrRecoveryKey) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: got %v, want ErrRecoveryKey mentioning %s", tc.in, err, tc.msg)
		}
	}
}

func TestRecoveryKeyVersion(t *testing.T) {
	// A well-formed key (good checksum) of another version is reported as such.
	text := encodeRecovery(2, testSecret(5))
	if _, err := ParseRecoveryKey(text); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("version 2: got %v", err)
	}
}
