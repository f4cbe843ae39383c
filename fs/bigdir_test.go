package fs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scatterfs/scatter/volume"
)

// TestDir100k lists a directory of 100 000 entries through the kernel (ls -f) and
// stats one name in it. Creating the entries takes a while (one commit per entry, shared
// by concurrent creators), so it runs only with SCATTER_BIGDIR=1.
func TestDir100k(t *testing.T) {
	if os.Getenv("SCATTER_BIGDIR") == "" {
		t.Skip("set SCATTER_BIGDIR=1 to run (slow)")
	}
	mnt, v, _ := mount(t, volume.Config{})
	d, err := v.Mkdir(ctx, volume.RootIno, "d", 0o755, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	const n, workers = 100000, 32
	st := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if _, err := v.Mknod(ctx, d.Ino, fmt.Sprintf("entry-%06d", i), syscall.S_IFREG|0o644, 0, 0, 0); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("created %d entries in %v (%d concurrent creators)", n, time.Since(st), workers)
	st = time.Now()
	out, err := exec.Command("ls", "-f", filepath.Join(mnt, "d")).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(out), "\n"); got != n+2 {
		t.Fatalf("ls -f listed %d names, want %d", got, n+2)
	}
	t.Logf("ls -f of %d entries: %v", n, time.Since(st))
	st = time.Now()
	if _, err := os.Stat(filepath.Join(mnt, "d", "entry-054321")); err != nil {
		t.Fatal(err)
	}
	t.Logf("stat of one name: %v", time.Since(st))
}
