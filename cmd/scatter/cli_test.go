package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scatterfs/scatter/control"
)

// scatter runs the CLI in-process and returns its exit code, stdout and stderr.
func scatter(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestInitKeyExportImport(t *testing.T) {
	t.Setenv("SCATTER_TEST_CHEAP_KDF", "1")
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("correct horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "cfg")

	code, out, errs := scatter(t, "init", "-config", cfg, "-password-file", pw)
	if code != 0 {
		t.Fatalf("init: exit %d: %s", code, errs)
	}
	recovery := recoveryLine(t, out)
	if fi, err := os.Stat(filepath.Join(cfg, "drive.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, fi.Mode())
	}

	if code, _, errs := scatter(t, "init", "-config", cfg, "-password-file", pw); code != 1 || !strings.Contains(errs, "refusing to overwrite") {
		t.Fatalf("second init: exit %d, %q; want a refusal", code, errs)
	}

	code, out, _ = scatter(t, "key", "export", "-config", cfg, "-password-file", pw)
	if code != 0 || recoveryLine(t, out) != recovery {
		t.Fatalf("export: exit %d, key %q, want %q", code, recoveryLine(t, out), recovery)
	}

	wrong := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrong, []byte("incorrect horse"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs = scatter(t, "key", "export", "-config", cfg, "-password-file", wrong)
	if code != 1 || !strings.Contains(errs, "wrong passphrase") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("export with a wrong passphrase: exit %d, %q; want one line saying so", code, errs)
	}

	// Import into a fresh config dir from the recovery key on stdin: same key again.
	cfg2 := filepath.Join(dir, "cfg2")
	withStdin(t, recovery+"\n")
	if code, _, errs := scatter(t, "key", "import", "-config", cfg2, "-password-file", pw); code != 0 {
		t.Fatalf("import: exit %d: %s", code, errs)
	}
	code, out, _ = scatter(t, "key", "export", "-config", cfg2, "-password-file", pw)
	if code != 0 || recoveryLine(t, out) != recovery {
		t.Fatalf("export after import: exit %d, key %q, want %q", code, recoveryLine(t, out), recovery)
	}

	withStdin(t, "not a recovery key\n")
	if code, _, errs := scatter(t, "key", "import", "-config", filepath.Join(dir, "cfg3"), "-password-file", pw); code != 1 || errs == "" {
		t.Fatalf("import of garbage: exit %d, %q", code, errs)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{}, {"bogus"}, {"daemon", "-quota", "lots"}, {"daemon", "-nosuchflag"}, {"swarm", "-n", "0"},
		{"key"}, {"key", "rotate"}, {"version", "extra"},
	} {
		code, _, errs := scatter(t, args...)
		if code != 2 || errs == "" || strings.Contains(errs, "goroutine") {
			t.Errorf("scatter %q: exit %d, stderr %q; want exit 2 and a message", args, code, errs)
		}
	}
	if code, out, _ := scatter(t, "version"); code != 0 || !strings.HasPrefix(out, "scatter ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestNoDrive(t *testing.T) {
	code, _, errs := scatter(t, "key", "export", "-config", t.TempDir())
	if code != 1 || !strings.Contains(errs, "scatter init") {
		t.Fatalf("export with no drive: exit %d, %q; want a hint to run scatter init", code, errs)
	}
}

func recoveryLine(t *testing.T, out string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "    ") {
			return strings.TrimSpace(l)
		}
	}
	t.Fatalf("no recovery key in %q", out)
	return ""
}

// withStdin points os.Stdin at a file holding s for the rest of the test.
func withStdin(t *testing.T, s string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stdin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	old := os.Stdin
	os.Stdin = f
	t.Cleanup(func() { os.Stdin = old; f.Close() })
}

func TestVerbErrors(t *testing.T) {
	for _, args := range [][]string{
		{"status", "-nosuchflag"}, {"status", "extra"}, {"sync", "-timeout", "soon"},
		{"mount"}, {"mount", "a", "b"}, {"mount", "-staging", "1M", "x"}, {"mount", "-k", "lots", "x"},
		{"mount", "-log-level", "loud", t.TempDir()}, {"init", "-bogus"}, {"key", "export", "-bogus"},
	} {
		code, _, errs := scatter(t, args...)
		if code != 2 || strings.Count(errs, "\n") != 1 || strings.Contains(errs, "goroutine") {
			t.Errorf("scatter %q: exit %d, stderr %q; want exit 2 and one line", args, code, errs)
		}
	}
}

func TestMountErrors(t *testing.T) {
	t.Setenv("SCATTER_TEST_CHEAP_KDF", "1")
	dir := t.TempDir()
	pw, wrong := filepath.Join(dir, "pw"), filepath.Join(dir, "wrong")
	os.WriteFile(pw, []byte("right"), 0o600)
	os.WriteFile(wrong, []byte("wrong"), 0o600)
	cfg := filepath.Join(dir, "cfg")
	if code, _, errs := scatter(t, "init", "-config", cfg, "-password-file", pw); code != 0 {
		t.Fatal(errs)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	oneLine := func(name string, code int, errs, want string) {
		t.Helper()
		if code != 1 || !strings.Contains(errs, want) || strings.Count(errs, "\n") != 1 || strings.Contains(errs, "goroutine") {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 and one line with %q", name, code, errs, want)
		}
	}
	code, _, errs := scatter(t, "mount", "-config", cfg, "-password-file", wrong, "-data", filepath.Join(dir, "d1"), mnt)
	oneLine("wrong passphrase", code, errs, "wrong passphrase")
	code, _, errs = scatter(t, "mount", "-config", cfg, "-password-file", pw, "-data", filepath.Join(dir, "d1"), filepath.Join(dir, "none"))
	oneLine("missing mount point", code, errs, "mount point "+filepath.Join(dir, "none")+" does not exist")
	code, _, errs = scatter(t, "mount", "-config", cfg, "-password-file", pw, "-data", filepath.Join(dir, "d1"), pw)
	oneLine("file as mount point", code, errs, "is not a directory")

	// A data directory locked by another process (here: this one) is refused before the
	// passphrase is even read.
	data := filepath.Join(dir, "d2")
	os.Mkdir(data, 0o700)
	unlock, err := lockDataDir(data)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	code, _, errs = scatter(t, "mount", "-config", cfg, "-data", data, mnt)
	oneLine("data dir in use", code, errs, fmt.Sprintf("is in use by another scatter mount (pid %d)", os.Getpid()))
}

// Every verb's -h exits 0 and shows examples.
func TestHelp(t *testing.T) {
	for _, v := range verbs {
		args := []string{v.name, "-h"}
		if v.name == "key" {
			args = []string{"key", "export", "-h"}
		}
		out := captureStderr(t, func() {
			if code, _, _ := scatter(t, args...); code != 0 {
				t.Errorf("scatter %q: exit %d", args, code)
			}
		})
		if !strings.Contains(out, "examples:\n  ") || !strings.Contains(out, "usage: scatter "+v.name) {
			t.Errorf("scatter %q help lacks usage or examples:\n%s", args, out)
		}
	}
	if !strings.Contains(captureStderr(t, func() { scatter(t, "key", "-h") }), "scatter key export") {
		t.Error("scatter key -h does not name the key commands")
	}
}

// captureStderr returns what f writes to os.Stderr.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	tmp, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	old := os.Stderr
	os.Stderr = tmp
	f()
	os.Stderr = old
	b, _ := os.ReadFile(tmp.Name())
	return string(b)
}

// scatter help lists every verb on one line, and README's tour names each of them.
func TestUsageListsVerbs(t *testing.T) {
	var b strings.Builder
	usage(&b)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, tour, _ := strings.Cut(string(readme), "- **Verbs.**")
	tour, _, _ = strings.Cut(tour, "\n- ")
	for _, v := range verbs {
		if n := strings.Count(b.String(), "\n  "+v.name+" "); n != 1 {
			t.Errorf("scatter help lists %q on %d lines, want 1:\n%s", v.name, n, b.String())
		}
		if !strings.Contains(tour, "`"+v.name) {
			t.Errorf("README's list of verbs lacks %q", v.name)
		}
	}
}

// scatter check names the holders that failed, under what they did.
func TestPrintCheckNamesFailingHolders(t *testing.T) {
	var b strings.Builder
	printCheck(&b, &control.CheckResult{
		Chunks: 3, Complete: 1, Degraded: 2, Fragments: 18, Found: 15, Denied: 1, Corrupt: 1, Unaudited: 1, Unanswered: 1,
		Deniers: []string{"12D3KooWdeny"}, Liars: []string{"12D3KooWlie"}, Stalled: []string{"12D3KooWstall"},
		Repair: &control.RepairResult{Chunks: 2, Repaired: 2, Rebuilt: 3, Suspects: []string{"12D3KooWbad"}},
	})
	out := b.String()
	for _, want := range []string{
		"1 denied by their holders", "1 not audited",
		"deny fragments they accepted (lost or dropped them) (1):\n  12D3KooWdeny\n",
		"served bad bytes or none for fragments they claim (1):\n  12D3KooWlie\n",
		"did not answer (offline, or stalling) (1):\n  12D3KooWstall\n",
		"repair found failing (nothing placed on them) (1):\n  12D3KooWbad\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
}

// -read-only needs peers to join: bootstrap peers in config.toml suffice, and without any
// the error names every way to give them.
func TestReadOnlyBootstrapFromConfig(t *testing.T) {
	dir := t.TempDir()
	cfg, mnt := filepath.Join(dir, "cfg"), filepath.Join(dir, "mnt")
	os.Mkdir(cfg, 0o700)
	os.Mkdir(mnt, 0o755)
	args := []string{"mount", "-config", cfg, "-read-only", "-data", filepath.Join(dir, "data"), mnt}
	code, _, errs := scatter(t, args...)
	if code != 2 || !strings.Contains(errs, "-bootstrap <donor multiaddr>") || !strings.Contains(errs, "[mount] table of config.toml") {
		t.Errorf("no bootstrap anywhere: exit %d, %q; want a usage error naming -bootstrap and config.toml", code, errs)
	}
	conf := "[mount]\nbootstrap = [\"/ip4/127.0.0.1/tcp/9/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN\"]\n"
	if err := os.WriteFile(filepath.Join(cfg, configFileName), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// Past the bootstrap check, the mount stops at the missing drive key (no network yet).
	code, _, errs = scatter(t, args...)
	if code != 1 || !strings.Contains(errs, "no drive key") {
		t.Errorf("bootstrap in config.toml: exit %d, %q; want the missing drive key", code, errs)
	}
}

// scatter status on a read-only mount says what it shows and since when.
func TestPrintStatusFollow(t *testing.T) {
	var b strings.Builder
	printStatus(&b, &control.Status{K: 4, M: 2, Follow: &control.Follow{
		Share: true, Root: "c0ffee", Seq: 42, Checked: time.Now(), Swaps: 3, IntervalSeconds: 5,
	}})
	for _, want := range []string{"Read-only: shows a shared directory", "snapshot c0ffee (record 42)", "(every 5s); 3 newer snapshots"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

// followerHandler answers like a read-only mount: its sync uploads nothing.
type followerHandler struct{}

func (followerHandler) Status(context.Context, bool) (*control.Status, error) {
	return nil, errors.New("not asked")
}

func (followerHandler) Sync(_ context.Context, progress func(control.Progress)) error {
	progress(control.Progress{Follow: true})
	return nil
}

func (followerHandler) Check(context.Context, bool, bool, func(control.Step)) (*control.CheckResult, error) {
	return nil, errFollowerCheck
}

// scatter sync on a read-only mount says what it did, not that uploads finished.
func TestSyncReadOnly(t *testing.T) {
	dir := t.TempDir()
	srv, err := control.Listen(filepath.Join(dir, "control.sock"), followerHandler{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	code, out, errs := scatter(t, "sync", "-config", dir, "-data", dir)
	if code != 0 || !strings.Contains(out, "Read-only mount: it shows the newest snapshot") || strings.Contains(out, "staged") {
		t.Errorf("sync on a follower: exit %d, %q, %q", code, out, errs)
	}
}
