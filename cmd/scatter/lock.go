package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
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

// mountAt returns the filesystem type mounted on dir, or "" when dir is not a mount
// point, from /proc/self/mountinfo.
func mountAt(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	return findMount(bufio.NewScanner(f), filepath.Clean(abs))
}

// findMount scans mountinfo lines for mount point dir: "id parent major:minor root
// mountpoint options [optional fields...] - fstype source superoptions", with spaces and
// other special bytes in paths escaped as \ooo octal.
func findMount(sc *bufio.Scanner, dir string) (string, error) {
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	fstype := ""
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 || unescapeMountinfo(fields[4]) != dir {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				fstype = fields[i+1] // the last mount on dir is the visible one
			}
		}
	}
	return fstype, sc.Err()
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// checkMountpoint refuses a mount point that does not exist, is not a directory, or has
// a filesystem mounted on it already (another scatter, say).
func checkMountpoint(dir string) error {
	fstype, err := mountAt(dir)
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
