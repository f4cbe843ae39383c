package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/scatterfs/scatter/control"
)

type checkOptions struct {
	ctlFlags
	repair  bool
	verify  bool
	json    bool
	timeout time.Duration
}

func runCheck(ctx context.Context, args []string, stdout io.Writer) error {
	var o checkOptions
	fs := newFlagSet("check", "[flags]", `Ask a running scatter mount to count every chunk's fragments on their holders,
with one batched request per holder, and with -repair to rebuild the missing
ones from any k good fragments onto new peers (no decryption: fragments are
rebuilt byte for byte) and record the new holders. -verify also fetches every
fragment and checks its hash, finding holders that say they have a fragment
but serve bad bytes or none; it moves the whole drive over the network.

The mount also checks and repairs in the background, at a bounded rate (see
scatter mount -check-every and -repair-rate). The exit status is 1 when chunks
stay incomplete.`,
		"scatter check",
		"scatter check -repair",
		"scatter check -verify -repair -json")
	o.ctlFlags.register(fs)
	fs.BoolVar(&o.repair, "repair", false, "rebuild missing fragments onto new peers")
	fs.BoolVar(&o.verify, "verify", false, "fetch and hash every fragment, not only ask its holder")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON (the control protocol's CheckResult)")
	fs.DurationVar(&o.timeout, "timeout", 0, "give up after this long (0: no limit)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx, o.timeout)
	defer cancel()
	show := newStepPrinter(stdout, !o.json)
	res, err := o.client().Check(ctx, o.repair, o.verify, show.update)
	show.done()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("the check did not finish within %v", o.timeout)
		}
		return o.wrap(err)
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printCheck(stdout, res)
	}
	left := res.Degraded + res.Unreadable
	if r := res.Repair; r != nil {
		left = r.Partial + r.Failed
	}
	if left > 0 {
		return errIncomplete
	}
	return nil
}

// errIncomplete: the check found (or left) incomplete chunks. main exits with 1.
var errIncomplete = errors.New("some chunks are missing fragments")

func printCheck(w io.Writer, r *control.CheckResult) {
	fmt.Fprintf(w, "%d chunks: %d complete, %d degraded (readable), %d unreadable; %d of %d fragments found",
		r.Chunks, r.Complete, r.Degraded, r.Unreadable, r.Found, r.Fragments)
	if r.Denied > 0 {
		fmt.Fprintf(w, "; %d denied by their holders", r.Denied)
	}
	if r.Corrupt > 0 {
		fmt.Fprintf(w, "; %d held but served bad bytes or none", r.Corrupt)
	}
	if r.Unaudited > 0 {
		fmt.Fprintf(w, "; %d not audited (holder stopped answering)", r.Unaudited)
	}
	if r.Unanswered > 0 {
		fmt.Fprintf(w, "; %d holders did not answer", r.Unanswered)
	}
	fmt.Fprintln(w, ".")
	// The failing holders by name: donors that keep showing up here are not worth
	// trusting with fragments (repairs already avoid them).
	printPeers(w, "Holders that deny fragments they accepted (lost or dropped them)", r.Deniers)
	printPeers(w, "Holders that served bad bytes or none for fragments they claim", r.Liars)
	printPeers(w, "Holders that did not answer (offline, or stalling)", r.Stalled)
	p := r.Repair
	if p == nil {
		return
	}
	defer printPeers(w, "Peers the repair found failing (nothing placed on them)", p.Suspects)
	fmt.Fprintf(w, "Repair: %d chunks rebuilt (%d fragments, %s", p.Repaired, p.Rebuilt, formatBytes(p.Bytes))
	if p.Seconds > 0 {
		fmt.Fprintf(w, " in %.1fs, %s/s", p.Seconds, formatBytes(int64(float64(p.Bytes)/p.Seconds)))
	}
	fmt.Fprintf(w, "); %d partly, %d not (unreadable now or no peer to take them).\n", p.Partial, p.Failed)
	for _, e := range p.Errors {
		fmt.Fprintf(w, "  %s\n", e)
	}
}

// printPeers prints a titled list of peer IDs, nothing for none.
func printPeers(w io.Writer, title string, ids []string) {
	if len(ids) == 0 {
		return
	}
	fmt.Fprintf(w, "%s (%d):\n", title, len(ids))
	for _, id := range ids {
		fmt.Fprintf(w, "  %s\n", id)
	}
}

// stepPrinter shows check progress: redrawn in place on a terminal, a line every few
// seconds otherwise, nothing when off.
type stepPrinter struct {
	w     io.Writer
	on    bool
	tty   bool
	last  time.Time
	drawn bool
}

func newStepPrinter(w io.Writer, on bool) *stepPrinter {
	f, ok := w.(*os.File)
	return &stepPrinter{w: w, on: on, tty: ok && term.IsTerminal(int(f.Fd()))}
}

func (s *stepPrinter) update(p control.Step) {
	if !s.on {
		return
	}
	now := time.Now()
	if !s.tty && s.drawn && now.Sub(s.last) < lineEvery && p.Done != p.Total {
		return
	}
	s.last, s.drawn = now, true
	what := "holders asked"
	if p.Phase == "repair" {
		what = fmt.Sprintf("chunks repaired (%s)", formatBytes(p.Bytes))
	}
	line := fmt.Sprintf("%s: %d of %d %s", p.Phase, p.Done, p.Total, what)
	if s.tty {
		fmt.Fprintf(s.w, "\r%s\033[K", line)
	} else {
		fmt.Fprintln(s.w, line)
	}
}

func (s *stepPrinter) done() {
	if s.tty && s.drawn {
		fmt.Fprintln(s.w)
	}
}
