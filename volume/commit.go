package volume

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// committer applies every change of the metadata store, with deferred group commit:
// an operation is applied to a write transaction that stays open for at most the commit
// window, and returns (is acknowledged) before that transaction commits. Whatever comes
// first ends the window and commits everything applied so far in one durable commit (two
// fdatasyncs): the window's end (the flusher goroutine), an operation that must be
// durable when it returns (durable: close(2) of written data, fsync, uploads), flush
// (fsync(2), fsyncdir, `scatter sync`), or close (unmount). So a `tar x` or `rsync` pays
// one sync per window or per closed file instead of one per namespace operation.
//
// Reads go through view, which uses the open transaction when there is one (under the
// same lock as the writers, since a bbolt transaction is not safe for concurrent use):
// a read sees every acknowledged change. Code that reads with db.View directly sees the
// last commit, at most one window old.
//
// The guarantee: an acknowledged change that nobody made durable is durable within the
// window; kill -9 or a power loss may lose at most the last window of such changes, never
// a change that was made durable, and never the store's consistency (bbolt commits are
// atomic). An operation that fails after changing the open transaction (an error that is
// not a user error: a corrupt record, a bug, a failing disk) rolls the transaction back;
// the operations already acknowledged in it are then applied again, in order, in a new
// transaction that is committed at once, so one failure never undoes them.
//
// With a window of zero or less every operation is durable when it returns.
type committer struct {
	db     *bolt.DB
	window time.Duration
	log    *slog.Logger

	// wmu serializes writers; it is held from a transaction's Begin to its Commit, and
	// taken before mu.
	wmu sync.Mutex

	// mu guards the fields below; it is held whenever tx is used, by writers and readers.
	mu        sync.Mutex
	tx        *bolt.Tx // the open transaction; nil when none
	gen       uint64   // counts transactions opened, to tell the flusher which one it waits for
	opened    time.Time
	acked     []pending // deferred operations applied to tx, in order
	ready     []after   // hooks of ended transactions, for the flusher to run
	replaying bool      // acknowledged operations are being applied again (see fnRerun)
	closed    bool

	kick chan struct{} // wakes the flusher; buffered (1)
	stop chan struct{} // closed by close
	done chan struct{} // closed when the flusher returns
}

// pending is an acknowledged operation of the open transaction.
type pending struct {
	fn   func(*bolt.Tx) error
	then func(committed bool) // nil, or run once its transaction is over
}

// after is a hook with the outcome of its operation's transaction.
type after struct {
	fn        func(committed bool)
	committed bool
}

// userErrs are the errors operations return after validation and before changing
// anything, so the operation's failure leaves the open transaction as it was.
var userErrs = []error{ErrNotFound, ErrExist, ErrNotDir, ErrIsDir, ErrNotEmpty, ErrNameTooLong,
	ErrInvalid, ErrNoAttr, ErrRange, ErrTooBig, ErrNotSupp, ErrTooManyLinks}

// errUnchanged is returned by an operation that found nothing to change: it succeeds,
// and costs no commit.
var errUnchanged = errors.New("volume: nothing to change")

func isUserErr(err error) bool {
	for _, e := range userErrs {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// start starts the flusher; close stops it.
func (c *committer) start(db *bolt.DB, window time.Duration, log *slog.Logger) {
	c.db, c.window, c.log = db, window, log
	c.kick = make(chan struct{}, 1)
	c.stop = make(chan struct{})
	c.done = make(chan struct{})
	go c.flusher()
}

func (c *committer) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// flusher commits each transaction when its window ends and runs the hooks of ended
// transactions (outside every lock: hooks take file locks, which come before mu).
func (c *committer) flusher() {
	defer close(c.done)
	for {
		select {
		case <-c.kick:
		case <-c.stop:
			return
		}
		for {
			c.mu.Lock()
			hooks := c.ready
			c.ready = nil
			open, gen, deadline := c.tx != nil, c.gen, c.opened.Add(c.window)
			c.mu.Unlock()
			runHooks(hooks)
			if !open {
				break
			}
			t := time.NewTimer(time.Until(deadline))
			select {
			case <-t.C:
			case <-c.stop:
				t.Stop()
				return
			}
			c.wmu.Lock()
			c.mu.Lock()
			if c.tx != nil && c.gen == gen {
				if err := c.commitLocked(); err != nil {
					c.log.Error("metadata: deferred commit failed", "err", err)
				} else if testHookWindowCommitted != nil {
					testHookWindowCommitted()
				}
			}
			c.mu.Unlock()
			c.wmu.Unlock()
		}
	}
}

// testHookWindowCommitted, when set by a test, runs after the flusher committed a
// transaction whose window ended.
var testHookWindowCommitted func()

func runHooks(hooks []after) {
	for _, h := range hooks {
		h.fn(h.committed)
	}
}

// do applies fn, a namespace operation, and returns once the change is acknowledged:
// visible to every later operation and read, and durable within the commit window.
// fn must return a user error (see userErrs), or errUnchanged, only before it changes
// anything. fn may run again after do returned (when a later operation fails and the
// transaction is rebuilt, see rerun): it must then compute the same change and leave the
// caller's outputs and in-memory state alone.
func (c *committer) do(fn func(*bolt.Tx) error) error { return c.apply(fn, nil, false) }

// doThen is do with then, run once the transaction holding the change is over: committed
// (durable) or not (lost to a failed commit). then runs on the flusher goroutine and may
// take file locks. It is not run when do fails.
func (c *committer) doThen(fn func(*bolt.Tx) error, then func(committed bool)) error {
	return c.apply(fn, then, false)
}

// durable applies fn and commits it, with everything acknowledged before it, before it
// returns; if fn fails, its changes are dropped (as with bolt.DB.Update) and the others
// are committed. fn runs once.
func (c *committer) durable(fn func(*bolt.Tx) error) error { return c.apply(fn, nil, true) }

// flush makes every acknowledged change durable.
func (c *committer) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tx == nil {
		return nil
	}
	return c.commitLocked()
}

// rerun reports whether the operation running is being applied again after it was
// acknowledged: it must then change only the transaction. Only for the fn of do, which
// runs with mu held.
func (c *committer) rerun() bool { return c.replaying }

func (c *committer) apply(fn func(*bolt.Tx) error, then func(bool), durable bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return ErrClosed
	}
	// tx changes only under wmu, which this goroutine holds: reading it needs no mu.
	if c.tx == nil {
		// Begin without mu: it waits while another writer (code using db.Update)
		// holds the store, and readers must not wait for that.
		tx, err := c.db.Begin(true)
		if err != nil {
			return fmt.Errorf("%w: metadata: %v", ErrIO, err)
		}
		c.mu.Lock()
		c.tx, c.opened = tx, time.Now()
		c.gen++
		c.mu.Unlock()
		c.wake()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err := fn(c.tx)
	changed := err == nil
	if err == errUnchanged {
		err = nil
	}
	switch {
	case err != nil && (durable || !isUserErr(err)):
		c.abortLocked()
		return err
	case err != nil:
		c.dropIfEmptyLocked() // nothing changed
		return err
	case !changed && then == nil && (!durable || len(c.acked) == 0):
		c.dropIfEmptyLocked()
		return nil
	case durable || c.window <= 0:
		c.acked = append(c.acked, pending{then: then})
		return c.commitLocked()
	}
	c.acked = append(c.acked, pending{fn: fn, then: then})
	return nil
}

// dropIfEmptyLocked rolls back the open transaction if no operation changed it: an
// empty transaction is not worth a commit.
func (c *committer) dropIfEmptyLocked() {
	if len(c.acked) == 0 {
		c.tx.Rollback()
		c.tx = nil
	}
}

// commitLocked commits the open transaction (wmu and mu held). If the commit fails, the
// acknowledged operations are applied again in a new transaction.
func (c *committer) commitLocked() error {
	tx, acked := c.tx, c.acked
	c.tx, c.acked = nil, nil
	err := tx.Commit()
	if err != nil {
		err = fmt.Errorf("%w: metadata commit: %v", ErrIO, err)
		c.replayLocked(acked)
		return err
	}
	c.endedLocked(acked, true)
	return nil
}

// abortLocked rolls back the open transaction, which an operation left half changed,
// and applies the acknowledged operations again (wmu and mu held).
func (c *committer) abortLocked() {
	tx, acked := c.tx, c.acked
	c.tx, c.acked = nil, nil
	tx.Rollback()
	c.replayLocked(acked)
}

// endedLocked hands the hooks of acked to the flusher.
func (c *committer) endedLocked(acked []pending, committed bool) {
	n := len(c.ready)
	for _, p := range acked {
		if p.then != nil {
			c.ready = append(c.ready, after{p.then, committed})
		}
	}
	if len(c.ready) > n {
		c.wake()
	}
}

// replayLocked applies acknowledged operations again, in order, in a new transaction
// that it commits at once (wmu and mu held; mu is released meanwhile, so reads see the
// last commit for that long: a reader inside some bolt.DB.Update must not wait for
// Begin, which waits for that Update). An operation failing now is applied alone in a
// transaction of its own; one that still fails is lost, and logged.
func (c *committer) replayLocked(acked []pending) {
	var ops []pending
	for _, p := range acked {
		if p.fn != nil {
			ops = append(ops, p)
		} else {
			c.endedLocked([]pending{p}, false) // a durable operation: its caller has the error
		}
	}
	if len(ops) == 0 {
		return
	}
	c.mu.Unlock()
	defer c.mu.Lock()
	run := func(tx *bolt.Tx, ops []pending) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.replaying = true
		defer func() { c.replaying = false }()
		for _, p := range ops {
			if err := p.fn(tx); err != nil && err != errUnchanged && !isUserErr(err) {
				return err
			}
		}
		return nil
	}
	if err := c.db.Update(func(tx *bolt.Tx) error { return run(tx, ops) }); err == nil {
		c.mu.Lock()
		c.endedLocked(ops, true)
		c.mu.Unlock()
		return
	}
	for _, p := range ops {
		err := c.db.Update(func(tx *bolt.Tx) error { return run(tx, []pending{p}) })
		if err != nil {
			c.log.Error("metadata: an acknowledged change is lost", "err", err)
		}
		c.mu.Lock()
		c.endedLocked([]pending{p}, err == nil)
		c.mu.Unlock()
	}
}

// view runs fn, which only reads, on the open transaction if there is one, else on a
// read transaction of the last commit.
func (c *committer) view(fn func(*bolt.Tx) error) error {
	c.mu.Lock()
	if c.tx != nil {
		defer c.mu.Unlock()
		return fn(c.tx)
	}
	c.mu.Unlock()
	return c.db.View(fn)
}

// close commits what is pending, stops the flusher and runs the remaining hooks (which
// may still change the store), commits again and makes later operations fail with
// ErrClosed.
func (c *committer) close() error {
	err := c.flush()
	close(c.stop)
	<-c.done
	c.mu.Lock()
	hooks := c.ready
	c.ready = nil
	c.mu.Unlock()
	runHooks(hooks)
	c.wmu.Lock()
	c.mu.Lock()
	if c.tx != nil {
		err = errors.Join(err, c.commitLocked())
	}
	c.closed = true
	hooks = c.ready
	c.ready = nil
	c.mu.Unlock()
	c.wmu.Unlock()
	runHooks(hooks)
	return err
}

// crash drops the open transaction as kill -9 would (for tests) and stops the flusher;
// hooks are not run.
func (c *committer) crash() {
	c.wmu.Lock()
	c.mu.Lock()
	if c.tx != nil {
		c.tx.Rollback()
		c.tx, c.acked = nil, nil
	}
	c.closed = true
	c.mu.Unlock()
	c.wmu.Unlock()
	close(c.stop)
	<-c.done
}
