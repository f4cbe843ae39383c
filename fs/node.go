package fs

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/scatterfs/scatter/volume"
)

// mnt is what every node of one mount shares.
type mnt struct {
	live *Live
	log  *slog.Logger
	ro   bool // refuse every change with EROFS
	// timeout is the attribute timeout of Setattr's reply, which go-fuse leaves at 0
	// (unlike Getattr's): at 0 the kernel asked again at once, two GETATTRs per file
	// rsync wrote (it sets mode, then times).
	timeout time.Duration
}

// node is one inode of the mount.
type node struct {
	gofs.Inode
	m   *mnt
	ino uint64
}

var (
	_ = (gofs.NodeLookuper)((*node)(nil))
	_ = (gofs.NodeGetattrer)((*node)(nil))
	_ = (gofs.NodeSetattrer)((*node)(nil))
	_ = (gofs.NodeMkdirer)((*node)(nil))
	_ = (gofs.NodeMknoder)((*node)(nil))
	_ = (gofs.NodeCreater)((*node)(nil))
	_ = (gofs.NodeOpener)((*node)(nil))
	_ = (gofs.NodeOpendirHandler)((*node)(nil))
	_ = (gofs.NodeUnlinker)((*node)(nil))
	_ = (gofs.NodeRmdirer)((*node)(nil))
	_ = (gofs.NodeRenamer)((*node)(nil))
	_ = (gofs.NodeLinker)((*node)(nil))
	_ = (gofs.NodeSymlinker)((*node)(nil))
	_ = (gofs.NodeReadlinker)((*node)(nil))
	_ = (gofs.NodeGetxattrer)((*node)(nil))
	_ = (gofs.NodeSetxattrer)((*node)(nil))
	_ = (gofs.NodeListxattrer)((*node)(nil))
	_ = (gofs.NodeRemovexattrer)((*node)(nil))
	_ = (gofs.NodeStatfser)((*node)(nil))
	_ = (gofs.NodeFsyncer)((*node)(nil))
)

func (n *node) errno(op string, err error) syscall.Errno { return toErrno(n.m.log, op, err) }

// vol returns the volume to serve one request with; call the release function when the
// request is done with it (see Live).
func (n *node) vol() (*volume.Volume, func()) {
	h := n.m.live.acquire()
	return h.v, h.release
}

func caller(ctx context.Context) (uid, gid uint32) {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid, c.Gid
	}
	return 0, 0
}

func setAttr(out *fuse.Attr, a *volume.Attr) {
	out.Ino = a.Ino
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Owner = fuse.Owner{Uid: a.UID, Gid: a.GID}
	out.Rdev = a.Rdev
	out.Size = uint64(a.Size)
	out.Blocks = (uint64(a.Size) + 511) / 512
	out.Blksize = 1 << 20
	out.SetTimes(&a.Atime, &a.Mtime, &a.Ctime)
}

// child returns the go-fuse inode for a, filling out.
func (n *node) child(ctx context.Context, a *volume.Attr, out *fuse.EntryOut) *gofs.Inode {
	setAttr(&out.Attr, a)
	return n.NewInode(ctx, &node{m: n.m, ino: a.Ino}, gofs.StableAttr{Mode: a.Mode & syscall.S_IFMT, Ino: a.Ino})
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	v, done := n.vol()
	defer done()
	a, err := v.Lookup(ctx, n.ino, name)
	if err != nil {
		return nil, n.errno("lookup", err)
	}
	return n.child(ctx, &a, out), 0
}

func (n *node) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*handle); ok && h.follow != nil {
		// Through the open file: one the newest snapshot deleted still has its version.
		return h.Getattr(ctx, out)
	}
	v, done := n.vol()
	defer done()
	a, err := v.Getattr(ctx, n.ino)
	if err != nil {
		return n.errno("getattr", err)
	}
	setAttr(&out.Attr, &a)
	return 0
}

func (n *node) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.m.ro {
		return syscall.EROFS
	}
	v, done := n.vol()
	defer done()
	var s volume.SetAttr
	if m, ok := in.GetMode(); ok {
		s.Mode = &m
	}
	if u, ok := in.GetUID(); ok {
		s.UID = &u
	}
	if g, ok := in.GetGID(); ok {
		s.GID = &g
	}
	if sz, ok := in.GetSize(); ok {
		size := int64(sz)
		s.Size = &size
	}
	if t, ok := in.GetATime(); ok {
		s.Atime = &t
	}
	if t, ok := in.GetMTime(); ok {
		s.Mtime = &t
	}
	a, err := v.Setattr(ctx, n.ino, s)
	if err != nil {
		return n.errno("setattr", err)
	}
	setAttr(&out.Attr, &a)
	out.SetTimeout(n.m.timeout)
	return 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.m.ro {
		return nil, syscall.EROFS
	}
	v, done := n.vol()
	defer done()
	uid, gid := caller(ctx)
	a, err := v.Mkdir(ctx, n.ino, name, mode, uid, gid)
	if err != nil {
		return nil, n.errno("mkdir", err)
	}
	return n.child(ctx, &a, out), 0
}

func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.m.ro {
		return nil, syscall.EROFS
	}
	v, done := n.vol()
	defer done()
	uid, gid := caller(ctx)
	a, err := v.Mknod(ctx, n.ino, name, mode, dev, uid, gid)
	if err != nil {
		return nil, n.errno("mknod", err)
	}
	return n.child(ctx, &a, out), 0
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if n.m.ro {
		return nil, nil, 0, syscall.EROFS
	}
	hv := n.m.live.acquire() // the handle's, released by Release
	uid, gid := caller(ctx)
	a, h, err := hv.v.Create(ctx, n.ino, name, int(flags), mode, uid, gid)
	if err != nil {
		hv.release()
		return nil, nil, 0, n.errno("create", err)
	}
	return n.child(ctx, &a, out), &handle{h: h, log: n.m.log, held: hv, ino: a.Ino}, 0, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.m.ro && (flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0) {
		return nil, 0, syscall.EROFS
	}
	hv := n.m.live.acquire() // the handle's, released by Release
	h, err := hv.v.Open(ctx, n.ino, int(flags))
	if err != nil {
		hv.release()
		return nil, 0, n.errno("open", err)
	}
	if n.m.ro {
		// A read-only mount follows a drive another device writes: the next snapshot
		// swapped in may change this file, so every open reads it again.
		return &handle{h: h, log: n.m.log, held: hv, ino: n.ino, follow: n.m.live}, 0, 0
	}
	// Keep the kernel's page cache across opens: every change to a file's bytes goes
	// through this mount (one writer per drive, the root record's writer lease), so what
	// the kernel cached is still right, and a second read of a file is served at page-cache
	// speed instead of fetching every chunk from the donors again. A size or mtime change
	// seen in GETATTR still drops the cached pages (the kernel's auto_inval_data).
	return &handle{h: h, log: n.m.log, held: hv, ino: n.ino}, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	parent := uint64(volume.RootIno)
	if _, p := n.Parent(); p != nil {
		parent = p.StableAttr().Ino
	}
	hv := n.m.live.acquire() // the listing's, released by Releasedir
	return &dirHandle{v: hv.v, held: hv, log: n.m.log, ino: n.ino, parent: parent}, 0, 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if n.m.ro {
		return syscall.EROFS
	}
	v, done := n.vol()
	defer done()
	return n.errno("unlink", v.Unlink(ctx, n.ino, name))
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if n.m.ro {
		return syscall.EROFS
	}
	v, done := n.vol()
	defer done()
	return n.errno("rmdir", v.Rmdir(ctx, n.ino, name))
}

func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if n.m.ro {
		return syscall.EROFS
	}
	v, done := n.vol()
	defer done()
	np := newParent.(*node)
	return n.errno("rename", v.Rename(ctx, n.ino, name, np.ino, newName, flags))
}

func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.m.ro {
		return nil, syscall.EROFS
	}
	v, done := n.vol()
	defer done()
	a, err := v.Link(ctx, target.(*node).ino, n.ino, name)
	if err != nil {
		return nil, n.errno("link", err)
	}
	return n.child(ctx, &a, out), 0
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.m.ro {
		return nil, syscall.EROFS
	}
	v, done := n.vol()
	defer done()
	uid, gid := caller(ctx)
	a, err := v.Symlink(ctx, n.ino, name, target, uid, gid)
	if err != nil {
		return nil, n.errno("symlink", err)
	}
	return n.child(ctx, &a, out), 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	v, done := n.vol()
	defer done()
	t, err := v.Readlink(ctx, n.ino)
	if err != nil {
		return nil, n.errno("readlink", err)
	}
	return []byte(t), 0
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	v, done := n.vol()
	defer done()
	val, err := v.GetXattr(ctx, n.ino, attr)
	if err != nil {
		return 0, n.errno("getxattr", err)
	}
	if len(dest) < len(val) {
		return uint32(len(val)), syscall.ERANGE
	}
	return uint32(copy(dest, val)), 0
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if n.m.ro {
		return syscall.EROFS
	}
	v, done := n.vol()
	defer done()
	return n.errno("setxattr", v.SetXattr(ctx, n.ino, attr, data, flags))
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if n.m.ro {
		return syscall.EROFS
	}
	v, done := n.vol()
	defer done()
	return n.errno("removexattr", v.RemoveXattr(ctx, n.ino, attr))
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	v, done := n.vol()
	defer done()
	names, err := v.ListXattr(ctx, n.ino)
	if err != nil {
		return 0, n.errno("listxattr", err)
	}
	var b []byte
	for _, nm := range names {
		b = append(append(b, nm...), 0)
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	v, done := n.vol()
	defer done()
	st, err := v.Statfs(ctx)
	if err != nil {
		return n.errno("statfs", err)
	}
	const bsize = 4096
	out.Bsize, out.Frsize, out.NameLen = bsize, bsize, volume.MaxName
	out.Bavail = uint64(st.Avail) / bsize
	out.Bfree = out.Bavail
	out.Blocks = uint64(st.Used+bsize-1)/bsize + out.Bavail
	// Inodes cost metadata only: report plenty free.
	out.Ffree = 1 << 32
	out.Files = uint64(st.Files) + out.Ffree
	return 0
}

// Fsync of a node without a handle: a directory's (volume.SyncDir makes every
// acknowledged namespace change durable, then snapshots); regular files come with theirs.
func (n *node) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	if h, ok := fh.(*handle); ok {
		return h.Fsync(ctx, flags)
	}
	if n.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFDIR {
		v, done := n.vol()
		defer done()
		return n.errno("fsyncdir", v.SyncDir(ctx))
	}
	return 0
}

// handle is an open regular file, on the volume it was opened on.
type handle struct {
	log *slog.Logger
	ino uint64
	// follow is set on a read-only mount, whose volume is swapped for each new snapshot
	// of the drive: the page cache the kernel keeps per inode then holds the new
	// version's pages and size, so an open file moves to the new volume at its next
	// request, reading what the kernel already shows. A file the new snapshot deleted
	// stays on the version it opened, as an unlinked open file does.
	follow *Live

	mu    sync.RWMutex // guards h, held and tried when follow is set; requests hold it shared
	h     *volume.Handle
	held  *held // the volume h is on; released with the handle
	tried *held // the newest volume h could not move to (deleted there)
}

func noop() {}

// cur returns the volume handle to serve a request with, first moving to the volume
// served now (follower mounts only), and the function to call when the request is done.
func (h *handle) cur(ctx context.Context) (*volume.Handle, func()) {
	if h.follow == nil {
		return h.h, noop
	}
	h.mu.RLock()
	if now := h.follow.cur.Load(); now == h.held || now == h.tried {
		return h.h, h.mu.RUnlock
	}
	h.mu.RUnlock()
	h.move(ctx)
	h.mu.RLock()
	return h.h, h.mu.RUnlock
}

// move reopens the file on the volume served now, releasing the one it was on.
func (h *handle) move(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	next := h.follow.acquire()
	if next == h.held || next == h.tried {
		next.release()
		return
	}
	vh, err := next.v.Open(ctx, h.ino, syscall.O_RDONLY)
	if err != nil {
		if !errors.Is(err, volume.ErrNotFound) {
			h.log.Warn("fs: reopen on the new snapshot", "ino", h.ino, "err", err)
		}
		h.tried = next
		next.release()
		return
	}
	if err := h.h.Release(); err != nil {
		h.log.Warn("fs: release on the old snapshot", "ino", h.ino, "err", err)
	}
	h.held.release()
	h.h, h.held = vh, next
}

var (
	_ = (gofs.FileReader)((*handle)(nil))
	_ = (gofs.FileWriter)((*handle)(nil))
	_ = (gofs.FileFlusher)((*handle)(nil))
	_ = (gofs.FileFsyncer)((*handle)(nil))
	_ = (gofs.FileReleaser)((*handle)(nil))
	_ = (gofs.FileGetattrer)((*handle)(nil))
	_ = (gofs.FileAllocater)((*handle)(nil))
	_ = (gofs.FileGetlker)((*handle)(nil))
	_ = (gofs.FileSetlker)((*handle)(nil))
	_ = (gofs.FileSetlkwer)((*handle)(nil))
	_ = (gofs.FileLseeker)((*handle)(nil))
)

func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	vh, done := h.cur(ctx)
	defer done()
	n, err := vh.Seek(ctx, int64(off), int(whence))
	return uint64(n), toErrno(h.log, "lseek", err)
}

func toLock(lk *fuse.FileLock) volume.Lock {
	return volume.Lock{Start: lk.Start, End: lk.End, Type: lk.Typ, Pid: lk.Pid}
}

func (h *handle) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	l := h.h.GetLock(toLock(lk))
	*out = fuse.FileLock{Start: l.Start, End: l.End, Typ: l.Type, Pid: l.Pid}
	return 0
}

func (h *handle) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return toErrno(h.log, "setlk", h.h.SetLock(ctx, toLock(lk), false))
}

func (h *handle) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return toErrno(h.log, "setlkw", h.h.SetLock(ctx, toLock(lk), true))
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	vh, done := h.cur(ctx)
	defer done()
	n, err := vh.Read(ctx, dest, off)
	if err != nil {
		return nil, toErrno(h.log, "read", err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := h.h.Write(ctx, data, off)
	return uint32(n), toErrno(h.log, "write", err)
}

func (h *handle) Flush(ctx context.Context) syscall.Errno {
	return toErrno(h.log, "flush", h.h.Flush(ctx))
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return toErrno(h.log, "fsync", h.h.Fsync(ctx))
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	defer h.held.release()
	return toErrno(h.log, "release", h.h.Release())
}

func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	vh, done := h.cur(ctx)
	defer done()
	a, err := vh.Getattr(ctx)
	if err != nil {
		return toErrno(h.log, "getattr", err)
	}
	setAttr(&out.Attr, &a)
	return 0
}

func (h *handle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	return toErrno(h.log, "fallocate", h.h.Allocate(ctx, int64(off), int64(size), mode))
}

// dirHandle lists a directory in pages, resuming from a cookie, so a listing of a huge
// directory costs O(entries) and survives concurrent changes. Offsets: 1 is after ".",
// 2 after "..", cookie+2 after the entry with that cookie.
type dirHandle struct {
	v      *volume.Volume
	held   *held // the reference on v, released by Releasedir
	log    *slog.Logger
	ino    uint64
	parent uint64

	pos  uint64 // offset of the last entry returned
	page []volume.DirEntry
	eof  bool
}

var (
	_ = (gofs.FileReaddirenter)((*dirHandle)(nil))
	_ = (gofs.FileSeekdirer)((*dirHandle)(nil))
	_ = (gofs.FileReleasedirer)((*dirHandle)(nil))
	_ = (gofs.FileFsyncdirer)((*dirHandle)(nil))
)

const dirPage = 512

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	switch d.pos {
	case 0:
		d.pos = 1
		return &fuse.DirEntry{Name: ".", Ino: d.ino, Mode: syscall.S_IFDIR, Off: 1}, 0
	case 1:
		d.pos = 2
		return &fuse.DirEntry{Name: "..", Ino: d.parent, Mode: syscall.S_IFDIR, Off: 2}, 0
	}
	if len(d.page) == 0 {
		if d.eof {
			return nil, 0
		}
		page, err := d.v.ReadDir(ctx, d.ino, d.pos-2, dirPage)
		if err != nil {
			return nil, toErrno(d.log, "readdir", err)
		}
		d.page, d.eof = page, len(page) < dirPage
		if len(page) == 0 {
			return nil, 0
		}
	}
	e := d.page[0]
	d.page = d.page[1:]
	d.pos = e.Cookie + 2
	return &fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Type, Off: d.pos}, 0
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.pos, d.page, d.eof = off, nil, false
	return 0
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) { d.held.release() }

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return toErrno(d.log, "fsyncdir", d.v.SyncDir(ctx))
}
