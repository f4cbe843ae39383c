package fs

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/scatterfs/scatter/volume"
)

// requestLog counts the FUSE requests go-fuse's debug log shows ("rx 12: LOOKUP ...").
type requestLog struct {
	mu   sync.Mutex
	reqs []string // "OPCODE rest of the line", in arrival order
}

var rxLine = regexp.MustCompile(`^rx \d+: ([A-Z_]+)(.*)$`)

func (l *requestLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *requestLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *requestLog) WithGroup(string) slog.Handler            { return l }
func (l *requestLog) Handle(_ context.Context, r slog.Record) error {
	if m := rxLine.FindStringSubmatch(r.Message); m != nil {
		l.mu.Lock()
		l.reqs = append(l.reqs, m[1]+m[2])
		l.mu.Unlock()
	}
	return nil
}

// count returns how many requests since the last call match op and contain text, and
// forgets them all.
func (l *requestLog) count(op, text string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	re := regexp.MustCompile("^" + op + `\b.*` + regexp.QuoteMeta(text))
	for _, r := range l.reqs {
		if re.MatchString(r) {
			n++
		}
	}
	l.reqs = nil
	return n
}

// TestRequestsSaved checks the two kernel caches that cut rsync's requests per file: the
// attributes SETATTR returns are cached (go-fuse leaves their timeout at 0), and a writer
// mount remembers a missing name, which its own create then replaces. The timeouts are an
// hour, so that nothing here depends on how fast the machine is.
func TestRequestsSaved(t *testing.T) {
	t.Setenv("SCATTER_FUSE_DEBUG", "1")
	log := &requestLog{}
	mnt, _, _ := mountOpts(t, volume.Config{Logger: slog.New(log)}, Options{Timeout: time.Hour, NegativeTimeout: time.Hour})
	p := filepath.Join(mnt, "f")
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	log.count("", "")
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stat after chmod: %v, %v", fi, err)
	}
	if n := log.count("GETATTR", ""); n != 0 {
		t.Errorf("%d GETATTRs after chmod; want 0 (the SETATTR reply's attributes are cached)", n)
	}

	missing := filepath.Join(mnt, "missing")
	for range 3 {
		if _, err := os.Stat(missing); !os.IsNotExist(err) {
			t.Fatalf("stat of a missing name: %v", err)
		}
	}
	if n := log.count("LOOKUP", `"missing"`); n != 1 {
		t.Errorf("%d LOOKUPs of a missing name looked up 3 times; want 1 (negative entry cached)", n)
	}
	if err := os.WriteFile(missing, []byte("now here"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(missing); err != nil || string(b) != "now here" {
		t.Fatalf("created over a cached negative entry: %q, %v", b, err)
	}
}
