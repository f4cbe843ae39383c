package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Handler answers requests. Its methods are called concurrently, with a ctx that ends
// when the client hangs up or the server closes.
type Handler interface {
	// Status returns the mount's status; with health, it also counts fragments.
	Status(ctx context.Context, health bool) (*Status, error)
	// Sync returns once everything staged when it was called is on the peers, calling
	// progress from time to time meanwhile (never concurrently).
	Sync(ctx context.Context, progress func(Progress)) error
	// Check counts the drive's fragments on their holders (verify: fetching and hashing
	// each) and, with repair, rebuilds the missing ones, calling progress meanwhile (never
	// concurrently).
	Check(ctx context.Context, repair, verify bool, progress func(Step)) (*CheckResult, error)
}

// ShareHandler is implemented by a Handler that manages read-only shares; a Handler
// without it answers the share operations with an error.
type ShareHandler interface {
	// Share records a share of the directory at path (relative to the drive's root),
	// publishes its record and returns it with its capability.
	Share(ctx context.Context, path string) (*Share, error)
	// Shares lists every share, revoked ones included.
	Shares(ctx context.Context) ([]Share, error)
	// Revoke stops updating share id's record.
	Revoke(ctx context.Context, id string) (*Share, error)
}

// requestTimeout bounds how long a client may take to send its request line.
const requestTimeout = 10 * time.Second

// Server serves a Handler on a Unix socket.
type Server struct {
	ln     net.Listener
	h      Handler
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{} // guarded by mu: open connections, closed by Close
}

// Listen creates the socket at path, mode 0600, and serves h on it until Close. A stale
// socket left by a process that died is replaced; a live one (another mount answering)
// is an error.
func Listen(path string, h Handler, log *slog.Logger) (*Server, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control: %s: another scatter mount is serving it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control: %w", err)
	}
	// The socket is created with the umask's mode; 0177 makes it 0600 from the start, so
	// there is no moment when others could connect. Umask is per process: nothing else
	// creates files at this point of a mount's start.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{ln: ln, h: h, log: log, conns: map[net.Conn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr returns the socket's path.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops accepting, cancels running requests, waits for them and removes the socket.
func (s *Server) Close() error {
	s.cancel()
	err := s.ln.Close() // a Unix listener unlinks its socket file
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Error("control: accept", "err", err)
			}
			return
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *Server) serve(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(requestTimeout))
	br := bufio.NewReaderSize(io.LimitReader(c, MaxRequest+1), 512)
	line, err := br.ReadSlice('\n')
	enc := json.NewEncoder(c)
	if err != nil {
		enc.Encode(Response{Error: fmt.Sprintf("%v: no request line: %v", ErrBadRequest, err)})
		return
	}
	req, err := ParseRequest(line)
	if err != nil {
		enc.Encode(Response{Error: err.Error()})
		return
	}
	c.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	// The client sends nothing more: a read returning means it hung up, which cancels
	// the request (a `scatter sync` stopped with Ctrl-C stops waiting).
	hungUp := make(chan struct{})
	go func() {
		defer close(hungUp)
		var b [1]byte
		c.Read(b[:])
		cancel()
	}()
	defer func() {
		c.SetReadDeadline(time.Now()) // ends the watcher's Read
		<-hungUp
	}()

	var final Response
	switch req.Op {
	case OpStatus:
		st, err := s.h.Status(ctx, req.Health)
		if err != nil {
			final.Error = err.Error()
		} else {
			final.Status = st
		}
	case OpSync:
		var werr error
		err := s.h.Sync(ctx, func(p Progress) {
			if werr == nil {
				werr = enc.Encode(Response{Progress: &p})
			}
		})
		switch {
		case werr != nil:
			return // the client is gone
		case err != nil:
			final.Error = err.Error()
		default:
			final.Done = true
		}
	case OpCheck:
		var werr error
		res, err := s.h.Check(ctx, req.Repair, req.Verify, func(p Step) {
			if werr == nil {
				werr = enc.Encode(Response{Step: &p})
			}
		})
		switch {
		case werr != nil:
			return // the client is gone
		case err != nil:
			final.Error = err.Error()
		case res == nil:
			final.Error = "BUG: control: check answered nothing"
		default:
			final.Check = res
		}
	case OpShare, OpShares, OpRevoke:
		final = s.share(ctx, req)
	}
	if err := enc.Encode(final); err != nil && ctx.Err() == nil {
		s.log.Debug("control: write response", "op", req.Op, "err", err)
	}
}

// share answers the share operations.
func (s *Server) share(ctx context.Context, req Request) Response {
	sh, ok := s.h.(ShareHandler)
	if !ok {
		return Response{Error: "this mount does not manage shares"}
	}
	var (
		list []Share
		one  *Share
		err  error
	)
	switch req.Op {
	case OpShare:
		one, err = sh.Share(ctx, req.Path)
	case OpRevoke:
		one, err = sh.Revoke(ctx, req.ID)
	default:
		list, err = sh.Shares(ctx)
	}
	if err != nil {
		return Response{Error: err.Error()}
	}
	if one != nil {
		list = []Share{*one}
	}
	if list == nil {
		list = []Share{}
	}
	return Response{Shares: &Shares{List: list}}
}
