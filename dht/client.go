package dht

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/swarm"
)

// ClientConfig configures a Client. Every field has a default for its zero value.
type ClientConfig struct {
	// MaxFragmentSize is the largest fragment the client sends or accepts from a GET.
	// Default DefaultMaxFragmentSize.
	MaxFragmentSize int
	// MaxBatch is the most IDs sent in one HAS, DELETE or RENEW; longer lists are split.
	// Default DefaultMaxBatch.
	MaxBatch int
	// Timeout bounds a request whose ctx has no deadline. Default 1 min.
	Timeout time.Duration
}

// Client sends fragment protocol requests to donors, as one owner: PUTs carry its public
// key, DELETE and RENEW are signed with its private key. It is safe for concurrent use.
//
// Errors wrap the swarm sentinels: swarm.ErrNotFound, ErrBusy (also for a donor's internal
// error: try elsewhere or later), ErrFull, ErrDenied (refused or malformed request, bad
// signature) and ErrUnreachable (no stream, a broken stream, a peer too slow for the
// deadline or a malformed response). A cancelled ctx gives context.Canceled, wrapped; a
// ctx deadline that passes gives both ErrUnreachable and context.DeadlineExceeded.
type Client struct {
	h   host.Host
	key ed25519.PrivateKey
	cfg ClientConfig
	lim limits
}

// NewClient returns a client that reaches donors through h on behalf of owner.
func NewClient(h host.Host, owner ed25519.PrivateKey, cfg ClientConfig) *Client {
	if len(owner) != ed25519.PrivateKeySize {
		panic("BUG: dht: NewClient with a malformed Ed25519 private key")
	}
	if cfg.MaxFragmentSize <= 0 {
		cfg.MaxFragmentSize = DefaultMaxFragmentSize
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	return &Client{h: h, key: owner, cfg: cfg, lim: limits{maxFragment: cfg.MaxFragmentSize, maxBatch: cfg.MaxBatch}}
}

// Put stores data as fragment id on p, leased until expires. The donor checks that data
// hashes to id. Idempotent: a fragment already there gets the later of the two expiries.
func (c *Client) Put(ctx context.Context, p peer.ID, id chunker.FragmentID, data []byte, expires time.Time) error {
	if len(data) == 0 || len(data) > c.cfg.MaxFragmentSize {
		return fmt.Errorf("dht: PUT of %d bytes (max %d): %w", len(data), c.cfg.MaxFragmentSize, swarm.ErrDenied)
	}
	req := request{op: opPut, id: id, expires: expires.Unix(), size: uint32(len(data))}
	copy(req.owner[:], c.key.Public().(ed25519.PublicKey))
	_, err := c.roundTrip(ctx, p, &req, data, 0)
	return err
}

// Get fetches fragment id from p. It does not check the bytes against id: the caller must.
func (c *Client) Get(ctx context.Context, p peer.ID, id chunker.FragmentID) ([]byte, error) {
	resp, err := c.roundTrip(ctx, p, &request{op: opGet, id: id}, nil, 0)
	return resp.data, err
}

// Has asks p which of ids it holds, in requests of at most MaxBatch IDs.
func (c *Client) Has(ctx context.Context, p peer.ID, ids []chunker.FragmentID) ([]bool, error) {
	out := make([]bool, 0, len(ids))
	for batch := range slicesChunk(ids, c.cfg.MaxBatch) {
		resp, err := c.roundTrip(ctx, p, &request{op: opHas, ids: batch}, nil, len(batch))
		if err != nil {
			return nil, err
		}
		out = append(out, resp.has...)
	}
	return out, nil
}

// Delete asks p to drop the owner's leases on ids, signed. Idempotent.
func (c *Client) Delete(ctx context.Context, p peer.ID, ids []chunker.FragmentID) error {
	for batch := range slicesChunk(ids, c.cfg.MaxBatch) {
		req := request{op: opDelete, ids: batch, timestamp: time.Now().UnixNano()}
		req.sign(c.key)
		if _, err := c.roundTrip(ctx, p, &req, nil, 0); err != nil {
			return err
		}
	}
	return nil
}

// Renew asks p to extend the owner's leases on ids to expires, signed. Idempotent.
func (c *Client) Renew(ctx context.Context, p peer.ID, ids []chunker.FragmentID, expires time.Time) error {
	for batch := range slicesChunk(ids, c.cfg.MaxBatch) {
		req := request{op: opRenew, ids: batch, expires: expires.Unix(), timestamp: time.Now().UnixNano()}
		req.sign(c.key)
		if _, err := c.roundTrip(ctx, p, &req, nil, 0); err != nil {
			return err
		}
	}
	return nil
}

// Stat asks p for its quota and usage.
func (c *Client) Stat(ctx context.Context, p peer.ID) (swarm.Stat, error) {
	resp, err := c.roundTrip(ctx, p, &request{op: opStat}, nil, 0)
	return resp.stat, err
}

// slicesChunk yields ids in pieces of at most n, and nothing for an empty list.
func slicesChunk(ids []chunker.FragmentID, n int) func(yield func([]chunker.FragmentID) bool) {
	return func(yield func([]chunker.FragmentID) bool) {
		for len(ids) > 0 {
			k := min(n, len(ids))
			if !yield(ids[:k:k]) {
				return
			}
			ids = ids[k:]
		}
	}
}

// roundTrip sends req (and a PUT's payload) on a new stream to p and reads the response.
// The request is written by a second goroutine while this one reads: a donor may answer
// (BUSY, FULL, BAD_REQUEST) before it has read a large payload, and the stream is then
// reset, which also ends the writer.
func (c *Client) roundTrip(parent context.Context, p peer.ID, req *request, payload []byte, want int) (response, error) {
	ctx, cancel := parent, context.CancelFunc(func() {})
	if _, ok := parent.Deadline(); !ok {
		ctx, cancel = context.WithTimeout(parent, c.cfg.Timeout)
	}
	defer cancel()
	fail := func(err error) (response, error) {
		if errors.Is(parent.Err(), context.Canceled) {
			return response{}, fmt.Errorf("dht: %s to %s: %w", req.op, p, parent.Err())
		}
		// The stream's deadline can fire a moment before the ctx's own timer: both mean
		// the peer did not answer in time.
		if dl, ok := parent.Deadline(); ok && !time.Now().Before(dl) {
			return response{}, fmt.Errorf("dht: %s to %s: %w: %w", req.op, p, swarm.ErrUnreachable, context.DeadlineExceeded)
		}
		return response{}, fmt.Errorf("dht: %s to %s: %w: %w", req.op, p, swarm.ErrUnreachable, err)
	}
	s, err := c.h.NewStream(ctx, p, FragmentProtocol)
	if err != nil {
		return fail(err)
	}
	if dl, ok := ctx.Deadline(); ok {
		s.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()

	msg := appendRequest(nil, req)
	werr := make(chan error, 1)
	go func() {
		_, err := s.Write(msg)
		if err == nil && len(payload) > 0 {
			_, err = s.Write(payload)
		}
		if err == nil {
			err = s.CloseWrite()
		}
		werr <- err
	}()
	resp, err := readResponse(s, req.op, want, c.lim)
	if err != nil || resp.status != statusOK {
		s.Reset()
	}
	writeErr := <-werr
	if err != nil {
		if errors.Is(err, errMalformed) {
			return fail(fmt.Errorf("bad response: %w", err))
		}
		return fail(errors.Join(err, writeErr))
	}
	if resp.status != statusOK {
		return response{}, fmt.Errorf("dht: %s to %s: %w (%s: %s)", req.op, p, statusErr(resp.status), resp.status, resp.msg)
	}
	s.Close()
	return resp, nil
}

// statusErr maps a response status to the swarm sentinel the caller acts on.
func statusErr(st status) error {
	switch st {
	case statusNotFound:
		return swarm.ErrNotFound
	case statusFull:
		return swarm.ErrFull
	case statusDenied, statusBadRequest:
		return swarm.ErrDenied
	}
	// BUSY, and INTERNAL: the donor cannot serve this now; another peer may.
	return swarm.ErrBusy
}
