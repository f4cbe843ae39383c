package volume

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/snapshot"
	"github.com/scatterfs/scatter/volume/cache"
)

// Read-only shares. On the writer, the shares bucket records which directory each share
// names; after every published snapshot the mount looks the directory up in the snapshot
// (ShareDir) and publishes its tree's pointer in the share's record. On a reader holding
// a capability, RestoreShare builds a metadata store from that pointer alone, the shared
// directory as the root, and keeps each chunk's read key (from the snapshot's extents) in
// the sharekeys bucket, so OpenShare's volume opens chunks with crypt.OpenWithKey and
// needs no drive key. Layout in docs/format.md "Metadata store".
var (
	// shares: share ID (16) → version 1 (1) | inode (8) | revoked (1) | path (rest).
	bShares = []byte("shares")
	// sharekeys: chunk ID (32) → the chunk's read key (32); only in a share's store.
	bShareKeys = []byte("sharekeys")
)

func init() { allBuckets = append(allBuckets, bShares, bShareKeys) }

const shareRecordV1 = 1

// ErrReadOnly is returned by a share volume's chunk store for anything but reading.
var ErrReadOnly = errors.New("volume: read-only share")

// Share is one read-only share of the drive, as the writer records it.
type Share struct {
	ID   crypt.ShareID
	Path string // the shared directory, relative to the drive's root ("" is the root)
	// Ino is the shared directory's inode: the share follows it, and a snapshot where
	// Path names another inode (the directory was moved or replaced) does not update it.
	Ino     uint64
	Revoked bool // the record is no longer updated
}

func encodeShare(s *Share) []byte {
	b := []byte{shareRecordV1}
	b = binary.BigEndian.AppendUint64(b, s.Ino)
	if s.Revoked {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return append(b, s.Path...)
}

func decodeShare(id, b []byte) (Share, error) {
	if len(id) != crypt.ShareIDSize || len(b) < 10 || b[0] != shareRecordV1 || b[9] > 1 {
		return Share{}, fmt.Errorf("%w: share %x", errBadRecord, id)
	}
	return Share{ID: crypt.ShareID(id), Ino: binary.BigEndian.Uint64(b[1:]), Revoked: b[9] == 1, Path: string(b[10:])}, nil
}

// cleanSharePath turns a path relative to the drive's root into its canonical form
// ("" for the root itself). ".." is refused rather than resolved: the caller said which
// directory to share, and a path that climbs is more likely a mistake than meant.
func cleanSharePath(p string) (string, error) {
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: share path %q climbs with ..", ErrInvalid, p)
		}
	}
	return strings.TrimPrefix(path.Clean("/"+p), "/"), nil
}

// AddShare records a new share of the directory at p (relative to the drive's root)
// under a random ID. p must name a directory: ErrNotDir otherwise, ErrNotFound if it
// does not exist.
func (v *Volume) AddShare(ctx context.Context, p string) (Share, error) {
	p, err := cleanSharePath(p)
	if err != nil {
		return Share{}, err
	}
	ino := uint64(RootIno)
	if p != "" {
		for _, name := range strings.Split(p, "/") {
			a, err := v.Lookup(ctx, ino, name)
			if err != nil {
				return Share{}, fmt.Errorf("volume: share %q: %w", p, err)
			}
			ino = a.Ino
		}
		if a, err := v.Getattr(ctx, ino); err != nil {
			return Share{}, err
		} else if !a.IsDir() {
			return Share{}, fmt.Errorf("volume: share %q: only directories can be shared: %w", p, ErrNotDir)
		}
	}
	id, err := crypt.NewShareID()
	if err != nil {
		return Share{}, err
	}
	s := Share{ID: id, Path: p, Ino: ino}
	err = v.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bShares).Put(id[:], encodeShare(&s)) })
	if err != nil {
		return Share{}, fmt.Errorf("volume: record share: %w", err)
	}
	return s, nil
}

// Shares returns every share recorded, revoked ones included, in ID order.
func (v *Volume) Shares() ([]Share, error) {
	var out []Share
	err := v.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bShares).ForEach(func(k, b []byte) error {
			s, err := decodeShare(k, b)
			if err != nil {
				return err
			}
			out = append(out, s)
			return nil
		})
	})
	return out, err
}

// RevokeShare marks share id revoked: its record is no longer updated. ErrNotFound if
// there is no such share.
func (v *Volume) RevokeShare(id crypt.ShareID) (Share, error) {
	var s Share
	err := v.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bShares).Get(id[:])
		if b == nil {
			return fmt.Errorf("volume: share %s: %w", id, ErrNotFound)
		}
		var err error
		if s, err = decodeShare(id[:], b); err != nil {
			return err
		}
		s.Revoked = true
		return tx.Bucket(bShares).Put(id[:], encodeShare(&s))
	})
	return s, err
}

// ShareDir finds share s's directory in the snapshot whose root object is root and
// returns the pointer to its tree. It fails with ErrNotFound when the path is gone and
// with ErrInvalid when the path names another inode than the one shared (moved or
// replaced): a share never silently starts showing another directory.
func ShareDir(ctx context.Context, r *snapshot.Reader, root snapshot.Ptr, s Share) (snapshot.Ptr, error) {
	_, top, err := r.Root(ctx, root)
	if err != nil {
		return snapshot.Ptr{}, err
	}
	cur := top
	if s.Path != "" {
		for _, name := range strings.Split(s.Path, "/") {
			if !cur.IsDir() {
				return snapshot.Ptr{}, fmt.Errorf("volume: share %s: %q: %w", s.ID, s.Path, ErrNotDir)
			}
			entries, err := r.Dir(ctx, *cur.Dir)
			if err != nil {
				return snapshot.Ptr{}, err
			}
			found := false
			for i := range entries {
				if entries[i].Name == name {
					cur, found = entries[i], true
					break
				}
			}
			if !found {
				return snapshot.Ptr{}, fmt.Errorf("volume: share %s: %q: %w", s.ID, s.Path, ErrNotFound)
			}
		}
	}
	if cur.Ino != s.Ino || !cur.IsDir() {
		return snapshot.Ptr{}, fmt.Errorf("volume: share %s: %q is now inode %d, the share is of inode %d: %w",
			s.ID, s.Path, cur.Ino, s.Ino, ErrInvalid)
	}
	return *cur.Dir, nil
}

// RestoreShare builds the metadata store of cfg.Dir from a shared directory's tree dir,
// as the share record published at t names it: the directory becomes the root inode (its
// times t), everything below keeps its inode numbers, and every chunk's read key is kept
// for OpenShare. Everything is owned by cfg.RootUID and cfg.RootGID, set-ID bits are
// cleared and device nodes left out (shareSafe). Like Restore it writes under a
// temporary name and renames into place once complete, and refuses an existing store
// (ErrRestoreExists).
func RestoreShare(ctx context.Context, cfg Config, r *snapshot.Reader, dir snapshot.Ptr, t time.Time) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	top := Attr{Ino: RootIno, Mode: syscall.S_IFDIR | 0o755, Nlink: 2,
		UID: cfg.RootUID, GID: cfg.RootGID, Atime: t, Mtime: t, Ctime: t}
	return restoreStore(cfg, "restore share", func(db *bolt.DB) error { return shareRestore(ctx, db, r, dir, top) })
}

func shareRestore(ctx context.Context, db *bolt.DB, r *snapshot.Reader, dir snapshot.Ptr, top Attr) error {
	var (
		links = map[uint64]uint32{} // non-directories: links inside the subtree
		nlink = map[uint64]uint32{} // non-directories: link count the snapshot recorded
	)
	maxIno, err := restoreTree(ctx, db, r, dir, func(tx *bolt.Tx) error { return putAttr(tx, &top) }, restoreHooks{
		keep: func(e *snapshot.Entry) bool { return shareSafe(e, &top) },
		linked: func(tx *bolt.Tx, parent uint64, e *snapshot.Entry) error {
			if !e.IsDir() {
				links[e.Ino]++
				return nil
			}
			if parent != RootIno {
				return nil
			}
			// The root's link count grows with its subdirectories (the others' come
			// from the snapshot).
			a, err := getAttr(tx, RootIno)
			if err != nil {
				return err
			}
			a.Nlink++
			return putAttr(tx, &a)
		},
		inode: func(tx *bolt.Tx, e *snapshot.Entry) error {
			if !e.IsDir() {
				nlink[e.Ino] = e.Attr.Nlink
			}
			kb := tx.Bucket(bShareKeys)
			for _, x := range e.Extents {
				if x.Ref != nil {
					if err := kb.Put(x.Ref.ID[:], x.Key[:]); err != nil {
						return err
					}
				}
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		// Links from outside the subtree are not part of it: the link count shows the
		// links the subtree holds, so `stat` agrees with what `find` sees there (and the
		// count says nothing about names outside).
		for ino, n := range links {
			if n != nlink[ino] {
				a, err := getAttr(tx, ino)
				if err != nil {
					return err
				}
				a.Nlink = n
				if err := putAttr(tx, &a); err != nil {
					return err
				}
			}
		}
		return tx.Bucket(bInodes).SetSequence(maxIno)
	})
}

// shareSafe makes entry e fit for a share's holder, whose machine does not know the
// writer's users and need not trust the writer: everything is owned by the mounting user
// (top's owner; with the writer's numbers a file of mode 0600 would be unreadable, and
// the numbers mean nothing there), set-user-ID and set-group-ID bits are cleared on files,
// and device nodes are left out (false): a mount by root without nodev would otherwise
// hand the holder's own devices to whoever wrote the share.
func shareSafe(e *snapshot.Entry, top *Attr) bool {
	switch e.Attr.Mode & syscall.S_IFMT {
	case syscall.S_IFCHR, syscall.S_IFBLK:
		return false
	case syscall.S_IFDIR:
	default:
		e.Attr.Mode &^= syscall.S_ISUID | syscall.S_ISGID
	}
	e.Attr.UID, e.Attr.GID = top.UID, top.GID
	return true
}

// OpenShare opens a store built by RestoreShare over chunks, whose Open is replaced by
// crypt.OpenWithKey with the read key the store recorded for the chunk: a share's reader
// has no drive keys. With c non-nil the volume uses that read cache (OpenShared). The
// volume must be served read-only: its chunk store refuses Put with ErrReadOnly.
func OpenShare(cfg Config, chunks Chunks, c *cache.Cache) (*Volume, error) {
	kc := &keyedChunks{Chunks: chunks}
	var (
		v   *Volume
		err error
	)
	if c != nil {
		v, err = OpenShared(cfg, kc, c)
	} else {
		v, err = Open(cfg, kc)
	}
	if err != nil {
		return nil, err
	}
	kc.v.Store(v)
	return v, nil
}

// keyedChunks is a share volume's chunk store: fetches go to the network as usual,
// opening uses each chunk's read key from the store, and nothing is ever put.
type keyedChunks struct {
	Chunks
	v atomic.Pointer[Volume] // set once Open returned; nothing reads before
}

var _ Chunks = (*keyedChunks)(nil)

// Put refuses: a share is read-only.
func (k *keyedChunks) Put(context.Context, []byte) (pipeline.Ref, error) {
	return pipeline.Ref{}, ErrReadOnly
}

// Capacity is 0: a share cannot take data.
func (k *keyedChunks) Capacity(context.Context) (int64, error) { return 0, nil }

// Open decrypts a sealed chunk with the read key the share's snapshot gave for it.
func (k *keyedChunks) Open(dst []byte, ref pipeline.Ref, sealed []byte) ([]byte, error) {
	v := k.v.Load()
	if v == nil {
		return nil, fmt.Errorf("BUG: volume: share chunk %s opened before the volume", ref.ID)
	}
	var key crypt.ChunkKey
	err := v.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bShareKeys).Get(ref.ID[:])
		if len(b) != len(key) {
			return fmt.Errorf("%w: no read key for chunk %s", errBadRecord, ref.ID)
		}
		copy(key[:], b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return crypt.OpenWithKey(dst, key, ref.ID, sealed)
}
