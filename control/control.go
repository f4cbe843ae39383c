// Package control is the small protocol between a running `scatter mount` and the verbs
// that ask it questions (`scatter status`, `scatter sync`): a Unix stream socket in the
// drive's data directory, mode 0600, so only the mounting user can reach it. `scatter
// check` asks it to count, and repair, the drive's fragments.
//
// A client sends one request, a JSON object on one line of at most MaxRequest bytes; the
// server answers with JSON lines: zero or more progress lines, then one final line (a
// status, done, or an error), and closes the connection. See docs/operations.md, "The
// control socket". The server side is in Server, the client side in Client.
package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Version is the protocol version every request carries.
const Version = 1

// Limits of the protocol.
const (
	// MaxRequest is the longest request line, newline included.
	MaxRequest = 4 << 10
	// MaxResponse is the longest response line a client accepts (a status with
	// thousands of peers fits).
	MaxResponse = 16 << 20
)

// Operations.
const (
	OpStatus = "status" // answer: one Response with Status
	OpSync   = "sync"   // answer: Responses with Progress, then one with Done
	OpCheck  = "check"  // answer: Responses with Step, then one with Check
	OpShare  = "share"  // answer: one Response with Shares (the new share); needs Path
	OpShares = "shares" // answer: one Response with Shares (every share)
	OpRevoke = "revoke" // answer: one Response with Shares (the revoked share); needs ID
)

// Errors.
var (
	// ErrBadRequest: a request line is not a valid request.
	ErrBadRequest = errors.New("control: bad request")
	// ErrBadResponse: a response line is not a valid response.
	ErrBadResponse = errors.New("control: bad response")
	// ErrNotRunning: no mount answers on the socket.
	ErrNotRunning = errors.New("control: no scatter mount is running")
)

// Request is what a client asks.
type Request struct {
	V  int    `json:"v"`  // Version
	Op string `json:"op"` // OpStatus or OpSync
	// Health asks OpStatus to count every chunk's fragments on their holders (one
	// batched HAS request per peer). Costs a round trip per peer holding fragments.
	Health bool `json:"health,omitempty"`
	// Repair asks OpCheck to rebuild every missing fragment onto new peers.
	Repair bool `json:"repair,omitempty"`
	// Verify asks OpCheck to fetch and hash every fragment, not only ask its holder.
	Verify bool `json:"verify,omitempty"`
	// Path is OpShare's directory, relative to the drive's root.
	Path string `json:"path,omitempty"`
	// ID is OpRevoke's share ID.
	ID string `json:"id,omitempty"`
}

// ParseRequest decodes one request line (without or with its newline). It is strict:
// unknown fields, trailing data, other versions and unknown operations are errors.
func ParseRequest(line []byte) (Request, error) {
	var r Request
	line = bytes.TrimSuffix(line, []byte("\n"))
	if len(line) > MaxRequest {
		return r, fmt.Errorf("%w: %d bytes, at most %d", ErrBadRequest, len(line), MaxRequest)
	}
	if err := decodeStrict(line, &r); err != nil {
		return Request{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if r.V != Version {
		return Request{}, fmt.Errorf("%w: version %d, want %d", ErrBadRequest, r.V, Version)
	}
	if r.Health && r.Op != OpStatus {
		return Request{}, fmt.Errorf("%w: health is an option of status", ErrBadRequest)
	}
	if (r.Repair || r.Verify) && r.Op != OpCheck {
		return Request{}, fmt.Errorf("%w: repair and verify are options of check", ErrBadRequest)
	}
	if (r.Path != "") != (r.Op == OpShare) {
		return Request{}, fmt.Errorf("%w: share needs a path (\"/\" for the whole drive), and only share takes one", ErrBadRequest)
	}
	if r.ID != "" && r.Op != OpRevoke || r.ID == "" && r.Op == OpRevoke {
		return Request{}, fmt.Errorf("%w: revoke needs an id, and only revoke takes one", ErrBadRequest)
	}
	switch r.Op {
	case OpStatus, OpSync, OpCheck, OpShare, OpShares, OpRevoke:
	default:
		return Request{}, fmt.Errorf("%w: unknown operation %q", ErrBadRequest, r.Op)
	}
	return r, nil
}

// Response is one line of an answer. Exactly one field is set.
type Response struct {
	Progress *Progress    `json:"progress,omitempty"`
	Step     *Step        `json:"step,omitempty"`
	Status   *Status      `json:"status,omitempty"`
	Check    *CheckResult `json:"check,omitempty"`
	Shares   *Shares      `json:"shares,omitempty"`
	Done     bool         `json:"done,omitempty"`
	Error    string       `json:"error,omitempty"`
}

// final reports whether r ends an answer.
func (r *Response) final() bool { return r.Progress == nil && r.Step == nil }

// ParseResponse decodes one response line, checking that exactly one field is set.
func ParseResponse(line []byte) (Response, error) {
	var r Response
	if err := decodeStrict(bytes.TrimSuffix(line, []byte("\n")), &r); err != nil {
		return Response{}, fmt.Errorf("%w: %v", ErrBadResponse, err)
	}
	n := 0
	for _, set := range []bool{r.Progress != nil, r.Step != nil, r.Status != nil, r.Check != nil, r.Shares != nil, r.Done, r.Error != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return Response{}, fmt.Errorf("%w: %d fields set, want 1", ErrBadResponse, n)
	}
	return r, nil
}

func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	// More is false at the end of input and before a closing delimiter: anything left
	// but spaces is trailing garbage.
	if rest := bytes.TrimSpace(b[d.InputOffset():]); len(rest) != 0 {
		return errors.New("trailing data")
	}
	return nil
}

// Status is a running mount's answer to OpStatus.
type Status struct {
	Version    string `json:"version"`
	Mountpoint string `json:"mountpoint"`
	DataDir    string `json:"data_dir"`
	K          int    `json:"k"`
	M          int    `json:"m"`
	// LocalDonors is the number of donors of the embedded local swarm, 0 when the mount
	// joined other peers.
	LocalDonors int     `json:"local_donors"`
	Peers       []Peer  `json:"peers"`
	Space       Space   `json:"space"`
	Pending     Pending `json:"pending"`
	Cache       Cache   `json:"cache"`
	// Health is set when the request asked for it.
	Health *Health `json:"health,omitempty"`
	// Follow is set on a read-only mount (scatter mount -read-only or -cap): what it
	// shows of the writer's drive.
	Follow *Follow `json:"follow,omitempty"`
}

// Follow describes what a read-only mount shows: the writer's snapshot it found last.
type Follow struct {
	// Share is true on a share's mount (scatter mount -cap), which shows one directory
	// of the drive; false on a follower of the whole drive.
	Share bool `json:"share,omitempty"`
	// Root is the ID of the shown snapshot's root object.
	Root string `json:"root"`
	// Seq is the sequence of the newest record (root or share record) found.
	Seq uint64 `json:"seq"`
	// Checked is when the record was last looked up successfully.
	Checked time.Time `json:"checked"`
	// Swaps counts the newer snapshots shown since the mount started.
	Swaps int `json:"swaps"`
	// IntervalSeconds is the time between lookups.
	IntervalSeconds float64 `json:"interval_seconds"`
}

// Peer is one donor the mount knows.
type Peer struct {
	ID        string  `json:"id"`
	LatencyMS float64 `json:"latency_ms"` // round trip; 0 when not measured yet
	Quota     int64   `json:"quota"`      // bytes the donor offers; -1 when unknown
	Used      int64   `json:"used"`       // bytes it stores (all drives); -1 when unknown
	Fragments int64   `json:"fragments"`  // fragments it stores (all drives); -1 when unknown
	Error     string  `json:"error,omitempty"`
}

// Space sums the donors' space and this drive's share of it.
type Space struct {
	Donated int64 `json:"donated"` // sum of the quotas of the donors that answered
	Used    int64 `json:"used"`    // sum of what they store, for every drive
	// Drive is the bytes of this drive's fragments (all k+m of every chunk): what the
	// drive costs the donors.
	Drive int64 `json:"drive"`
	// Logical is the plaintext bytes of this drive's chunks (each chunk once).
	Logical int64 `json:"logical"`
}

// Pending describes the write-back staging: data closed or written but not yet on peers.
type Pending struct {
	Bytes      int64   `json:"bytes"`
	Files      int     `json:"files"`
	StagingMax int64   `json:"staging_max"`
	RateBPS    float64 `json:"rate_bps"`    // plaintext bytes per second put recently
	ETASeconds float64 `json:"eta_seconds"` // -1 when nothing is moving
	Uploaded   int64   `json:"uploaded"`    // plaintext bytes put since the mount started
}

// Cache describes the local read cache.
type Cache struct {
	Bytes   int64 `json:"bytes"`
	Max     int64 `json:"max"`
	Fetches int64 `json:"fetches"` // chunks fetched from peers since the mount started
}

// Health counts the drive's chunks by the fragments their holders still have.
type Health struct {
	Chunks     int `json:"chunks"`
	Complete   int `json:"complete"`   // all k+m fragments on their holders
	Degraded   int `json:"degraded"`   // fewer than k+m but at least k: readable
	Unreadable int `json:"unreadable"` // fewer than k: lost unless holders return
	Fragments  int `json:"fragments"`  // fragments the metadata records
	Found      int `json:"found"`      // of those, held by their peers now
	// Unanswered is the number of holders that did not answer (their fragments count
	// as missing).
	Unanswered int `json:"unanswered"`
}

// Progress is one step of OpSync.
type Progress struct {
	Bytes    int64   `json:"bytes"`    // staged bytes left
	Files    int     `json:"files"`    // files holding them
	Uploaded int64   `json:"uploaded"` // plaintext bytes put since the sync started
	RateBPS  float64 `json:"rate_bps"`
	// Follow is set by a read-only mount, which has nothing to upload: its sync looks
	// for the writer's newest snapshot and shows it.
	Follow bool `json:"follow,omitempty"`
}

// Step is one progress report of OpCheck.
type Step struct {
	Phase string `json:"phase"` // "check" (holders asked) or "repair" (chunks rebuilt)
	Done  int    `json:"done"`
	Total int    `json:"total"`
	Bytes int64  `json:"bytes"` // repair: plaintext bytes of the chunks rebuilt so far
}

// CheckResult is a running mount's answer to OpCheck.
type CheckResult struct {
	Chunks     int `json:"chunks"`     // chunks checked (a chunk recorded with two holder lists counts twice)
	Complete   int `json:"complete"`   // all k+m fragments found
	Degraded   int `json:"degraded"`   // fewer, at least k: readable
	Unreadable int `json:"unreadable"` // fewer than k
	Fragments  int `json:"fragments"`  // fragments recorded
	Found      int `json:"found"`      // of those, confirmed by their holders
	Corrupt    int `json:"corrupt"`    // verify: confirmed but served bad bytes or none
	Unanswered int `json:"unanswered"` // holders that did not answer
	// Denied is the number of fragments their holders said they do not hold, although
	// they accepted them.
	Denied int `json:"denied"`
	// Unaudited is the number of fragments confirmed but not audited (verify): their
	// holder stopped answering GETs.
	Unaudited int `json:"unaudited"`
	// Deniers lists, sorted, the holders behind Denied: they lost or dropped fragments
	// they accepted.
	Deniers []string `json:"deniers,omitempty"`
	// Stalled lists, sorted, the holders behind Unanswered: they did not answer the
	// count, or (verify) an audit.
	Stalled []string `json:"stalled,omitempty"`
	// Liars lists, sorted, the holders behind Corrupt: they said they hold a fragment and
	// served bad bytes or none (verify).
	Liars []string `json:"liars,omitempty"`
	// Repair is set when the request asked for repair and some chunk needed it.
	Repair *RepairResult `json:"repair,omitempty"`
}

// RepairResult sums the repairs of an OpCheck.
type RepairResult struct {
	Chunks   int      `json:"chunks"`   // chunks that needed repair
	Repaired int      `json:"repaired"` // now complete
	Partial  int      `json:"partial"`  // some fragments placed, not all
	Failed   int      `json:"failed"`   // unrecoverable now, or nowhere to place
	Rebuilt  int      `json:"rebuilt"`  // fragments rebuilt and placed
	Bytes    int64    `json:"bytes"`    // plaintext bytes of the chunks rebuilt
	Seconds  float64  `json:"seconds"`  // time the repair took
	Errors   []string `json:"errors,omitempty"`
	// Suspects lists, sorted, the peers beyond the check's that the repairs found
	// serving bad bytes, none, or not answering: nothing rebuilt was placed on them.
	Suspects []string `json:"suspects,omitempty"`
}

// Shares answers the share operations.
type Shares struct {
	List []Share `json:"list"`
}

// Share is one read-only share of the drive.
type Share struct {
	ID      string `json:"id"`
	Path    string `json:"path"` // relative to the drive's root
	Cap     string `json:"cap"`  // the capability (crypt.Cap text) to hand to readers
	Revoked bool   `json:"revoked,omitempty"`
	// Seq is the share record's sequence last published, 0 if none yet.
	Seq uint64 `json:"seq,omitempty"`
	// Error says why the last publication failed (the directory moved away, say).
	Error string `json:"error,omitempty"`
}
