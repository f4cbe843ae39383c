package swarm

import (
	"errors"
	"fmt"
	"strings"
)

// Errors of the strategies in this package; the typed errors PlaceError and FetchError wrap
// them together with every per-peer failure.
var (
	// ErrNotEnoughPeers: Place ran out of candidates before every fragment (or the
	// minimum the caller accepts) had a holder.
	ErrNotEnoughPeers = errors.New("swarm: not enough peers")
	// ErrDegraded: Place stored fewer fragments than it was given, but at least the
	// minimum the caller accepts (PlaceOptions.Min); the placement it returns is usable.
	ErrDegraded = errors.New("swarm: fragments placed on fewer peers than asked")
	// ErrNotEnoughFragments: Fetch ran out of holders before k fragments verified.
	ErrNotEnoughFragments = errors.New("swarm: not enough fragments")
)

// PeerError is the failure of one request for fragment Index to Peer.
type PeerError struct {
	Peer  PeerID
	Index int
	Err   error
}

func (e PeerError) Error() string {
	return fmt.Sprintf("fragment %d on %s: %v", e.Index, e.Peer, e.Err)
}

// Unwrap returns the request's error.
func (e PeerError) Unwrap() error { return e.Err }

// summarize lists failures compactly for an error message: at most a handful, then a count.
func summarize(failures []PeerError) string {
	const shown = 4
	var b strings.Builder
	for i, f := range failures {
		if i == shown {
			fmt.Fprintf(&b, "; and %d more", len(failures)-shown)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.Error())
	}
	return b.String()
}

// unwrapAll returns head followed by the failures, for an Unwrap() []error method: callers
// can ask errors.Is(err, ErrFull) to learn whether some peer was full.
func unwrapAll(head error, failures []PeerError) []error {
	errs := make([]error, 0, 1+len(failures))
	errs = append(errs, head)
	for _, f := range failures {
		errs = append(errs, f)
	}
	return errs
}
