package volume

import (
	"errors"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// committer is group commit for namespace operations: a caller that finds no commit
// running leads, committing everything queued in one transaction per round until its own
// operation is done, then hands the lead to the oldest waiting caller. A lone operation
// commits at once (no batching delay, unlike bbolt's Batch); operations arriving during a
// commit's sync share the next one; no caller leads for longer than its own operation.
type committer struct {
	db *bolt.DB

	mu      sync.Mutex
	queue   []*commitCall
	leading bool
}

type commitCall struct {
	fn       func(*bolt.Tx) error
	err      error
	finished bool          // set by the leader that ran it
	lead     bool          // promoted to leader instead of finished
	wake     chan struct{} // closed when finished by another leader, or promoted
}

// userErrs are the errors operations return after validation and before changing
// anything, so the other operations of a shared transaction may still commit.
var userErrs = []error{ErrNotFound, ErrExist, ErrNotDir, ErrIsDir, ErrNotEmpty, ErrNameTooLong,
	ErrInvalid, ErrNoAttr, ErrRange, ErrTooBig, ErrNotSupp, ErrTooManyLinks}

func isUserErr(err error) bool {
	for _, e := range userErrs {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// errAbort rolls a shared transaction back.
var errAbort = errors.New("volume: shared commit aborted")

// do runs fn in a write transaction, possibly shared with concurrent calls. fn may run
// more than once (after an aborted shared transaction) and must set its outputs afresh.
// fn must return a user error (see userErrs) only before it changes anything.
func (c *committer) do(fn func(*bolt.Tx) error) error {
	call := &commitCall{fn: fn, wake: make(chan struct{})}
	c.mu.Lock()
	c.queue = append(c.queue, call)
	if c.leading {
		c.mu.Unlock()
		<-call.wake
		if !call.lead {
			return call.err
		}
		c.mu.Lock()
	}
	c.leading = true
	for !call.finished {
		calls := c.queue
		c.queue = nil
		c.mu.Unlock()
		c.run(calls, call)
		c.mu.Lock()
	}
	if len(c.queue) > 0 {
		next := c.queue[0]
		next.lead = true
		close(next.wake)
	} else {
		c.leading = false
	}
	c.mu.Unlock()
	return call.err
}

// run commits calls; leader is the caller running it (woken by nobody).
func (c *committer) run(calls []*commitCall, leader *commitCall) {
	finish := func(call *commitCall) {
		call.finished = true
		if call != leader {
			close(call.wake)
		}
	}
	if len(calls) > 1 {
		err := c.db.Update(func(tx *bolt.Tx) error {
			for _, call := range calls {
				call.err = call.fn(tx)
				if call.err != nil && !isUserErr(call.err) {
					return errAbort
				}
			}
			return nil
		})
		if err == nil {
			for _, call := range calls {
				finish(call)
			}
			return
		}
	}
	// Alone, or after an abort: each call in its own transaction.
	for _, call := range calls {
		call.err = c.db.Update(call.fn)
		finish(call)
	}
}
