package volume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	chunk "github.com/ipfs/boxo/chunker"
	bolt "go.etcd.io/bbolt"

	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/volume/cache"
)

// Chunks stores and fetches whole plaintext chunks on the peers. pipeline.Store implements
// it; memchunks is an in-memory fake for tests. Methods are safe for concurrent use.
type Chunks interface {
	// Split returns the drive's content-defined splitter over r: NextBytes until io.EOF.
	Split(r io.Reader) chunk.Splitter
	// Put seals, erasure-codes and places one plaintext chunk and returns once enough
	// fragments are on their peers. A non-nil error means the chunk is not stored (the
	// Ref is ignored) and the core retries later with backoff.
	Put(ctx context.Context, plain []byte) (pipeline.Ref, error)
	// GetSealed fetches the sealed chunk (the ciphertext the read cache stores). An error
	// wrapping pipeline.ErrUnrecoverable says no retry can help (fewer than K fragments).
	GetSealed(ctx context.Context, ref pipeline.Ref) ([]byte, error)
	// Open verifies and decrypts a sealed chunk, appending the plaintext to dst.
	Open(dst []byte, ref pipeline.Ref, sealed []byte) ([]byte, error)
	// Capacity returns the plaintext bytes the network can still take, -1 if unknown.
	Capacity(ctx context.Context) (int64, error)
}

// Errors of the core. fs maps each to one errno; other errors become EIO.
var (
	ErrNotFound     = errors.New("volume: no such file or directory")        // ENOENT
	ErrExist        = errors.New("volume: file exists")                      // EEXIST
	ErrNotDir       = errors.New("volume: not a directory")                  // ENOTDIR
	ErrIsDir        = errors.New("volume: is a directory")                   // EISDIR
	ErrNotEmpty     = errors.New("volume: directory not empty")              // ENOTEMPTY
	ErrNameTooLong  = errors.New("volume: name too long")                    // ENAMETOOLONG
	ErrInvalid      = errors.New("volume: invalid argument")                 // EINVAL
	ErrNoAttr       = errors.New("volume: no such extended attribute")       // ENODATA
	ErrRange        = errors.New("volume: result too large")                 // ERANGE
	ErrNoSpace      = errors.New("volume: no space: peers cannot take data") // ENOSPC
	ErrTooBig       = errors.New("volume: file too large")                   // EFBIG
	ErrNotSupp      = errors.New("volume: operation not supported")          // EOPNOTSUPP
	ErrIO           = errors.New("volume: I/O error")                        // EIO
	ErrInterrupted  = errors.New("volume: interrupted")                      // EINTR
	ErrClosed       = errors.New("volume: closed")                           // EIO
	ErrTooManyLinks = errors.New("volume: too many links")                   // EMLINK
)

// DefaultCommitWindow is Config.CommitWindow's default: the longest an acknowledged
// namespace change that nothing made durable waits for its commit.
const DefaultCommitWindow = 10 * time.Millisecond

// Limits.
const (
	// MaxName is the longest name of a directory entry, in bytes.
	MaxName = 255
	// MaxFileSize is the largest file size (and offset) accepted.
	MaxFileSize = 1 << 50
	// RootIno is the inode number of the root directory.
	RootIno = 1
	// MaxXattrSize is the largest extended attribute value.
	MaxXattrSize = 64 << 10
	maxLinks     = 1<<31 - 1
)

// Config configures a Volume. Zero fields take the documented defaults.
type Config struct {
	// Dir holds the metadata database (meta.db). Required.
	Dir string
	// StagingDir holds write-back staging files; default Dir/staging.
	StagingDir string
	// CacheDir holds the read cache of sealed chunks; default Dir/cache.
	CacheDir string
	// StagingMax is the hard cap on staged (not yet uploaded) bytes; default 256 MiB,
	// at least 4 MiB.
	StagingMax int64
	// CacheMax is the hard cap on the read cache; default 1 GiB.
	CacheMax int64
	// InlineMax is the largest file kept inline in metadata; default 32 KiB.
	InlineMax int
	// Uploaders is the number of files uploaded at once; default 4.
	Uploaders int
	// PutParallel is the number of chunks of one upload put at once; default 4.
	PutParallel int
	// Prefetch is the number of chunks fetched ahead of a sequential reader; default 4.
	Prefetch int
	// StreamThreshold: an open file's contiguous dirty range this long is uploaded while
	// the file is still being written (all but the tail after the last cut); default 8 MiB.
	StreamThreshold int64
	// QuietUpload: staged data of a file still open for writing is uploaded once no
	// write touched the file for this long; default 5 s.
	QuietUpload time.Duration
	// JobMax bounds the bytes one upload job reads into memory; default 16 MiB.
	JobMax int64
	// WriteWait is how long a write waits for staging space with no upload making
	// progress before it fails with ENOSPC; default 2 min.
	WriteWait time.Duration
	// FetchTimeout bounds one chunk fetch; default 1 min.
	FetchTimeout time.Duration
	// SyncWait bounds fsync's wait for uploads; default 5 min.
	SyncWait time.Duration
	// Logger receives the core's logs; default slog.Default().
	Logger *slog.Logger
	// RootUID, RootGID own the root directory when the volume is created.
	RootUID, RootGID uint32
	// DirSync, if set, is called by SyncDir (fsync(2) of a directory) and its error
	// returned: a mount that keeps metadata snapshots in the network snapshots there.
	// SyncDir first makes every acknowledged namespace change durable (Open wraps
	// DirSync to do it).
	DirSync func(ctx context.Context) error
	// CommitWindow bounds how long an acknowledged namespace change (create, mkdir,
	// rename, unlink, chmod, utimens, ...) may wait before it is durable: changes are
	// grouped into one commit per window, or until something needs them durable (fsync,
	// fsyncdir, SyncAll, close(2) of written data, Close). Default 10 ms; negative: every
	// change is durable when it returns. See "Metadata store" in docs/design.md.
	CommitWindow time.Duration

	sharedCache *cache.Cache // set by OpenShared: used instead of opening CacheDir
}

func (c *Config) setDefaults() error {
	if c.Dir == "" {
		return fmt.Errorf("%w: Config.Dir is empty", ErrInvalid)
	}
	def := func(p *int64, v int64) {
		if *p == 0 {
			*p = v
		}
	}
	defi := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defd := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	if c.StagingDir == "" {
		c.StagingDir = filepath.Join(c.Dir, "staging")
	}
	if c.CacheDir == "" {
		c.CacheDir = filepath.Join(c.Dir, "cache")
	}
	def(&c.StagingMax, 256<<20)
	def(&c.CacheMax, 1<<30)
	defi(&c.InlineMax, 32<<10)
	defi(&c.Uploaders, 4)
	defi(&c.PutParallel, 4)
	defi(&c.Prefetch, 4)
	def(&c.StreamThreshold, 8<<20)
	def(&c.JobMax, 16<<20)
	defd(&c.WriteWait, 2*time.Minute)
	defd(&c.QuietUpload, 5*time.Second)
	defd(&c.FetchTimeout, time.Minute)
	defd(&c.SyncWait, 5*time.Minute)
	defd(&c.CommitWindow, DefaultCommitWindow)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.StagingMax < 4<<20 {
		return fmt.Errorf("%w: StagingMax %d below 4 MiB", ErrInvalid, c.StagingMax)
	}
	if c.JobMax > c.StagingMax/2 {
		c.JobMax = c.StagingMax / 2
	}
	if c.StreamThreshold > c.StagingMax/4 {
		c.StreamThreshold = c.StagingMax / 4
	}
	return nil
}

// Attr is an inode's attributes.
type Attr struct {
	Ino                 uint64
	Mode                uint32 // file type and permission bits, as in syscall.S_IF*
	Nlink               uint32
	UID, GID            uint32
	Rdev                uint32
	Size                int64
	Atime, Mtime, Ctime time.Time
}

// IsDir reports whether the inode is a directory.
func (a *Attr) IsDir() bool { return a.Mode&syscall.S_IFMT == syscall.S_IFDIR }

// Volume is a mounted drive's filesystem core. All methods are safe for concurrent use.
type Volume struct {
	cfg    Config
	db     *bolt.DB
	chunks Chunks
	cache  *cache.Cache
	log    *slog.Logger
	wb     *writeback
	reads  *reader
	commit committer // namespace operations
	locks  lockTable

	mu    sync.Mutex       // guards files; a leaf lock (never held while taking another)
	files map[uint64]*file // inodes with open handles or staged data

	snap snapCache // directories of the last snapshot (snapdirty.go)

	capMu sync.Mutex // guards the cached statfs figures
	capAt time.Time
	stat  Statfs
}

// Bucket names; see docs/format.md "Metadata store".
var (
	bMeta      = []byte("meta")
	bInodes    = []byte("inodes")
	bDirents   = []byte("dirents")
	bCookies   = []byte("cookies")
	bExtents   = []byte("extents")
	bXattrs    = []byte("xattrs")
	bJournal   = []byte("journal")
	bOrphans   = []byte("orphans")
	allBuckets = [][]byte{bMeta, bInodes, bDirents, bCookies, bExtents, bXattrs, bJournal, bOrphans}
	keyLayout  = []byte("layout")
)

// layoutV1 is the version of the bucket layout, stored under meta/layout.
const layoutV1 = 1

// Open opens (creating if needed) the volume in cfg.Dir over chunks, removes inodes that
// were unlinked while open when the process stopped, and replays the write-back journal:
// staged data that was closed or flushed before a crash is uploaded again.
func Open(cfg Config, chunks Chunks) (*Volume, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.Dir, cfg.StagingDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("volume: %w", err)
		}
	}
	db, err := bolt.Open(filepath.Join(cfg.Dir, "meta.db"), 0o600, &bolt.Options{
		Timeout: time.Second,
		// The freelist is rebuilt on open instead of written at every commit: commits
		// write fewer pages, and every namespace operation is one commit.
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: 64 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("volume: open metadata: %w", err)
	}
	c := cfg.sharedCache // a follower's volumes share one cache (volume/follow.go)
	if c == nil {
		if c, err = cache.Open(cfg.CacheDir, cfg.CacheMax); err != nil {
			db.Close()
			return nil, fmt.Errorf("volume: %w", err)
		}
	}
	v := &Volume{cfg: cfg, db: db, chunks: chunks, cache: c, log: cfg.Logger, files: map[uint64]*file{}}
	if err := v.init(); err != nil {
		db.Close()
		return nil, err
	}
	// fsync(2) of a directory makes the namespace changes durable first. SyncDir calls
	// DirSync only when set, so it is always set.
	dirSync := cfg.DirSync
	v.cfg.DirSync = func(ctx context.Context) error {
		if err := v.commit.flush(); err != nil {
			return err
		}
		if dirSync == nil {
			return nil
		}
		return dirSync(ctx)
	}
	v.commit.start(db, cfg.CommitWindow, cfg.Logger)
	v.reads = newReader(v)
	v.wb = newWriteback(v)
	if err := v.replay(); err != nil {
		v.wb.close()
		v.reads.close()
		v.commit.close()
		db.Close()
		return nil, err
	}
	return v, nil
}

func (v *Volume) init() error {
	return v.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("volume: %w", err)
			}
		}
		m := tx.Bucket(bMeta)
		if l := m.Get(keyLayout); l != nil {
			if len(l) != 1 || l[0] != layoutV1 {
				return fmt.Errorf("%w: metadata layout %v unknown", errBadRecord, l)
			}
		} else if err := m.Put(keyLayout, []byte{layoutV1}); err != nil {
			return err
		}
		ib := tx.Bucket(bInodes)
		if ib.Get(inoKey(RootIno)) == nil {
			now := time.Now()
			root := Attr{Ino: RootIno, Mode: syscall.S_IFDIR | 0o755, Nlink: 2, UID: v.cfg.RootUID, GID: v.cfg.RootGID, Atime: now, Mtime: now, Ctime: now}
			if err := ib.SetSequence(RootIno); err != nil {
				return err
			}
			if err := ib.Put(inoKey(RootIno), encodeAttr(&root)); err != nil {
				return err
			}
		}
		// Inodes unlinked while open when the process stopped: nothing can reach them now.
		var orphans []uint64
		if err := tx.Bucket(bOrphans).ForEach(func(k, _ []byte) error {
			orphans = append(orphans, keyIno(k))
			return nil
		}); err != nil {
			return err
		}
		for _, ino := range orphans {
			if err := deleteInode(tx, ino); err != nil {
				return err
			}
			os.Remove(v.stagingPath(ino))
		}
		return nil
	})
}

// Close stops the uploaders and prefetchers, waits for them and closes the store. Staged
// data that is journalled is uploaded when the volume is opened again.
func (v *Volume) Close() error {
	v.wb.close()
	v.reads.close()
	var errs []error
	v.mu.Lock()
	files := make([]*file, 0, len(v.files))
	for _, f := range v.files {
		files = append(files, f)
	}
	v.mu.Unlock()
	for _, f := range files {
		f.mu.Lock()
		if err := v.journalLocked(f); err != nil {
			errs = append(errs, err)
		}
		if f.stage != nil {
			errs = append(errs, f.stage.Close())
			f.stage = nil
		}
		f.mu.Unlock()
	}
	errs = append(errs, v.commit.close(), v.db.Close())
	return errors.Join(errs...)
}

func (v *Volume) stagingPath(ino uint64) string {
	return filepath.Join(v.cfg.StagingDir, fmt.Sprintf("%016x", ino))
}

// StagedBytes returns the bytes staged and not yet on the peers (never above StagingMax).
func (v *Volume) StagedBytes() int64 { return v.wb.staged() }
