package fs

import (
	"context"
	"sync"
	"sync/atomic"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/scatterfs/scatter/volume"
)

// Live is the volume a mount serves, replaceable under the live mount: a read-only
// follower swaps in the volume of each new snapshot of the drive. Every request uses the
// volume current when it starts, and every open file or directory keeps the volume it
// was opened on until it is closed, so a reader sees one consistent snapshot per open.
// Inode numbers are the drive's (a snapshot carries them), so the kernel's inodes stay
// meaningful across a swap: an inode the new volume lacks (deleted by the writer) gives
// ENOENT, never the bytes of another file.
type Live struct {
	cur atomic.Pointer[held]

	mu   sync.Mutex // guards root
	root *gofs.Inode
}

// held is one volume of a Live with its users: requests in flight and open handles.
type held struct {
	v       *volume.Volume
	refs    atomic.Int64
	retired atomic.Bool   // swapped out: idle closes once refs drops to 0
	idle    chan struct{} // closed once retired and unused
	once    sync.Once
}

// NewLive returns a Live serving v.
func NewLive(v *volume.Volume) *Live {
	if v == nil {
		panic("BUG: fs: NewLive(nil)")
	}
	l := &Live{}
	l.cur.Store(&held{v: v, idle: make(chan struct{})})
	return l
}

// Volume returns the volume served now.
func (l *Live) Volume() *volume.Volume { return l.cur.Load().v }

// Use calls fn with the volume served now, which stays open until fn returns even if a
// swap replaces it meanwhile (a status report reading it, say).
func (l *Live) Use(fn func(v *volume.Volume) error) error {
	h := l.acquire()
	defer h.release()
	return fn(h.v)
}

// acquire returns the current volume with a reference on it; release it when done.
func (l *Live) acquire() *held {
	for {
		h := l.cur.Load()
		h.refs.Add(1)
		// A swap between the load and the increment may have found h unused and
		// declared it idle: then h must not be used, and the new one is taken instead.
		if l.cur.Load() == h {
			return h
		}
		h.release()
	}
}

func (h *held) release() {
	if h.refs.Add(-1) == 0 && h.retired.Load() {
		h.once.Do(func() { close(h.idle) })
	}
}

// Swap makes v the volume served and returns the previous one with a channel that is
// closed once nothing uses it any more (no request in flight, no open handle): the
// caller closes it then. When l is mounted, Swap also drops what the kernel cached and
// v changed: names that now lead elsewhere or nowhere, and the attributes and pages of
// inodes whose attributes changed, so the change shows at once rather than after the
// mount's Timeout. It must not be called from inside a FUSE request (the kernel's
// invalidation may wait for requests in flight).
func (l *Live) Swap(ctx context.Context, v *volume.Volume) (*volume.Volume, <-chan struct{}) {
	if v == nil {
		panic("BUG: fs: Live.Swap(nil)")
	}
	next := &held{v: v, idle: make(chan struct{})}
	next.refs.Add(1) // held by this swap until the invalidation is done
	old := l.cur.Swap(next)
	old.refs.Add(1)
	l.mu.Lock()
	root := l.root
	l.mu.Unlock()
	if root != nil {
		invalidate(ctx, root, old.v, v)
	}
	old.retired.Store(true)
	old.release()
	next.release()
	return old.v, old.idle
}

// mounted records the root inode once mounted, for Swap's invalidation.
func (l *Live) mounted(root *gofs.Inode) {
	l.mu.Lock()
	l.root = root
	l.mu.Unlock()
}

// invalidate walks the inodes the kernel knows below n and tells it to forget what
// changed between the volumes was and is. Errors of the notifications are ignored: an
// entry the kernel already dropped answers ENOENT, which is the wanted state.
func invalidate(ctx context.Context, n *gofs.Inode, was, is *volume.Volume) {
	ino := n.StableAttr().Ino
	oa, oerr := was.Getattr(ctx, ino)
	na, nerr := is.Getattr(ctx, ino)
	if oerr != nil || nerr != nil || !sameAttr(&oa, &na) {
		n.NotifyContent(0, 0) // attributes and every cached page
	}
	for name, c := range n.Children() {
		a, err := is.Lookup(ctx, ino, name)
		if err != nil || a.Ino != c.StableAttr().Ino {
			n.NotifyEntry(name)
		}
		invalidate(ctx, c, was, is)
	}
}

func sameAttr(a, b *volume.Attr) bool {
	return a.Mode == b.Mode && a.Nlink == b.Nlink && a.UID == b.UID && a.GID == b.GID &&
		a.Size == b.Size && a.Mtime.Equal(b.Mtime) && a.Ctime.Equal(b.Ctime)
}
