package volume

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bParents maps a directory to its parent (directories have exactly one), for rename's
// loop check and for naming files in logs.
var bParents = []byte("parents")

func init() { allBuckets = append(allBuckets, bParents) }

func checkName(name string) error {
	if len(name) > MaxName {
		return fmt.Errorf("%q: %w", name[:32]+"...", ErrNameTooLong)
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("name %q: %w", name, ErrInvalid)
	}
	return nil
}

// overlay replaces the attributes a live file keeps in memory (size and times change on
// every write and are persisted at flush and upload).
func (v *Volume) overlay(a *Attr) {
	v.mu.Lock()
	f := v.files[a.Ino]
	v.mu.Unlock()
	if f == nil {
		return
	}
	f.mu.Lock()
	if f.loaded {
		a.Size, a.Mtime, a.Ctime = f.size, f.mtime, f.ctime
	}
	f.mu.Unlock()
}

// Getattr returns ino's attributes.
func (v *Volume) Getattr(ctx context.Context, ino uint64) (Attr, error) {
	var a Attr
	err := v.commit.view(func(tx *bolt.Tx) (err error) {
		a, err = getAttr(tx, ino)
		return err
	})
	if err != nil {
		return Attr{}, err
	}
	v.overlay(&a)
	return a, nil
}

// Lookup returns the attributes of name in directory parent.
func (v *Volume) Lookup(ctx context.Context, parent uint64, name string) (Attr, error) {
	if len(name) > MaxName {
		return Attr{}, ErrNameTooLong
	}
	var a Attr
	err := v.commit.view(func(tx *bolt.Tx) error {
		d, ok, err := getDirent(tx, parent, name)
		if err != nil {
			return err
		}
		if !ok {
			pa, err := getAttr(tx, parent)
			if err == nil && !pa.IsDir() {
				return ErrNotDir
			}
			return ErrNotFound
		}
		a, err = getAttr(tx, d.Ino)
		return err
	})
	if err != nil {
		return Attr{}, err
	}
	v.overlay(&a)
	return a, nil
}

// touchDir sets a directory's mtime and ctime to now and adjusts its link count.
func touchDir(tx *bolt.Tx, ino uint64, now time.Time, dlink int) error {
	a, err := getAttr(tx, ino)
	if err != nil {
		return err
	}
	a.Mtime, a.Ctime = now, now
	a.Nlink = uint32(int(a.Nlink) + dlink)
	return putAttr(tx, &a)
}

// newInode allocates an inode with attributes a (Ino is filled in) and links it as name
// in parent.
func newInode(tx *bolt.Tx, parent uint64, name string, a *Attr) error {
	pa, err := getAttr(tx, parent)
	if err != nil {
		return err
	}
	if !pa.IsDir() {
		return ErrNotDir
	}
	if _, ok, err := getDirent(tx, parent, name); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("%q: %w", name, ErrExist)
	}
	if pa.Mode&syscall.S_ISGID != 0 {
		// A set-group-ID directory gives its group to new entries, and its flag to new
		// directories (as ext4 does; the kernel leaves this to the filesystem).
		a.GID = pa.GID
		if a.IsDir() {
			a.Mode |= syscall.S_ISGID
		}
	}
	ino, err := tx.Bucket(bInodes).NextSequence()
	if err != nil {
		return err
	}
	a.Ino = ino
	if err := putAttr(tx, a); err != nil {
		return err
	}
	if err := putDirent(tx, parent, name, ino, a.Mode&syscall.S_IFMT); err != nil {
		return err
	}
	dlink := 0
	if a.IsDir() {
		dlink = 1
		if err := tx.Bucket(bParents).Put(inoKey(ino), inoKey(parent)); err != nil {
			return err
		}
	}
	return touchDir(tx, parent, a.Ctime, dlink)
}

func (v *Volume) create(parent uint64, name string, a Attr) (Attr, error) {
	if err := checkName(name); err != nil {
		return Attr{}, err
	}
	now := time.Now()
	a.Atime, a.Mtime, a.Ctime = now, now, now
	var out Attr
	err := v.commit.do(func(tx *bolt.Tx) error {
		b := a
		if err := newInode(tx, parent, name, &b); err != nil {
			return err
		}
		if !v.commit.rerun() {
			out = b
		}
		return nil
	})
	return out, err
}

// Mkdir creates directory name in parent.
func (v *Volume) Mkdir(ctx context.Context, parent uint64, name string, mode, uid, gid uint32) (Attr, error) {
	return v.create(parent, name, Attr{Mode: syscall.S_IFDIR | mode&0o7777, Nlink: 2, UID: uid, GID: gid})
}

// Mknod creates a regular file, FIFO, socket or device node.
func (v *Volume) Mknod(ctx context.Context, parent uint64, name string, mode, rdev, uid, gid uint32) (Attr, error) {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG, syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFCHR, syscall.S_IFBLK:
	case 0:
		mode |= syscall.S_IFREG
	default:
		return Attr{}, fmt.Errorf("mknod mode %o: %w", mode, ErrInvalid)
	}
	return v.create(parent, name, Attr{Mode: mode, Nlink: 1, UID: uid, GID: gid, Rdev: rdev})
}

// Symlink creates a symbolic link name in parent pointing at target.
func (v *Volume) Symlink(ctx context.Context, parent uint64, name, target string, uid, gid uint32) (Attr, error) {
	if err := checkName(name); err != nil {
		return Attr{}, err
	}
	if len(target) == 0 || len(target) >= 4096 {
		return Attr{}, fmt.Errorf("symlink target of %d bytes: %w", len(target), ErrNameTooLong)
	}
	now := time.Now()
	var out Attr
	err := v.commit.do(func(tx *bolt.Tx) error {
		a := Attr{Mode: syscall.S_IFLNK | 0o777, Nlink: 1, UID: uid, GID: gid, Size: int64(len(target)), Atime: now, Mtime: now, Ctime: now}
		if err := newInode(tx, parent, name, &a); err != nil {
			return err
		}
		if !v.commit.rerun() {
			out = a
		}
		return putExtent(tx, a.Ino, extentAt{0, extent{Len: int64(len(target)), Data: []byte(target)}})
	})
	return out, err
}

// Readlink returns a symbolic link's target.
func (v *Volume) Readlink(ctx context.Context, ino uint64) (string, error) {
	var target string
	err := v.commit.view(func(tx *bolt.Tx) error {
		a, err := getAttr(tx, ino)
		if err != nil {
			return err
		}
		if a.Mode&syscall.S_IFMT != syscall.S_IFLNK {
			return ErrInvalid
		}
		exts, err := extentsIn(tx, ino, 0, a.Size)
		if err != nil {
			return err
		}
		if len(exts) != 1 || exts[0].Data == nil {
			return fmt.Errorf("symlink %d: %w", ino, errBadRecord)
		}
		target = string(exts[0].Data)
		return nil
	})
	return target, err
}

// Link makes name in parent another link to ino.
func (v *Volume) Link(ctx context.Context, ino, parent uint64, name string) (Attr, error) {
	if err := checkName(name); err != nil {
		return Attr{}, err
	}
	now := time.Now()
	var out Attr
	err := v.commit.do(func(tx *bolt.Tx) error {
		a, err := getAttr(tx, ino)
		if err != nil {
			return err
		}
		if a.IsDir() {
			return fmt.Errorf("link to a directory: %w", ErrNotSupp)
		}
		if a.Nlink >= maxLinks {
			return ErrTooManyLinks
		}
		if _, ok, err := getDirent(tx, parent, name); err != nil {
			return err
		} else if ok {
			return ErrExist
		}
		if a.Nlink == 0 {
			return ErrNotFound // unlinked while open: linkat(2) of such a file fails too
		}
		a.Nlink++
		a.Ctime = now
		if err := putAttr(tx, &a); err != nil {
			return err
		}
		if err := putDirent(tx, parent, name, ino, a.Mode&syscall.S_IFMT); err != nil {
			return err
		}
		if !v.commit.rerun() {
			out = a
		}
		return touchDir(tx, parent, now, 0)
	})
	if err == nil {
		v.overlay(&out)
	}
	return out, err
}

// dropLink removes one link of ino inside tx. When the last link goes, the inode is
// deleted at once if no handle has it open, and otherwise marked an orphan, deleted at
// its last release (or on the next Open of the volume after a crash). When it deletes
// the inode it returns the inode's file state marked dying: tx commits later, and until
// then an Open would find the inode in the last committed state and get a handle on an
// inode about to vanish, so acquire refuses a dying inode (ENOENT: its name is gone).
// The caller ends the mark with undie once the transaction is over, committed or not.
// When the committer applies the operation again (rerun), the inode is deleted or
// orphaned as before and nothing is marked.
func (v *Volume) dropLink(tx *bolt.Tx, ino uint64, now time.Time) (dying *file, err error) {
	a, err := getAttr(tx, ino)
	if err != nil {
		return nil, err
	}
	if a.IsDir() {
		a.Nlink = 0
	} else if a.Nlink > 0 {
		a.Nlink--
	}
	a.Ctime = now
	if a.Nlink > 0 {
		return nil, putAttr(tx, &a)
	}
	if a.IsDir() {
		if err := tx.Bucket(bParents).Delete(inoKey(ino)); err != nil {
			return nil, err
		}
	}
	// Decide and mark under one hold of v.mu, which acquire takes to count an open: no
	// open slips in between.
	rerun := v.commit.rerun()
	v.mu.Lock()
	f := v.files[ino]
	open := f != nil && f.opens > 0
	if !open && !rerun {
		if f == nil {
			f = &file{ino: ino, changed: make(chan struct{})}
			v.files[ino] = f
		}
		f.dying++
	}
	v.mu.Unlock()
	if open {
		if err := putAttr(tx, &a); err != nil {
			return nil, err
		}
		return nil, tx.Bucket(bOrphans).Put(inoKey(ino), nil)
	}
	if rerun {
		return nil, deleteInode(tx, ino)
	}
	if testHookLinkDropped != nil {
		testHookLinkDropped(ino)
	}
	return f, deleteInode(tx, ino)
}

// undie ends the dying marks of dropLink once their transaction is over, and forgets the
// files nothing uses any more.
func (v *Volume) undie(dying []*file) {
	for _, f := range dying {
		v.mu.Lock()
		f.dying--
		idle := f.dying == 0 && f.opens == 0
		v.mu.Unlock()
		if idle {
			f.mu.Lock()
			v.maybeForgetLocked(f)
			f.mu.Unlock()
		}
	}
}

// testHookLinkDropped, when set by a test, runs inside the transaction that deletes an
// inode whose last link is gone, before that transaction commits.
var testHookLinkDropped func(ino uint64)

// forgetDeleted drops the in-memory state of inodes deleted by a committed transaction.
func (v *Volume) forgetDeleted(inos []uint64) {
	for _, ino := range inos {
		v.mu.Lock()
		f := v.files[ino]
		v.mu.Unlock()
		if f != nil {
			f.mu.Lock()
			v.dropStagingLocked(f)
			f.gone = true
			v.maybeForgetLocked(f)
			f.mu.Unlock()
		} else {
			os.Remove(v.stagingPath(ino))
		}
	}
}

// Unlink removes name (not a directory) from parent.
func (v *Volume) Unlink(ctx context.Context, parent uint64, name string) error {
	return v.remove(parent, name, false)
}

// Rmdir removes the empty directory name from parent.
func (v *Volume) Rmdir(ctx context.Context, parent uint64, name string) error {
	return v.remove(parent, name, true)
}

func (v *Volume) remove(parent uint64, name string, dir bool) error {
	if len(name) > MaxName {
		return ErrNameTooLong
	}
	now := time.Now()
	var deleted []uint64
	var dying []*file
	err := v.commit.doThen(func(tx *bolt.Tx) error {
		d, ok, err := getDirent(tx, parent, name)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		isDir := d.Type == syscall.S_IFDIR
		switch {
		case dir && !isDir:
			return ErrNotDir
		case !dir && isDir:
			return ErrIsDir
		case isDir && !dirEmpty(tx, d.Ino):
			return ErrNotEmpty
		}
		if err := delDirent(tx, parent, name, d); err != nil {
			return err
		}
		f, err := v.dropLink(tx, d.Ino, now)
		if f != nil {
			deleted = append(deleted, d.Ino)
			dying = append(dying, f)
		}
		if err != nil {
			return err
		}
		dlink := 0
		if isDir {
			dlink = -1
		}
		return touchDir(tx, parent, now, dlink)
	}, func(committed bool) { v.deletedThen(committed, deleted, dying) })
	if err != nil {
		v.undie(dying)
	}
	return err
}

// deletedThen ends the dying marks of a remove or rename once its transaction is over,
// and drops the deleted inodes' staged data if it committed: until then a crash brings
// the inode back, with its journal, so its staging file must stay.
func (v *Volume) deletedThen(committed bool, deleted []uint64, dying []*file) {
	if committed {
		v.forgetDeleted(deleted)
	}
	v.undie(dying)
}

// Rename flags, as in renameat2(2).
const (
	RenameNoReplace = 1
	RenameExchange  = 2
)

// isAncestor reports whether dir a is dir b or one of b's ancestors.
func isAncestor(tx *bolt.Tx, a, b uint64) bool {
	for i := 0; i < 1<<16; i++ {
		if a == b {
			return true
		}
		if b == RootIno {
			return false
		}
		p := tx.Bucket(bParents).Get(inoKey(b))
		if p == nil {
			return false
		}
		b = keyIno(p)
	}
	return false
}

// Rename moves name in parent to newName in newParent, replacing a file or empty
// directory there (unless RenameNoReplace), or swapping the two (RenameExchange).
func (v *Volume) Rename(ctx context.Context, parent uint64, name string, newParent uint64, newName string, flags uint32) error {
	if err := checkName(newName); err != nil {
		return err
	}
	if len(name) > MaxName {
		return ErrNameTooLong
	}
	if flags&^(RenameNoReplace|RenameExchange) != 0 || flags == RenameNoReplace|RenameExchange {
		return fmt.Errorf("rename flags %#x: %w", flags, ErrInvalid)
	}
	now := time.Now()
	var deleted []uint64
	var dying []*file
	err := v.commit.doThen(func(tx *bolt.Tx) error {
		src, ok, err := getDirent(tx, parent, name)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		if pa, err := getAttr(tx, newParent); err != nil {
			return err
		} else if !pa.IsDir() {
			return ErrNotDir
		}
		dst, exists, err := getDirent(tx, newParent, newName)
		if err != nil {
			return err
		}
		if parent == newParent && name == newName {
			return nil
		}
		srcDir := src.Type == syscall.S_IFDIR
		if srcDir && isAncestor(tx, src.Ino, newParent) {
			return fmt.Errorf("rename a directory into itself: %w", ErrInvalid)
		}
		if exists && dst.Ino == src.Ino {
			// Two links to one file: rename does nothing (POSIX).
			return nil
		}
		if flags&RenameExchange != 0 {
			if !exists {
				return ErrNotFound
			}
			dstDir := dst.Type == syscall.S_IFDIR
			if dstDir && isAncestor(tx, dst.Ino, parent) {
				return fmt.Errorf("rename a directory into itself: %w", ErrInvalid)
			}
			if err := delDirent(tx, parent, name, src); err != nil {
				return err
			}
			if err := delDirent(tx, newParent, newName, dst); err != nil {
				return err
			}
			if err := putDirent(tx, parent, name, dst.Ino, dst.Type); err != nil {
				return err
			}
			if err := putDirent(tx, newParent, newName, src.Ino, src.Type); err != nil {
				return err
			}
			d1, d2 := 0, 0
			if srcDir {
				d1--
				d2++
				if err := tx.Bucket(bParents).Put(inoKey(src.Ino), inoKey(newParent)); err != nil {
					return err
				}
			}
			if dstDir {
				d1++
				d2--
				if err := tx.Bucket(bParents).Put(inoKey(dst.Ino), inoKey(parent)); err != nil {
					return err
				}
			}
			if parent == newParent {
				return touchDir(tx, parent, now, 0)
			}
			if err := touchDir(tx, parent, now, d1); err != nil {
				return err
			}
			return touchDir(tx, newParent, now, d2)
		}
		dl := 0 // link change of newParent
		if exists {
			if flags&RenameNoReplace != 0 {
				return ErrExist
			}
			dstDir := dst.Type == syscall.S_IFDIR
			switch {
			case srcDir && !dstDir:
				return ErrNotDir
			case !srcDir && dstDir:
				return ErrIsDir
			case dstDir && !dirEmpty(tx, dst.Ino):
				return ErrNotEmpty
			}
			if err := delDirent(tx, newParent, newName, dst); err != nil {
				return err
			}
			f, err := v.dropLink(tx, dst.Ino, now)
			if f != nil {
				deleted = append(deleted, dst.Ino)
				dying = append(dying, f)
			}
			if err != nil {
				return err
			}
			if dstDir {
				dl--
			}
		}
		if err := delDirent(tx, parent, name, src); err != nil {
			return err
		}
		if err := putDirent(tx, newParent, newName, src.Ino, src.Type); err != nil {
			return err
		}
		// The moved inode's ctime changes (as on ext4).
		a, err := getAttr(tx, src.Ino)
		if err != nil {
			return err
		}
		a.Ctime = now
		if err := putAttr(tx, &a); err != nil {
			return err
		}
		if srcDir {
			if err := tx.Bucket(bParents).Put(inoKey(src.Ino), inoKey(newParent)); err != nil {
				return err
			}
			dl++
		}
		if parent == newParent {
			return touchDir(tx, parent, now, dl-boolInt(srcDir))
		}
		if err := touchDir(tx, parent, now, -boolInt(srcDir)); err != nil {
			return err
		}
		return touchDir(tx, newParent, now, dl)
	}, func(committed bool) { v.deletedThen(committed, deleted, dying) })
	if err != nil {
		v.undie(dying)
	}
	return err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// DirEntry is one entry of a directory listing.
type DirEntry struct {
	Name   string
	Ino    uint64
	Type   uint32 // S_IFMT bits
	Cookie uint64 // pass to ReadDir to continue after this entry; never 0
}

// ReadDir returns up to max entries of directory ino that follow the entry with cookie
// after (0: from the start). Cookies are stable: entries added or removed while a listing
// is under way do not make it skip or repeat the others, and each call costs O(max) however
// large the directory is.
func (v *Volume) ReadDir(ctx context.Context, ino uint64, after uint64, max int) ([]DirEntry, error) {
	var out []DirEntry
	err := v.commit.view(func(tx *bolt.Tx) error {
		a, err := getAttr(tx, ino)
		if err != nil {
			return err
		}
		if !a.IsDir() {
			return ErrNotDir
		}
		p := inoKey(ino)
		c := tx.Bucket(bCookies).Cursor()
		for k, name := c.Seek(pairKey(ino, after+1)); k != nil && bytes.HasPrefix(k, p) && len(out) < max; k, name = c.Next() {
			d, ok, err := getDirent(tx, ino, string(name))
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%w: cookie of %q without entry", errBadRecord, name)
			}
			out = append(out, DirEntry{Name: string(name), Ino: d.Ino, Type: d.Type, Cookie: d.Cookie})
		}
		return nil
	})
	return out, err
}

// SetAttr lists the attributes Setattr changes; nil fields stay as they are.
type SetAttr struct {
	Mode         *uint32 // permission bits (07777)
	UID, GID     *uint32
	Size         *int64
	Atime, Mtime *time.Time
}

// clone returns s pointing at copies of the values s points at.
func (s SetAttr) clone() SetAttr {
	return SetAttr{Mode: clonePtr(s.Mode), UID: clonePtr(s.UID), GID: clonePtr(s.GID),
		Size: clonePtr(s.Size), Atime: clonePtr(s.Atime), Mtime: clonePtr(s.Mtime)}
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

// Setattr changes ino's attributes. A size change truncates or extends the file (the
// extension is a hole).
func (v *Volume) Setattr(ctx context.Context, ino uint64, s SetAttr) (Attr, error) {
	// The change below may run again after Setattr returned (see committer.rerun): it must
	// not read the caller's variables then.
	s = s.clone()
	if s.Size != nil {
		if *s.Size < 0 {
			return Attr{}, ErrInvalid
		}
		if *s.Size > MaxFileSize {
			return Attr{}, ErrTooBig
		}
		f, err := v.acquire(ino, false)
		if err != nil {
			return Attr{}, err
		}
		err = f.truncate(v, *s.Size)
		v.release(f, false)
		if err != nil {
			return Attr{}, err
		}
	}
	now := time.Now()
	v.mu.Lock()
	f := v.files[ino]
	v.mu.Unlock()
	if f != nil {
		// Times of a live file are kept in memory: change both under its lock.
		f.mu.Lock()
		defer f.mu.Unlock()
		f.waitCommitLocked()
	}
	// The function below may run again later without f.mu: it takes f's state from here.
	live := f != nil && f.loaded
	var size int64
	var mtime, ctime time.Time
	if live {
		size, mtime, ctime = f.size, f.mtime, f.ctime
	}
	var out Attr
	err := v.commit.do(func(tx *bolt.Tx) error {
		a, err := getAttr(tx, ino)
		if err != nil {
			return err
		}
		if live {
			a.Size, a.Mtime, a.Ctime = size, mtime, ctime
		}
		old := a
		if s.Mode != nil {
			a.Mode = a.Mode&syscall.S_IFMT | *s.Mode&0o7777
		}
		if s.UID != nil {
			a.UID = *s.UID
		}
		if s.GID != nil {
			a.GID = *s.GID
		}
		if s.Atime != nil {
			a.Atime = *s.Atime
		}
		if s.Mtime != nil {
			a.Mtime = *s.Mtime
		}
		if s.Size == nil && a.Mode == old.Mode && a.UID == old.UID && a.GID == old.GID &&
			a.Atime.Equal(old.Atime) && a.Mtime.Equal(old.Mtime) {
			// Changes nothing (rsync's fchmod to the mode the file was created with):
			// not even ctime, which saves the write.
			if !v.commit.rerun() {
				out = a
			}
			return errUnchanged
		}
		a.Ctime = now
		if !v.commit.rerun() {
			out = a
		}
		return putAttr(tx, &a)
	})
	if err == nil && live {
		f.mtime, f.ctime = out.Mtime, out.Ctime
	}
	return out, err
}

// Xattr flags, as in setxattr(2).
const (
	XattrCreate  = 1
	XattrReplace = 2
)

// GetXattr returns the value of extended attribute name.
func (v *Volume) GetXattr(ctx context.Context, ino uint64, name string) ([]byte, error) {
	var val []byte
	err := v.commit.view(func(tx *bolt.Tx) error {
		if _, err := getAttr(tx, ino); err != nil {
			return err
		}
		b := tx.Bucket(bXattrs).Get(xattrKey(ino, name))
		if b == nil {
			return ErrNoAttr
		}
		val = bytes.Clone(b)
		return nil
	})
	return val, err
}

// SetXattr sets extended attribute name (flags: XattrCreate, XattrReplace).
func (v *Volume) SetXattr(ctx context.Context, ino uint64, name string, val []byte, flags uint32) error {
	if name == "" || len(name) > MaxName {
		return ErrRange
	}
	if len(val) > MaxXattrSize {
		return fmt.Errorf("xattr value of %d bytes: %w", len(val), ErrTooBig)
	}
	val = bytes.Clone(val) // the change may run again after SetXattr returned (committer.rerun)
	now := time.Now()
	return v.commit.do(func(tx *bolt.Tx) error {
		a, err := getAttr(tx, ino)
		if err != nil {
			return err
		}
		b := tx.Bucket(bXattrs)
		k := xattrKey(ino, name)
		old := b.Get(k)
		if flags&XattrCreate != 0 && old != nil {
			return ErrExist
		}
		if flags&XattrReplace != 0 && old == nil {
			return ErrNoAttr
		}
		a.Ctime = now
		if err := putAttr(tx, &a); err != nil {
			return err
		}
		return b.Put(k, val)
	})
}

// ListXattr returns the names of ino's extended attributes.
func (v *Volume) ListXattr(ctx context.Context, ino uint64) ([]string, error) {
	var names []string
	err := v.commit.view(func(tx *bolt.Tx) error {
		if _, err := getAttr(tx, ino); err != nil {
			return err
		}
		p := inoKey(ino)
		c := tx.Bucket(bXattrs).Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			names = append(names, string(k[8:]))
		}
		return nil
	})
	return names, err
}

// RemoveXattr removes extended attribute name.
func (v *Volume) RemoveXattr(ctx context.Context, ino uint64, name string) error {
	return v.commit.do(func(tx *bolt.Tx) error {
		if _, err := getAttr(tx, ino); err != nil {
			return err
		}
		b := tx.Bucket(bXattrs)
		k := xattrKey(ino, name)
		if b.Get(k) == nil {
			return ErrNoAttr
		}
		if err := snapDirty(tx, ino); err != nil { // no attribute write marks it
			return err
		}
		return b.Delete(k)
	})
}

// Statfs describes the space of the drive.
type Statfs struct {
	Used  int64 // bytes of file content (sum of file sizes, holes included)
	Avail int64 // bytes the network can still take (0 when unknown)
	Files int64 // inodes in use
}

// Statfs reports the drive's usage and the network's capacity. Avail is 0 when the
// network's capacity is unknown: the drive never claims space that is not there. The
// figures are cached for a few seconds: statfs is frequent and both are costly.
func (v *Volume) Statfs(ctx context.Context) (Statfs, error) {
	v.capMu.Lock()
	defer v.capMu.Unlock()
	if time.Since(v.capAt) < 5*time.Second {
		return v.stat, nil
	}
	var st Statfs
	err := v.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bInodes).Cursor()
		for k, val := c.First(); k != nil; k, val = c.Next() {
			st.Files++
			if a, err := decodeAttr(keyIno(k), val); err == nil && a.Mode&syscall.S_IFMT == syscall.S_IFREG {
				st.Used += a.Size
			}
		}
		return nil
	})
	if err != nil {
		return Statfs{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := v.chunks.Capacity(cctx)
	if err != nil {
		v.log.Warn("statfs: network capacity unknown", "err", err)
		c = 0
	}
	st.Avail = max(c, 0)
	v.stat, v.capAt = st, time.Now()
	return st, nil
}
