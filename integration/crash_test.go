package integration

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/swarm"
)

// TestDonorCrash kills a `scatter daemon` with SIGKILL while a client streams PUTs to it,
// damages two of its fragment files the way a torn or rotting disk would, and restarts it
// from the same directory. Every fragment the client sent is then either served with bytes
// that hash to its ID (the client checks; and every PUT the donor acknowledged is served,
// since a process crash loses nothing the kernel already had) or answered NOT_FOUND, never
// wrong bytes: the store drops the damaged files (the truncated one at open, the garbled one
// when its hash fails on GET). Afterwards the donor's STAT counts exactly what it serves.
func TestDonorCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a donor process")
	}
	const (
		// With the 92-byte header of one lease slot (docs/format.md, "Donor store",
		// version 2) a fragment file is exactly 64 KiB, so the store charges 64 KiB for each.
		fragSize = 64<<10 - 92
		charge   = 64 << 10
		header   = 92
		workers  = 8
		killAt   = 400 // acknowledged PUTs before the kill
	)
	dir := filepath.Join(t.TempDir(), "donor")
	d := startDaemon(t, dir, "1G", nil)
	if err := d.waitReady(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	node, nw := newClient(t, d.Addrs)
	p := swarm.PeerID(d.ID.String())
	fragment := func(seed uint64) []byte { // called from the PUT goroutines too: no t.Fatal
		b := make([]byte, fragSize)
		if _, err := io.ReadFull(plainStream(seed, fragSize), b); err != nil {
			panic("BUG: integration: pseudo-random stream ended early: " + err.Error())
		}
		return b
	}

	var (
		mu      sync.Mutex
		sent    = map[chunker.FragmentID]uint64{} // guarded by mu: every fragment sent, with its seed
		acked   []chunker.FragmentID              // guarded by mu: PUTs answered OK
		errPre  error                             // guarded by mu: a PUT that failed before the kill
		next    atomic.Uint64
		killed  atomic.Bool
		reached = make(chan struct{})
		once    sync.Once
		wg      sync.WaitGroup
	)
	ctx := t.Context()
	for range workers {
		wg.Go(func() {
			for !killed.Load() {
				seed := next.Add(1)
				data := fragment(seed)
				id := chunker.FragmentIDOf(data)
				mu.Lock()
				sent[id] = seed
				mu.Unlock()
				if err := nw.Put(ctx, p, id, data, time.Now().Add(time.Hour)); err != nil {
					mu.Lock()
					if !killed.Load() && errPre == nil {
						errPre = err
					}
					mu.Unlock()
					once.Do(func() { close(reached) })
					return
				}
				mu.Lock()
				acked = append(acked, id)
				n := len(acked)
				mu.Unlock()
				if n >= killAt {
					once.Do(func() { close(reached) })
				}
			}
		})
	}
	select {
	case <-reached:
	case <-d.done:
		t.Fatalf("donor exited during the PUTs: %s", d.output())
	}
	mu.Lock() // no PUT is recorded as acknowledged between the count and the kill
	killed.Store(true)
	d.kill()
	before := len(acked)
	mu.Unlock()
	wg.Wait()
	if errPre != nil {
		t.Fatalf("PUT failed before the kill: %v", errPre)
	}
	inFlight := len(sent) - before
	t.Logf("killed the donor with %d PUTs acknowledged and %d in flight", before, inFlight)

	// What the crash left on disk, and two fragment files damaged on purpose.
	files := map[chunker.FragmentID]string{}
	temps := 0
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		if id, err := chunker.ParseFragmentID(e.Name()); err == nil {
			files[id] = path
		} else if strings.Contains(filepath.Dir(path), string(filepath.Separator)+"frag"+string(filepath.Separator)) {
			temps++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < before {
		t.Fatalf("%d fragment files on disk, %d PUTs acknowledged", len(files), before)
	}
	truncated, garbled := acked[0], acked[1]
	if err := os.Truncate(files[truncated], header+fragSize/2); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(files[garbled], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], header+1000); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b[:], header+1000); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("on disk after the kill: %d fragment files, %d other files in the fragment shards (unfinished writes)", len(files), temps)

	if err := os.Remove(filepath.Join(dir, "ready")); err != nil {
		t.Fatal(err)
	}
	d = startDaemon(t, dir, "1G", nil)
	if err := d.waitReady(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if swarm.PeerID(d.ID.String()) != p {
		t.Fatalf("restarted donor is %s, was %s", d.ID, p)
	}
	connect(t, node.Host().Connect, d)

	isAcked := make(map[chunker.FragmentID]bool, len(acked))
	for _, id := range acked {
		isAcked[id] = true
	}
	served, gone := 0, 0
	for id, seed := range sent {
		data, err := nw.Get(ctx, p, id)
		damaged := id == truncated || id == garbled
		switch {
		case err == nil:
			if chunker.FragmentIDOf(data) != id || !bytes.Equal(data, fragment(seed)) {
				t.Fatalf("fragment %s served with %d wrong bytes", id, len(data))
			}
			if damaged {
				t.Fatalf("damaged fragment %s served", id)
			}
			served++
		case errors.Is(err, swarm.ErrNotFound):
			if isAcked[id] && !damaged {
				t.Fatalf("acknowledged fragment %s lost by a process crash", id)
			}
			gone++
		default:
			t.Fatalf("GET %s after the restart: %v", id, err)
		}
	}
	stat, err := nw.Stat(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the restart: %d fragments served, %d not found (%d in flight at the kill, 2 damaged); STAT %+v",
		served, gone, inFlight, stat)
	if stat.Fragments != int64(served) || stat.Used != int64(served)*charge {
		t.Fatalf("STAT counts %d fragments and %d bytes; the donor serves %d fragments, %d bytes charged",
			stat.Fragments, stat.Used, served, int64(served)*charge)
	}
}
