package mount_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// crashFileSize returns the size of file i of TestKillMidWrite: empty, tiny (stored inline),
// small, medium and multi-chunk files in turn.
func crashFileSize(i int) int64 {
	r := rand.New(rand.NewPCG(uint64(i), 7))
	switch i % 5 {
	case 0:
		if i%10 == 0 {
			return 0
		}
		return 1 + r.Int64N(200)
	case 1:
		return 4<<10 + r.Int64N(60<<10)
	case 2:
		return 100<<10 + r.Int64N(900<<10)
	default:
		return 1<<20 + r.Int64N(4<<20)
	}
}

// TestKillMidWrite kills the mount with SIGKILL while a writer is in the middle of writing
// many files, then restarts it: every file whose close(2) had returned must read back
// identical (close returns once data is staged, and staging survives a crash). Staging is
// capped at 16 MiB so that at the kill some closed files are already on the donors and some
// still only in staging, to be replayed from the journal. After the restart, fsync must
// push everything replayed to the donors, and the file being written at the kill must hold
// no bytes it was not given.
func TestKillMidWrite(t *testing.T) {
	d := newDrive(t, "-staging", "16M", "-cache", "64M")
	d.start()
	dir := d.path("w")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	// The kill comes while file killAt, a multi-chunk file, is half written.
	const killAt = 43
	if crashFileSize(killAt) < 1<<20 {
		panic("BUG: file killAt is not multi-chunk")
	}
	closed := make(chan int, 1000)
	halfway := make(chan struct{})
	var writerErr error
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		defer close(closed)
		for i := 0; ; i++ {
			var mid func()
			if i == killAt {
				mid = func() { close(halfway) }
			}
			if writerErr = writeFile(filepath.Join(dir, fmt.Sprintf("f%04d", i)), uint64(i), crashFileSize(i), mid); writerErr != nil {
				return
			}
			closed <- i
		}
	}()
	select {
	case <-halfway:
		d.kill()
	case <-writerDone:
		t.Fatalf("writer stopped before file %d: %v", killAt, writerErr)
	}
	<-writerDone
	var done []int
	for i := range closed {
		done = append(done, i)
	}
	if len(done) != killAt || writerErr == nil {
		t.Fatalf("writer closed %d files and stopped with %v; want %d closed and an error at the kill", len(done), writerErr, killAt)
	}
	staged, err := diskUse(d.stagingDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed with %d files closed, file %d half written, %d KiB in staging; the writer saw: %v",
		len(done), killAt, staged>>10, writerErr)

	d.start()
	verify := func(when string) {
		t.Helper()
		for _, i := range done {
			name := filepath.Join(dir, fmt.Sprintf("f%04d", i))
			if err := checkFile(name, uint64(i), crashFileSize(i)); err != nil {
				t.Errorf("%s: closed file %s: %v", when, filepath.Base(name), err)
			}
		}
	}
	verify("after the restart")

	// The file torn by the kill: any size up to what was written, but only the written bytes.
	name := filepath.Join(dir, fmt.Sprintf("f%04d", killAt))
	if b, err := os.ReadFile(name); err == nil {
		want, _ := io.ReadAll(pattern(uint64(killAt), crashFileSize(killAt)))
		if !bytes.HasPrefix(want, b) {
			t.Errorf("torn file %s: its %d bytes are not a prefix of what was written", filepath.Base(name), len(b))
		}
		t.Logf("torn file: %d of %d bytes after the restart", len(b), len(want))
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("torn file %s: %v", filepath.Base(name), err)
	}

	// fsync returns once data is on enough peers: afterwards nothing is left in staging.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Errorf("fsync %s after replay: %v", e.Name(), err)
		}
		f.Close()
	}
	if n, err := diskUse(d.stagingDir()); err != nil || n != 0 {
		t.Errorf("after fsync of every file the staging dir holds %d bytes (%v)", n, err)
	}
	d.stop()
	emptyDir(t, d.cacheDir())
	d.start()
	verify("after a clean remount with an empty cache")
}

// writeFile writes n bytes of pattern(seed) to a new file in 256 KiB writes and closes it.
// If mid is not nil, it is called once about half the bytes are written.
func writeFile(name string, seed uint64, n int64, mid func()) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	src := pattern(seed, n)
	buf := make([]byte, 256<<10)
	if mid != nil {
		if _, err := io.CopyBuffer(onlyWriter{f}, io.LimitReader(src, n/2), buf); err != nil {
			f.Close()
			return err
		}
		mid()
	}
	if _, err := io.CopyBuffer(onlyWriter{f}, src, buf); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// onlyWriter hides ReadFrom, so io.CopyBuffer really writes in buffer-sized pieces.
type onlyWriter struct{ io.Writer }

// checkFile reports whether name holds exactly n bytes of pattern(seed).
func checkFile(name string, seed uint64, n int64) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	want := pattern(seed, n)
	wb, gb := make([]byte, 256<<10), make([]byte, 256<<10)
	var off int64
	for {
		wn, werr := io.ReadFull(want, wb)
		gn, gerr := io.ReadFull(f, gb)
		if !bytes.Equal(wb[:wn], gb[:gn]) {
			return fmt.Errorf("differs in the %d bytes from offset %d (read %d)", wn, off, gn)
		}
		off += int64(wn)
		if werr != nil || gerr != nil {
			if (werr == io.EOF || werr == io.ErrUnexpectedEOF) && (gerr == io.EOF || gerr == io.ErrUnexpectedEOF) {
				return nil
			}
			return fmt.Errorf("at offset %d: want %v, read %v", off, werr, gerr)
		}
	}
}
