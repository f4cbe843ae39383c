package volume_test

import (
	"syscall"
	"testing"

	"github.com/scatterfs/scatter/volume"
	"github.com/scatterfs/scatter/volume/memchunks"
)

// BenchmarkCoreWrite streams 256 MiB in 1 MiB writes into the core (no FUSE) through 64
// MiB of staging over an in-memory store with 1 MiB chunks, then closes the file.
func BenchmarkCoreWrite(b *testing.B) {
	const total = 256 << 20
	e := &env{store: memchunks.New(1<<20, 1<<40)}
	v, err := volume.Open(volume.Config{Dir: b.TempDir(), StagingMax: 64 << 20, Logger: quiet}, e.store)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 31)
	}
	b.SetBytes(total)
	for i := 0; b.Loop(); i++ {
		_, h, err := v.Create(ctx, volume.RootIno, "f", syscall.O_RDWR|syscall.O_TRUNC, 0o644, 0, 0)
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < total; off += int64(len(buf)) {
			if _, err := h.Write(ctx, buf, off); err != nil {
				b.Fatal(err)
			}
		}
		if err := h.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		h.Release()
	}
}
