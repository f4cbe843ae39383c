package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fake answers with fixed figures; its Sync reports steps then waits for release.
type fake struct {
	steps   int
	release chan struct{} // Sync returns when closed; nil returns at once
	syncErr error
	ended   chan error    // receives Sync's ctx error when it returns
	started chan struct{} // receives when Sync starts waiting
}

func (f *fake) Status(ctx context.Context, health bool) (*Status, error) {
	st := &Status{Version: "test", K: 8, M: 4, Peers: []Peer{{ID: "p1", LatencyMS: 1.5, Quota: 100, Used: 10}},
		Follow: &Follow{Share: true, Root: "r", Seq: 7, Checked: time.Unix(1700000000, 5).UTC(), Swaps: 2, IntervalSeconds: 5}}
	if health {
		st.Health = &Health{Chunks: 3, Complete: 2, Degraded: 1}
	}
	return st, nil
}

func (f *fake) Sync(ctx context.Context, progress func(Progress)) error {
	for i := range f.steps {
		progress(Progress{Bytes: int64(f.steps - i), Files: 1})
	}
	var err error
	if f.started != nil {
		f.started <- struct{}{}
	}
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if f.ended != nil {
		f.ended <- err
	}
	if err != nil {
		return err
	}
	return f.syncErr
}

func (f *fake) Check(ctx context.Context, repair, verify bool, progress func(Step)) (*CheckResult, error) {
	for i := range f.steps {
		progress(Step{Phase: "check", Done: i + 1, Total: f.steps})
	}
	res := &CheckResult{Chunks: 10, Complete: 9, Degraded: 1, Fragments: 120, Found: 119,
		Denied: 1, Unanswered: 1, Deniers: []string{"peerD"}, Stalled: []string{"peerS"}}
	if verify {
		res.Corrupt, res.Unaudited, res.Liars = 1, 2, []string{"peerL"}
	}
	if repair {
		progress(Step{Phase: "repair", Done: 1, Total: 1, Bytes: 100})
		res.Repair = &RepairResult{Chunks: 1, Repaired: 1, Rebuilt: 1, Bytes: 100, Suspects: []string{"peerR"}}
	}
	return res, nil
}

func listen(t *testing.T, h Handler) (*Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.sock")
	s, err := Listen(path, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestStatusAndSync(t *testing.T) {
	f := &fake{steps: 3}
	_, path := listen(t, f)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket: %v, mode %v; want a socket with mode 0600", err, fi.Mode())
	}
	c := NewClient(path)
	ctx := context.Background()
	st, err := c.Status(ctx, false)
	if err != nil || st.K != 8 || len(st.Peers) != 1 || st.Peers[0].LatencyMS != 1.5 || st.Health != nil {
		t.Fatalf("status: %+v, %v", st, err)
	}
	if want := (Follow{Share: true, Root: "r", Seq: 7, Checked: time.Unix(1700000000, 5).UTC(), Swaps: 2, IntervalSeconds: 5}); st.Follow == nil || *st.Follow != want {
		t.Fatalf("status follow: %+v, want %+v", st.Follow, want)
	}
	if st, err := c.Status(ctx, true); err != nil || st.Health == nil || st.Health.Degraded != 1 {
		t.Fatalf("status with health: %+v, %v", st, err)
	}
	var seen []int64
	if err := c.Sync(ctx, func(p Progress) { seen = append(seen, p.Bytes) }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(seen, []int64{3, 2, 1}) {
		t.Fatalf("progress %v, want [3 2 1]", seen)
	}
	f.syncErr = errors.New("peers unreachable")
	if err := c.Sync(ctx, nil); err == nil || err.Error() != "peers unreachable" {
		t.Fatalf("sync error: %v", err)
	}
}

func TestCheck(t *testing.T) {
	_, path := listen(t, &fake{steps: 2})
	c := NewClient(path)
	var steps []Step
	res, err := c.Check(context.Background(), true, true, func(s Step) { steps = append(steps, s) })
	if err != nil || res.Chunks != 10 || res.Corrupt != 1 || res.Repair == nil || res.Repair.Rebuilt != 1 {
		t.Fatalf("check: %+v, %v", res, err)
	}
	// The failing holders cross the socket: a user sees which donors to distrust.
	if res.Denied != 1 || res.Unaudited != 2 || !reflect.DeepEqual(res.Deniers, []string{"peerD"}) ||
		!reflect.DeepEqual(res.Stalled, []string{"peerS"}) || !reflect.DeepEqual(res.Liars, []string{"peerL"}) ||
		!reflect.DeepEqual(res.Repair.Suspects, []string{"peerR"}) {
		t.Fatalf("check lost the failing holders: %+v %+v", res, res.Repair)
	}
	want := []Step{{"check", 1, 2, 0}, {"check", 2, 2, 0}, {"repair", 1, 1, 100}}
	if !reflect.DeepEqual(steps, want) {
		t.Fatalf("steps %v, want %v", steps, want)
	}
	if res, err := c.Check(context.Background(), false, false, nil); err != nil || res.Repair != nil || res.Corrupt != 0 {
		t.Fatalf("check only: %+v, %v", res, err)
	}
	for _, bad := range []string{`{"v":1,"op":"sync","repair":true}`, `{"v":1,"op":"status","verify":true}`, `{"v":1,"op":"check","health":true}`} {
		if _, err := ParseRequest([]byte(bad)); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: %v, want ErrBadRequest", bad, err)
		}
	}
}

// A client that stops waiting cancels the request in the server.
func TestSyncHangUpCancels(t *testing.T) {
	f := &fake{steps: 1, release: make(chan struct{}), ended: make(chan error, 1)}
	_, path := listen(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- NewClient(path).Sync(ctx, func(Progress) { cancel() })
	}()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v, want context.Canceled", err)
	}
	if err := <-f.ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler's ctx: %v, want canceled", err)
	}
}

// Close ends a request in progress and returns.
func TestCloseDuringSync(t *testing.T) {
	f := &fake{release: make(chan struct{}), ended: make(chan error, 1), started: make(chan struct{})}
	s, path := listen(t, f)
	done := make(chan error)
	go func() { done <- NewClient(path).Sync(context.Background(), nil) }()
	<-f.started
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("sync returned no error after the server closed")
	}
	if err := <-f.ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler's ctx after Close: %v, want canceled", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after Close: %v", err)
	}
}

func TestNotRunning(t *testing.T) {
	dir := t.TempDir()
	_, err := NewClient(filepath.Join(dir, "none.sock")).Status(context.Background(), false)
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("no socket: %v, want ErrNotRunning", err)
	}
	// A stale socket (its process died) refuses connections, and Listen replaces it.
	path := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := NewClient(path).Status(context.Background(), false); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("stale socket: %v, want ErrNotRunning", err)
	}
	s, err := Listen(path, &fake{}, nil)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	defer s.Close()
	if _, err := Listen(path, &fake{}, nil); err == nil || !strings.Contains(err.Error(), "another scatter mount") {
		t.Fatalf("listen over a live socket: %v", err)
	}
}

// Bad requests get an error line, never a crash or a hang.
func TestBadRequests(t *testing.T) {
	_, path := listen(t, &fake{})
	for _, req := range []string{
		"not json\n", `{"v":2,"op":"status"}` + "\n", `{"v":1,"op":"format"}` + "\n",
		`{"v":1,"op":"status","extra":1}` + "\n", `{"v":1,"op":"sync","health":true}` + "\n",
		`{"v":1,"op":"status"} {}` + "\n", strings.Repeat("x", MaxRequest+10) + "\n", "no newline",
	} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(req))
		if !strings.HasSuffix(req, "\n") {
			c.(*net.UnixConn).CloseWrite()
		}
		line, err := bufio.NewReader(c).ReadBytes('\n')
		c.Close()
		if err != nil {
			t.Fatalf("%.40q: %v", req, err)
		}
		var r Response
		if err := json.Unmarshal(line, &r); err != nil || r.Error == "" {
			t.Errorf("%.40q: answer %q, want an error line", req, line)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"op":"status"}`, `{"v":1,"op":"status","health":true}`, `{"v":1,"op":"sync"}`,
		`{"v":1,"op":"sync"}` + "\n", `{"v":1}`, `[]`, `{"v":1,"op":"status"}x`, "",
		`{"v":1,"op":"check"}`, `{"v":1,"op":"check","repair":true,"verify":true}`, `{"v":1,"op":"sync","verify":true}`,
		`{"v":1,"op":"share","path":"a/b"}`, `{"v":1,"op":"shares"}`, `{"v":1,"op":"revoke","id":"00"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %v does not wrap ErrBadRequest", err)
			}
			return
		}
		// A request that parses encodes to one that parses to the same.
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := ParseRequest(line)
		if err != nil || r2 != r {
			t.Fatalf("%q parsed to %+v, re-encoded %q parsed to %+v, %v", b, r, line, r2, err)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		`{"done":true}`, `{"error":"x"}`, `{"progress":{"bytes":1,"files":1,"uploaded":0,"rate_bps":0}}`,
		`{"status":{"version":"v","k":8,"m":4,"peers":[{"id":"a","latency_ms":1}],"health":{"chunks":1}}}`,
		`{"done":true,"error":"x"}`, `{}`, `null`,
		`{"step":{"phase":"check","done":1,"total":2,"bytes":0}}`,
		`{"check":{"chunks":1,"complete":1,"repair":{"chunks":1,"errors":["x"]}}}`, `{"step":{},"check":{}}`,
		`{"shares":{"list":[{"id":"a","path":"p","cap":"c","seq":2}]}}`, `{"shares":{"list":[]},"done":true}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err != nil {
			if !errors.Is(err, ErrBadResponse) {
				t.Fatalf("error %v does not wrap ErrBadResponse", err)
			}
			return
		}
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseResponse(line); err != nil {
			t.Fatalf("%q parsed, re-encoded %q does not: %v", b, line, err)
		}
	})
}
