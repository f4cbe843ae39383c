package fs

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/scatterfs/scatter/volume"
	"github.com/scatterfs/scatter/volume/memchunks"
)

// benchMount mounts a volume over an in-memory store with 1 MiB chunks: the figures are
// the core's and FUSE's cost, with no network, sealing or erasure coding.
func benchMount(b *testing.B, staging int64) (string, *volume.Volume) {
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		b.Skip("needs root and /dev/fuse")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	v, err := volume.Open(volume.Config{Dir: b.TempDir(), StagingMax: staging, Logger: log}, memchunks.New(1<<20, 1<<40))
	if err != nil {
		b.Fatal(err)
	}
	mnt := b.TempDir()
	srv, err := Mount(mnt, v, Options{Logger: log})
	if err != nil {
		v.Close()
		b.Skipf("mount: %v", err)
	}
	b.Cleanup(func() {
		srv.Unmount()
		v.Close()
	})
	return mnt, v
}

const benchFile = 256 << 20

func writeFile(b *testing.B, p string, buf []byte) {
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	for off := 0; off < benchFile; off += len(buf) {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkWrite: 1 MiB writes of a 256 MiB file through 64 MiB of staging (close
// returns when staged; uploads overlap the stream).
func BenchmarkWrite(b *testing.B) {
	mnt, _ := benchMount(b, 64<<20)
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 31)
	}
	b.SetBytes(benchFile)
	for i := 0; b.Loop(); i++ {
		writeFile(b, filepath.Join(mnt, "f"), buf)
	}
}

// BenchmarkReadCold: reads a 256 MiB file from chunks after dropping the kernel's page
// cache (the chunks are in the disk cache or the store).
func BenchmarkReadCold(b *testing.B) {
	mnt, _ := benchMount(b, 64<<20)
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 31)
	}
	p := filepath.Join(mnt, "f")
	writeFile(b, p, buf)
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	f.Sync()
	defer f.Close()
	b.SetBytes(benchFile)
	for b.Loop() {
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		for off := int64(0); off < benchFile; off += int64(len(buf)) {
			if _, err := f.ReadAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
	}
}
