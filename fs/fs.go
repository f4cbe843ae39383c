// Package fs mounts a volume.Volume with go-fuse. It is a thin translation: each kernel
// request becomes one call on the volume core, and every error goes through toErrno.
// Permission checks are the kernel's (default_permissions), as on a local filesystem.
package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/scatterfs/scatter/volume"
)

// Options configure a mount. Zero fields take the documented defaults.
type Options struct {
	// AllowOther lets users other than the mounting one use the mount.
	AllowOther bool
	// FsName is shown in mount tables; default "scatter".
	FsName string
	// Timeout is how long the kernel caches attributes and names; default 1 s.
	Timeout time.Duration
	// NegativeTimeout is how long a writer mount's kernel remembers that a name does not
	// exist; default 1 min. A read-only mount does not remember it (its names appear
	// from elsewhere).
	NegativeTimeout time.Duration
	// ReadAheadKB is written to the mount's read_ahead_kb after mounting; default 1024,
	// negative leaves the kernel's value.
	ReadAheadKB int
	// Debug logs every FUSE request.
	Debug bool
	// Logger receives errors that have no caller to go to; default slog.Default().
	Logger *slog.Logger
	// ReadOnly mounts read-only: the kernel refuses changes with EROFS (MS_RDONLY) and
	// so does the filesystem itself. Opens do not keep the kernel's page cache, since a
	// read-only mount follows a drive written elsewhere (see Live).
	ReadOnly bool
}

// Mount mounts v on dir and returns the serving server. Unmount the server before
// closing v: requests in flight use the volume until the kernel lets go. The serving
// process may use the mount itself (the tests do), but never from inside a request: a
// filesystem method that touches the mount waits for itself.
func Mount(dir string, v *volume.Volume, o Options) (*fuse.Server, error) {
	return MountLive(dir, NewLive(v), o)
}

// MountLive is Mount serving whatever volume l holds: l.Swap replaces it under the live
// mount. Unmount the server before closing the last volume swapped in.
func MountLive(dir string, l *Live, o Options) (*fuse.Server, error) {
	if o.FsName == "" {
		o.FsName = "scatter"
	}
	if o.Timeout == 0 {
		o.Timeout = time.Second
	}
	if o.NegativeTimeout == 0 {
		o.NegativeTimeout = time.Minute
	}
	if o.ReadAheadKB == 0 {
		o.ReadAheadKB = 1024
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	root := &node{m: &mnt{live: l, log: o.Logger, ro: o.ReadOnly, timeout: o.Timeout}, ino: volume.RootIno}
	opts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:   o.AllowOther,
			FsName:       o.FsName,
			Name:         "scatter",
			Options:      []string{"default_permissions"},
			MaxWrite:     1 << 20,
			MaxReadAhead: 1 << 20,
			DirectMount:  true,
			EnableLocks:  true,
			Debug:        o.Debug,
			// go-fuse's diagnostics (e.g. splice fallbacks on 1 MiB replies) are debug logs.
			Logger: slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
		},
		EntryTimeout:   &o.Timeout,
		AttrTimeout:    &o.Timeout,
		RootStableAttr: &gofs.StableAttr{Ino: volume.RootIno},
	}
	if !o.ReadOnly {
		// A writer mount is the drive's only writer and every name it creates goes
		// through this kernel, which turns the negative entry into the new one: however
		// long it is remembered, a negative entry is never stale. rsync looks each name
		// up before its generator's scan and again before the receiver's rename, often
		// more than Timeout later: one LOOKUP per file saved (see docs/benchmarks.md,
		// "Per-file cost and memory").
		opts.NegativeTimeout = &o.NegativeTimeout
	} else {
		// A direct mount takes the read-only bit as a flag ("ro" as an option string
		// would be refused by the kernel). Where go-fuse falls back to fusermount (not
		// root), the kernel does not know; the filesystem's own EROFS still holds.
		opts.DirectMountFlags = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_RDONLY
	}
	srv, err := gofs.Mount(dir, root, opts)
	if err != nil {
		return nil, fmt.Errorf("fs: mount %s: %w", dir, err)
	}
	l.mounted(root.EmbeddedInode())
	if o.ReadAheadKB > 0 {
		if err := setReadAhead(dir, o.ReadAheadKB); err != nil {
			o.Logger.Debug("fs: read_ahead_kb unchanged", "err", err)
		}
	}
	return srv, nil
}

// setReadAhead raises the read-ahead of the mount's backing device info: the kernel's
// default of 128 KiB leaves a network-backed drive waiting between requests.
func setReadAhead(dir string, kb int) error {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", major(st.Dev), minor(st.Dev))
	return os.WriteFile(p, []byte(fmt.Sprint(kb)), 0)
}

func major(dev uint64) uint64 { return (dev >> 8) & 0xfff }
func minor(dev uint64) uint64 { return (dev & 0xff) | ((dev >> 12) & 0xfff00) }

// errnos maps the core's errors; anything else is EIO.
var errnos = []struct {
	err   error
	errno syscall.Errno
}{
	{volume.ErrNotFound, syscall.ENOENT},
	{volume.ErrExist, syscall.EEXIST},
	{volume.ErrNotDir, syscall.ENOTDIR},
	{volume.ErrIsDir, syscall.EISDIR},
	{volume.ErrNotEmpty, syscall.ENOTEMPTY},
	{volume.ErrNameTooLong, syscall.ENAMETOOLONG},
	{volume.ErrInvalid, syscall.EINVAL},
	{volume.ErrNoAttr, syscall.ENODATA},
	{volume.ErrRange, syscall.ERANGE},
	{volume.ErrNoSpace, syscall.ENOSPC},
	{volume.ErrTooBig, syscall.EFBIG},
	{volume.ErrNotSupp, syscall.EOPNOTSUPP},
	{volume.ErrInterrupted, syscall.EINTR},
	{volume.ErrTooManyLinks, syscall.EMLINK},
	{volume.ErrWouldBlock, syscall.EAGAIN},
	{volume.ErrNoOffset, syscall.ENXIO},
	{volume.ErrIO, syscall.EIO},
	{context.Canceled, syscall.EINTR},
}

// toErrno is the one translation from core errors to errnos. Errors the core does not
// classify are logged here, once, and become EIO.
func toErrno(log *slog.Logger, op string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	for _, e := range errnos {
		if errors.Is(err, e.err) {
			if e.errno == syscall.EIO {
				log.Error("fs: "+op, "err", err)
			}
			return e.errno
		}
	}
	log.Error("fs: "+op, "err", err)
	return syscall.EIO
}
