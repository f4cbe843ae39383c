package crypt

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

const goldenRepair = "testdata/repair-v1.json"

// goldenRepairValues are the repair capability of goldenSecret and what derives from it.
type goldenRepairValues struct {
	Text            string `json:"text"`
	StorageSeed     string `json:"storage_seed"`
	RepairSecret    string `json:"repair_secret"`
	ManifestSeed    string `json:"manifest_seed"`
	ManifestPublic  string `json:"manifest_public_key"`
	LogSeed         string `json:"log_seed"`
	ManifestPayload string `json:"manifest_payload_key"`
	LogPayload      string `json:"log_payload_key"`
	ObjectsMetadata string `json:"objects_metadata_key"`
	ObjectsContent  string `json:"objects_content_key"`
}

func computeGoldenRepair() goldenRepairValues {
	s := goldenSecret().Keys()
	c := s.RepairCap()
	h := hex.EncodeToString
	mp, lp := c.ManifestPayloadKey(), c.LogPayloadKey()
	ok := c.ObjectKeys()
	return goldenRepairValues{
		Text: c.Text(), StorageSeed: h(c.Storage.Seed()), RepairSecret: h(c.Secret[:]),
		ManifestSeed: h(s.ManifestKey().Seed()), ManifestPublic: h(c.Manifest),
		LogSeed: h(c.LogKey().Seed()), ManifestPayload: h(mp[:]), LogPayload: h(lp[:]),
		ObjectsMetadata: h(ok.Metadata[:]), ObjectsContent: h(ok.content[:]),
	}
}

func TestGoldenRepairCap(t *testing.T) {
	if *update {
		js, err := json.MarshalIndent(computeGoldenRepair(), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenRepair, append(js, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var want goldenRepairValues
	if err := json.Unmarshal(readGolden(t, goldenRepair), &want); err != nil {
		t.Fatal(err)
	}
	if got := computeGoldenRepair(); got != want {
		t.Fatalf("repair capability changed:\ngot  %+v\nwant %+v", got, want)
	}
	c, err := ParseRepairCap(want.Text)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(c.Storage.Seed()) != want.StorageSeed || hex.EncodeToString(c.Secret[:]) != want.RepairSecret ||
		hex.EncodeToString(c.Manifest) != want.ManifestPublic {
		t.Fatal("golden capability text parses to other keys")
	}
}

func TestRepairCapKeys(t *testing.T) {
	k := goldenSecret().Keys()
	c := k.RepairCap()
	if !bytes.Equal(c.Storage, k.Storage) {
		t.Fatal("the capability's storage key is not the drive's")
	}
	// Nothing the capability derives may equal a key of the drive's or the manifest key.
	ok := c.ObjectKeys()
	mp, lp := c.ManifestPayloadKey(), c.LogPayloadKey()
	drive := [][]byte{k.Metadata[:], k.Chunker[:], k.content[:], k.chunkID[:], k.Signing.Seed(), k.Storage.Seed(), k.ManifestKey().Seed()}
	for _, d := range [][]byte{ok.Metadata[:], ok.Chunker[:], ok.content[:], ok.chunkID[:], c.LogKey().Seed(), mp[:], lp[:], c.Secret[:]} {
		for _, x := range drive {
			if bytes.Equal(d, x) {
				t.Fatalf("capability key %x equals a drive key", d)
			}
		}
	}
	other := testSecret(1).Keys().RepairCap()
	if bytes.Equal(other.Secret[:], c.Secret[:]) || bytes.Equal(other.Manifest, c.Manifest) {
		t.Fatal("two drives share repair keys")
	}
	if strings.Contains(c.String(), c.Text()[len(RepairCapPrefix):]) || c.GoString() != c.String() {
		t.Fatal("String leaks the capability")
	}
}

func TestParseRepairCapErrors(t *testing.T) {
	good := goldenSecret().Keys().RepairCap().Text()
	body := good[len(RepairCapPrefix):]
	flip := []byte(body)
	flip[10] ^= 'a' ^ 'b'
	if flip[10] == body[10] {
		t.Fatal("BUG: flip")
	}
	cases := map[string]string{
		"empty":          "",
		"prefix only":    RepairCapPrefix,
		"wrong prefix":   "scatter-repair2:" + body,
		"upper case":     RepairCapPrefix + strings.ToUpper(body),
		"trailing space": good + " ",
		"short":          good[:len(good)-1],
		"long":           good + "a",
		"bad char":       good[:len(good)-3] + "1" + good[len(good)-2:],
		"flipped":        RepairCapPrefix + string(flip),
		"padding bits":   good[:len(good)-1] + string(textEncoding.EncodeToString([]byte{0xff})[1]),
	}
	for name, text := range cases {
		if _, err := ParseRepairCap(text); !errors.Is(err, ErrRepairCap) {
			t.Errorf("%s: err %v, want ErrRepairCap", name, err)
		}
	}
	newer := encodeRepairCap(2, goldenSecret().Keys().RepairCap())
	if _, err := ParseRepairCap(newer); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("version 2: err %v, want ErrUnsupportedVersion", err)
	}
}

func FuzzParseRepairCap(f *testing.F) {
	f.Add(goldenSecret().Keys().RepairCap().Text())
	f.Add(RepairCapPrefix)
	f.Add(RepairCapPrefix + strings.Repeat("a", 162))
	f.Add("scatter-repair1:AAAA")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseRepairCap(text)
		if err != nil {
			if !errors.Is(err, ErrRepairCap) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		// One capability, one text.
		if again := c.Text(); again != text {
			t.Fatalf("parsed %q, writes %q", text, again)
		}
	})
}
