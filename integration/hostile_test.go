package integration

import (
	"bytes"
	"encoding/binary"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/scatterfs/scatter/dht"
	"github.com/scatterfs/scatter/dht/store"
	"github.com/scatterfs/scatter/swarm"
)

// behaviour is what a hostile donor does with GET requests once it turns hostile.
type behaviour int32

const (
	honest  behaviour = iota
	corrupt           // answers with the fragment, one byte flipped
	stall             // reads the request and never answers
	deny              // answers DENIED
	reset             // resets the stream
)

func (b behaviour) String() string {
	return [...]string{"honest", "corrupt", "stall", "deny", "reset"}[b]
}

// Bytes of the fragment protocol (docs/format.md, "Fragment protocol") that a hostile donor
// needs to recognise a GET and to refuse it. They are spelled out here, not imported,
// because the test must speak the protocol as written in the spec.
const (
	wireVersion  = 1
	opGet        = 2
	statusDenied = 4
)

// hostileDonor is a real donor on loopback TCP in this process: a server-mode DHT node
// and the real fragment server over a real store, behind a front that, once switched on,
// misbehaves on every GET in its own way. It stores what it is given honestly, so it ends
// up holding fragments; reads are where it attacks.
type hostileDonor struct {
	node   *dht.Node
	behave behaviour
	on     atomic.Bool // misbehave now
	serve  network.StreamHandler
	gets   atomic.Int64  // GETs met with the hostile behaviour
	stop   chan struct{} // closed at cleanup: stalled handlers give up
}

// startHostile starts a donor with quota bytes that will behave as b once switched on.
func startHostile(tb testing.TB, b behaviour, quota int64, boot []string) *hostileDonor {
	tb.Helper()
	dir := tb.TempDir()
	// Store.Quota 0: the node serves the DHT only; the fragment protocol is served below,
	// by a dht.Server the test can stand in front of.
	node, err := dht.New(tb.Context(), dht.Config{
		DataDir: filepath.Join(dir, "node"), ListenAddrs: tcpLoopback, Bootstrap: boot,
		Mode: dht.ModeServer, Logger: quiet,
	})
	if err != nil {
		tb.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "fragments"), store.Config{Quota: quota})
	if err != nil {
		tb.Fatal(err)
	}
	d := &hostileDonor{node: node, behave: b, stop: make(chan struct{})}
	srv, err := dht.NewServer(&captureHost{Host: node.Host(), d: d}, st, dht.ServerConfig{Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	node.Host().SetStreamHandler(dht.FragmentProtocol, d.handle)
	tb.Cleanup(func() {
		close(d.stop)
		if err := srv.Close(); err != nil {
			tb.Errorf("hostile %s: close server: %v", b, err)
		}
		if err := node.Close(); err != nil {
			tb.Errorf("hostile %s: close node: %v", b, err)
		}
		if err := st.Close(); err != nil {
			tb.Errorf("hostile %s: close store: %v", b, err)
		}
	})
	return d
}

func (d *hostileDonor) peer() swarm.PeerID { return swarm.PeerID(d.node.ID().String()) }

// captureHost hands the real server's stream handler to the hostile front instead of
// registering it.
type captureHost struct {
	host.Host
	d *hostileDonor
}

func (h *captureHost) SetStreamHandler(p protocol.ID, handler network.StreamHandler) {
	if p != dht.FragmentProtocol {
		panic("BUG: integration: unexpected protocol " + string(p))
	}
	h.d.serve = handler
}

// handle is the front: requests other than GET, and everything while honest, go to the
// real server unchanged.
func (d *hostileDonor) handle(s network.Stream) {
	if !d.on.Load() {
		d.serve(s)
		return
	}
	var head [2 + 32]byte
	if _, err := io.ReadFull(s, head[:2]); err != nil {
		s.Reset()
		return
	}
	if head[0] != wireVersion || head[1] != opGet {
		d.serve(&prefixStream{Stream: s, r: io.MultiReader(bytes.NewReader(head[:2]), s)})
		return
	}
	d.gets.Add(1)
	switch d.behave {
	case corrupt:
		d.serve(&corruptStream{Stream: s, r: io.MultiReader(bytes.NewReader(head[:2]), s)})
	case stall:
		_, _ = io.ReadFull(s, head[2:])
		<-d.stop // never answer; the client must give up on us
		s.Reset()
	case deny:
		_, _ = io.ReadFull(s, head[2:])
		msg := "not today"
		resp := binary.BigEndian.AppendUint16([]byte{statusDenied}, uint16(len(msg)))
		_, _ = s.Write(append(resp, msg...))
		s.Close()
	case reset:
		s.Reset()
	default:
		panic("BUG: integration: hostile donor with behaviour " + d.behave.String())
	}
}

// prefixStream is a stream whose first bytes, already read by the front, are read again.
type prefixStream struct {
	network.Stream
	r io.Reader
}

func (s *prefixStream) Read(b []byte) (int, error) { return s.r.Read(b) }

// corruptStream flips one bit of the first payload byte of a successful GET answer
// (after the status byte and the 4-byte length). The server writes from one goroutine.
type corruptStream struct {
	network.Stream
	r       io.Reader
	written int
	ok      bool // the answer's status is OK
	flipped bool
}

func (s *corruptStream) Read(b []byte) (int, error) { return s.r.Read(b) }

func (s *corruptStream) Write(b []byte) (int, error) {
	const head = 1 + 4
	if s.written == 0 && len(b) > 0 {
		s.ok = b[0] == 0
	}
	if i := max(head-s.written, 0); s.ok && !s.flipped && i < len(b) {
		b = bytes.Clone(b)
		b[i] ^= 0x80
		s.flipped = true
	}
	s.written += len(b)
	return s.Stream.Write(b)
}
