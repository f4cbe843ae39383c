package main

import (
	"strings"
	"testing"

	"github.com/scatterfs/scatter/crypt"
)

// The share verb: usage errors, and a clear message when no mount runs.
func TestShareVerb(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"share", "-data", dir},
		{"share", "-data", dir, "-list", "a/b"},
		{"share", "-data", dir, "-revoke", "00", "a/b"},
		{"share", "-data", dir, "a", "b"},
	} {
		if code, _, errs := scatter(t, args...); code != 2 || !strings.Contains(errs, "PATH") {
			t.Errorf("scatter %q: exit %d, %q; want a usage error", args, code, errs)
		}
	}
	for _, args := range [][]string{{"share", "-data", dir, "a/b"}, {"share", "-data", dir, "-list"}} {
		code, _, errs := scatter(t, args...)
		if code != 1 || !strings.Contains(errs, "no scatter mount is running on data directory") {
			t.Errorf("scatter %q with no mount: exit %d, %q", args, code, errs)
		}
	}
}

// mount -cap refuses a malformed capability, and one it cannot reach the swarm with,
// before touching anything.
func TestCapMountUsage(t *testing.T) {
	dir := t.TempDir()
	good := (&crypt.Secret{1}).Keys().Share(crypt.ShareID{1}).Cap.String()
	for _, c := range []struct{ cap, want string }{
		{"scatter-cap1:garbage", "invalid share capability"},
		{good[:len(good)-3], "invalid share capability"},
		{good, "-bootstrap"},
	} {
		code, _, errs := scatter(t, "mount", "-data", dir, "-cap", c.cap, dir)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("mount -cap %.30q: exit %d, %q; want a usage error about %s", c.cap, code, errs, c.want)
		}
	}
}
