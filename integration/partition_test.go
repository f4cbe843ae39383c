package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
)

// TestPartition puts two donors in network namespaces of their own, each reached from the
// root namespace through a veth pair with addresses of a private /30 that exists only
// there, next to six donors on loopback. Data placed 4+2 over all eight is read back while
// one namespace is cut off under a GET in flight to its donor: a blackhole route inside it
// silently drops everything it sends to the client, as when a phone walks out of Wi-Fi (no
// reset, no error: requests just get no answer). The read goes on to other holders and
// every byte is right. Reads stay right with that namespace silent, and again once the
// second namespace's link is taken down and its veth deleted.
//
// It needs root and `ip netns`; elsewhere it is skipped saying so.
func TestPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("starts donor processes in network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: creating network namespaces and veth pairs (ip netns) needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: the ip command (iproute2) is not installed, so no network namespaces")
	}
	const (
		seed = 21
		size = 24 << 20
	)
	begin := time.Now()
	octet, err := freeOctet()
	if err != nil {
		t.Skipf("skipped: %v", err)
	}
	var nss []*netns
	for i := range 2 {
		ns, err := newNetns(t, i, octet)
		if err != nil {
			t.Skipf("skipped: cannot make a network namespace with a veth link here: %v", err)
		}
		nss = append(nss, ns)
	}

	ds := startDaemons(t, 6, "1G")
	boot := slices.Clone(ds[0].Addrs)
	root := t.TempDir()
	var inNS []*daemon
	for i, ns := range nss {
		d := startDaemonAt(t, filepath.Join(root, fmt.Sprintf("ns%d", i)), "1G", "/ip4/"+ns.addr+"/tcp/0", nil,
			"ip", "netns", "exec", ns.name)
		inNS = append(inNS, d)
	}
	for _, d := range inNS {
		if err := d.waitReady(time.Now().Add(60 * time.Second)); err != nil {
			t.Fatal(err)
		}
		boot = append(boot, d.Addrs...)
	}
	_, nw := newClient(t, boot)
	waitCandidates(t, nw, len(ds)+len(inNS))

	st, err := pipeline.NewStore(&countingNet{Network: nw, spread: true}, testKeys(), pipeline.Config{K: 4, M: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	refs, err := putStream(ctx, st, plainStream(seed, size), 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkDistinct(refs); err != nil {
		t.Fatal(err)
	}
	held := holdersOf(refs)
	victim, other := swarm.PeerID(inNS[0].ID.String()), swarm.PeerID(inNS[1].ID.String())
	if held[other] > held[victim] { // cut off the namespace donor with more fragments
		nss[0], nss[1] = nss[1], nss[0]
		victim, other = other, victim
	}
	if held[victim] < 2 || held[other] == 0 {
		t.Fatalf("the namespace donors hold %d and %d fragments: the cut would prove little", held[victim], held[other])
	}
	t.Logf("%d chunks placed; the namespace donors at %s and %s hold %d and %d fragments (%v)",
		len(refs), nss[0].addr, nss[1].addr, held[victim], held[other], time.Since(begin).Round(time.Millisecond))

	// Ask the namespace donors first (the loopback ones are avoided), and hold the second
	// GET to the victim until its link is down: that GET, and every later one to it, meets
	// a dead link and must be bypassed.
	var loop []swarm.PeerID
	for _, d := range ds {
		loop = append(loop, swarm.PeerID(d.ID.String()))
	}
	trip := &tripNet{Network: nw, peer: victim, at: 2, tripped: make(chan struct{}), resume: make(chan struct{})}
	rst, err := pipeline.NewStore(trip, testKeys(), pipeline.Config{K: 4, M: 2,
		Fetch: swarm.FetchOptions{Avoid: loop, Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		readErr error
	)
	readDone := make(chan struct{})
	wg.Go(func() {
		defer close(readDone)
		_, readErr = readBack(ctx, rst, refs, seed, size, 2)
	})
	select {
	case <-trip.tripped:
	case <-readDone:
		t.Fatalf("the read ended before its second GET to the victim (%v)", readErr)
	}
	start := time.Now()
	if err := ipCmd("-n", nss[0].name, "route", "add", "blackhole", nss[0].hostAddr+"/32"); err != nil {
		close(trip.resume)
		wg.Wait()
		t.Fatal(err)
	}
	close(trip.resume)
	wg.Wait()
	if readErr != nil {
		t.Fatalf("read with the link cut mid-read: %v", readErr)
	}
	okBefore, failed, silent := trip.ok.Load(), trip.failed.Load(), trip.silent.Load()
	t.Logf("read with %s cut off mid-read: every byte right, %v after the cut; the victim answered %d GETs before, %d GETs to it failed after (%d of them unanswered until cancelled)",
		nss[0].name, time.Since(start).Round(time.Millisecond), okBefore, failed, silent)
	if silent == 0 {
		t.Fatal("no GET met the silent cut: the bypass is not shown")
	}

	start = time.Now()
	if _, err := readBack(ctx, rst, refs, seed, size, 2); err != nil {
		t.Fatalf("read with %s cut off: %v", nss[0].name, err)
	}
	if n := trip.ok.Load(); n != okBefore {
		t.Fatalf("the victim answered %d GETs while cut off", n-okBefore)
	}
	t.Logf("read with %s cut off: every byte right in %v", nss[0].name, time.Since(start).Round(time.Millisecond))

	if err := ipCmd("link", "set", nss[1].host, "down"); err != nil {
		t.Fatal(err)
	}
	if err := ipCmd("link", "del", nss[1].host); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := readBack(ctx, rst, refs, seed, size, 2); err != nil {
		t.Fatalf("read with both namespaces cut off: %v", err)
	}
	t.Logf("read with both namespaces cut off: every byte right in %v; whole test %v",
		time.Since(start).Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
}

// netns is a network namespace joined to the root namespace by a veth pair.
type netns struct {
	name     string // namespace
	host     string // veth end in the root namespace
	hostAddr string // its address
	addr     string // address of the end inside the namespace
}

// newNetns creates namespace i of this test process: a veth pair with 10.213.octet.(4i+1)
// on the root namespace's end and 10.213.octet.(4i+2) inside, a /30 of their own. Names
// carry the process ID, so concurrent runs do not clash; cleanups delete both.
func newNetns(t *testing.T, i, octet int) (*netns, error) {
	pid := os.Getpid()
	ns := &netns{
		name:     fmt.Sprintf("scatter-%d-%d", pid, i),
		host:     fmt.Sprintf("sc%dh%d", pid, i), // interface names have at most 15 bytes
		hostAddr: fmt.Sprintf("10.213.%d.%d", octet, 4*i+1),
		addr:     fmt.Sprintf("10.213.%d.%d", octet, 4*i+2),
	}
	peerIf := fmt.Sprintf("sc%dn%d", pid, i)
	if err := ipCmd("netns", "add", ns.name); err != nil {
		return nil, err
	}
	// Registered before any daemon starts, so it runs after their kills.
	t.Cleanup(func() {
		_ = ipCmd("link", "del", ns.host) // gone already if the test deleted it
		if err := ipCmd("netns", "del", ns.name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	steps := [][]string{
		{"link", "add", ns.host, "type", "veth", "peer", "name", peerIf},
		{"link", "set", peerIf, "netns", ns.name},
		{"addr", "add", ns.hostAddr + "/30", "dev", ns.host},
		{"link", "set", ns.host, "up"},
		{"-n", ns.name, "addr", "add", ns.addr + "/30", "dev", peerIf},
		{"-n", ns.name, "link", "set", peerIf, "up"},
		{"-n", ns.name, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return nil, err
		}
	}
	return ns, nil
}

// ipCmd runs ip with args.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// freeOctet picks x such that no address or route of the root namespace is in
// 10.213.x.0/24, starting from one derived from the process ID.
func freeOctet() (int, error) {
	var seen strings.Builder
	for _, args := range [][]string{{"-o", "-4", "addr", "show"}, {"-4", "route", "show", "table", "all"}} {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		seen.Write(out)
	}
	for j := range 256 {
		x := (os.Getpid() + j) % 256
		if !strings.Contains(seen.String(), fmt.Sprintf("10.213.%d.", x)) {
			return x, nil
		}
	}
	return 0, fmt.Errorf("every 10.213.x.0/24 is in use")
}

// tripNet counts GETs to one peer; the at-th waits for resume before it is sent, after
// closing tripped.
type tripNet struct {
	swarm.Network
	peer            swarm.PeerID
	at              int64
	tripped, resume chan struct{}
	n, ok, failed   atomic.Int64
	silent          atomic.Int64 // failed GETs that got no answer: cancelled or timed out
}

func (tn *tripNet) Get(ctx context.Context, p swarm.PeerID, id chunker.FragmentID) ([]byte, error) {
	if p != tn.peer {
		return tn.Network.Get(ctx, p, id)
	}
	if tn.n.Add(1) == tn.at {
		close(tn.tripped)
		select {
		case <-tn.resume:
		case <-ctx.Done():
			tn.failed.Add(1)
			return nil, ctx.Err()
		}
	}
	b, err := tn.Network.Get(ctx, p, id)
	if err != nil {
		tn.failed.Add(1)
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			tn.silent.Add(1)
		}
	} else {
		tn.ok.Add(1)
	}
	return b, err
}
