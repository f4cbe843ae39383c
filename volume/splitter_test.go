package volume_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"syscall"
	"testing"

	chunk "github.com/ipfs/boxo/chunker"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/volume"
	"github.com/scatterfs/scatter/volume/memchunks"
)

// keyedChunks is memchunks with the drive's kind of splitter (keyed FastCDC, small
// sizes), counting the splitters made.
type keyedChunks struct {
	*memchunks.Store
	made atomic.Int64
}

func (k *keyedChunks) Split(r io.Reader) chunk.Splitter {
	k.made.Add(1)
	s, err := chunker.New(r, [32]byte{7}, chunker.Params{Min: 256, Normal: 1024, Max: 4096})
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return s
}

// TestUploadReusesSplitters uploads many files through content-defined chunks of varying
// sizes: the uploaders reuse their splitters (each one's buffer is twice the largest
// chunk) instead of making one per job, and the chunks, taken from the job's buffer
// rather than copied out of the splitter, read back as written.
func TestUploadReusesSplitters(t *testing.T) {
	const files, uploaders = 40, 2
	store := &keyedChunks{Store: memchunks.New(1, 1<<40)}
	v, err := volume.Open(volume.Config{
		Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Uploaders: uploaders, InlineMax: 1, CommitWindow: testCommitWindow,
	}, store)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := v.Close(); err != nil {
			t.Error(err)
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	want := make([][]byte, files)
	inos := make([]uint64, files)
	for i := range want {
		want[i] = make([]byte, 5000+rng.IntN(30000))
		for j := range want[i] {
			want[i][j] = byte(rng.Uint32())
		}
		a, h, err := v.Create(ctx, volume.RootIno, fmt.Sprintf("f%d", i), syscall.O_RDWR|syscall.O_EXCL, 0o644, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Write(ctx, want[i], 0); err != nil {
			t.Fatal(err)
		}
		if err := h.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		h.Release()
		inos[i] = a.Ino
	}
	if err := v.SyncAll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := store.made.Load(); n > uploaders {
		t.Errorf("%d splitters made for %d files; want at most %d (one per uploader)", n, files, uploaders)
	}
	if v.StagedBytes() != 0 {
		t.Fatalf("%d bytes still staged after SyncAll", v.StagedBytes())
	}
	for i, ino := range inos {
		h, err := v.Open(ctx, ino, syscall.O_RDONLY)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want[i])+1)
		n, err := h.Read(ctx, got, 0)
		h.Release()
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:n], want[i]) {
			t.Errorf("file %d reads back different (%d bytes, want %d)", i, n, len(want[i]))
		}
	}
}
