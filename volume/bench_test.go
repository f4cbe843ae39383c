package volume_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

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

// BenchmarkRsyncFile replays, in the core (no FUSE), what `rsync -a` does per small
// file: create a temporary name, fchmod (a no-op), write 4 KiB, close, utimens, chmod
// and rename, with every change durable at once (durable) or deferred to the commit
// window (deferred). close(2) of written data commits either way.
func BenchmarkRsyncFile(b *testing.B) {
	for _, bc := range []struct {
		name   string
		window time.Duration
	}{{"durable", -1}, {"deferred", volume.DefaultCommitWindow}} {
		b.Run(bc.name, func(b *testing.B) {
			v, err := volume.Open(volume.Config{Dir: b.TempDir(), Logger: quiet, CommitWindow: bc.window}, memchunks.New(1<<20, 1<<40))
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			data := make([]byte, 4<<10)
			mtime := time.Unix(1e9, 0)
			for i := 0; b.Loop(); i++ {
				tmp, name := fmt.Sprintf(".f%d.tmp", i), fmt.Sprintf("f%d", i)
				a, h, err := v.Create(ctx, volume.RootIno, tmp, syscall.O_RDWR|syscall.O_EXCL, 0o600, 0, 0)
				if err != nil {
					b.Fatal(err)
				}
				mode := uint32(0o600)
				if _, err := v.Setattr(ctx, a.Ino, volume.SetAttr{Mode: &mode}); err != nil {
					b.Fatal(err)
				}
				if _, err := h.Write(ctx, data, 0); err != nil {
					b.Fatal(err)
				}
				if err := h.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				h.Release()
				if _, err := v.Setattr(ctx, a.Ino, volume.SetAttr{Atime: &mtime, Mtime: &mtime}); err != nil {
					b.Fatal(err)
				}
				mode = 0o644
				if _, err := v.Setattr(ctx, a.Ino, volume.SetAttr{Mode: &mode}); err != nil {
					b.Fatal(err)
				}
				if err := v.Rename(ctx, volume.RootIno, tmp, volume.RootIno, name, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCreateEmpty creates and closes empty files, as `touch` does.
func BenchmarkCreateEmpty(b *testing.B) {
	for _, bc := range []struct {
		name   string
		window time.Duration
	}{{"durable", -1}, {"deferred", volume.DefaultCommitWindow}} {
		b.Run(bc.name, func(b *testing.B) {
			v, err := volume.Open(volume.Config{Dir: b.TempDir(), Logger: quiet, CommitWindow: bc.window}, memchunks.New(1<<20, 1<<40))
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			for i := 0; b.Loop(); i++ {
				_, h, err := v.Create(ctx, volume.RootIno, fmt.Sprintf("f%d", i), syscall.O_WRONLY|syscall.O_EXCL, 0o644, 0, 0)
				if err != nil {
					b.Fatal(err)
				}
				if err := h.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				h.Release()
			}
		})
	}
}
