package chunker

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
	"testing/iotest"
)

func FuzzParseHeader(f *testing.F) {
	f.Add(Header{K: 8, M: 4, Index: 3, SealedLen: 12345}.AppendTo(nil))
	f.Add(Header{K: 1, Index: 0}.AppendTo(nil))
	f.Add([]byte{1, 255, 0, 254, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			if !errors.Is(err, ErrFragmentHeader) {
				t.Fatalf("error does not match ErrFragmentHeader: %v", err)
			}
			return
		}
		if !bytes.Equal(h.AppendTo(nil), b[:HeaderSize]) {
			t.Fatalf("%+v does not encode back to its bytes", h)
		}
		if h.FragmentSize() <= HeaderSize || h.FragmentSize() > HeaderSize+MaxSealedSize {
			t.Fatalf("%+v: fragment size %d", h, h.FragmentSize())
		}
	})
}

// FuzzDecode feeds arbitrary fragments to Decode and Regenerate, with the IDs of those
// very bytes so that verification lets them through to the header checks and
// Reed-Solomon. Neither may panic; a decode that succeeds from fragments that are all
// genuine must give the original bytes.
func FuzzDecode(f *testing.F) {
	c := mustCoder(f, 3, 2)
	var enc Fragments
	sealed := prng("fuzz decode", 100)
	chunk := testChunkID("fuzz")
	if err := c.Encode(&enc, chunk, sealed); err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), uint8(0), enc.Frags[0])
	f.Add(uint8(0b00011), uint8(4), enc.Frags[4])
	f.Add(uint8(0b10000), uint8(1), enc.Frags[2])
	f.Add(uint8(0), uint8(2), enc.Frags[2][:HeaderSize])
	f.Fuzz(func(t *testing.T, lost, at uint8, frag []byte) {
		n := 5
		ids := make([]FragmentID, n)
		frags := make([][]byte, n)
		copy(ids, enc.IDs)
		copy(frags, enc.Frags)
		i := int(at) % n
		frags[i] = frag
		ids[i] = FragmentIDOf(frag)
		for j := range n {
			if lost&(1<<j) != 0 {
				frags[j] = nil
			}
		}
		genuine := bytes.Equal(frag, enc.Frags[i]) || len(frag) == 0 || frags[i] == nil
		out, _, err := c.Decode(nil, chunk, ids, frags)
		if err == nil && genuine && !bytes.Equal(out, sealed) {
			t.Fatal("decoded wrong bytes from genuine fragments")
		}
		if err != nil && !errors.Is(err, ErrTooFewFragments) {
			t.Fatalf("unexpected error: %v", err)
		}
		_, _, err = c.Regenerate(chunk, ids, frags, []int{0, 1, 2, 3, 4})
		if err != nil && !errors.Is(err, ErrTooFewFragments) && !errors.Is(err, ErrBadFragment) {
			t.Fatalf("unexpected regenerate error: %v", err)
		}
	})
}

// FuzzSplit splits arbitrary input under an arbitrary key: the chunks must concatenate to
// the input and respect the size limits (split checks both).
func FuzzSplit(f *testing.F) {
	f.Add([]byte("key"), []byte{})
	f.Add([]byte("key"), prng("fuzz split", 10000))
	f.Add([]byte{}, bytes.Repeat([]byte{0}, 5000))
	p := Params{Min: 64, Normal: 256, Max: 1024}
	f.Fuzz(func(t *testing.T, keyBytes, data []byte) {
		var key [32]byte
		copy(key[:], keyBytes)
		want := split(t, key, p, data)

		// One byte at a time through the reader must not change the boundaries.
		s, err := New(iotest.OneByteReader(bytes.NewReader(data)), key, p)
		if err != nil {
			t.Fatal(err)
		}
		var got [][]byte
		for {
			c, err := s.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, bytes.Clone(c))
		}
		if !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatal("one-byte reads changed the chunks")
		}
	})
}
