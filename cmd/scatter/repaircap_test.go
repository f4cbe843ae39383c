package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scatterfs/scatter/crypt"
)

// TestRepairCap: scatter repair-cap prints the drive's capability (the same on every
// call), writes it to a new 0600 file with -o, and the daemon's reader takes that file but
// refuses one others can read or one that is not a capability.
func TestRepairCap(t *testing.T) {
	t.Setenv("SCATTER_TEST_CHEAP_KDF", "1")
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("correct horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "cfg")
	if code, _, errs := scatter(t, "init", "-config", cfg, "-password-file", pw); code != 0 {
		t.Fatalf("init: exit %d: %s", code, errs)
	}
	var (
		code      int
		out, errs string
	)
	warning := captureStderr(t, func() { code, out, errs = scatter(t, "repair-cap", "-config", cfg, "-password-file", pw) })
	if code != 0 {
		t.Fatalf("repair-cap: exit %d: %s", code, errs)
	}
	c, err := crypt.ParseRepairCap(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("repair-cap printed %q: %v", out, err)
	}
	if !strings.Contains(warning, "0600") {
		t.Errorf("no warning about storing it 0600: %q", warning)
	}
	file := filepath.Join(dir, "repair.cap")
	if code, _, errs := scatter(t, "repair-cap", "-config", cfg, "-password-file", pw, "-o", file); code != 0 {
		t.Fatalf("repair-cap -o: exit %d: %s", code, errs)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("capability file: %v, mode %v; want 0600", err, fi.Mode())
	}
	got, err := readRepairCap(file)
	if err != nil || got.Text() != c.Text() {
		t.Fatalf("read back: %v", err)
	}
	if code, _, _ := scatter(t, "repair-cap", "-config", cfg, "-password-file", pw, "-o", file); code == 0 {
		t.Fatal("repair-cap -o replaced an existing file")
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readRepairCap(file); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("a capability file others can read: %v, want a refusal", err)
	}
	bad := filepath.Join(dir, "bad.cap")
	if err := os.WriteFile(bad, []byte(c.Text()[:40]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := scatter(t, "daemon", "-repair", bad, "-dir", filepath.Join(dir, "d")); code == 0 || !strings.Contains(errs, "repair capability") {
		t.Fatalf("daemon with a bad capability: exit %d, %q", code, errs)
	}
}
