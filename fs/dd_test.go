package fs

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/scatterfs/scatter/volume"
)

// TestDD2GiB writes 2 GiB with dd(1) through 64 MiB of staging and checks the cap held
// (sampled every millisecond), then reads the file back cold. It takes tens of seconds
// and 2 GiB of memory for the in-memory store, so it runs only with SCATTER_DD=1.
func TestDD2GiB(t *testing.T) {
	if os.Getenv("SCATTER_DD") == "" {
		t.Skip("set SCATTER_DD=1 to run (slow)")
	}
	const limit = 64 << 20
	mnt, v, _ := mount(t, volume.Config{StagingMax: limit})
	var peak int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				peak = max(peak, v.StagedBytes())
			}
		}
	}()
	st := time.Now()
	out, err := exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(mnt, "big"), "bs=1M", "count=2048", "conv=fsync").CombinedOutput()
	el := time.Since(st)
	close(stop)
	wg.Wait()
	t.Logf("%s\nelapsed %v, %.0f MB/s, peak staged %d MiB (cap %d MiB)", out, el, 2048*1.048576/el.Seconds(), peak>>20, limit>>20)
	if err != nil {
		t.Fatal(err)
	}
	if peak > limit {
		t.Errorf("staging peaked at %d, above the cap %d", peak, limit)
	}
	st = time.Now()
	out, err = exec.Command("sh", "-c", "echo 3 > /proc/sys/vm/drop_caches; dd if="+filepath.Join(mnt, "big")+" of=/dev/null bs=1M").CombinedOutput()
	t.Logf("read: %s %v", out, time.Since(st))
	if err != nil {
		t.Fatal(err)
	}
}
