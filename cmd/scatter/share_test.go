package main

import (
	"strings"
	"testing"
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
