package mount_test

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// knownPosixBugs are cases skipped, each for a reported bug that makes it fail now and
// then (a flaky CI hides every other failure); TestOpenRenameRace keeps the check alive.
var knownPosixBugs = map[string]string{
	// Its target, go-fuse opening a host path through a swapped symlink, cannot happen
	// here (scatter opens no host files); what fails, once in about ten runs, is its
	// fstat of an open descriptor: ENOENT.
	"OpenSymlinkRace": "fstat of an open file can fail with ENOENT when a rename drops its last link " +
		"while the open is in flight (volume dropLink checks opens before its commit); see TestOpenRenameRace",
}

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
			if why, ok := knownPosixBugs[nm]; ok && !openUnlinkRaceFixed {
				t.Skip("BUG: " + why)
			}
			dir := filepath.Join(d.mnt, nm)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			posixtest.All[nm](t, dir)
		})
	}
}
