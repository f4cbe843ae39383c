package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"time"

	"github.com/scatterfs/scatter/control"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/upkeep"
	"github.com/scatterfs/scatter/volume"
)

// upkeepFlags are the mount's settings for keeping its fragments alive (package upkeep).
type upkeepFlags struct {
	lease        time.Duration
	renewEvery   time.Duration
	checkEvery   time.Duration
	collectEvery time.Duration
	repairRate   sizeFlag
	repairBelow  int
}

func (u *upkeepFlags) register(fs *flag.FlagSet) {
	u.repairRate = upkeep.DefaultRepairRate
	fs.DurationVar(&u.lease, "lease", pipeline.DefaultLease, "how long donors keep a fragment unless it is renewed")
	fs.DurationVar(&u.renewEvery, "renew-every", 0, "time between lease renewals of every fragment (default a quarter of -lease)")
	fs.DurationVar(&u.checkEvery, "check-every", upkeep.DefaultCheckEvery, "time between background checks with repair (negative: none)")
	fs.DurationVar(&u.collectEvery, "collect-every", upkeep.DefaultCollectEvery, "time between deletions of unreferenced chunks' fragments (negative: none)")
	fs.Var(&u.repairRate, "repair-rate", "most bytes per second of chunks the background repair rebuilds")
	fs.IntVar(&u.repairBelow, "repair-below", 0, "background repair only of chunks with fewer fragments found than this (default k+m: any missing)")
}

func (u *upkeepFlags) check() error {
	switch {
	case u.lease < time.Minute:
		return fmt.Errorf("%w: -lease must be at least 1m", errUsage)
	case u.renewEvery < 0 || u.renewEvery >= u.lease:
		return fmt.Errorf("%w: -renew-every must be shorter than -lease", errUsage)
	case u.repairRate <= 0:
		return fmt.Errorf("%w: -repair-rate must be positive", errUsage)
	}
	return nil
}

// guardedChunks is a volume.Chunks whose Puts go through the upkeep Guard, so garbage
// collection never deletes fragments that a write of the same content just stored.
type guardedChunks struct {
	volume.Chunks
	g *upkeep.Guard
}

var _ volume.Chunks = (*guardedChunks)(nil)

func (c *guardedChunks) Put(ctx context.Context, plain []byte) (pipeline.Ref, error) {
	return c.g.Put(ctx, func(ctx context.Context) (pipeline.Ref, error) { return c.Chunks.Put(ctx, plain) })
}

// Check implements control.Handler: the running mount's upkeep loop checks now.
func (c *mountControl) Check(ctx context.Context, repair, verify bool, progress func(control.Step)) (*control.CheckResult, error) {
	var repairStart time.Time
	rep, err := c.loop.Run(ctx, repair, verify, func(p upkeep.Progress) {
		if p.Phase == "repair" && repairStart.IsZero() {
			repairStart = time.Now()
		}
		progress(control.Step{Phase: p.Phase, Done: p.Done, Total: p.Total, Bytes: p.Bytes})
	})
	if err != nil {
		return nil, err
	}
	s := rep.Check
	res := &control.CheckResult{
		Chunks: s.Chunks, Complete: s.Complete, Degraded: s.Degraded, Unreadable: s.Unreadable,
		Fragments: s.Fragments, Found: s.Found, Corrupt: s.Corrupt, Unanswered: len(s.Failures),
		Denied: s.Denied, Unaudited: s.Unaudited, Deniers: peerNames(s.Deniers), Liars: peerNames(s.Liars),
	}
	stalled := make([]swarm.PeerID, len(s.Failures))
	for i, f := range s.Failures {
		stalled[i] = f.Peer
	}
	res.Stalled = peerNames(stalled)
	if r := rep.Repair; r != nil {
		res.Repair = &control.RepairResult{
			Chunks: r.Chunks, Repaired: r.Repaired, Partial: r.Partial, Failed: r.Failed,
			Rebuilt: r.Rebuilt, Bytes: r.Bytes, Seconds: time.Since(repairStart).Seconds(),
			Suspects: peerNames(r.Suspects),
		}
		for _, e := range r.Errors {
			res.Repair.Errors = append(res.Repair.Errors, e.Error())
		}
	}
	return res, nil
}

// peerNames returns the peers' IDs as text, sorted, each once; nil for none (the JSON
// then leaves the list out).
func peerNames(ids []swarm.PeerID) []string {
	var out []string
	for _, id := range ids {
		out = append(out, string(id))
	}
	slices.Sort(out)
	return slices.Compact(out)
}
