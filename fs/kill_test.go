package fs

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/scatterfs/scatter/volume"
	"github.com/scatterfs/scatter/volume/memchunks"
)

// TestKill9Child is the mount process of TestKill9: it serves a volume whose uploads
// all fail, so closed data exists only in staging, the journal and inline records.
func TestKill9Child(t *testing.T) {
	dir, mnt := os.Getenv("SCATTER_KILL9_DIR"), os.Getenv("SCATTER_KILL9_MNT")
	if dir == "" {
		t.Skip("run by TestKill9")
	}
	store := memchunks.New(64<<10, 1<<40)
	store.SetFailPut(true)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	v, err := volume.Open(volume.Config{Dir: dir, Logger: log}, store)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Mount(mnt, v, Options{Logger: log}); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	select {} // until SIGKILL
}

// TestKill9: files closed through the mount survive kill -9 of the mounting process:
// a new process replays the journal and uploads them.
func TestKill9(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		t.Skip("FUSE tests need root and /dev/fuse")
	}
	dir, mnt := t.TempDir(), t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^TestKill9Child$", "-test.v")
	child.Env = append(os.Environ(), "SCATTER_KILL9_DIR="+dir, "SCATTER_KILL9_MNT="+mnt)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			child.Process.Kill()
			child.Wait()
		}
		syscall.Unmount(mnt, syscall.MNT_DETACH)
	})
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "ready" {
	}
	if sc.Err() != nil {
		t.Fatal(sc.Err())
	}
	go io.Copy(io.Discard, out)

	want := map[string][]byte{}
	for i := range 20 {
		want[fmt.Sprintf("small-%d", i)] = []byte(fmt.Sprintf("small file %d", i))
	}
	big := make([]byte, 5<<20+123)
	for i := range big {
		big[i] = byte(i * 13)
	}
	want["big"] = big
	for name, data := range want {
		if err := os.WriteFile(filepath.Join(mnt, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	killed = true
	if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
		t.Fatalf("detach the dead mount: %v", err)
	}

	store := memchunks.New(64<<10, 1<<40)
	v, err := volume.Open(volume.Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, store)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for name, data := range want {
		a, err := v.Lookup(ctx, volume.RootIno, name)
		if err != nil {
			t.Fatalf("%s after kill -9: %v", name, err)
		}
		h, err := v.Open(ctx, a.Ino, syscall.O_RDWR)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Fsync(ctx); err != nil { // the replayed upload completes
			t.Fatal(err)
		}
		got := make([]byte, len(data)+10)
		n, err := h.Read(ctx, got, 0)
		h.Release()
		if err != nil || !bytes.Equal(got[:n], data) {
			t.Fatalf("%s after kill -9: %d bytes, %v", name, n, err)
		}
	}
	if _, puts, _ := store.Stats(); puts == 0 {
		t.Error("nothing uploaded after the restart")
	}
}
