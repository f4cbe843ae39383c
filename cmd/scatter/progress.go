package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/scatterfs/scatter/control"
)

// progressBar shows upload progress: a bar redrawn in place on a terminal, otherwise a
// line every few seconds (logs of services and scripts stay readable).
type progressBar struct {
	w      io.Writer
	tty    bool
	total  int64 // the most bytes seen pending: 100% of the bar
	last   time.Time
	drawn  bool
	shown  bool             // the latest update was printed
	latest control.Progress // the latest update
}

// lineEvery is how often progress lines are printed when not on a terminal.
const lineEvery = 2 * time.Second

func newProgressBar(w io.Writer) *progressBar {
	f, ok := w.(*os.File)
	return &progressBar{w: w, tty: ok && term.IsTerminal(int(f.Fd()))}
}

func (b *progressBar) update(p control.Progress) {
	b.total = max(b.total, p.Bytes)
	b.latest, b.shown = p, false
	now := time.Now()
	if !b.tty && b.drawn && now.Sub(b.last) < lineEvery {
		return
	}
	b.last, b.drawn, b.shown = now, true, true
	line := progressLine(p, b.total)
	if b.tty {
		fmt.Fprintf(b.w, "\r%s\033[K", line)
	} else {
		fmt.Fprintln(b.w, line)
	}
}

// done prints the latest state if it was skipped, and ends the bar's line on a terminal.
func (b *progressBar) done() {
	if b.drawn && !b.shown {
		b.drawn = false // force the draw
		b.update(b.latest)
	}
	if b.tty && b.drawn {
		fmt.Fprintln(b.w)
	}
}

func progressLine(p control.Progress, total int64) string {
	const width = 24
	frac := 1.0
	if total > 0 {
		frac = 1 - float64(p.Bytes)/float64(total)
	}
	n := int(frac * width)
	s := fmt.Sprintf("[%s%s] %3.0f%%  %s left in %d files", strings.Repeat("#", n), strings.Repeat("-", width-n),
		frac*100, formatBytes(p.Bytes), p.Files)
	if p.RateBPS > 0 {
		s += fmt.Sprintf("  %s/s", formatBytes(int64(p.RateBPS)))
		if e := eta(p.Bytes, p.RateBPS); e > 0 {
			s += fmt.Sprintf("  ETA %v", time.Duration(e*float64(time.Second)).Round(time.Second))
		}
	}
	return s
}
