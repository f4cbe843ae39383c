package volume_test

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/volume"
	"github.com/scatterfs/scatter/volume/memchunks"
)

// gatedOpens counts Open calls and holds each until gate is closed.
type gatedOpens struct {
	*memchunks.Store
	gate  chan struct{}
	opens atomic.Int64
}

func (g *gatedOpens) Open(dst []byte, ref pipeline.Ref, sealed []byte) ([]byte, error) {
	g.opens.Add(1)
	<-g.gate
	return g.Store.Open(dst, ref, sealed)
}

// TestConcurrentReadsOpenOnce: concurrent reads of one chunk (as the kernel sends them)
// all get their bytes, and the chunk is decrypted once for all of them.
func TestConcurrentReadsOpenOnce(t *testing.T) {
	g := &gatedOpens{Store: memchunks.New(64<<10, 1<<40), gate: make(chan struct{})}
	close(g.gate) // writing needs no opens; closed again below for the reads
	e := &env{t: t, cfg: volume.Config{Dir: t.TempDir(), Logger: quiet}}
	v, err := volume.Open(e.cfg, g)
	if err != nil {
		t.Fatal(err)
	}
	e.v = v
	t.Cleanup(func() { e.v.Close() })
	_, h := e.create(volume.RootIno, "f")
	data := bytes.Repeat([]byte("0123456789abcdef"), 3<<10) // 48 KiB: one chunk
	e.write(h, data, 0)
	if err := h.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	if err := e.v.Close(); err != nil { // empties the in-memory plaintext cache
		t.Fatal(err)
	}
	g.gate = make(chan struct{})
	g.opens.Store(0)
	if e.v, err = volume.Open(e.cfg, g); err != nil {
		t.Fatal(err)
	}
	h = must[*volume.Handle](t)(e.v.Open(ctx, 2, 0))
	defer h.Release()

	const readers = 8
	piece := len(data) / readers
	var started, done sync.WaitGroup
	errs := make([]error, readers)
	got := make([][]byte, readers)
	for i := range readers {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			buf := make([]byte, piece)
			started.Done()
			n, err := h.Read(ctx, buf, int64(i*piece))
			got[i], errs[i] = buf[:n], err
		}()
	}
	started.Wait()
	close(g.gate)
	done.Wait()
	for i := range readers {
		if errs[i] != nil || !bytes.Equal(got[i], data[i*piece:(i+1)*piece]) {
			t.Fatalf("reader %d: %d bytes, %v", i, len(got[i]), errs[i])
		}
	}
	if n := g.opens.Load(); n != 1 {
		t.Fatalf("chunk opened %d times by %d concurrent readers, want once", n, readers)
	}
}
