package swarm

import (
	"slices"
	"testing"
	"time"
)

func TestRankCandidates(t *testing.T) {
	ms := time.Millisecond
	cands := []Peer{
		{ID: "slow", Latency: 90 * ms, Free: 1 << 30},
		{ID: "fast-small", Latency: 5 * ms, Free: 1 << 20},
		{ID: "unknown", Latency: 0, Free: 1 << 30},
		{ID: "fast-big", Latency: 6 * ms, Free: 1 << 30}, // same class as 5 ms: 4-8 ms
		{ID: "excluded", Latency: 1 * ms, Free: 1 << 30},
		{ID: "full", Latency: 1 * ms, Free: 999},
		{ID: "fast-small", Latency: 5 * ms, Free: 1 << 20}, // duplicate
		{ID: "fast-unknown-free", Latency: 7 * ms, Free: -1},
		{ID: "faster", Latency: 3 * ms, Free: 1000},
		{ID: ""},
	}
	var got []PeerID
	for _, p := range rankCandidates(cands, []PeerID{"excluded"}, 1000) {
		got = append(got, p.ID)
	}
	// Within a latency class the network's order stands (fast-small before fast-big: free
	// space does not rank), peers of unknown free space last.
	want := []PeerID{"faster", "fast-small", "fast-big", "fast-unknown-free", "slow", "unknown"}
	if !slices.Equal(got, want) {
		t.Fatalf("ranked %v, want %v", got, want)
	}
}
