package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/scatterfs/scatter/internal/mountinfo"
)

// lockDataDir takes an exclusive lock on the drive's data directory for this process: two
// mounts of one data directory would share its metadata store, staging and local swarm.
// The lock is an flock on dir/lock, so it dies with the process; the file holds the
// holder's pid for the error message.
func lockDataDir(dir string) (unlock func() error, err error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := strings.TrimSpace(string(b))
			if holder == "" {
				holder = "?"
			}
			return nil, fmt.Errorf("data directory %s is in use by another scatter mount (pid %s); one data directory serves one mount (use -data for another drive)", dir, holder)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f.Close, nil // closing the file releases the lock
}

// checkMountpoint refuses a mount point that does not exist, is not a directory, or has
// a filesystem mounted on it already (another scatter, say).
func checkMountpoint(dir string) error {
	fstype, err := mountinfo.FSType(dir)
	if err != nil {
		return fmt.Errorf("reading the mount table: %w", err)
	}
	if fstype != "" {
		hint := ""
		if strings.HasPrefix(fstype, "fuse") {
			hint = fmt.Sprintf(" (if no scatter serves it any more, `umount %s` first)", dir)
		}
		return fmt.Errorf("mount point %s is in use: a %s filesystem is mounted there%s", dir, fstype, hint)
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mount point %s does not exist (create it with mkdir -p %s)", dir, dir)
	case err != nil:
		return fmt.Errorf("mount point %s: %w", dir, errors.Unwrap(err))
	case !fi.IsDir():
		return fmt.Errorf("mount point %s is not a directory", dir)
	}
	return nil
}
