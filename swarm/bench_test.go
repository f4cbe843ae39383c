package swarm_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/swarm"
	"github.com/scatterfs/scatter/swarm/memnet"
)

// BenchmarkFetch measures how long reading one k=8, m=4 chunk takes over 30 memnet peers
// whose one-way delays are spread evenly over 2–120 ms, for three strategies:
//
//   - fetch: swarm.Fetch with its defaults (k fastest + 1 spare, adaptive hedge);
//   - k-fastest: exactly the k lowest-latency holders, all awaited (the ideal when nothing
//     fails);
//   - k-random: k holders picked at random, all awaited (no latency knowledge).
//
// Every iteration places the chunk's 12 fragments on 12 random peers (the same sequence
// for every strategy). The "stalled" variants make the chunk's fastest holder hang and its
// second fastest return corrupt bytes. It reports the median and 90th percentile.
//
//	go test -run '^$' -bench Fetch -benchtime 40x -count 3 ./swarm/
func BenchmarkFetch(b *testing.B) {
	const k, m, peers = 8, 4, 30
	w, net, ids := world(peers, 1<<30)
	frags, fids := fragments(42, k+m, 16<<10)
	exp := time.Now().Add(time.Hour)
	for _, p := range ids {
		for i := range frags {
			if err := net.Put(context.Background(), p, fids[i], frags[i], exp); err != nil {
				b.Fatal(err)
			}
		}
	}
	spread(w, ids, 2*time.Millisecond, 120*time.Millisecond)

	strategies := []struct {
		name  string
		fetch func(ctx context.Context, net swarm.Network, hs []swarm.Holder, r *rand.Rand) error
	}{
		{"fetch", func(ctx context.Context, net swarm.Network, hs []swarm.Holder, _ *rand.Rand) error {
			_, err := swarm.Fetch(ctx, net, hs, k, swarm.FetchOptions{})
			return err
		}},
		{"k-fastest", func(ctx context.Context, net swarm.Network, hs []swarm.Holder, _ *rand.Rand) error {
			return getAll(ctx, net, swarm.RankHolders(net, hs, nil)[:k])
		}},
		{"k-random", func(ctx context.Context, net swarm.Network, hs []swarm.Holder, r *rand.Rand) error {
			hs = slices.Clone(hs)
			r.Shuffle(len(hs), func(i, j int) { hs[i], hs[j] = hs[j], hs[i] })
			return getAll(ctx, net, hs[:k])
		}},
	}
	for _, stalled := range []bool{false, true} {
		for _, s := range strategies {
			if stalled && s.name != "fetch" {
				continue // without fallback a hung holder costs the others their timeout
			}
			name := s.name
			if stalled {
				name += "-stalled"
			}
			b.Run(name, func(b *testing.B) {
				r := rand.New(rand.NewPCG(7, 7))
				var times []time.Duration
				for b.Loop() {
					b.StopTimer()
					on := slices.Clone(ids)
					r.Shuffle(len(on), func(i, j int) { on[i], on[j] = on[j], on[i] })
					hs := make([]swarm.Holder, k+m)
					for i := range hs {
						hs[i] = swarm.Holder{Index: i, ID: fids[i], Peer: on[i]}
					}
					var bad []swarm.PeerID
					if stalled {
						ranked := swarm.RankHolders(net, hs, nil)
						bad = []swarm.PeerID{ranked[0].Peer, ranked[1].Peer}
						w.SetFault(bad[0], memnet.Hang)
						w.SetCorrupt(bad[1], true)
					}
					b.StartTimer()
					start := time.Now()
					err := s.fetch(b.Context(), net, hs, r)
					times = append(times, time.Since(start))
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
					if stalled {
						w.SetFault(bad[0], memnet.Healthy)
						w.SetCorrupt(bad[1], false)
					}
					b.StartTimer()
				}
				slices.Sort(times)
				b.ReportMetric(float64(times[len(times)/2])/1e6, "median-ms")
				b.ReportMetric(float64(times[len(times)*9/10])/1e6, "p90-ms")
				b.ReportMetric(0, "ns/op") // the mean hides what matters here
			})
		}
	}
}

// getAll fetches from every holder in hs at once, verifies each reply, and waits for all.
func getAll(ctx context.Context, net swarm.Network, hs []swarm.Holder) error {
	var wg sync.WaitGroup
	errs := make([]error, len(hs))
	for i, h := range hs {
		wg.Go(func() {
			data, err := net.Get(ctx, h.Peer, h.ID)
			if err == nil && chunker.FragmentIDOf(data) != h.ID {
				err = swarm.ErrCorrupt
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
