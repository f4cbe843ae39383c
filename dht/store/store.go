// Package store keeps a donor's fragments on local disk, under a hard quota, each with the
// owners that leased it and when their leases end.
//
// One fragment is one file, dir/frag/<first byte in hex>/<fragment ID in hex>, holding a
// small header (owners, lease expiries, length, ID, payload CRC, header CRC) followed by the
// raw fragment bytes; docs/format.md ("Donor store") specifies every byte. A new file is
// written to a temporary file in its shard directory and renamed into place, so a crash
// leaves either the whole file or none; renewals and deletions rewrite only the header, in
// place. Put checks the payload against its BLAKE3 ID once; every Get checks it against the
// payload CRC-32C the header recorded (files of the first format, without one, against the
// ID again), and Open checks each header's CRC and the file's length, so a torn or garbled
// file is detected, dropped and never served. The in-memory index is rebuilt from the
// headers at Open.
//
// The store is pure disk: it knows nothing of libp2p. Package dht serves it to peers.
package store

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/swarm"
)

// Owner is the Ed25519 public key of a fragment's owner: the drive identity that PUT it and
// that signs its DELETE and RENEW requests.
type Owner [32]byte

// Errors returned by the store, wrapped; check them with errors.Is.
var (
	// ErrFull: storing the fragment would take the store above its quota.
	ErrFull = errors.New("store: quota full")
	// ErrNotFound: the store holds no live lease on the fragment.
	ErrNotFound = errors.New("store: fragment not found")
	// ErrCorrupt: the fragment's file failed verification; it has been dropped.
	ErrCorrupt = errors.New("store: fragment corrupt")
	// ErrMismatch: the bytes given to Put do not hash to the fragment ID.
	ErrMismatch = errors.New("store: data does not match fragment ID")
	// ErrTooLarge: the fragment is empty or larger than Config.MaxFragmentSize.
	ErrTooLarge = errors.New("store: fragment size out of range")
	// ErrLease: the lease expiry is not in the future or beyond Config.MaxLease.
	ErrLease = errors.New("store: lease expiry out of range")
	// ErrTooManyOwners: the fragment already has MaxOwners owners with live leases.
	ErrTooManyOwners = errors.New("store: too many owners")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("store: closed")
	// ErrLocked: another process has the store directory open.
	ErrLocked = errors.New("store: directory in use")
)

// Defaults for the zero values of Config fields.
const (
	DefaultMaxFragmentSize = 16 << 20
	DefaultMaxLease        = 400 * 24 * time.Hour
	DefaultGCInterval      = 10 * time.Minute

	// blockSize is the unit in which a fragment's disk usage is charged against the quota:
	// a file occupies whole filesystem blocks, so a file's charge is its length (header
	// plus payload) rounded up to 4 KiB.
	blockSize = 4096

	formatFile = "FORMAT"
	formatLine = "scatter fragment store 2\n"
	// formatLineV1 marks a store whose files all have version 1 headers. It is opened
	// and its marker rewritten to formatLine, so a binary that knows only version 1
	// headers refuses the store instead of dropping its new files as invalid.
	formatLineV1 = "scatter fragment store 1\n"
)

// Config configures a Store. Only Quota is required.
type Config struct {
	// Quota is the most bytes the store charges for its fragments at once, including
	// headers, block rounding and files being written. Required, > 0.
	Quota int64
	// MaxFragmentSize is the largest fragment accepted. Default DefaultMaxFragmentSize.
	MaxFragmentSize int
	// MaxLease is the longest lease accepted, from now. Default DefaultMaxLease.
	MaxLease time.Duration
	// Sync makes every write durable before it returns (fsync of the file and of its
	// directory). Off by default: a fragment is one of k+m redundant pieces, so a fragment
	// lost in a donor crash costs only redundancy, and the CRC and hash checks keep a torn
	// file from being served.
	Sync bool
	// BufferedIO writes new fragment files through the page cache. By default they are
	// written with O_DIRECT where the filesystem takes it (and through the page cache
	// where it does not): a donor writes each fragment once and seldom reads it soon, and
	// copying it into newly allocated page-cache pages was the largest single cost of a
	// PUT (1.2 CPU-s per GB against 0.3 direct, for `dd` on this ext4). Header rewrites
	// and reads always go through the page cache.
	BufferedIO bool
	// GCInterval is how often the background loop drops fragments whose leases have all
	// expired. Default DefaultGCInterval; negative disables the loop (call GC yourself).
	GCInterval time.Duration
	// Logger receives unexpected disk errors and dropped files. Default: discards.
	Logger *slog.Logger
}

// entry is the index's view of one fragment file. Entries are immutable once published in
// Store.index: a change builds a new entry, under the fragment's stripe lock.
type entry struct {
	version uint8  // of the file's header: 1 or 2
	size    uint32 // payload length
	sum     uint32 // CRC-32C of the payload (version 2)
	slots   []slot
	charge  int64 // bytes charged against the quota
}

// withSlots returns a copy of e with slots, for a header rewritten in place.
func (e *entry) withSlots(slots []slot) *entry {
	ne := *e
	ne.slots = slots
	return &ne
}

// hdrLen returns the length of the header of e's file.
func (e *entry) hdrLen() int { return headerLenV(e.version, len(e.slots)) }

// live reports whether some owner's lease is still running at now (Unix seconds).
func (e *entry) live(now int64) bool {
	for _, s := range e.slots {
		if s.expires > now {
			return true
		}
	}
	return false
}

func (e *entry) hdr(id chunker.FragmentID) header {
	return header{version: e.version, id: id, size: e.size, sum: e.sum, slots: e.slots}
}

// Store is a quota-bounded fragment store on local disk. It is safe for concurrent use.
type Store struct {
	dir  string
	cfg  Config
	log  *slog.Logger
	now  func() time.Time // time.Now; replaced in tests
	lock *os.File         // holds the flock on dir/LOCK

	// stripes serialise changes to one fragment's file (write lock) against reads of it
	// (read lock); a fragment uses stripes[id[0]].
	stripes [256]sync.RWMutex

	// direct is set while new files are written with O_DIRECT: from Open unless
	// Config.BufferedIO, until the filesystem refuses it once.
	direct atomic.Bool

	mu    sync.Mutex // guards the fields below
	index map[chunker.FragmentID]*entry
	used  int64 // charged bytes, including reservations for files being written

	// life is held for reading by every operation and for writing by Close, so Close
	// waits for operations in flight.
	life   sync.RWMutex
	closed bool // guarded by life

	stop   context.CancelFunc
	loopWG sync.WaitGroup
}

// Open opens the store in dir, creating it if needed, rebuilds the index and usage from the
// fragment files, drops files that are torn or not valid, removes leftover temporary files,
// and starts the background GC loop. Usage may exceed a lowered quota; the store then takes
// no new fragments until enough are deleted or expire.
func Open(dir string, cfg Config) (*Store, error) {
	if cfg.Quota <= 0 {
		return nil, fmt.Errorf("store: quota %d: must be positive", cfg.Quota)
	}
	if cfg.MaxFragmentSize <= 0 {
		cfg.MaxFragmentSize = DefaultMaxFragmentSize
	}
	if cfg.MaxFragmentSize > 1<<31 {
		return nil, fmt.Errorf("store: max fragment size %d: must fit in 32 bits", cfg.MaxFragmentSize)
	}
	if cfg.MaxLease <= 0 {
		cfg.MaxLease = DefaultMaxLease
	}
	if cfg.GCInterval == 0 {
		cfg.GCInterval = DefaultGCInterval
	}
	s := &Store{
		dir:   dir,
		cfg:   cfg,
		log:   cfg.Logger,
		now:   time.Now,
		index: make(map[chunker.FragmentID]*entry),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.direct.Store(!cfg.BufferedIO)
	if err := s.open(); err != nil {
		if s.lock != nil {
			s.lock.Close()
		}
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	if cfg.GCInterval > 0 {
		s.loopWG.Add(1)
		go s.gcLoop(ctx)
	}
	return s, nil
}

func (s *Store) open() error {
	for _, d := range []string{s.dir, filepath.Join(s.dir, "frag"), filepath.Join(s.dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	f, err := os.OpenFile(filepath.Join(s.dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	s.lock = f
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrLocked, s.dir, err)
	}
	if err := s.checkFormat(); err != nil {
		return err
	}
	// Temporary files are writes that never finished: nothing refers to them.
	tmps, err := os.ReadDir(filepath.Join(s.dir, "tmp"))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	for _, t := range tmps {
		if err := os.RemoveAll(filepath.Join(s.dir, "tmp", t.Name())); err != nil {
			return fmt.Errorf("store: removing temporary file: %w", err)
		}
	}
	// Every shard directory exists from here on, so a PUT does not pay a MkdirAll (10% of
	// the mount's CPU while writing, in bench/compare.sh's profile).
	for i := range 256 {
		if err := os.Mkdir(filepath.Join(s.dir, "frag", fmt.Sprintf("%02x", i)), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("store: %w", err)
		}
	}
	shards, err := os.ReadDir(filepath.Join(s.dir, "frag"))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	for _, sh := range shards {
		if err := s.loadShard(sh.Name()); err != nil {
			return err
		}
	}
	return nil
}

// checkFormat writes the format marker of a new store or checks the one of an existing
// store, so a future layout is never misread as this one.
func (s *Store) checkFormat() error {
	p := filepath.Join(s.dir, formatFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(p, []byte(formatLine), 0o600); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	switch string(b) {
	case formatLine:
		return nil
	case formatLineV1:
		// Version 1 files stay as they are (they are read and updated as such); only new
		// files get version 2 headers, which an older binary would not read.
		if err := os.WriteFile(p, []byte(formatLine), 0o600); err != nil {
			return fmt.Errorf("store: upgrading %s: %w", p, err)
		}
		return nil
	}
	return fmt.Errorf("store: %s: unknown store format %q (written by a newer scatter?)", p, b)
}

// loadShard indexes the fragment files of one shard directory, removing any file that is
// not a valid fragment file (the directory is the store's own).
func (s *Store) loadShard(name string) error {
	dir := filepath.Join(s.dir, "frag", name)
	files, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	for _, f := range files {
		p := filepath.Join(dir, f.Name())
		if strings.HasPrefix(f.Name(), tmpPrefix) {
			// A write that never finished: nothing refers to it.
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("store: removing temporary file: %w", err)
			}
			continue
		}
		id, h, size, err := s.loadFile(name, f.Name(), p)
		if err != nil {
			s.log.Warn("store: dropping invalid fragment file", "path", p, "err", err)
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("store: %w", err)
			}
			continue
		}
		e := &entry{version: h.version, size: h.size, sum: h.sum, slots: h.slots, charge: chargeOf(size)}
		s.index[id] = e
		s.used += e.charge
	}
	return nil
}

// loadFile checks one fragment file's name, header and length.
func (s *Store) loadFile(shard, name, p string) (chunker.FragmentID, header, int64, error) {
	var id chunker.FragmentID
	id, err := chunker.ParseFragmentID(name)
	if err != nil {
		return id, header{}, 0, err
	}
	if hex.EncodeToString(id[:1]) != shard {
		return id, header{}, 0, fmt.Errorf("in shard %s", shard)
	}
	f, err := os.Open(p)
	if err != nil {
		return id, header{}, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return id, header{}, 0, err
	}
	if !st.Mode().IsRegular() {
		return id, header{}, 0, fmt.Errorf("not a regular file")
	}
	buf := make([]byte, headerLen(MaxOwners))
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return id, header{}, 0, err
	}
	h, err := parseHeader(buf[:n], s.cfg.MaxFragmentSize)
	if err != nil {
		return id, header{}, 0, err
	}
	if h.id != id {
		return id, header{}, 0, fmt.Errorf("header names fragment %s", h.id)
	}
	if want := int64(headerLenV(h.version, len(h.slots))) + int64(h.size); st.Size() != want {
		return id, header{}, 0, fmt.Errorf("file is %d bytes, header says %d", st.Size(), want)
	}
	return id, h, st.Size(), nil
}

// chargeOf returns the quota charge of a file of n bytes.
func chargeOf(n int64) int64 { return (n + blockSize - 1) / blockSize * blockSize }

// chargeFor returns the quota charge of a fragment file with slots lease slots.
func chargeFor(slots int, size uint32) int64 {
	return chargeOf(int64(headerLen(slots)) + int64(size))
}

func (s *Store) stripe(id chunker.FragmentID) *sync.RWMutex { return &s.stripes[id[0]] }

func (s *Store) path(id chunker.FragmentID) string {
	h := id.String()
	return filepath.Join(s.dir, "frag", h[:2], h)
}

func (s *Store) lookup(id chunker.FragmentID) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index[id]
}

// reserve charges n bytes against the quota, or fails with ErrFull. The check and the
// charge are one step under mu, so concurrent Puts can never together exceed the quota.
func (s *Store) reserve(n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used+n > s.cfg.Quota {
		return fmt.Errorf("%w: %d of %d bytes used, %d more needed", ErrFull, s.used, s.cfg.Quota, n)
	}
	s.used += n
	return nil
}

func (s *Store) release(n int64) {
	s.mu.Lock()
	s.used -= n
	s.mu.Unlock()
}

// publish replaces id's entry (nil removes it) and adjusts usage by delta. The caller
// holds id's stripe lock.
func (s *Store) publish(id chunker.FragmentID, e *entry, delta int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e == nil {
		delete(s.index, id)
	} else {
		s.index[id] = e
	}
	s.used += delta
}

func (s *Store) enter() error {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *Store) leave() { s.life.RUnlock() }

func (s *Store) checkExpiry(expires time.Time) (int64, error) {
	now := s.now()
	if !expires.After(now) || expires.Sub(now) > s.cfg.MaxLease {
		return 0, fmt.Errorf("%w: %s (now %s, max lease %s)", ErrLease,
			expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), s.cfg.MaxLease)
	}
	return expires.Unix(), nil
}

// Put stores data as fragment id for owner with a lease until expires. It checks that data
// hashes to id (ErrMismatch). If the fragment is already stored, owner's lease becomes the
// later of its current expiry and expires, and no bytes are charged twice; a second owner
// is recorded next to the first (the bytes are the same, by their hash), and the fragment
// stays until no owner's lease remains. Put fails with ErrFull rather than exceed the quota.
func (s *Store) Put(ctx context.Context, id chunker.FragmentID, owner Owner, expires time.Time, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(data) == 0 || len(data) > s.cfg.MaxFragmentSize {
		return fmt.Errorf("%w: %d bytes (max %d)", ErrTooLarge, len(data), s.cfg.MaxFragmentSize)
	}
	exp, err := s.checkExpiry(expires)
	if err != nil {
		return err
	}
	if chunker.FragmentIDOf(data) != id {
		return fmt.Errorf("%w: %s", ErrMismatch, id)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	l := s.stripe(id)
	l.Lock()
	defer l.Unlock()

	now := s.now().Unix()
	e := s.lookup(id)
	if e != nil {
		slots := slices.Clone(e.slots)
		i := slices.IndexFunc(slots, func(sl slot) bool { return sl.owner == owner })
		if i < 0 {
			// A slot with no live lease is reused before the header grows.
			i = slices.IndexFunc(slots, func(sl slot) bool { return sl.expires <= now })
			if i >= 0 {
				slots[i] = slot{owner: owner, expires: exp}
			}
		} else if exp > slots[i].expires {
			slots[i].expires = exp
		} else {
			return nil // the lease already runs at least that long
		}
		if i >= 0 {
			ne := e.withSlots(slots)
			if err := s.writeHeader(id, ne); err != nil {
				return err
			}
			s.publish(id, ne, 0)
			return nil
		}
		if len(slots) >= MaxOwners {
			return fmt.Errorf("%w: %s has %d", ErrTooManyOwners, id, len(slots))
		}
		// The header grows: write a new file from data (the same bytes, by their hash).
		// The new file is charged in full while both exist, so the quota holds on disk.
		ne := &entry{version: headerVersion, size: e.size, sum: payloadSum(data), slots: append(slots, slot{owner: owner, expires: exp})}
		ne.charge = chargeFor(len(ne.slots), ne.size)
		if err := s.reserve(ne.charge); err != nil {
			return err
		}
		if err := s.writeFile(id, ne, data); err != nil {
			s.release(ne.charge)
			return err
		}
		s.publish(id, ne, -e.charge)
		return nil
	}

	ne := &entry{version: headerVersion, size: uint32(len(data)), sum: payloadSum(data), slots: []slot{{owner: owner, expires: exp}}}
	ne.charge = chargeFor(1, ne.size)
	if err := s.reserve(ne.charge); err != nil {
		return err
	}
	if err := s.writeFile(id, ne, data); err != nil {
		s.release(ne.charge)
		return err
	}
	s.publish(id, ne, 0)
	return nil
}

// tmpPrefix starts the name of a fragment file being written.
const tmpPrefix = ".tmp-"

// writeFile writes a whole fragment file through a temporary file and a rename, so the
// final name only ever holds a complete file.
func (s *Store) writeFile(id chunker.FragmentID, e *entry, data []byte) (err error) {
	if s.direct.Load() {
		err := s.writeDirect(id, e, data)
		if !errors.Is(err, errNoDirect) {
			return err
		}
		if s.direct.Swap(false) {
			s.log.Info("store: the filesystem refuses O_DIRECT; writing through the page cache", "dir", s.dir, "err", err)
		}
	}
	p := s.path(id)
	// The temporary file goes in the fragment's own shard directory: with one tmp/ for
	// all, concurrent PUTs contended on that directory's inode allocation (35% of a
	// donor's CPU in the 12-donor benchmark); shards spread it over 256 directories.
	f, err := os.CreateTemp(filepath.Dir(p), tmpPrefix+id.String()+".*")
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := e.hdr(id)
	hb := h.encode(make([]byte, 0, e.hdrLen()))
	if _, err := f.Write(hb); err != nil {
		return fmt.Errorf("store: writing %s: %w", id, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("store: writing %s: %w", id, err)
	}
	if s.cfg.Sync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("store: syncing %s: %w", id, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("store: writing %s: %w", id, err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return s.syncDir(filepath.Dir(p))
}

// errNoDirect: the filesystem does not take O_DIRECT (or its alignment); the write is to
// be done through the page cache instead.
var errNoDirect = errors.New("store: O_DIRECT not supported")

// directAlign is the alignment of O_DIRECT buffers, lengths and offsets: 4 KiB satisfies
// every logical block size up to the page size.
const directAlign = 4096

// writeDirect is writeFile with O_DIRECT: the header and the payload are copied into one
// aligned buffer (a copy in user space costs far less than the kernel's into fresh
// page-cache pages), its whole 4 KiB blocks written with O_DIRECT, and the last partial
// block, if any, through the page cache: padding it and cutting the file back would make
// ext4 read that block back from the disk to zero its tail.
func (s *Store) writeDirect(id chunker.FragmentID, e *entry, data []byte) (err error) {
	p := s.path(id)
	tmp := filepath.Join(filepath.Dir(p), tmpPrefix+id.String()+"."+strconv.FormatUint(rand.Uint64(), 36))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_DIRECT, 0o600)
	if errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("%w: %v", errNoDirect, err)
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	hl := e.hdrLen()
	n := hl + len(data)
	buf := alignedBuffer(n)
	defer putAligned(buf)
	b := *buf
	h := e.hdr(id)
	h.encode(b[:0])
	copy(b[hl:], data)
	whole := n / directAlign * directAlign
	if whole > 0 {
		if _, err := f.Write(b[:whole]); err != nil {
			if errors.Is(err, syscall.EINVAL) {
				return fmt.Errorf("%w: %v", errNoDirect, err)
			}
			return fmt.Errorf("store: writing %s: %w", id, err)
		}
	}
	if whole < n {
		if err := clearDirect(f); err != nil {
			return fmt.Errorf("store: writing %s: %w", id, err)
		}
		if _, err := f.WriteAt(b[whole:n], int64(whole)); err != nil {
			return fmt.Errorf("store: writing %s: %w", id, err)
		}
	}
	if s.cfg.Sync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("store: syncing %s: %w", id, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("store: writing %s: %w", id, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return s.syncDir(filepath.Dir(p))
}

// clearDirect turns O_DIRECT off on f, for a write that is not block aligned.
func clearDirect(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		flags, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		if e != 0 {
			errno = e
			return
		}
		_, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETFL, flags&^syscall.O_DIRECT)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return fmt.Errorf("fcntl: %w", errno)
	}
	return nil
}

// aligned recycles O_DIRECT buffers, one pool per power-of-two size from 64 KiB, so a
// PUT neither allocates nor zeroes its buffer.
var aligned [alignedClasses]sync.Pool // of *[]byte

const (
	minAlignedShift = 16
	alignedClasses  = 32 - minAlignedShift
)

func alignedClass(n int) int {
	if n <= 1<<minAlignedShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minAlignedShift
}

// alignedBuffer returns a buffer whose address is 4 KiB aligned and whose length is n
// rounded up to 4 KiB (only the first n bytes are written).
func alignedBuffer(n int) *[]byte {
	size := (n + directAlign - 1) / directAlign * directAlign
	c := alignedClass(size)
	if p, ok := aligned[c].Get().(*[]byte); ok {
		*p = (*p)[:size]
		return p
	}
	capacity := 1 << (minAlignedShift + c)
	raw := make([]byte, capacity+directAlign)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&raw[0])) % directAlign); r != 0 {
		off = directAlign - r
	}
	b := raw[off : off+size : off+capacity]
	return &b
}

func putAligned(p *[]byte) { aligned[alignedClass(cap(*p))].Put(p) }

// writeHeader rewrites the header of id's file in place; e has as many slots as the file.
// A crash in the middle can tear the header: the CRC then drops the file at the next Open.
func (s *Store) writeHeader(id chunker.FragmentID, e *entry) error {
	f, err := os.OpenFile(s.path(id), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	h := e.hdr(id)
	_, err = f.WriteAt(h.encode(make([]byte, 0, e.hdrLen())), 0)
	if err == nil && s.cfg.Sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: updating header of %s: %w", id, err)
	}
	return nil
}

func (s *Store) syncDir(dir string) error {
	if !s.cfg.Sync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: syncing %s: %w", dir, err)
	}
	return nil
}

// removeFile deletes id's file and its entry, releasing its charge. The caller holds
// id's stripe lock for writing.
func (s *Store) removeFile(id chunker.FragmentID, e *entry) error {
	p := s.path(id)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: %w", err)
	}
	s.publish(id, nil, -e.charge)
	return s.syncDir(filepath.Dir(p))
}

// Size returns the length of fragment id if the store holds a live lease on it, so a
// server can reserve memory before calling Get.
func (s *Store) Size(id chunker.FragmentID) (int, bool) {
	e := s.lookup(id)
	if e == nil || !e.live(s.now().Unix()) {
		return 0, false
	}
	return int(e.size), true
}

// check verifies payload b of e's file: against the CRC-32C its header recorded (version
// 2), or against its BLAKE3 ID (version 1, which records none). Put checked the payload
// against the ID before the file was written, so the CRC only has to catch what the disk
// or a crash did to it since; the client verifies every fragment against its ID anyway.
func (e *entry) check(id chunker.FragmentID, b []byte) error {
	if e.version == 1 {
		if chunker.FragmentIDOf(b) != id {
			return errors.New("payload does not hash to its ID")
		}
		return nil
	}
	if got := payloadSum(b); got != e.sum {
		return fmt.Errorf("payload checksum %08x, header says %08x", got, e.sum)
	}
	return nil
}

// Get returns the bytes of fragment id, verified (see entry.check: the payload CRC, or the
// ID for a version 1 file). A fragment whose file fails verification is dropped and
// ErrCorrupt returned; one with no live lease is ErrNotFound.
func (s *Store) Get(ctx context.Context, id chunker.FragmentID) ([]byte, error) {
	return s.GetInto(ctx, id, nil)
}

// GetInto is Get reading into buf when its capacity is enough (a new buffer otherwise),
// so a server can reuse its buffers. It returns the fragment's bytes, buf[:size] or new.
func (s *Store) GetInto(ctx context.Context, id chunker.FragmentID, buf []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	l := s.stripe(id)
	l.RLock()
	e := s.lookup(id)
	if e == nil || !e.live(s.now().Unix()) {
		l.RUnlock()
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if cap(buf) >= int(e.size) {
		buf = buf[:e.size]
	} else {
		buf = make([]byte, e.size)
	}
	err := s.readPayload(id, e, buf)
	l.RUnlock()
	if err == nil {
		err = e.check(id, buf)
	}
	if err != nil {
		s.log.Warn("store: dropping corrupt fragment", "id", id, "err", err)
		if derr := s.drop(id, e); derr != nil {
			return nil, errors.Join(fmt.Errorf("%w: %s: %v", ErrCorrupt, id, err), derr)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, id, err)
	}
	return buf, nil
}

func (s *Store) readPayload(id chunker.FragmentID, e *entry, buf []byte) error {
	f, err := os.Open(s.path(id))
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadAt(buf, int64(e.hdrLen()))
	return err
}

// drop removes id's file if its entry is still e (a concurrent Put may have replaced it).
func (s *Store) drop(id chunker.FragmentID, e *entry) error {
	l := s.stripe(id)
	l.Lock()
	defer l.Unlock()
	if s.lookup(id) != e {
		return nil
	}
	return s.removeFile(id, e)
}

// Has reports which of ids the store holds a live lease on.
func (s *Store) Has(ids []chunker.FragmentID) []bool {
	now := s.now().Unix()
	out := make([]bool, len(ids))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, id := range ids {
		e := s.index[id]
		out[i] = e != nil && e.live(now)
	}
	return out
}

// Delete ends owner's lease on each of ids and removes the fragments no owner holds a live
// lease on any more. Fragments not stored, or stored without a lease of owner, are skipped.
// It returns the bytes freed.
func (s *Store) Delete(ctx context.Context, owner Owner, ids []chunker.FragmentID) (int64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	var freed int64
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return freed, err
		}
		n, err := s.delete(id, owner)
		freed += n
		if err != nil {
			return freed, err
		}
	}
	return freed, nil
}

func (s *Store) delete(id chunker.FragmentID, owner Owner) (int64, error) {
	l := s.stripe(id)
	l.Lock()
	defer l.Unlock()
	e := s.lookup(id)
	if e == nil {
		return 0, nil
	}
	i := slices.IndexFunc(e.slots, func(sl slot) bool { return sl.owner == owner })
	if i < 0 {
		return 0, nil
	}
	ne := e.withSlots(slices.Clone(e.slots))
	ne.slots[i].expires = 0
	if !ne.live(s.now().Unix()) {
		return e.charge, s.removeFile(id, e)
	}
	if err := s.writeHeader(id, ne); err != nil {
		return 0, err
	}
	s.publish(id, ne, 0)
	return 0, nil
}

// Renew extends owner's lease on each of ids to expires (a lease already running longer is
// kept). Fragments not stored, or stored without a lease of owner, are skipped. It returns
// how many of ids hold a lease of owner until at least expires.
func (s *Store) Renew(ctx context.Context, owner Owner, ids []chunker.FragmentID, expires time.Time) (int, error) {
	exp, err := s.checkExpiry(expires)
	if err != nil {
		return 0, err
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	n := 0
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		ok, err := s.renew(id, owner, exp)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

func (s *Store) renew(id chunker.FragmentID, owner Owner, exp int64) (bool, error) {
	l := s.stripe(id)
	l.Lock()
	defer l.Unlock()
	e := s.lookup(id)
	if e == nil {
		return false, nil
	}
	i := slices.IndexFunc(e.slots, func(sl slot) bool { return sl.owner == owner })
	if i < 0 {
		return false, nil
	}
	if e.slots[i].expires >= exp {
		return true, nil
	}
	ne := e.withSlots(slices.Clone(e.slots))
	ne.slots[i].expires = exp
	if err := s.writeHeader(id, ne); err != nil {
		return false, err
	}
	s.publish(id, ne, 0)
	return true, nil
}

// GC removes the fragments on which no lease runs past now, and returns how many it
// removed and the bytes freed.
func (s *Store) GC(now time.Time) (int, int64, error) {
	if err := s.enter(); err != nil {
		return 0, 0, err
	}
	defer s.leave()
	t := now.Unix()
	var dead []chunker.FragmentID
	s.mu.Lock()
	for id, e := range s.index {
		if !e.live(t) {
			dead = append(dead, id)
		}
	}
	s.mu.Unlock()
	var (
		n     int
		freed int64
		errs  []error
	)
	for _, id := range dead {
		l := s.stripe(id)
		l.Lock()
		// Re-check: a Put may have renewed it since the scan.
		if e := s.lookup(id); e != nil && !e.live(t) {
			if err := s.removeFile(id, e); err != nil {
				errs = append(errs, err)
			} else {
				n++
				freed += e.charge
			}
		}
		l.Unlock()
	}
	return n, freed, errors.Join(errs...)
}

func (s *Store) gcLoop(ctx context.Context) {
	defer s.loopWG.Done()
	t := time.NewTicker(s.cfg.GCInterval)
	defer t.Stop()
	for {
		if n, freed, err := s.GC(s.now()); err != nil && !errors.Is(err, ErrClosed) {
			s.log.Error("store: garbage collection", "err", err)
		} else if n > 0 {
			s.log.Debug("store: expired fragments removed", "count", n, "bytes", freed)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stat returns the quota, the bytes charged (fragment files rounded up to 4 KiB blocks,
// plus files being written) and the number of fragments stored, expired or not.
func (s *Store) Stat() swarm.Stat {
	s.mu.Lock()
	defer s.mu.Unlock()
	return swarm.Stat{Quota: s.cfg.Quota, Used: s.used, Fragments: int64(len(s.index))}
}

// Close stops the GC loop, waits for operations in flight and releases the directory.
// Later calls return ErrClosed.
func (s *Store) Close() error {
	s.stop()
	s.loopWG.Wait()
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	return s.lock.Close() // closing the descriptor releases the flock
}
