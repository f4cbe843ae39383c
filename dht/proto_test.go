package dht

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/swarm"
)

var testLimits = limits{maxFragment: DefaultMaxFragmentSize, maxBatch: DefaultMaxBatch}

// goldenMessages are the messages pinned by testdata/fragment-proto-v1.txt.
func goldenMessages() []struct {
	name string
	b    []byte
} {
	var id1, id2 chunker.FragmentID
	for i := range id1 {
		id1[i], id2[i] = byte(i), byte(0xff-i)
	}
	key := testOwnerKey(7)
	const ts, exp = 1767225600123456789, 1798761600 // 2026-01-01T00:00:00.123456789Z, 2027-01-01
	put := request{op: opPut, id: id1, expires: exp, size: 3}
	copy(put.owner[:], key.Public().(ed25519.PublicKey))
	del := request{op: opDelete, ids: []chunker.FragmentID{id1, id2}, timestamp: ts}
	del.sign(key)
	renew := request{op: opRenew, ids: []chunker.FragmentID{id2}, timestamp: ts, expires: exp}
	renew.sign(key)
	return []struct {
		name string
		b    []byte
	}{
		{"put", append(appendRequest(nil, &put), 'a', 'b', 'c')},
		{"get", appendRequest(nil, &request{op: opGet, id: id1})},
		{"has", appendRequest(nil, &request{op: opHas, ids: []chunker.FragmentID{id1, id2}})},
		{"delete", appendRequest(nil, &del)},
		{"renew", appendRequest(nil, &renew)},
		{"stat", appendRequest(nil, &request{op: opStat})},
		{"ok", []byte{byte(statusOK)}},
		{"get-ok", append(appendGetHead(nil, 3), 'a', 'b', 'c')},
		{"has-ok", appendHas(nil, []bool{true, false, false, false, false, false, false, false, false, true})},
		{"stat-ok", appendStat(nil, swarm.Stat{Quota: 1 << 30, Used: 1 << 20, Fragments: 8})},
		{"error", appendError(nil, statusFull, "full")},
	}
}

// TestProtoGolden pins the wire encoding of docs/format.md: a change fails until the
// protocol version is bumped. UPDATE_GOLDEN=1 rewrites the fixture.
func TestProtoGolden(t *testing.T) {
	const path = "testdata/fragment-proto-v1.txt"
	msgs := goldenMessages()
	if os.Getenv("UPDATE_GOLDEN") != "" {
		var sb strings.Builder
		for _, m := range msgs {
			sb.WriteString(m.name + " " + hex.EncodeToString(m.b) + "\n")
		}
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, h, _ := strings.Cut(sc.Text(), " ")
		want[name] = h
	}
	if len(want) != len(msgs) {
		t.Fatalf("fixture has %d messages, want %d", len(want), len(msgs))
	}
	for _, m := range msgs {
		if got := hex.EncodeToString(m.b); got != want[m.name] {
			t.Errorf("%s encodes as\n%s\nfixture has\n%s", m.name, got, want[m.name])
		}
	}
	// The fixture's requests decode, verify and encode back to themselves.
	for _, m := range msgs[:6] {
		req, rest, err := decodeRequest(m.b, testLimits)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		if enc := append(appendRequest(nil, &req), rest...); !bytes.Equal(enc, m.b) {
			t.Errorf("%s: round trip changed the bytes", m.name)
		}
		if req.op.signed() && !req.verify() {
			t.Errorf("%s: signature does not verify", m.name)
		}
	}
}

func TestReadResponse(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   op
		want int
		b    []byte
		err  error
	}{
		{"has ok", opHas, 10, appendHas(nil, make([]bool, 10)), nil},
		{"has count mismatch", opHas, 9, appendHas(nil, make([]bool, 10)), errMalformed},
		{"has stray bits", opHas, 3, []byte{0, 0, 0, 0, 3, 0xff}, errMalformed},
		{"get too large", opGet, 0, appendGetHead(nil, DefaultMaxFragmentSize+1), errMalformed},
		{"get empty", opGet, 0, appendGetHead(nil, 0), errMalformed},
		{"get truncated", opGet, 0, append(appendGetHead(nil, 10), 1), io.ErrUnexpectedEOF},
		{"stat negative", opStat, 0, bytes.Repeat([]byte{0xff}, 25)[:25], errMalformed},
		{"message too long", opPut, 0, []byte{byte(statusBusy), 0xff, 0xff}, errMalformed},
		{"unknown status", opPut, 0, []byte{7}, errMalformed},
		{"empty", opPut, 0, nil, io.EOF},
	} {
		tc.b = append([]byte(nil), tc.b...)
		if tc.name == "stat negative" {
			tc.b[0] = byte(statusOK)
		}
		_, err := readResponse(bytes.NewReader(tc.b), tc.op, tc.want, testLimits)
		if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
}
