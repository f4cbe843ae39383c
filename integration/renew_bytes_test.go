package integration

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"
	"golang.org/x/sync/errgroup"

	"github.com/scatterfs/scatter/dht"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/upkeep"
)

// tcpBytes is what the kernel counted on one TCP connection, from one end: bytes sent
// and acknowledged, and bytes received (tcp_info via ss(8)): TLS records, yamux frames,
// protocol negotiation and payload, as they crossed the wire.
type tcpBytes struct{ sent, recv int64 }

var ssCounter = regexp.MustCompile(`\b(bytes_acked|bytes_received):(\d+)`)

// socketBytes returns the counters of the TCP socket from local to remote.
func socketBytes(local, remote *net.TCPAddr) (tcpBytes, error) {
	filter := fmt.Sprintf("( sport = :%d and dport = :%d )", local.Port, remote.Port)
	out, err := exec.Command("ss", "-tinH", "state", "established", filter).Output()
	if err != nil {
		return tcpBytes{}, fmt.Errorf("ss: %w", err)
	}
	var b tcpBytes
	for _, m := range ssCounter.FindAllStringSubmatch(string(out), -1) {
		n, _ := strconv.ParseInt(m[2], 10, 64)
		if m[1] == "bytes_acked" {
			b.sent += n
		} else {
			b.recv += n
		}
	}
	return b, nil
}

// connBytes returns, per donor, the counters of every connection of the owner node to it,
// as the owner's end and as the donor's end see them.
func connBytes(tb testing.TB, owner *dht.Node, donors []peer.ID) (own, theirs map[peer.ID]tcpBytes) {
	tb.Helper()
	own, theirs = map[peer.ID]tcpBytes{}, map[peer.ID]tcpBytes{}
	for _, p := range donors {
		for _, c := range owner.Host().Network().ConnsToPeer(p) {
			la, err1 := manet.ToNetAddr(c.LocalMultiaddr())
			ra, err2 := manet.ToNetAddr(c.RemoteMultiaddr())
			l, ok1 := la.(*net.TCPAddr)
			r, ok2 := ra.(*net.TCPAddr)
			if err1 != nil || err2 != nil || !ok1 || !ok2 {
				tb.Fatalf("connection to %s is not TCP: %s -> %s", p, c.LocalMultiaddr(), c.RemoteMultiaddr())
			}
			o, err := socketBytes(l, r)
			if err != nil {
				tb.Fatal(err)
			}
			d, err := socketBytes(r, l)
			if err != nil {
				tb.Fatal(err)
			}
			own[p] = tcpBytes{own[p].sent + o.sent, own[p].recv + o.recv}
			theirs[p] = tcpBytes{theirs[p].sent + d.sent, theirs[p].recv + d.recv}
		}
	}
	return own, theirs
}

// TestRenewBytes measures the bytes a lease renewal round moves between the owner and
// each of 12 donor processes over real TCP (TLS, yamux), for drives of growing numbers of
// chunks coded 8+4, so that every donor holds one fragment of every chunk: the kernel's
// per-connection counters before and after one upkeep.Renew, from both ends. The figures
// are logged (go test -v) and recorded in docs/benchmarks.md. SCATTER_RENEW_CHUNKS sets
// the drive sizes (comma-separated, increasing; default 100,300; the figures in docs/benchmarks.md used 100,1000,3000).
func TestRenewBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts donor processes")
	}
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("skipped: ss (iproute2) is not installed, so no TCP counters")
	}
	sizes := []int{100, 300}
	if s := os.Getenv("SCATTER_RENEW_CHUNKS"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n <= 0 || len(sizes) > 0 && n <= sizes[len(sizes)-1] {
				t.Fatalf("SCATTER_RENEW_CHUNKS=%q: want increasing positive counts", s)
			}
			sizes = append(sizes, n)
		}
	}
	const donors = 12
	ds := startDaemons(t, donors, "2G")
	node, nw := newClient(t, ds[0].Addrs)
	waitCandidates(t, nw, donors)
	var ids []peer.ID
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	st, err := pipeline.NewStore(nw, testKeys(), pipeline.Config{K: 8, M: 4})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	u := upkeep.New(nw, upkeep.Config{})
	var refs []pipeline.Ref
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range sizes {
		// Small chunks: the round's cost depends on the number of fragments, not their size.
		plains := make([][]byte, n-len(refs))
		for i := range plains {
			plains[i] = make([]byte, 1024)
			for j := range plains[i] {
				plains[i][j] = byte(r.Uint32())
			}
		}
		added := make([]pipeline.Ref, len(plains))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(8)
		for i, p := range plains {
			g.Go(func() (err error) {
				added[i], err = st.Put(gctx, p)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, added...)
		perDonor := map[swarm.PeerID]int{}
		for _, ref := range refs {
			for _, f := range ref.Fragments {
				perDonor[f.Peer]++
			}
		}
		if len(perDonor) != donors {
			t.Fatalf("fragments on %d peers, want all %d donors", len(perDonor), donors)
		}

		for round := 1; round <= 2; round++ {
			own0, their0 := connBytes(t, node, ids)
			start := time.Now()
			rst, err := u.Renew(ctx, refs, start.Add(upkeep.DefaultLease), nil)
			took := time.Since(start)
			if err != nil || len(rst.Failures) != 0 || rst.Requests != donors || rst.Renewed != n*donors {
				t.Fatalf("renew of %d chunks: %+v %v", n, rst, err)
			}
			own1, their1 := connBytes(t, node, ids)
			var ownSent, ownRecv int64
			var dSent, dRecv []int64
			for _, p := range ids {
				ownSent += own1[p].sent - own0[p].sent
				ownRecv += own1[p].recv - own0[p].recv
				dSent = append(dSent, their1[p].sent-their0[p].sent)
				dRecv = append(dRecv, their1[p].recv-their0[p].recv)
			}
			payload := int64(2 + 32 + 8 + 8 + 4 + 32*perDonor[swarm.PeerID(ids[0].String())] + 64)
			t.Logf("renew %d chunks (%d fragments per donor), round %d, %v: owner sent %d B, received %d B; "+
				"each donor received %d..%d B, sent %d..%d B (RENEW request body %d B)",
				n, perDonor[swarm.PeerID(ids[0].String())], round, took.Round(time.Millisecond), ownSent, ownRecv,
				slices.Min(dRecv), slices.Max(dRecv), slices.Min(dSent), slices.Max(dSent), payload)
			if ownSent < int64(donors)*payload {
				t.Fatalf("owner sent %d B, less than the %d RENEW bodies' %d B: the counters miss traffic", ownSent, donors, int64(donors)*payload)
			}
		}
	}
}
