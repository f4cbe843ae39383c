package volume_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"

	"github.com/scatterfs/scatter/volume"
	"github.com/scatterfs/scatter/volume/memchunks"
)

// TestStagingPunchesWholeBlocks uploads a file in jobs whose edges are not block aligned
// (10000-byte chunks) and stops the uploads midway: the staging file may then hold only
// the blocks that still hold staged bytes. A block shared by two uploaded ranges used to
// stay allocated (each commit punched only its own unaligned range), so disk use crept
// past the cap. Staged bytes must survive the punching, and the budget counts blocks.
func TestStagingPunchesWholeBlocks(t *testing.T) {
	const chunk, total = 10000, 40 * 10000
	store := memchunks.New(chunk, 1<<40)
	e := newEnvStore(t, store, volume.Config{Uploaders: 1, PutParallel: 1, JobMax: 64 << 10, StreamThreshold: 64 << 10, InlineMax: 1})
	gate := make(chan struct{})
	store.SetPutGate(gate)
	a, h := e.create(volume.RootIno, "f")
	want := make([]byte, total)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	e.write(h, want, 0)
	if err := h.Flush(ctx); err != nil { // streamed: uploaded in 64 KiB jobs while open
		t.Fatal(err)
	}
	// Let the first two jobs through (6 chunks each: a job keeps back its last chunk).
	for range 12 {
		gate <- struct{}{}
	}
	var staged [][2]int64
	var path string
	for {
		var changed <-chan struct{}
		staged, path, changed = volume.StagingOf(e.v, a.Ino)
		if len(staged) > 0 && staged[0][0] >= 12*chunk {
			break
		}
		<-changed
	}
	if staged[0][0] != 12*chunk {
		t.Fatalf("staged ranges %v; want the first 12 chunks uploaded", staged)
	}
	var blocks int64 // blocks holding a staged byte
	last := int64(-1)
	for _, s := range staged {
		first, end := s[0]/4096, (s[1]-1)/4096
		if first == last {
			first++
		}
		blocks += max(0, end-first+1)
		last = end
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if got := st.Blocks * 512; got > blocks*4096 {
		t.Errorf("staging file allocates %d bytes; the staged ranges %v touch %d blocks (%d bytes)",
			got, staged, blocks, blocks*4096)
	}
	if got := e.v.StagedBytes(); got != blocks*4096 {
		t.Errorf("staging budget holds %d bytes; want %d blocks (%d bytes)", got, blocks, blocks*4096)
	}
	if got := e.read(h, total, 0); !bytes.Equal(got, want) {
		t.Fatalf("content differs at %d while partly uploaded", firstDiff(got, want))
	}
	close(gate)
	if err := h.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	h.Release()
	if n := e.v.StagedBytes(); n != 0 {
		t.Errorf("staged %d bytes after fsync", n)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("staging file after fsync: %v", err)
	}
	e.reopen()
	h = must[*volume.Handle](t)(e.v.Open(ctx, a.Ino, syscall.O_RDONLY))
	defer h.Release()
	if got := e.read(h, total, 0); !bytes.Equal(got, want) {
		t.Fatalf("content differs at %d after upload", firstDiff(got, want))
	}
}
