package mount_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// openUnlinkRaceFixed turns a TestOpenRenameRace sighting back into a failure.
const openUnlinkRaceFixed = true

// TestOpenRenameRace opens a name while another goroutine keeps renaming new files over
// it, and fstats every descriptor it gets: an open descriptor must stay valid even when
// its file loses its last name (the kernel's open may fail with ENOENT, fstat may not).
// go-fuse's OpenSymlinkRace hits the same window now and then; this test aims at it.
func TestOpenRenameRace(t *testing.T) {
	d := newDrive(t, "-staging", "16M", "-cache", "16M")
	d.start()
	dir := d.path("race")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path, tmp := filepath.Join(dir, "f"), filepath.Join(dir, "f.tmp")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The window is one commit wide: here one run in five saw it (a second opener only
	// made hits rarer); go-fuse's OpenSymlinkRace failed on it once in about ten runs.
	const iterations = 6000
	var (
		wg        sync.WaitGroup
		shuffErr  error
		fstatErrs []string
		opened    int
	)
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := os.WriteFile(tmp, []byte("x"), 0o644); err != nil {
				shuffErr = err
				return
			}
			if err := os.Rename(tmp, path); err != nil {
				shuffErr = err
				return
			}
		}
	}()
	for range iterations {
		fd, err := syscall.Open(path, syscall.O_RDONLY, 0)
		if errors.Is(err, syscall.ENOENT) {
			continue
		}
		if err != nil {
			t.Errorf("open: %v", err)
			break
		}
		opened++
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			fstatErrs = append(fstatErrs, err.Error())
		}
		syscall.Close(fd)
	}
	close(stop)
	wg.Wait()
	if shuffErr != nil {
		t.Fatalf("renamer: %v", shuffErr)
	}
	t.Logf("%d opens, %d fstat failures", opened, len(fstatErrs))
	if len(fstatErrs) == 0 {
		return
	}
	msg := fmt.Sprintf("fstat of an open descriptor failed %d times of %d (first: %s)", len(fstatErrs), opened, fstatErrs[0])
	if openUnlinkRaceFixed {
		t.Fatal(msg)
	}
	t.Skip("BUG: volume/namespace.go dropLink decides 'not open, delete the inode' (f.opens == 0) inside " +
		"a write transaction that commits later; an Open racing in between (volume/file.go acquire: " +
		"opens++, then loadLocked reads the last committed state, where the inode still exists) succeeds, " +
		"then the commit deletes the inode and forgetDeleted marks it gone, so GETATTR on the open file " +
		"returns ENOENT: " + msg)
}
