// Command scatter mounts a drive whose data lives, encrypted and erasure-coded, on other
// people's devices, and donates local disk to other drives.
//
// Each verb is one file with an options struct filled from its flags; main only
// dispatches. Messages for the user go to stdout; logs (log/slog) go to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// verb is one scatter command.
type verb struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout io.Writer) error
}

// verbs is set in init: the config file's reader checks table names against it, and
// verbs reach the reader through their run functions.
var verbs []verb

func init() {
	verbs = []verb{
		{"init", "create a drive: a new drive key, protected by a passphrase", runInit},
		{"key", "export the drive key as a recovery key, or import one", runKey},
		{"mount", "mount the drive on a directory (created on first use); -read-only follows a writer, -cap mounts a share", runMount},
		{"status", "show a running mount's peers, space, pending uploads and health", runStatus},
		{"sync", "wait until everything written to a running mount is on peers; publish its metadata", runSync},
		{"check", "count a running mount's fragments on their holders; -repair rebuilds missing ones", runCheck},
		{"share", "share a directory of a running mount read-only: print a capability for scatter mount -cap", runShare},
		{"repair-cap", "print the drive's repair capability for a helper's scatter daemon -repair", runRepairCap},
		{"daemon", "donate disk space to other drives: run a donor node (-repair: also keep a drive alive)", runDaemon},
		{"swarm", "run N donors in this process on 127.0.0.1, for tests and demos", runSwarm},
		{"version", "print the version", runVersion},
	}
}

// errUsage marks an error in the command line: main prints it with the usage hint.
var errUsage = errors.New("usage")

func main() {
	tuneGC()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// tuneGC trades memory for CPU unless GOGC or GOMEMLIMIT say otherwise. The data path
// allocates a buffer per fragment request (hundreds of KiB each), so with the default
// GOGC=100 garbage collection took 10-17% of a donor's CPU; GOGC=400 raised fragment GET
// throughput from 137 to 226 MB/s in the 12-donor benchmark. The soft memory limit makes
// the collector work harder before the heap outgrows what a phone or small server can give:
// at 448 MiB a mount writing a 4 GiB file with its 12 donors in the process peaks at 474 MiB
// RSS (1 GiB at a 1 GiB limit) for the same CPU per GB, its live heap being ~300 MiB (see
// docs/benchmarks.md, "Per-file cost and memory").
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}

// memoryLimit is the soft memory limit tuneGC sets.
const memoryLimit = 448 << 20

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		return 2
	}
	var v *verb
	for i := range verbs {
		if verbs[i].name == args[0] {
			v = &verbs[i]
		}
	}
	if v == nil {
		fmt.Fprintf(stderr, "scatter: unknown command %q (see scatter help)\n", args[0])
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := v.run(ctx, args[1:], stdout)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "scatter %s: %v (see scatter %s -h)\n", v.name, err, v.name)
		return 2
	default:
		fmt.Fprintf(stderr, "scatter %s: %v\n", v.name, err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: scatter <command> [flags]\n\ncommands:")
	width := 0
	for _, v := range verbs {
		width = max(width, len(v.name))
	}
	for _, v := range verbs {
		fmt.Fprintf(w, "  %-*s  %s\n", width, v.name, v.summary)
	}
	fmt.Fprintln(w, "\nscatter <command> -h shows a command's flags and examples.")
	fmt.Fprintln(w, "Every flag can also be set in $SCATTER_<FLAG> or in config.toml in the config directory;")
	fmt.Fprintln(w, "the command line wins over the environment, which wins over the file. See docs/operations.md.")
}

// newFlagSet returns a flag set for a verb whose errors return rather than exit. about
// says what the verb does; examples are shell lines shown by -h.
func newFlagSet(name, synopsis, about string, examples ...string) *flag.FlagSet {
	fs := flag.NewFlagSet("scatter "+name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: scatter %s %s\n\n%s\n", name, synopsis, strings.TrimSpace(about))
		if len(examples) > 0 {
			fmt.Fprintln(w, "\nexamples:")
			for _, e := range examples {
				fmt.Fprintf(w, "  %s\n", e)
			}
		}
		fmt.Fprintln(w, "\nflags (also $SCATTER_<FLAG>, or config.toml; see scatter help):")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags applies the config file and environment to fs, parses args into it,
// turning flag errors into usage errors, and refuses positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseFlagsLoose(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// parseFlagsLoose is parseFlags that leaves positional arguments to the caller.
func parseFlagsLoose(fs *flag.FlagSet, args []string) error {
	if err := applyLayers(fs, args); err != nil {
		return err
	}
	return parseArgs(fs, args)
}

// parseArgs parses the command line args into fs.
func parseArgs(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fs.Usage()
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

func runVersion(_ context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("version", "", "Print scatter's version.", "scatter version")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	fmt.Fprintln(stdout, "scatter", version)
	return nil
}
