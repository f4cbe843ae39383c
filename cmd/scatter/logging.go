package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/gologshim"
	"go.uber.org/zap/zapcore"
)

// Logs: one slog text handler on stderr for the whole process. scatter's own packages
// log through it at -log-level (warn by default: quiet unless something is wrong);
// libp2p (slog, through gologshim) and kad-dht and its helpers (go-log, a zap core) are
// routed into the same handler at -p2p-log-level (error by default: they are chatty).
// Messages for the user (progress, results) go to stdout and are not logs.

var (
	logLevel    slog.LevelVar // scatter's packages
	p2pLogLevel slog.LevelVar // libp2p and kad-dht
	logOut      = &swapWriter{w: os.Stderr}
	baseHandler = slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug})
	p2pHandler  = &levelHandler{h: baseHandler, min: &p2pLogLevel}
)

func init() {
	logLevel.Set(slog.LevelWarn)
	p2pLogLevel.Set(slog.LevelError)
	// Both must be in place before libp2p logs anything: gologshim binds each logger to
	// the default handler at its first log line.
	gologshim.SetDefaultHandler(p2pHandler)
	golog.SetPrimaryCore(&zapSlogCore{h: p2pHandler})
	setGoLogLevel(slog.LevelError)
}

// logFlags are the logging flags of the verbs that run nodes.
type logFlags struct {
	level, p2pLevel string
	verbose         bool
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "warn", "scatter's log `level`: debug, info, warn or error")
	fs.StringVar(&l.p2pLevel, "p2p-log-level", "error", "libp2p's and the DHT's log `level`")
	fs.BoolVar(&l.verbose, "v", false, "verbose: -log-level debug and -p2p-log-level info")
}

// setup applies the levels and returns the logger for scatter's packages.
func (l *logFlags) setup() (*slog.Logger, error) {
	lv, err := parseLevel(l.level)
	if err != nil {
		return nil, fmt.Errorf("%w: -log-level: %v", errUsage, err)
	}
	pv, err := parseLevel(l.p2pLevel)
	if err != nil {
		return nil, fmt.Errorf("%w: -p2p-log-level: %v", errUsage, err)
	}
	if l.verbose {
		lv, pv = min(lv, slog.LevelDebug), min(pv, slog.LevelInfo)
	}
	logLevel.Set(lv)
	p2pLogLevel.Set(pv)
	setGoLogLevel(pv)
	log := slog.New(&levelHandler{h: baseHandler, min: &logLevel})
	slog.SetDefault(log)
	return log, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return 0, fmt.Errorf("unknown level %q (want debug, info, warn or error)", s)
	}
	return l, nil
}

// setGoLogLevel sets every go-log logger's level, so kad-dht does not even format what
// the handler would drop. GOLOG_LOG_LEVEL, when set, wins: it can name subsystems.
func setGoLogLevel(l slog.Level) {
	if os.Getenv("GOLOG_LOG_LEVEL") != "" {
		return
	}
	name := "error"
	switch {
	case l <= slog.LevelDebug:
		name = "debug"
	case l <= slog.LevelInfo:
		name = "info"
	case l <= slog.LevelWarn:
		name = "warn"
	}
	_ = golog.SetLogLevel("*", name) // a known level name cannot fail
}

// swapWriter is the log destination; tests point it elsewhere.
type swapWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *swapWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *swapWriter) swap(w io.Writer) io.Writer {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.w
	s.w = w
	return old
}

// levelHandler drops records below min and passes the rest to h.
type levelHandler struct {
	h   slog.Handler
	min slog.Leveler
}

func (l *levelHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min.Level() && l.h.Enabled(ctx, lv)
}
func (l *levelHandler) Handle(ctx context.Context, r slog.Record) error { return l.h.Handle(ctx, r) }
func (l *levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &levelHandler{h: l.h.WithAttrs(as), min: l.min}
}
func (l *levelHandler) WithGroup(name string) slog.Handler {
	return &levelHandler{h: l.h.WithGroup(name), min: l.min}
}

// zapSlogCore is a zap core writing into a slog.Handler: go-log's loggers (kad-dht,
// kbucket, boxo) end up in the same handler as everything else.
type zapSlogCore struct {
	h      slog.Handler
	fields []zapcore.Field
}

var _ zapcore.Core = (*zapSlogCore)(nil)

func zapToSlog(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func (c *zapSlogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), zapToSlog(l))
}

func (c *zapSlogCore) With(fs []zapcore.Field) zapcore.Core {
	return &zapSlogCore{h: c.h, fields: append(slices.Clip(c.fields), fs...)}
}

func (c *zapSlogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapSlogCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	r := slog.NewRecord(e.Time, zapToSlog(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fs {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		r.AddAttrs(slog.Any(k, enc.Fields[k]))
	}
	return c.h.Handle(context.Background(), r)
}

func (c *zapSlogCore) Sync() error { return nil }
