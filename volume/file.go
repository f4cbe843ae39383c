package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/scatterfs/scatter/pipeline"
)

// file is the in-memory state of a regular file that has open handles or staged data.
// Lock order: file.mu, then a bbolt transaction, then writeback.mu or Volume.mu.
type file struct {
	ino     uint64
	opens   int          // guarded by Volume.mu: handles and in-progress users
	dying   int          // guarded by Volume.mu: uncommitted transactions deleting the inode
	writers atomic.Int32 // handles open for writing

	mu         sync.Mutex
	loaded     bool      // size and times below are loaded from the store
	gone       bool      // the inode was deleted; its state is being dropped
	size       int64     // authoritative while loaded
	mtime      time.Time //
	ctime      time.Time //
	attrDirt   bool      // size or times changed since they were last stored
	stage      *os.File  // sparse staging file, nil when nothing is staged
	staged     ranges    // bytes whose current content is in the staging file
	charged    int64     // staging budget f's staged bytes take: their blocks (rechargeLocked)
	dirty      ranges    // staged bytes not being uploaded (subset of staged)
	inflight   ranges    // staged bytes an upload job is working on (subset of staged)
	planning   bool      // a worker is choosing and cutting the next job
	committing bool      // a job's commit transaction is running without mu
	jobs       []*job    // running upload jobs; their ranges are disjoint
	syncWait   int       // fsync callers waiting for uploads
	lastErr    error     // last upload error, nil after a success
	changed    chan struct{}
	seqEnd     int64     // end of the last read, to detect sequential readers
	written    time.Time // time of the last write
}

// waitCommitLocked waits (releasing mu meanwhile) until no upload commit of f is in
// flight. Everything that writes f's journal, extents or attributes calls it first, so
// those writes are ordered with commits, which run their transaction without mu so that
// writes need not wait for its sync. Callers re-check f's state after it.
func (f *file) waitCommitLocked() {
	for f.committing {
		ch := f.changed
		f.mu.Unlock()
		<-ch
		f.mu.Lock()
	}
}

// busy reports whether upload jobs hold parts of f.
func (f *file) busy() bool { return f.planning || len(f.jobs) > 0 }

// signalLocked wakes everyone waiting for this file's upload state to change.
func (f *file) signalLocked() {
	if f.changed != nil {
		close(f.changed)
	}
	f.changed = make(chan struct{})
}

// acquire returns the live state of regular file ino, loading it if needed, and counts a
// user; release undoes it.
func (v *Volume) acquire(ino uint64, write bool) (*file, error) {
	v.mu.Lock()
	f := v.files[ino]
	if f == nil {
		f = &file{ino: ino, changed: make(chan struct{})}
		v.files[ino] = f
	}
	if f.dying > 0 {
		// The inode lost its last name in a transaction not yet committed: the last
		// committed state still has it, but a handle on it would outlive it.
		v.mu.Unlock()
		return nil, fmt.Errorf("inode %d: %w", ino, ErrNotFound)
	}
	f.opens++
	if write {
		f.writers.Add(1)
	}
	v.mu.Unlock()
	f.mu.Lock()
	err := v.loadLocked(f)
	f.mu.Unlock()
	if err != nil {
		v.release(f, write)
		return nil, err
	}
	return f, nil
}

func (v *Volume) loadLocked(f *file) error {
	if f.gone {
		return ErrNotFound
	}
	if f.loaded {
		return nil
	}
	var a Attr
	err := v.commit.view(func(tx *bolt.Tx) (err error) {
		a, err = getAttr(tx, f.ino)
		return err
	})
	if err != nil {
		return err
	}
	switch a.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
	case syscall.S_IFDIR:
		return ErrIsDir
	default:
		return fmt.Errorf("open of a special file: %w", ErrNotSupp)
	}
	f.size, f.mtime, f.ctime, f.loaded = a.Size, a.Mtime, a.Ctime, true
	return nil
}

// release ends a use started by acquire. At the last release of an inode that has no
// links left, the inode is deleted.
func (v *Volume) release(f *file, write bool) {
	if write {
		f.writers.Add(-1)
	}
	v.mu.Lock()
	f.opens--
	last := f.opens == 0
	v.mu.Unlock()
	if !last {
		v.wb.notify(f)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.gone && f.loaded && v.unlinked(f.ino) {
		var deleted bool
		err := v.commit.durable(func(tx *bolt.Tx) error {
			a, err := getAttr(tx, f.ino)
			if err != nil || a.Nlink > 0 {
				return err
			}
			v.mu.Lock()
			open := f.opens > 0
			v.mu.Unlock()
			if open {
				return nil
			}
			deleted = true
			return deleteInode(tx, f.ino)
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			v.log.Error("release: delete unlinked inode", "ino", f.ino, "err", err)
		}
		if deleted {
			v.dropStagingLocked(f)
			f.gone = true
		}
	}
	v.wb.notify(f)
	v.maybeForgetLocked(f)
}

// unlinked reports whether inode ino has no links left (a cheap read before a commit).
func (v *Volume) unlinked(ino uint64) bool {
	var n uint32 = 1
	v.commit.view(func(tx *bolt.Tx) error {
		if a, err := getAttr(tx, ino); err == nil {
			n = a.Nlink
		}
		return nil
	})
	return n == 0
}

// maybeForgetLocked drops f from the live files when nothing uses it any more.
func (v *Volume) maybeForgetLocked(f *file) {
	if f.busy() || len(f.staged) > 0 {
		return
	}
	if f.attrDirt && !f.gone {
		if err := v.storeAttrLocked(f, nil); err != nil {
			v.log.Error("store attributes", "ino", f.ino, "err", err)
			return
		}
	}
	v.mu.Lock()
	// A dying file stays until undie: its mark is what keeps acquire from loading the
	// inode from the last committed state while its deletion commits.
	if f.opens == 0 && f.dying == 0 && v.files[f.ino] == f {
		delete(v.files, f.ino)
	}
	v.mu.Unlock()
	if f.stage != nil {
		f.stage.Close()
		f.stage = nil
		os.Remove(v.stagingPath(f.ino))
	}
}

// dropStagingLocked forgets all staged data of f (its inode is gone).
func (v *Volume) dropStagingLocked(f *file) {
	f.staged, f.dirty, f.inflight = nil, nil, nil
	n := -f.rechargeLocked()
	for _, j := range f.jobs {
		j.clip = 0
	}
	if f.stage != nil {
		f.stage.Close()
		f.stage = nil
	}
	os.Remove(v.stagingPath(f.ino))
	v.wb.unstage(f, n)
	f.signalLocked()
}

// storeAttrLocked writes f's in-memory size and times into its inode record, inside tx
// if given, else as a deferred change (see committer). A missing inode is not an error:
// it was deleted.
func (v *Volume) storeAttrLocked(f *file, tx *bolt.Tx) error {
	ino, size, mtime, ctime := f.ino, f.size, f.mtime, f.ctime // do may run again later, without f.mu
	do := func(tx *bolt.Tx) error {
		a, err := getAttr(tx, ino)
		if errors.Is(err, ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		a.Size, a.Mtime, a.Ctime = size, mtime, ctime
		return putAttr(tx, &a)
	}
	var err error
	if tx != nil {
		err = do(tx)
	} else {
		err = v.commit.do(do)
	}
	if err == nil {
		f.attrDirt = false
	}
	return err
}

// Handle is an open regular file.
type Handle struct {
	v     *Volume
	f     *file
	write bool
}

// Ino returns the inode number of the open file.
func (h *Handle) Ino() uint64 { return h.f.ino }

// Open opens regular file ino. flags are open(2) flags: the access mode and O_TRUNC
// matter (O_APPEND is resolved by the kernel into write offsets).
func (v *Volume) Open(ctx context.Context, ino uint64, flags int) (*Handle, error) {
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	f, err := v.acquire(ino, write)
	if err != nil {
		return nil, err
	}
	h := &Handle{v: v, f: f, write: write}
	if write && flags&syscall.O_TRUNC != 0 {
		if err := f.truncate(v, 0); err != nil {
			h.Release()
			return nil, err
		}
	}
	return h, nil
}

// Create creates regular file name in parent and opens it. If name exists and flags
// lack O_EXCL, the existing file is opened instead.
func (v *Volume) Create(ctx context.Context, parent uint64, name string, flags int, mode, uid, gid uint32) (Attr, *Handle, error) {
	a, err := v.Mknod(ctx, parent, name, syscall.S_IFREG|mode&0o7777, 0, uid, gid)
	if err == nil {
		flags &^= syscall.O_TRUNC // new and empty: truncating would only cost a commit
	}
	if errors.Is(err, ErrExist) && flags&syscall.O_EXCL == 0 {
		if a, err = v.Lookup(ctx, parent, name); err != nil {
			return Attr{}, nil, err
		}
		if a.IsDir() {
			return Attr{}, nil, ErrIsDir
		}
	} else if err != nil {
		return Attr{}, nil, err
	}
	h, err := v.Open(ctx, a.Ino, flags)
	if err != nil {
		return Attr{}, nil, err
	}
	a, err = v.Getattr(ctx, a.Ino)
	if err != nil {
		h.Release()
		return Attr{}, nil, err
	}
	return a, h, nil
}

// Release closes the handle. Staged data stays journalled and keeps uploading.
func (h *Handle) Release() error {
	if h.f == nil {
		return nil
	}
	h.v.locks.dropLocks(h)
	h.v.release(h.f, h.write)
	h.f = nil
	return nil
}

// chunkSeg is a part of a read served from a chunk on the peers.
type chunkSeg struct {
	ref      pipeline.Ref
	chunkOff int64 // offset in the chunk's plaintext
	dstOff   int64 // offset in the read buffer
	n        int64
}

// readLocked fills dst with the file content at off from staging, inline extents and
// holes, and returns the parts that must come from chunks on the peers.
func (v *Volume) readLocked(f *file, dst []byte, off int64) ([]chunkSeg, error) {
	end := off + int64(len(dst))
	var exts []extentAt
	if err := v.commit.view(func(tx *bolt.Tx) (err error) {
		exts, err = extentsIn(tx, f.ino, off, end)
		for i := range exts {
			// Inline bytes point into the transaction's pages: copy them out.
			exts[i].Data = bytes.Clone(exts[i].Data)
		}
		return err
	}); err != nil {
		return nil, err
	}
	var segs []chunkSeg
	// fromExtents fills [a, b), which holds no staged byte.
	fromExtents := func(a, b int64) {
		for a < b {
			for len(exts) > 0 && exts[0].end() <= a {
				exts = exts[1:]
			}
			if len(exts) == 0 || exts[0].Off >= b {
				clear(dst[a-off : b-off])
				return
			}
			e := exts[0]
			if e.Off > a {
				clear(dst[a-off : e.Off-off])
				a = e.Off
			}
			n := min(b, e.end()) - a
			if e.Data != nil {
				copy(dst[a-off:a-off+n], e.Data[a-e.Off:])
			} else {
				segs = append(segs, chunkSeg{ref: *e.Ref, chunkOff: a - e.Off, dstOff: a - off, n: n})
			}
			a += n
		}
	}
	pos := off
	for pos < end {
		s, ok := f.staged.next(pos)
		if !ok || s.off >= end {
			fromExtents(pos, end)
			break
		}
		if s.off > pos {
			fromExtents(pos, s.off)
		}
		b := min(s.end, end)
		p := dst[s.off-off : b-off]
		n, err := f.stage.ReadAt(p, s.off)
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%w: staging of inode %d: %v", ErrIO, f.ino, err)
		}
		clear(p[n:]) // bytes past the staging file's end were never written: zeros
		pos = b
	}
	return segs, nil
}

// fillChunks copies the chunk parts of a read into dst.
func (v *Volume) fillChunks(ctx context.Context, ino uint64, dst []byte, segs []chunkSeg) error {
	for _, s := range segs {
		plain, err := v.reads.plain(ctx, s.ref)
		if err != nil {
			if errors.Is(err, ErrInterrupted) {
				return err
			}
			v.log.Error("read: chunk unavailable", "file", v.pathOf(ino), "ino", ino, "chunk", s.ref.ID,
				"unrecoverable", errors.Is(err, pipeline.ErrUnrecoverable), "err", err)
			return fmt.Errorf("%w: chunk %s: %v", ErrIO, s.ref.ID, err)
		}
		if s.chunkOff+s.n > int64(len(plain)) {
			return fmt.Errorf("%w: chunk %s has %d bytes, extent wants %d", ErrIO, s.ref.ID, len(plain), s.chunkOff+s.n)
		}
		copy(dst[s.dstOff:s.dstOff+s.n], plain[s.chunkOff:])
	}
	return nil
}

// Read reads into p at off and returns the number of bytes read (0 at end of file).
func (h *Handle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	f, v := h.f, h.v
	if off < 0 {
		return 0, ErrInvalid
	}
	f.mu.Lock()
	if off >= f.size {
		f.mu.Unlock()
		return 0, nil
	}
	n := min(int64(len(p)), f.size-off)
	segs, err := v.readLocked(f, p[:n], off)
	seq := off == f.seqEnd || off == 0
	f.seqEnd = off + n
	f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if err := v.fillChunks(ctx, f.ino, p[:n], segs); err != nil {
		return 0, err
	}
	if seq && len(segs) > 0 {
		v.reads.prefetch(f.ino, off+n)
	}
	return int(n), nil
}

// Write writes p at off. It waits while staging is full; it fails with ErrNoSpace when
// no upload makes progress for Config.WriteWait.
func (h *Handle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	f, v := h.f, h.v
	if off < 0 {
		return 0, ErrInvalid
	}
	if off+int64(len(p)) > MaxFileSize {
		return 0, ErrTooBig
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Reserve the whole write before taking the file lock, then return what it did not
	// need (blocks already staged): the cap holds at every instant.
	want := spannedBlocks(off, off+int64(len(p)))
	if err := v.wb.reserve(ctx, want); err != nil {
		return 0, err
	}
	f.mu.Lock()
	used, err := v.writeLocked(f, p, off)
	f.mu.Unlock()
	v.wb.unreserve(want - used)
	if err != nil {
		return 0, err
	}
	v.wb.notify(f)
	return len(p), nil
}

// writeLocked stages p at off and returns the staging budget it took: the bytes of the
// blocks that hold staged bytes now and did not before.
func (v *Volume) writeLocked(f *file, p []byte, off int64) (int64, error) {
	if f.gone {
		return 0, ErrNotFound
	}
	if f.stage == nil {
		st, err := os.OpenFile(v.stagingPath(f.ino), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return 0, fmt.Errorf("%w: staging: %v", ErrIO, err)
		}
		f.stage = st
	}
	end := off + int64(len(p))
	if _, err := f.stage.WriteAt(p, off); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			v.log.Error("write: the staging disk is full", "dir", v.cfg.StagingDir, "err", err)
			return 0, fmt.Errorf("%w: staging disk full: %v", ErrNoSpace, err)
		}
		return 0, fmt.Errorf("%w: staging: %v", ErrIO, err)
	}
	if len(f.staged) == 0 {
		v.wb.markStaged(f)
	}
	f.staged.add(off, end)
	added := f.rechargeLocked()
	f.dirty.add(off, end)
	f.size = max(f.size, end)
	now := time.Now()
	f.mtime, f.ctime, f.attrDirt, f.written = now, now, true, now
	return added, nil
}

// truncate sets the file's size, dropping content past it.
func (f *file) truncate(v *Volume, size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waitCommitLocked()
	if f.gone {
		return ErrNotFound
	}
	now := time.Now()
	if size < f.size {
		f.staged.remove(size, MaxFileSize)
		f.dirty.remove(size, MaxFileSize)
		f.inflight.remove(size, MaxFileSize)
		for _, j := range f.jobs {
			j.clip = min(j.clip, size)
		}
	}
	shrink := size < f.size
	f.size, f.mtime, f.ctime = size, now, now
	err := v.commit.durable(func(tx *bolt.Tx) error {
		if err := truncateExtents(tx, f.ino, size); err != nil {
			return err
		}
		if err := v.journalTx(f, tx); err != nil {
			return err
		}
		return v.storeAttrLocked(f, tx)
	})
	// Cut the staging file only once the journal no longer lists the bytes past size:
	// after a crash in between, replay must find what the journal promises.
	if err == nil && shrink && f.stage != nil {
		if terr := f.stage.Truncate(size); terr != nil {
			err = fmt.Errorf("%w: staging: %v", ErrIO, terr)
		}
		f.punchLocked(size, size) // the block size ends in, if it holds no staged byte
	}
	// The budget follows the disk: it shrinks once the staging file is cut.
	v.wb.unstage(f, -f.rechargeLocked())
	f.signalLocked()
	return err
}

// journalTx records f's staged ranges (or their absence) in tx.
func (v *Volume) journalTx(f *file, tx *bolt.Tx) error {
	b := tx.Bucket(bJournal)
	if len(f.staged) == 0 {
		return b.Delete(inoKey(f.ino))
	}
	return b.Put(inoKey(f.ino), encodeJournal(journalRec{Size: f.size, Dirty: f.staged}))
}

// journalLocked makes f's staged data survive a crash: the staging file is synced, then
// its ranges and the file's size are committed to the store.
func (v *Volume) journalLocked(f *file) error {
	f.waitCommitLocked()
	if f.gone || (len(f.staged) == 0 && !f.attrDirt) {
		return nil
	}
	if f.stage != nil && len(f.staged) > 0 {
		if err := f.stage.Sync(); err != nil {
			return fmt.Errorf("%w: sync staging: %v", ErrIO, err)
		}
	}
	return v.commit.durable(func(tx *bolt.Tx) error {
		if _, err := getAttr(tx, f.ino); errors.Is(err, ErrNotFound) {
			return nil
		}
		if err := v.journalTx(f, tx); err != nil {
			return err
		}
		return v.storeAttrLocked(f, tx)
	})
}

// inlineLocked stores a small file's whole content inline in its metadata, dropping its
// staging. It reports false when the file is not eligible (too large, being uploaded, or
// holding content on the peers).
func (v *Volume) inlineLocked(f *file) (bool, error) {
	f.waitCommitLocked()
	if f.size > int64(v.cfg.InlineMax) || f.busy() || f.gone {
		return false, nil
	}
	buf := make([]byte, f.size)
	segs, err := v.readLocked(f, buf, 0)
	if err != nil || len(segs) > 0 {
		return false, err
	}
	err = v.commit.durable(func(tx *bolt.Tx) error {
		if _, err := getAttr(tx, f.ino); errors.Is(err, ErrNotFound) {
			return nil
		}
		if err := truncateExtents(tx, f.ino, 0); err != nil {
			return err
		}
		if f.size > 0 {
			if err := putExtent(tx, f.ino, extentAt{0, extent{Len: f.size, Data: buf}}); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bJournal).Delete(inoKey(f.ino)); err != nil {
			return err
		}
		return v.storeAttrLocked(f, tx)
	})
	if err != nil {
		return false, err
	}
	f.staged, f.dirty = nil, nil
	n := -f.rechargeLocked()
	if f.stage != nil {
		f.stage.Close()
		f.stage = nil
		os.Remove(v.stagingPath(f.ino))
	}
	v.wb.unstage(f, n)
	f.signalLocked()
	return true, nil
}

// Flush is close(2)'s flush: once it returns, the data written through any handle of
// the file is staged and journalled and survives a crash of this process.
func (h *Handle) Flush(ctx context.Context) error {
	f, v := h.f, h.v
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone || (len(f.staged) == 0 && !f.attrDirt) {
		return nil
	}
	if len(f.dirty) > 0 {
		if ok, err := v.inlineLocked(f); err != nil || ok {
			return err
		}
	}
	return v.journalLocked(f)
}

// Fsync returns once the file's data is on its peers (or inline in the metadata), and
// every namespace change acknowledged before it is durable.
func (h *Handle) Fsync(ctx context.Context) error {
	f, v := h.f, h.v
	f.mu.Lock()
	if err := v.journalLocked(f); err != nil {
		f.mu.Unlock()
		return err
	}
	if err := v.commit.flush(); err != nil {
		f.mu.Unlock()
		return err
	}
	f.syncWait++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.syncWait--
		f.mu.Unlock()
	}()
	v.wb.notify(f)
	deadline := time.NewTimer(v.cfg.SyncWait)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		done := len(f.staged) == 0 || f.gone
		ch, lastErr := f.changed, f.lastErr
		f.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ErrInterrupted
		case <-deadline.C:
			v.log.Error("fsync: data not on peers in time", "file", v.pathOf(f.ino), "ino", f.ino, "wait", v.cfg.SyncWait, "last_err", lastErr)
			return fmt.Errorf("%w: fsync timed out: %v", ErrIO, lastErr)
		}
	}
}

// Allocate implements fallocate(2) mode 0 (extend the size; space on the peers is not
// reserved) and FALLOC_FL_KEEP_SIZE (nothing to do).
func (h *Handle) Allocate(ctx context.Context, off, n int64, mode uint32) error {
	if off < 0 || n <= 0 {
		return ErrInvalid
	}
	switch mode {
	case 0:
		h.f.mu.Lock()
		size := h.f.size
		h.f.mu.Unlock()
		if off+n > size {
			return h.f.truncate(h.v, off+n)
		}
		return nil
	case unix.FALLOC_FL_KEEP_SIZE:
		return nil
	}
	return ErrNotSupp
}

// Getattr returns the open file's attributes.
func (h *Handle) Getattr(ctx context.Context) (Attr, error) {
	return h.v.Getattr(ctx, h.f.ino)
}

// ErrNoOffset: SEEK_DATA or SEEK_HOLE found nothing at or after the offset (ENXIO).
var ErrNoOffset = errors.New("volume: no such offset")

// Whence values of Seek, as in lseek(2).
const (
	SeekData = 3
	SeekHole = 4
)

// Seek implements lseek's SEEK_DATA and SEEK_HOLE: holes are byte ranges that no
// extent and no staged write covers, and the end of the file.
func (h *Handle) Seek(ctx context.Context, off int64, whence int) (int64, error) {
	f, v := h.f, h.v
	if whence != SeekData && whence != SeekHole {
		return 0, ErrInvalid
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if off < 0 || off >= f.size {
		return 0, ErrNoOffset
	}
	data := f.staged.intersect(off, f.size)
	err := v.commit.view(func(tx *bolt.Tx) error {
		exts, err := extentsIn(tx, f.ino, off, f.size)
		for _, e := range exts {
			data.add(max(e.Off, off), min(e.end(), f.size))
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if whence == SeekData {
		s, ok := data.next(off)
		if !ok {
			return 0, ErrNoOffset
		}
		return s.off, nil
	}
	if s, ok := data.next(off); ok && s.off <= off {
		return s.end, nil // data.next merges touching spans, so s.end starts a hole
	}
	return off, nil
}
