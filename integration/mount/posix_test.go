package mount_test

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// TestPosix runs go-fuse's POSIX conformance suite against the mount of the real binary.
// One mount serves every case, each in a fresh directory of its own: a mount per case
// would start 30 local swarms for no extra coverage, since the cases do not depend on
// the mount's root. They run one at a time: FdLeak counts this process's open files.
func TestPosix(t *testing.T) {
	d := newDrive(t, "-staging", "64M", "-cache", "64M")
	d.start()
	names := make([]string, 0, len(posixtest.All))
	for nm := range posixtest.All {
		names = append(names, nm)
	}
	sort.Strings(names)
	for _, nm := range names {
		t.Run(nm, func(t *testing.T) {
			dir := filepath.Join(d.mnt, nm)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			posixtest.All[nm](t, dir)
		})
	}
}
