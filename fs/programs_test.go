package fs

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/scatterfs/scatter/volume"
)

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestRealPrograms copies part of Go's source tree in with cp -a, checks it with diff -r,
// round-trips it through tar, and runs git inside the mount. Small chunks and a small
// staging cap make the files span chunks and uploads run during the copy.
func TestRealPrograms(t *testing.T) {
	src := filepath.Join(runtime.GOROOT(), "src")
	for _, p := range []string{"cp", "diff", "tar", "git"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed", p)
		}
	}
	mnt, _, _ := mount(t, volume.Config{StagingMax: 4 << 20, InlineMax: 4 << 10})
	tree := filepath.Join(mnt, "src")
	os.Mkdir(tree, 0o755)
	for _, d := range []string{"strings", "sort", "unicode/utf8"} {
		os.MkdirAll(filepath.Dir(filepath.Join(tree, d)), 0o755)
		run(t, mnt, "cp", "-a", filepath.Join(src, d), filepath.Join(tree, d))
		run(t, mnt, "diff", "-r", filepath.Join(src, d), filepath.Join(tree, d))
	}
	run(t, mnt, "tar", "-cf", "src.tar", "src")
	os.Mkdir(filepath.Join(mnt, "x"), 0o755)
	run(t, filepath.Join(mnt, "x"), "tar", "-xf", "../src.tar")
	run(t, mnt, "diff", "-r", "src", "x/src")

	run(t, tree, "git", "init", "-q")
	run(t, tree, "git", "add", "-A")
	run(t, tree, "git", "commit", "-q", "-m", "import")
	if err := os.WriteFile(filepath.Join(tree, "strings", "new.go"), []byte("package strings\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(tree, "sort", "sort.go"))
	if out := run(t, tree, "git", "status", "--porcelain"); !strings.Contains(out, "D sort/sort.go") || !strings.Contains(out, "?? strings/new.go") {
		t.Errorf("git status:\n%s", out)
	}
	run(t, tree, "git", "checkout", "--", "sort/sort.go")
	run(t, tree, "git", "gc", "-q")
	run(t, tree, "git", "fsck", "--strict")
	run(t, mnt, "diff", "-r", filepath.Join(src, "sort"), filepath.Join(tree, "sort"))
}
