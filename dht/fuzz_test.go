package dht

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzRequest feeds arbitrary bytes to the server's request parser (with small limits, so
// the limit checks are reached): it never panics, never reads past what a request may
// claim, and whatever it accepts encodes back to the same bytes.
func FuzzRequest(f *testing.F) {
	for _, m := range goldenMessages()[:6] {
		f.Add(m.b)
	}
	f.Add([]byte{1, byte(opHas), 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{1, byte(opPut)})
	lim := limits{maxFragment: 1 << 16, maxBatch: 64}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, rest, err := decodeRequest(b, lim)
		if err != nil {
			if !errors.Is(err, errMalformed) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if len(req.ids) > lim.maxBatch || int(req.size) > lim.maxFragment {
			t.Fatalf("limits passed: %d IDs, %d bytes", len(req.ids), req.size)
		}
		head := b[:len(b)-len(rest)]
		if enc := appendRequest(nil, &req); !bytes.Equal(enc, head) {
			t.Fatalf("re-encoded request differs:\n%x\n%x", enc, head)
		}
		if req.op.signed() {
			req.verify() // must not panic on any owner or signature bytes
		}
	})
}

// FuzzResponse feeds arbitrary bytes to the client's response parser for every op.
func FuzzResponse(f *testing.F) {
	for _, m := range goldenMessages()[6:] {
		f.Add(uint8(opGet), uint16(10), m.b)
		f.Add(uint8(opHas), uint16(10), m.b)
		f.Add(uint8(opStat), uint16(0), m.b)
	}
	lim := limits{maxFragment: 1 << 16, maxBatch: 1 << 16}
	f.Fuzz(func(t *testing.T, o uint8, want uint16, b []byte) {
		resp, err := readResponse(bytes.NewReader(b), op(o), int(want), lim)
		if err != nil {
			return
		}
		switch {
		case resp.status > statusMax:
			t.Fatalf("accepted status %d", resp.status)
		case len(resp.data) > lim.maxFragment:
			t.Fatalf("accepted %d bytes", len(resp.data))
		case resp.status == statusOK && op(o) == opHas && len(resp.has) != int(want):
			t.Fatalf("HAS answered %d of %d", len(resp.has), want)
		case resp.stat.Quota < 0 || resp.stat.Used < 0 || resp.stat.Fragments < 0:
			t.Fatalf("negative stat %+v", resp.stat)
		}
	})
}
