package mount_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// mountRefused runs `scatter mount` for d and expects it to exit with an error before
// mounting; it returns what the mount printed.
func (d *drive) mountRefused() []byte {
	t := d.t
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), readyTimeout)
	defer cancel()
	args := append([]string{"mount", "-password-file", filepath.Join(d.root, "pw")}, d.flags...)
	cmd := exec.CommandContext(ctx, scatterBin, append(args, d.mnt)...)
	cmd.Env = append(os.Environ(),
		"XDG_CONFIG_HOME="+filepath.Join(d.root, "cfg"),
		"XDG_DATA_HOME="+d.data,
		"SCATTER_TEST_CHEAP_KDF=1",
	)
	out, err := cmd.CombinedOutput()
	d.log.Write(out)
	if err == nil || ctx.Err() != nil || mounted(d.mnt) {
		t.Fatalf("scatter mount was not refused (%v, mounted %v):\n%s", err, mounted(d.mnt), out)
	}
	return out
}

// TestSecondWriter: a second device (its own data dir, the drive's key imported, the same
// external donors) is refused while the first device has the drive mounted, with a
// message naming the writer's lease, and mounts it - recovering what the first wrote -
// once the first unmounted and released the lease.
func TestSecondWriter(t *testing.T) {
	needFUSE(t)
	sw := startSwarm(t, t.TempDir())
	first := newDrive(t, append(sw.bootstrapFlags(), "-staging", "64M")...)
	first.start()
	if err := os.WriteFile(first.path("hello"), []byte("written on the first device\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	key := first.keyCmd(nil, "export")

	second := newDrive(t, append(sw.bootstrapFlags(), "-staging", "64M")...)
	second.keyCmd(key, "import")
	out := second.mountRefused()
	t.Logf("refused: %s", bytes.TrimSpace(out))
	if !bytes.Contains(out, []byte("mounted for writing on another device")) || !bytes.Contains(out, []byte("lease until")) {
		t.Errorf("the refusal does not name the writer's lease:\n%s", out)
	}
	if entries, _ := os.ReadDir(second.volumeDir()); len(entries) != 0 {
		t.Errorf("the refused mount left metadata behind: %v", entries)
	}
	// The first device is unaffected.
	if b, err := os.ReadFile(first.path("hello")); err != nil || string(b) != "written on the first device\n" {
		t.Errorf("first device after the refusal: %q, %v", b, err)
	}

	first.stop()
	second.start()
	if b, err := os.ReadFile(second.path("hello")); err != nil || string(b) != "written on the first device\n" {
		t.Errorf("second device after the first unmounted: %q, %v", b, err)
	}
	// Now the second device holds the lease: the first is refused in turn, as its
	// metadata is older too.
	out = first.mountRefused()
	if !bytes.Contains(out, []byte("mounted for writing on another device")) {
		t.Errorf("the first device, remounting while the second writes, was not refused for the lease:\n%s", out)
	}
	second.stop()
}
