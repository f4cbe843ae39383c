package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// Client asks a running mount through its control socket.
type Client struct{ path string }

// NewClient returns a client of the socket at path. Nothing is dialled until a request.
func NewClient(path string) *Client { return &Client{path: path} }

// Status asks for the mount's status; with health, the mount counts every chunk's
// fragments on their holders first.
func (c *Client) Status(ctx context.Context, health bool) (*Status, error) {
	var st *Status
	err := c.do(ctx, Request{V: Version, Op: OpStatus, Health: health}, func(r Response) error {
		if r.Status == nil {
			return fmt.Errorf("%w: status request answered without a status", ErrBadResponse)
		}
		st = r.Status
		return nil
	}, nil)
	return st, err
}

// Sync asks the mount to put everything staged on the peers and waits until it has,
// calling progress for each progress report. Cancelling ctx stops waiting (the uploads
// go on in the mount).
func (c *Client) Sync(ctx context.Context, progress func(Progress)) error {
	return c.do(ctx, Request{V: Version, Op: OpSync}, func(r Response) error {
		if !r.Done {
			return fmt.Errorf("%w: sync request answered without done", ErrBadResponse)
		}
		return nil
	}, func(r Response) error {
		if r.Progress == nil {
			return fmt.Errorf("%w: sync request answered with a check step", ErrBadResponse)
		}
		if progress != nil {
			progress(*r.Progress)
		}
		return nil
	})
}

// Check asks the mount to count every chunk's fragments on their holders (verify: also
// fetch and hash each one) and, with repair, to rebuild the missing ones onto new peers,
// calling progress for each step. Cancelling ctx stops the check in the mount.
func (c *Client) Check(ctx context.Context, repair, verify bool, progress func(Step)) (*CheckResult, error) {
	var res *CheckResult
	err := c.do(ctx, Request{V: Version, Op: OpCheck, Repair: repair, Verify: verify}, func(r Response) error {
		if r.Check == nil {
			return fmt.Errorf("%w: check request answered without a result", ErrBadResponse)
		}
		res = r.Check
		return nil
	}, func(r Response) error {
		if r.Step == nil {
			return fmt.Errorf("%w: check request answered with sync progress", ErrBadResponse)
		}
		if progress != nil {
			progress(*r.Step)
		}
		return nil
	})
	return res, err
}

// Share asks the mount to share the directory at path (relative to the drive's root)
// read-only; the answer carries the capability.
func (c *Client) Share(ctx context.Context, path string) (*Share, error) {
	list, err := c.shares(ctx, Request{V: Version, Op: OpShare, Path: path})
	if err != nil {
		return nil, err
	}
	if len(list) != 1 {
		return nil, fmt.Errorf("%w: share answered with %d shares", ErrBadResponse, len(list))
	}
	return &list[0], nil
}

// Shares lists the drive's shares.
func (c *Client) Shares(ctx context.Context) ([]Share, error) {
	return c.shares(ctx, Request{V: Version, Op: OpShares})
}

// Revoke asks the mount to stop updating share id's record.
func (c *Client) Revoke(ctx context.Context, id string) (*Share, error) {
	list, err := c.shares(ctx, Request{V: Version, Op: OpRevoke, ID: id})
	if err != nil {
		return nil, err
	}
	if len(list) != 1 {
		return nil, fmt.Errorf("%w: revoke answered with %d shares", ErrBadResponse, len(list))
	}
	return &list[0], nil
}

func (c *Client) shares(ctx context.Context, req Request) ([]Share, error) {
	var list []Share
	err := c.do(ctx, req, func(r Response) error {
		if r.Shares == nil {
			return fmt.Errorf("%w: %s request answered without shares", ErrBadResponse, req.Op)
		}
		list = r.Shares.List
		return nil
	}, nil)
	return list, err
}

// do sends req and reads the answer: progress lines to progress (none expected when it
// is nil), the final line to final.
func (c *Client) do(ctx context.Context, req Request, final func(Response) error, progress func(Response) error) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (no one answers on %s)", ErrNotRunning, c.path)
		}
		return fmt.Errorf("control: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	line, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("BUG: control: encoding a request: %w", err)
	}
	if _, err := conn.Write(append(line, '\n')); err != nil {
		return c.connErr(ctx, err)
	}
	br := bufio.NewReader(io.LimitReader(conn, 1<<40))
	for {
		line, err := readLine(br)
		if err != nil {
			return c.connErr(ctx, err)
		}
		r, err := ParseResponse(line)
		if err != nil {
			return err
		}
		if r.Error != "" {
			return errors.New(r.Error)
		}
		if !r.final() {
			if progress == nil {
				return fmt.Errorf("%w: progress line in answer to %s", ErrBadResponse, req.Op)
			}
			if err := progress(r); err != nil {
				return err
			}
			continue
		}
		return final(r)
	}
}

func (c *Client) connErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("control: the mount closed the connection (is it stopping?)")
	}
	return fmt.Errorf("control: %w", err)
}

// readLine reads one line of at most MaxResponse bytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > MaxResponse {
			return nil, fmt.Errorf("%w: line longer than %d bytes", ErrBadResponse, MaxResponse)
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) && len(line) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}
