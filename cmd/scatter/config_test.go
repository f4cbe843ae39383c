package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/gologshim"
)

// testFlags is a flag set shaped like mount's, for the layering tests.
func testFlags() (*flag.FlagSet, *sizeFlag, *int, *listFlag, *string) {
	fs := newFlagSet("mount", "", "test")
	staging, k := sizeFlag(256<<20), 0
	var boot listFlag
	var pw string
	fs.String("config", "", "")
	fs.Var(&staging, "staging", "")
	fs.IntVar(&k, "k", 8, "")
	fs.Var(&boot, "bootstrap", "")
	fs.StringVar(&pw, "password-file", "", "")
	return fs, &staging, &k, &boot, &pw
}

// Precedence: flags > environment > config file > defaults, and a list from a stronger
// layer replaces the weaker one's.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SCATTER_CONFIG", dir)
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, configFileName), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	parse := func(args ...string) (*sizeFlag, *int, *listFlag, *string) {
		t.Helper()
		fs, st, k, boot, pw := testFlags()
		if err := parseFlags(fs, args); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		return st, k, boot, pw
	}

	st, k, boot, pw := parse()
	if *st != 256<<20 || *k != 8 || len(boot.vals) != 0 || *pw != "" {
		t.Fatalf("defaults: %v %v %v %q", *st, *k, boot.vals, *pw)
	}
	write(`password-file = "/etc/pw"
[mount]
staging = "1G"
k = 4
bootstrap = ["/ip4/1.2.3.4/tcp/1/p2p/A", "/ip4/1.2.3.4/tcp/1/p2p/B"]
[daemon]
quota = "50G"
`)
	st, k, boot, pw = parse()
	if *st != 1<<30 || *k != 4 || len(boot.vals) != 2 || *pw != "/etc/pw" {
		t.Fatalf("config file: %v %v %v %q", *st, *k, boot.vals, *pw)
	}
	t.Setenv("SCATTER_STAGING", "2G")
	t.Setenv("SCATTER_BOOTSTRAP", "/env/C")
	st, k, boot, _ = parse()
	if *st != 2<<30 || *k != 4 || strings.Join(boot.vals, " ") != "/env/C" {
		t.Fatalf("environment over config: %v %v %v", *st, *k, boot.vals)
	}
	st, k, boot, _ = parse("-staging", "3G", "-k", "2", "-bootstrap", "/flag/D", "-bootstrap", "/flag/E")
	if *st != 3<<30 || *k != 2 || strings.Join(boot.vals, " ") != "/flag/D /flag/E" {
		t.Fatalf("flags over environment: %v %v %v", *st, *k, boot.vals)
	}
	// -config on the command line chooses the file.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, configFileName), []byte("[mount]\nk = 6\n"), 0o600)
	if _, k, _, _ = parse("-config", other); *k != 6 {
		t.Fatalf("-config %s: k = %d, want 6", other, *k)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SCATTER_CONFIG", dir)
	for _, tc := range []struct{ file, want string }{
		{"[mount]\nstagin = \"1G\"\n", "[mount] stagin: scatter mount has no such setting"},
		{"[mount]\nstaging = \"lots\"\n", "[mount] staging: invalid size"},
		{"[mount]\nk = 1.5\n", "unsupported value"},
		{"[mount]\nk = [1, 2]\n", "want one value"},
		{"[mounts]\nk = 1\n", "[mounts]: no such command"},
		{"staging = \"1G\"\n", `"staging" is not a top-level key`},
		{"[mount\n", "config.toml"},
	} {
		os.WriteFile(filepath.Join(dir, configFileName), []byte(tc.file), 0o600)
		fs, _, _, _, _ := testFlags()
		err := parseFlags(fs, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("config %q: %v; want one line with %q", tc.file, err, tc.want)
		}
	}
	os.WriteFile(filepath.Join(dir, configFileName), nil, 0o600)
	t.Setenv("SCATTER_K", "many")
	fs, _, _, _, _ := testFlags()
	if err := parseFlags(fs, nil); err == nil || !strings.Contains(err.Error(), "$SCATTER_K") {
		t.Errorf("bad environment value: %v", err)
	}
}

// libp2p's (gologshim, slog) and kad-dht's (go-log, zap) logs land in scatter's handler,
// filtered at -p2p-log-level; scatter's own at -log-level.
func TestLogRouting(t *testing.T) {
	var buf bytes.Buffer
	old := logOut.swap(&buf)
	defer logOut.swap(old)
	lf := logFlags{level: "warn", p2pLevel: "warn"}
	log, err := lf.setup()
	if err != nil {
		t.Fatal(err)
	}
	defer (&logFlags{level: "warn", p2pLevel: "error"}).setup()

	golog.Logger("dht-routing-test").Warnw("kad says", "peer", "p1")
	golog.Logger("dht-routing-test").Info("kad info, dropped")
	shim := gologshim.Logger("swarm-routing-test")
	shim.Warn("libp2p says", "conn", 3)
	shim.Info("libp2p info, dropped")
	log.Warn("scatter says")
	log.Info("scatter info, dropped")
	out := buf.String()
	for _, want := range []string{
		`msg="kad says" logger=dht-routing-test peer=p1`, `msg="libp2p says" logger=swarm-routing-test conn=3`, `msg="scatter says"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "dropped") {
		t.Errorf("records below the levels were written:\n%s", out)
	}
}
