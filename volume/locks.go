package volume

import (
	"context"
	"errors"
	"sync"
	"syscall"
)

// ErrWouldBlock: a lock conflicts with one held through another handle (EAGAIN).
var ErrWouldBlock = errors.New("volume: lock held by another open file")

// Lock is a byte-range lock: [Start, End] inclusive, Type one of syscall.F_RDLCK,
// F_WRLCK, F_UNLCK. Pid is reported by GetLock for the holder.
type Lock struct {
	Start, End uint64
	Type       uint32
	Pid        uint32
}

// Locks belong to the open file (the Handle), like Linux's open file description locks:
// two handles conflict even within one process. This is what a FUSE server can offer
// for both fcntl and flock locks, and it is all a single mount needs; locks are not
// shared between devices.
type lockTable struct {
	mu      sync.Mutex
	byIno   map[uint64][]heldLock
	changed chan struct{} // closed and replaced when any lock is released
}

type heldLock struct {
	owner *Handle
	Lock
}

func (l Lock) overlaps(o Lock) bool { return l.Start <= o.End && o.Start <= l.End }

func (t *lockTable) conflict(ino uint64, h *Handle, l Lock) (heldLock, bool) {
	for _, c := range t.byIno[ino] {
		if c.owner != h && c.overlaps(l) && (c.Type == syscall.F_WRLCK || l.Type == syscall.F_WRLCK) {
			return c, true
		}
	}
	return heldLock{}, false
}

// GetLock returns a lock that would block l, or l with Type F_UNLCK if none would.
func (h *Handle) GetLock(l Lock) Lock {
	t := &h.v.locks
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.conflict(h.f.ino, h, l); ok {
		return c.Lock
	}
	l.Type = syscall.F_UNLCK
	return l
}

// SetLock takes, changes or (Type F_UNLCK) releases a lock. With wait it blocks until
// the lock is free or ctx ends (ErrInterrupted); without, it fails with ErrWouldBlock.
func (h *Handle) SetLock(ctx context.Context, l Lock, wait bool) error {
	if l.End < l.Start {
		return ErrInvalid
	}
	t := &h.v.locks
	ino := h.f.ino
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byIno == nil {
		t.byIno = map[uint64][]heldLock{}
		t.changed = make(chan struct{})
	}
	if l.Type != syscall.F_UNLCK {
		for {
			if _, ok := t.conflict(ino, h, l); !ok {
				break
			}
			if !wait {
				return ErrWouldBlock
			}
			ch := t.changed
			t.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				t.mu.Lock()
				return ErrInterrupted
			}
			t.mu.Lock()
		}
	}
	// Replace this handle's locks in the range by the new one.
	var out []heldLock
	for _, c := range t.byIno[ino] {
		if c.owner != h || !c.overlaps(l) {
			out = append(out, c)
			continue
		}
		if c.Start < l.Start {
			left := c
			left.End = l.Start - 1
			out = append(out, left)
		}
		if c.End > l.End {
			right := c
			right.Start = l.End + 1
			out = append(out, right)
		}
	}
	if l.Type != syscall.F_UNLCK {
		out = append(out, heldLock{h, l})
	}
	t.setLocked(ino, out)
	return nil
}

func (t *lockTable) setLocked(ino uint64, locks []heldLock) {
	if len(locks) == 0 {
		delete(t.byIno, ino)
	} else {
		t.byIno[ino] = locks
	}
	close(t.changed)
	t.changed = make(chan struct{})
}

// dropLocks releases every lock held through h.
func (t *lockTable) dropLocks(h *Handle) {
	t.mu.Lock()
	defer t.mu.Unlock()
	locks, ok := t.byIno[h.f.ino]
	if !ok {
		return
	}
	var out []heldLock
	for _, c := range locks {
		if c.owner != h {
			out = append(out, c)
		}
	}
	t.setLocked(h.f.ino, out)
}
