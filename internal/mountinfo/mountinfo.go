// Package mountinfo answers "what is mounted on this directory?" from
// /proc/self/mountinfo, for the mount verb's checks and for the tests and benchmarks that
// wait for a mount to appear or go.
package mountinfo

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FSType returns the type of the filesystem mounted on dir ("fuse.scatter", "ext4", …),
// or "" when dir is not a mount point.
func FSType(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	return Find(f, filepath.Clean(abs))
}

// Mounted reports whether a filesystem is mounted on dir; an unreadable mountinfo counts
// as not mounted.
func Mounted(dir string) bool {
	t, err := FSType(dir)
	return err == nil && t != ""
}

// Find scans mountinfo lines from r for mount point dir (absolute and clean): "id parent
// major:minor root mountpoint options [optional fields...] - fstype source superoptions",
// with spaces and other special bytes in paths escaped as \ooo octal. When several mounts
// stack on dir the last, the visible one, wins.
func Find(r io.Reader, dir string) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	fstype := ""
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 || unescape(fields[4]) != dir {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				fstype = fields[i+1]
			}
		}
	}
	return fstype, sc.Err()
}

// unescape undoes mountinfo's \ooo octal escapes (\040 for a space).
func unescape(s string) string {
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
