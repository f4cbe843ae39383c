package dht

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/sync/errgroup"

	"github.com/scatterfs/scatter/dht/store"
)

// LocalConfig configures a local swarm: N donor nodes in this process, on loopback.
type LocalConfig struct {
	// Dir holds one data directory per donor (donor-00, donor-01, …); a second start with
	// the same Dir brings back the same peer IDs and fragments. Required.
	Dir string
	// Donors is how many donors to run. Required, > 0.
	Donors int
	// Quota is each donor's fragment store quota in bytes. Required, > 0.
	Quota int64
	// Store and Server tune every donor; Store.Quota is set from Quota.
	Store  store.Config
	Server ServerConfig
	// Logger receives the donors' logs. Default slog.Default().
	Logger *slog.Logger
}

// Local is a swarm of donor nodes running in this process, listening on 127.0.0.1 only,
// bootstrapped through the first donor. It is for tests, demos and the mount's embedded
// swarm when no peers are configured: the data then never leaves this machine.
type Local struct {
	Nodes []*Node
}

// StartLocal starts cfg.Donors donors. The first listens alone; the others bootstrap
// through it, so every donor ends up in every other's routing table.
func StartLocal(ctx context.Context, cfg LocalConfig) (*Local, error) {
	if cfg.Dir == "" || cfg.Donors <= 0 || cfg.Quota <= 0 {
		return nil, fmt.Errorf("dht: local swarm needs a directory, donors > 0 and quota > 0 (got %q, %d, %d)",
			cfg.Dir, cfg.Donors, cfg.Quota)
	}
	node := func(i int, bootstrap []string) (*Node, error) {
		sc := cfg.Store
		sc.Quota = cfg.Quota
		return New(ctx, Config{
			DataDir:     filepath.Join(cfg.Dir, fmt.Sprintf("donor-%02d", i)),
			ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
			Bootstrap:   bootstrap,
			Mode:        ModeServer,
			Store:       sc,
			Server:      cfg.Server,
			Logger:      cfg.Logger,
		})
	}
	first, err := node(0, nil)
	if err != nil {
		return nil, fmt.Errorf("dht: local swarm: donor 0: %w", err)
	}
	l := &Local{Nodes: make([]*Node, cfg.Donors)}
	l.Nodes[0] = first
	boot := multiaddrStrings(first.Addrs())
	var g errgroup.Group
	g.SetLimit(4) // each start dials and refreshes; a few at once keeps the first donor responsive
	for i := 1; i < cfg.Donors; i++ {
		g.Go(func() error {
			n, err := node(i, boot)
			if err != nil {
				return fmt.Errorf("dht: local swarm: donor %d: %w", i, err)
			}
			l.Nodes[i] = n
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// Bootstrap returns the full multiaddrs (with /p2p/) of every donor, for other nodes to
// bootstrap through.
func (l *Local) Bootstrap() []string {
	var out []string
	for _, n := range l.Nodes {
		if n != nil {
			out = append(out, multiaddrStrings(n.Addrs())...)
		}
	}
	return out
}

// Close stops every donor and returns their errors joined.
func (l *Local) Close() error {
	var g errgroup.Group
	errs := make([]error, len(l.Nodes))
	for i, n := range l.Nodes {
		if n != nil {
			g.Go(func() error { errs[i] = n.Close(); return nil })
		}
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

func multiaddrStrings(as []ma.Multiaddr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}
