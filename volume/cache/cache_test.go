package cache

import (
	"bytes"
	"os"
	"testing"

	"github.com/scatterfs/scatter/crypt"
)

func id(i byte) crypt.ChunkID { return crypt.ChunkID{i} }

func TestBoundAndLRU(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i := range byte(5) {
		if err := c.Put(id(i), bytes.Repeat([]byte{i}, 300)); err != nil {
			t.Fatal(err)
		}
		if c.Used() > 1000 {
			t.Fatalf("used %d above bound after put %d", c.Used(), i)
		}
		if i == 2 {
			// Touch 0 so that 1 is the least recently used.
			if _, ok := c.Get(id(0)); !ok {
				t.Fatal("chunk 0 missing")
			}
		}
	}
	// Holding 3 of 300 bytes: 0 (touched), 3, 4 remain; 1 and 2 were evicted.
	for i, want := range []bool{true, false, false, true, true} {
		b, ok := c.Get(id(byte(i)))
		if ok != want {
			t.Errorf("chunk %d cached %v, want %v", i, ok, want)
		}
		if ok && !bytes.Equal(b, bytes.Repeat([]byte{byte(i)}, 300)) {
			t.Errorf("chunk %d content changed", i)
		}
	}
	if err := c.Put(id(9), make([]byte, 2000)); err != nil || c.Has(id(9)) {
		t.Errorf("chunk larger than the cache: err %v, cached %v", err, c.Has(id(9)))
	}
	// Reopen with a smaller bound: the index is rebuilt and trimmed.
	os.WriteFile(dir+"/tmp-123", []byte("junk"), 0o600)
	c2, err := Open(dir, 600)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Used() > 600 || c2.Used() == 0 {
		t.Errorf("reopened cache holds %d bytes", c2.Used())
	}
	if _, err := os.Stat(dir + "/tmp-123"); !os.IsNotExist(err) {
		t.Errorf("temp file left behind: %v", err)
	}
}

func TestOpenRejectsZeroBound(t *testing.T) {
	if _, err := Open(t.TempDir(), 0); err == nil {
		t.Fatal("Open with max 0 succeeded")
	}
}

func TestStats(t *testing.T) {
	c, err := Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var a, b crypt.ChunkID
	b[0] = 1
	if err := c.Put(a, []byte("sealed")); err != nil {
		t.Fatal(err)
	}
	c.Get(a)
	c.Get(a)
	c.Get(b)
	if h, m := c.Stats(); h != 2 || m != 1 {
		t.Fatalf("Stats = %d hits, %d misses; want 2, 1", h, m)
	}
}
