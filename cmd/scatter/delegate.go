package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/control"
	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/delegate"
	"github.com/scatterfs/scatter/dht"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/volume"
)

// The mount's side of delegated repair (package delegate): after each published snapshot
// and every delegateEvery, it merges the repairer's log into the volume (replacements
// whose old holders the volume still records) and publishes the repair manifest if the
// volume's live Refs changed. Started and stopped by the snapshot component.

// delegateEvery is the period of the merge and publish; a variable for tests.
var delegateEvery = 5 * time.Minute

// delegation runs Owner.Merge and Owner.Publish in the background of a mount.
type delegation struct {
	vol   *volume.Volume
	owner *delegate.Owner
	log   *slog.Logger
	kickc chan struct{}

	cancel context.CancelFunc
	done   chan struct{}
}

// startDelegation starts the component; nil (whose methods do nothing) when records has
// no libp2p host to put the manifest's pages through (tests with a fake DHT).
func startDelegation(vol *volume.Volume, keys *crypt.Keys, records routing.ValueStore, log *slog.Logger) *delegation {
	hd, ok := records.(interface{ Host() host.Host })
	if !ok {
		return nil
	}
	net := &holdersNet{vol: vol, client: dht.NewClient(hd.Host(), keys.Storage, dht.ClientConfig{}), h: hd.Host()}
	d := &delegation{vol: vol, owner: delegate.NewOwner(records, net, keys, delegate.OwnerConfig{}), log: log,
		kickc: make(chan struct{}, 1), done: make(chan struct{})}
	var ctx context.Context
	ctx, d.cancel = context.WithCancel(context.Background())
	go d.loop(ctx)
	return d
}

// kick asks for a merge and publish soon (a snapshot was just published).
func (d *delegation) kick() {
	if d == nil {
		return
	}
	select {
	case d.kickc <- struct{}{}:
	default:
	}
}

// Close stops the component, waiting for a round in progress.
func (d *delegation) Close() {
	if d == nil {
		return
	}
	d.cancel()
	<-d.done
}

func (d *delegation) loop(ctx context.Context) {
	defer close(d.done)
	t := time.NewTicker(delegateEvery)
	defer t.Stop()
	var merged time.Time // last merge; a kick merges only if one is due, as a DHT lookup costs
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.kickc:
		}
		merge := time.Since(merged) >= delegateEvery
		if err := d.round(ctx, merge); err != nil && ctx.Err() == nil {
			d.log.Warn("delegate: repair manifest and log", "err", err)
		}
		if merge {
			merged = time.Now()
		}
	}
}

// merge applies the repair log to the volume.
func (d *delegation) merge(ctx context.Context) error {
	st, err := d.owner.Merge(ctx, d.vol)
	if err != nil {
		return err
	}
	if st.Applied > 0 {
		d.log.Info("delegate: repair log merged", "seq", st.Seq, "applied", st.Applied, "outdated", st.Outdated)
	}
	return nil
}

// mergeBeforeCheck bounds the merge scatter check makes first.
const mergeBeforeCheck = 30 * time.Second

// Check implements control.Handler: the repair log is merged first, so the check counts
// the fragments a helper placed while the mount was away, wherever they are now.
func (c snapControl) Check(ctx context.Context, repair, verify bool, progress func(control.Step)) (*control.CheckResult, error) {
	if d := c.snaps.deleg; d != nil {
		mctx, cancel := context.WithTimeout(ctx, mergeBeforeCheck)
		if err := d.merge(mctx); err != nil && ctx.Err() == nil {
			// The check still counts what the volume records: a failed merge only means
			// fragments a helper moved show as missing until the next merge.
			d.log.Warn("delegate: merge the repair log before the check", "err", err)
		}
		cancel()
	}
	return c.mountControl.Check(ctx, repair, verify, progress)
}

// round merges the repair log (with merge), then publishes the manifest of what the
// volume records. A failed merge does not stop the publication: the repairer keeps the
// replacements the manifest does not reflect yet.
func (d *delegation) round(ctx context.Context, merge bool) error {
	var merr error
	if merge {
		merr = d.merge(ctx)
	}
	refs, err := d.vol.LiveRefs(ctx)
	if err != nil {
		return errors.Join(merr, err)
	}
	published, err := d.owner.Publish(ctx, refs)
	if published {
		d.log.Debug("delegate: repair manifest published", "chunks", len(refs))
	}
	return errors.Join(merr, err)
}

// holdersNet is the swarm.Network the manifest's pages are put through: the mount's host
// and a fragment protocol client acting for the storage key, with the drive's own holders
// (donors that store this drive's data now) as placement candidates. The snapshot
// component only gets the DHT; the pages need a handful of distinct donors, which the
// drive's holders are.
type holdersNet struct {
	vol    *volume.Volume
	client *dht.Client
	h      host.Host
}

var _ swarm.Network = (*holdersNet)(nil)

// Candidates returns up to n distinct holders of the drive's chunks, by XOR distance of
// the SHA-256 of their IDs to the SHA-256 of key (spreading pages over them).
func (n *holdersNet) Candidates(ctx context.Context, key []byte, count int) ([]swarm.Peer, error) {
	refs, err := n.vol.LiveRefs(ctx)
	if err != nil {
		return nil, err
	}
	var ids []swarm.PeerID
	for _, r := range refs {
		for _, f := range r.Fragments {
			if f.Peer != "" {
				ids = append(ids, f.Peer)
			}
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	k := sha256.Sum256(key)
	dist := make(map[swarm.PeerID][]byte, len(ids))
	for _, p := range ids {
		h := sha256.Sum256([]byte(p))
		for i := range h {
			h[i] ^= k[i]
		}
		dist[p] = h[:]
	}
	slices.SortFunc(ids, func(a, b swarm.PeerID) int { return bytes.Compare(dist[a], dist[b]) })
	out := make([]swarm.Peer, 0, min(count, len(ids)))
	for _, p := range ids[:min(count, len(ids))] {
		out = append(out, swarm.Peer{ID: p, Latency: n.Latency(p), Free: -1})
	}
	return out, nil
}

func (n *holdersNet) id(p swarm.PeerID) (peer.ID, error) {
	id, err := peer.Decode(string(p))
	if err != nil {
		return "", errors.Join(swarm.ErrUnreachable, err)
	}
	return id, nil
}

// Latency returns the host's estimate of the round trip to p.
func (n *holdersNet) Latency(p swarm.PeerID) time.Duration {
	id, err := n.id(p)
	if err != nil {
		return 0
	}
	return n.h.Peerstore().LatencyEWMA(id)
}

func (n *holdersNet) Put(ctx context.Context, p swarm.PeerID, id chunker.FragmentID, data []byte, expires time.Time) error {
	pid, err := n.id(p)
	if err != nil {
		return err
	}
	return n.client.Put(ctx, pid, id, data, expires)
}

func (n *holdersNet) Get(ctx context.Context, p swarm.PeerID, id chunker.FragmentID) ([]byte, error) {
	pid, err := n.id(p)
	if err != nil {
		return nil, err
	}
	return n.client.Get(ctx, pid, id)
}

func (n *holdersNet) Has(ctx context.Context, p swarm.PeerID, ids []chunker.FragmentID) ([]bool, error) {
	pid, err := n.id(p)
	if err != nil {
		return nil, err
	}
	return n.client.Has(ctx, pid, ids)
}

func (n *holdersNet) Delete(ctx context.Context, p swarm.PeerID, ids []chunker.FragmentID) error {
	pid, err := n.id(p)
	if err != nil {
		return err
	}
	return n.client.Delete(ctx, pid, ids)
}

func (n *holdersNet) Renew(ctx context.Context, p swarm.PeerID, ids []chunker.FragmentID, expires time.Time) error {
	pid, err := n.id(p)
	if err != nil {
		return err
	}
	return n.client.Renew(ctx, pid, ids, expires)
}

func (n *holdersNet) Stat(ctx context.Context, p swarm.PeerID) (swarm.Stat, error) {
	pid, err := n.id(p)
	if err != nil {
		return swarm.Stat{}, err
	}
	return n.client.Stat(ctx, pid)
}
