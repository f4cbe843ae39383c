package mount_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/scatterfs/scatter/control"
	"github.com/scatterfs/scatter/internal/testdaemon"
)

// startDonor runs `scatter daemon` over dir on 127.0.0.1 (a restart reuses the identity
// and fragment store found there, on a new port) and waits until it serves.
func startDonor(t *testing.T, dir string, bootstrap []string) *testdaemon.Daemon {
	t.Helper()
	p := testdaemon.Start(t, scatterBin, dir, "1G", "/ip4/127.0.0.1/tcp/0", bootstrap)
	if err := p.WaitReady(time.Now().Add(readyTimeout)); err != nil {
		t.Fatal(err)
	}
	return p
}

// churnSize is the bytes TestMountChurn writes: SCATTER_CHURN_MIB MiB, default the
// issue's 1 GiB.
func churnSize(t *testing.T) int64 {
	s := os.Getenv("SCATTER_CHURN_MIB")
	if s == "" {
		return 1 << 30
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		t.Fatalf("SCATTER_CHURN_MIB=%q: want a positive number of MiB", s)
	}
	return n << 20
}

// status returns the running mount's status without the health count: the donors it
// knows and what each one stores (their STAT answers).
func (d *drive) status() control.Status {
	d.t.Helper()
	var st control.Status
	if err := json.Unmarshal([]byte(d.scatter("status", "-json", "-health=false")), &st); err != nil {
		d.t.Fatalf("scatter status -json: %v", err)
	}
	return st
}

// check runs `scatter check -json` with extra flags; it fails the test when chunks stay
// incomplete (the command's exit status 1).
func (d *drive) check(flags ...string) control.CheckResult {
	d.t.Helper()
	var res control.CheckResult
	if err := json.Unmarshal([]byte(d.scatter(append([]string{"check", "-json"}, flags...)...)), &res); err != nil {
		d.t.Fatalf("scatter check -json: %v", err)
	}
	return res
}

// TestMountChurn is the churn must-show through the mount: 20 donor processes, k+m = 8+4,
// a file written through the mount. Stop 4 random donors holding fragments: every byte
// reads back from the donors (cold: the chunk cache emptied); `scatter check -repair`
// restores every chunk to 12 fragments on live donors; stop 4 more: every byte still
// reads. The first 4 restarted on their data dirs keep their fragments and serve them.
func TestMountChurn(t *testing.T) {
	needFUSE(t)
	if testing.Short() {
		t.Skip("starts 20 donor processes and writes hundreds of MiB")
	}
	size := churnSize(t)
	const seed = 2077
	root := t.TempDir()
	donors := []*testdaemon.Daemon{startDonor(t, filepath.Join(root, "d00"), nil)}
	for i := 1; i < 20; i++ {
		donors = append(donors, startDonor(t, filepath.Join(root, fmt.Sprintf("d%02d", i)), donors[0].Addrs))
	}
	var boot []string
	for _, p := range donors[:3] {
		boot = append(boot, "-bootstrap", p.Addrs[0])
	}
	// No background check: the repairs the test counts are the ones it asks for.
	d := newDrive(t, append(boot, "-k", "8", "-m", "4", "-check-every=-1s")...)
	d.start()

	name := d.path("churn.bin")
	start := time.Now()
	if err := writeFile(name, seed, size, nil); err != nil {
		t.Fatal(err)
	}
	d.sync()
	took := time.Since(start)
	t.Logf("wrote and synced %d MiB through the mount in %v: %.1f MB/s", size>>20, took.Round(time.Millisecond), float64(size)/took.Seconds()/1e6)

	// coldRead remounts with an emptied chunk cache, so every chunk comes from the donors.
	coldRead := func(what string) {
		t.Helper()
		d.stop()
		emptyDir(t, d.cacheDir())
		d.start()
		start := time.Now()
		if err := checkFile(name, seed, size); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		took := time.Since(start)
		t.Logf("%s: read %d MiB cold in %v: %.1f MB/s", what, size>>20, took.Round(time.Millisecond), float64(size)/took.Seconds()/1e6)
	}

	// What each donor stores, by peer ID, as the mount's STAT requests see it.
	held := map[string]control.Peer{}
	for _, p := range d.status().Peers {
		held[p.ID] = p
	}
	var holders []int
	for i, p := range donors[3:] { // not the mount's bootstrap donors: each remount joins through them
		if held[p.ID.String()].Fragments > 0 {
			holders = append(holders, 3+i)
		}
	}
	if len(holders) < 8 {
		t.Fatalf("only %d of the 17 donors that may stop hold fragments: %+v", len(holders), held)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	r.Shuffle(len(holders), func(i, j int) { holders[i], holders[j] = holders[j], holders[i] })
	first, second := holders[:4], holders[4:8]
	stopDonors := func(idx []int) {
		for _, i := range idx {
			donors[i].Kill()
		}
	}

	stopDonors(first)
	coldRead("4 donors stopped")

	start = time.Now()
	res := d.check("-repair")
	took = time.Since(start)
	if res.Repair == nil || res.Repair.Repaired == 0 || res.Repair.Partial != 0 || res.Repair.Failed != 0 {
		t.Fatalf("check -repair with 4 donors stopped: %+v, repair %+v", res, res.Repair)
	}
	t.Logf("check -repair: %d chunks, %d repaired (%d fragments, %.1f MiB of chunks) in %v",
		res.Chunks, res.Repair.Repaired, res.Repair.Rebuilt, float64(res.Repair.Bytes)/(1<<20), took.Round(time.Millisecond))
	// Every chunk has all 12 fragments on holders that answer: a fragment still recorded on
	// a stopped donor would be unanswered.
	after := d.check()
	if after.Complete != after.Chunks || after.Found != after.Fragments || after.Fragments != 12*after.Chunks ||
		after.Unanswered != 0 || len(after.Stalled) != 0 {
		t.Fatalf("check after repair: %+v", after)
	}

	stopDonors(second)
	coldRead("8 donors stopped")

	// The first 4 come back on their data dirs (new ports): they kept their fragments and
	// answer for them again. The mount offers a donor that failed its dials again once the
	// network's unreachable backoff (dht.NetworkConfig.Backoff, 30 s) has passed.
	for _, i := range first {
		donors[i] = startDonor(t, donors[i].Dir, donors[0].Addrs)
	}
	for _, i := range first {
		id, want := donors[i].ID.String(), held[donors[i].ID.String()]
		took := waitShown(t, "restarted donor "+id, func() error {
			for _, p := range d.status().Peers {
				if p.ID == id {
					if p.Fragments < want.Fragments || p.Used < want.Used {
						return fmt.Errorf("stores %d fragments (%d bytes), held %d (%d bytes) before it stopped",
							p.Fragments, p.Used, want.Fragments, want.Used)
					}
					return nil
				}
			}
			return fmt.Errorf("not among the mount's peers")
		})
		t.Logf("restarted donor %s: the mount saw its %d fragments again after %v", id, want.Fragments, took.Round(time.Millisecond))
	}

	// With the second 4 still stopped, a repair onto the swarm that has the first 4 back
	// restores every chunk to 12 fragments again; the restarted donors are candidates for
	// the rebuilt fragments like any other live donor.
	start = time.Now()
	res = d.check("-repair")
	took = time.Since(start)
	if res.Repair == nil || res.Repair.Partial != 0 || res.Repair.Failed != 0 {
		t.Fatalf("check -repair with the first 4 back and 4 donors stopped: %+v, repair %+v", res, res.Repair)
	}
	if after := d.check(); after.Complete != after.Chunks || after.Unanswered != 0 {
		t.Fatalf("check after the second repair: %+v", after)
	}
	var before, now int64
	for _, p := range d.status().Peers {
		for _, i := range first {
			if p.ID == donors[i].ID.String() {
				before, now = before+held[p.ID].Fragments, now+p.Fragments
			}
		}
	}
	t.Logf("check -repair with 4 donors stopped and 4 restarted: %d repaired (%d fragments) in %v; the restarted donors hold %d fragments, %d before",
		res.Repair.Repaired, res.Repair.Rebuilt, took.Round(time.Millisecond), now, before)
}
