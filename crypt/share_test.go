package crypt

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
)

// goldenShareFile pins the share key derivation and the capability text: share ID
// 00 01 … 0f of the golden secret, with one hint.
const goldenShareFile = "testdata/share-v1.txt"

func goldenShare() (ShareID, *ShareKeys) {
	var id ShareID
	copy(id[:], seq(0, ShareIDSize))
	sk := goldenSecret().Keys().Share(id)
	sk.Cap.Hints = []string{"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWGolden"}
	return id, sk
}

func goldenShareText() string {
	id, sk := goldenShare()
	return "share_id " + id.String() + "\n" +
		"signing_seed " + hex.EncodeToString(sk.Signing.Seed()) + "\n" +
		"public_key " + hex.EncodeToString(sk.Cap.Public) + "\n" +
		"share_key " + hex.EncodeToString(sk.Cap.Key[:]) + "\n" +
		"cap " + sk.Cap.String() + "\n"
}

func TestGoldenShare(t *testing.T) {
	if *update {
		if err := os.WriteFile(goldenShareFile, []byte(goldenShareText()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := string(readGolden(t, goldenShareFile))
	if got := goldenShareText(); got != want {
		t.Fatalf("share derivation or capability encoding changed:\ngot\n%s\nwant\n%s", got, want)
	}
	// The fixture's capability parses back to the same keys.
	var capText string
	for line := range strings.Lines(want) {
		if s, ok := strings.CutPrefix(line, "cap "); ok {
			capText = strings.TrimSpace(s)
		}
	}
	c, err := ParseCap(capText)
	if err != nil {
		t.Fatal(err)
	}
	_, sk := goldenShare()
	if !c.Public.Equal(sk.Cap.Public) || c.Key != sk.Cap.Key || len(c.Hints) != 1 || c.Hints[0] != sk.Cap.Hints[0] {
		t.Fatalf("golden capability parses to %+v", c)
	}
}

func TestShareKeys(t *testing.T) {
	k := testSecret(1).Keys()
	a, b := ShareID{1}, ShareID{2}
	ka, ka2, kb := k.Share(a), k.Share(a), k.Share(b)
	if !ka.Signing.Equal(ka2.Signing) || ka.Cap.Key != ka2.Cap.Key {
		t.Fatal("share keys are not deterministic")
	}
	if ka.Cap.Public.Equal(kb.Cap.Public) || ka.Cap.Key == kb.Cap.Key {
		t.Fatal("two shares got the same keys")
	}
	other := testSecret(2).Keys().Share(a)
	if other.Cap.Public.Equal(ka.Cap.Public) || other.Cap.Key == ka.Cap.Key {
		t.Fatal("two drives got the same share keys for one share ID")
	}
	// No share key is a drive key.
	for _, dk := range [][]byte{k.Metadata[:], k.Chunker[:], k.content[:], k.chunkID[:], k.Signing.Seed(), k.Storage.Seed()} {
		if bytes.Equal(dk, ka.Cap.Key[:]) || bytes.Equal(dk, ka.Signing.Seed()) {
			t.Fatal("a share key equals a drive key")
		}
	}
	msg := []byte("record")
	if !ed25519.Verify(ka.Cap.Public, msg, ed25519.Sign(ka.Signing, msg)) {
		t.Fatal("Cap.Public is not Signing's public key")
	}
}

func TestShareID(t *testing.T) {
	id, err := NewShareID()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseShareID(id.String())
	if err != nil || got != id {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for _, bad := range []string{"", "00", strings.ToUpper(id.String()), id.String() + "00", "zz" + id.String()[2:]} {
		if _, err := ParseShareID(bad); err == nil {
			t.Errorf("ParseShareID(%q) accepted", bad)
		}
	}
}

func TestCapRoundTrip(t *testing.T) {
	for _, hints := range [][]string{nil, {"/ip4/127.0.0.1/tcp/1"}, make([]string, MaxCapHints)} {
		for i := range hints {
			if hints[i] == "" {
				hints[i] = "/dns4/x/tcp/" + strings.Repeat("9", i+1)
			}
		}
		c := testSecret(3).Keys().Share(ShareID{9}).Cap
		c.Hints = hints
		s := c.String()
		got, err := ParseCap(s)
		if err != nil {
			t.Fatalf("%d hints: %v", len(hints), err)
		}
		if !got.Public.Equal(c.Public) || got.Key != c.Key || strings.Join(got.Hints, " ") != strings.Join(hints, " ") {
			t.Fatalf("%d hints: round trip gives %+v", len(hints), got)
		}
	}
}

func TestParseCapRejects(t *testing.T) {
	c := testSecret(4).Keys().Share(ShareID{7}).Cap
	good := c.String()
	body := strings.TrimPrefix(good, capPrefix)
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	v2, err := c.marshal(2)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"empty":          "",
		"no prefix":      body,
		"other prefix":   "scatter-cap2:" + body,
		"upper case":     capPrefix + strings.ToUpper(body),
		"padding":        good + "=",
		"space":          good + " ",
		"bad char":       capPrefix + body[:10] + "1" + body[11:],
		"flipped char":   flip(good, len(capPrefix)+20),
		"flipped sum":    flip(good, len(good)-2),
		"cut short":      good[:len(good)-8],
		"too long":       capPrefix + strings.Repeat("a", 4000),
		"version 2":      capPrefix + textEncoding.EncodeToString(v2),
		"non-canonical":  good[:len(good)-1] + string(textEncoding.EncodeToString([]byte{0xff})[1]),
		"just the label": capPrefix,
	}
	for name, s := range cases {
		if s == good {
			continue // a flip that produced the same text
		}
		if _, err := ParseCap(s); !errors.Is(err, ErrCap) {
			t.Errorf("%s: %q: err %v, want ErrCap", name, s, err)
		}
	}
	if _, err := ParseCap(capPrefix + textEncoding.EncodeToString(v2)); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("version 2: %v, want ErrUnsupportedVersion too", err)
	}
	c.Hints = []string{"has space"}
	if _, err := c.marshal(capV1); err == nil {
		t.Error("a hint with a space encodes")
	}
}

func FuzzParseCap(f *testing.F) {
	_, sk := goldenShare()
	f.Add(sk.Cap.String())
	sk.Cap.Hints = nil
	f.Add(sk.Cap.String())
	f.Add(capPrefix)
	f.Add(capPrefix + "aaaa")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCap(s)
		if err != nil {
			if !errors.Is(err, ErrCap) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		// A capability that parses is exactly what the encoder writes for its fields.
		if again := c.String(); again != s {
			t.Fatalf("parsed %q, encodes to %q", s, again)
		}
	})
}
