package main

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/control"
	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/upkeep"
	"github.com/scatterfs/scatter/volume"
)

// mountControl answers the control socket of a running mount (scatter status, sync).
type mountControl struct {
	mountpoint, dataDir string
	shape               driveSettings
	localDonors         int
	stagingMax          int64
	cacheMax            int64
	key                 []byte // any stable key for the candidates lookup
	net                 swarm.Network
	vol                 *volume.Volume
	m                   *meters
	up                  *upkeep.Upkeep
	loop                *upkeep.Loop
}

var _ control.Handler = (*mountControl)(nil)

// maxStatusPeers bounds the peers a status lists.
const maxStatusPeers = 1024

// Status implements control.Handler.
func (c *mountControl) Status(ctx context.Context, health bool) (*control.Status, error) {
	now := time.Now()
	st := &control.Status{
		Version: version, Mountpoint: c.mountpoint, DataDir: c.dataDir,
		K: c.shape.K, M: c.shape.M, LocalDonors: c.localDonors,
	}
	st.Pending.Bytes, st.Pending.Files = c.vol.Pending()
	st.Pending.StagingMax = c.stagingMax
	st.Pending.Uploaded = c.m.uploaded.Load()
	st.Pending.RateBPS = c.m.rate.bps(now)
	st.Pending.ETASeconds = eta(st.Pending.Bytes, st.Pending.RateBPS)
	st.Cache = control.Cache{Bytes: c.vol.CacheUsed(), Max: c.cacheMax, Fetches: c.m.fetches.Load()}

	peers, err := c.net.Candidates(ctx, c.key, maxStatusPeers)
	if err != nil {
		return nil, fmt.Errorf("listing peers: %w", err)
	}
	st.Peers = make([]control.Peer, len(peers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, p := range peers {
		st.Peers[i] = control.Peer{ID: string(p.ID), LatencyMS: float64(p.Latency) / 1e6, Quota: -1, Used: -1, Fragments: -1}
		g.Go(func() error {
			sctx, cancel := context.WithTimeout(gctx, 5*time.Second)
			defer cancel()
			s, err := c.net.Stat(sctx, p.ID)
			if err != nil {
				st.Peers[i].Error = err.Error()
				return nil
			}
			st.Peers[i].Quota, st.Peers[i].Used, st.Peers[i].Fragments = s.Quota, s.Used, s.Fragments
			return nil
		})
	}
	g.Wait()
	for _, p := range st.Peers {
		if p.Error == "" {
			st.Space.Donated += p.Quota
			st.Space.Used += p.Used
		}
	}

	refs, err := c.vol.ChunkRefs(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range refs {
		st.Space.Logical += int64(r.Size)
		frag := chunker.Header{K: int(r.K), SealedLen: int(r.SealedLen)}.FragmentSize()
		st.Space.Drive += int64(frag) * int64(len(r.Fragments))
	}
	if health {
		// Every chunk the drive needs, the metadata snapshot's objects too (as check counts).
		live, err := c.vol.LiveRefs(ctx)
		if err != nil {
			return nil, err
		}
		h, err := c.health(ctx, live)
		if err != nil {
			return nil, err
		}
		st.Health = h
	}
	return st, nil
}

// health counts every chunk's fragments on their recorded holders, with one batched HAS
// request per holder.
func (c *mountControl) health(ctx context.Context, refs []pipeline.Ref) (*control.Health, error) {
	_, st, err := c.up.Check(ctx, refs, upkeep.CheckOptions{})
	if err != nil {
		return nil, err
	}
	return &control.Health{
		Chunks: st.Chunks, Complete: st.Complete, Degraded: st.Degraded, Unreadable: st.Unreadable,
		Fragments: st.Fragments, Found: st.Found, Unanswered: len(st.Failures),
	}, nil
}

// progressEvery is how often sync reports progress.
const progressEvery = 250 * time.Millisecond

// Sync implements control.Handler.
func (c *mountControl) Sync(ctx context.Context, progress func(control.Progress)) error {
	return syncVolume(ctx, c.vol, c.m, progress)
}

// syncVolume runs vol.SyncAll, calling progress at the start and every progressEvery.
func syncVolume(ctx context.Context, vol *volume.Volume, m *meters, progress func(control.Progress)) error {
	start, up0 := time.Now(), m.uploaded.Load()
	report := func() {
		var p control.Progress
		p.Bytes, p.Files = vol.Pending()
		p.Uploaded = m.uploaded.Load() - up0
		if s := time.Since(start).Seconds(); s > 0.5 {
			p.RateBPS = float64(p.Uploaded) / s
		}
		progress(p)
	}
	done := make(chan error, 1)
	go func() { done <- vol.SyncAll(ctx) }()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	report()
	for {
		select {
		case err := <-done:
			report()
			return err
		case <-tick.C:
			report()
		}
	}
}

// eta returns the seconds to upload n bytes at bps, -1 when nothing is moving.
func eta(n int64, bps float64) float64 {
	if n == 0 {
		return 0
	}
	if bps <= 0 {
		return -1
	}
	return float64(n) / bps
}
