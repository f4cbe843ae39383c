package dht

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/scatterfs/scatter/chunker"
	"github.com/scatterfs/scatter/dht/store"
	"github.com/scatterfs/scatter/swarm"
)

// This file is the codec of the fragment protocol, without any libp2p I/O, so it can be
// fuzzed on its own. docs/format.md ("Fragment protocol") specifies every byte.

// FragmentProtocol is the libp2p protocol ID of the fragment protocol: one stream per
// request, the request written by the client then its write side closed, one response.
const FragmentProtocol protocol.ID = "/scatter/fragment/1.0.0"

// wireVersion is the version byte that starts every request.
const wireVersion = 1

// Default protocol limits, enforced on both sides before anything is allocated.
const (
	DefaultMaxFragmentSize = 16 << 20
	DefaultMaxBatch        = 65536
	maxMessage             = 512 // longest error message in a response
)

// op is a request's operation code.
type op uint8

const (
	opPut    op = 1
	opGet    op = 2
	opHas    op = 3
	opDelete op = 4
	opRenew  op = 5
	opStat   op = 6
)

func (o op) String() string {
	switch o {
	case opPut:
		return "PUT"
	case opGet:
		return "GET"
	case opHas:
		return "HAS"
	case opDelete:
		return "DELETE"
	case opRenew:
		return "RENEW"
	case opStat:
		return "STAT"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// status is the first byte of every response.
type status uint8

const (
	statusOK         status = 0
	statusNotFound   status = 1
	statusBusy       status = 2
	statusFull       status = 3
	statusDenied     status = 4
	statusBadRequest status = 5
	statusInternal   status = 6
	statusMax               = statusInternal
)

func (s status) String() string {
	switch s {
	case statusOK:
		return "OK"
	case statusNotFound:
		return "NOT_FOUND"
	case statusBusy:
		return "BUSY"
	case statusFull:
		return "FULL"
	case statusDenied:
		return "DENIED"
	case statusBadRequest:
		return "BAD_REQUEST"
	case statusInternal:
		return "INTERNAL"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// errMalformed marks a request or response that breaks the format or the limits.
var errMalformed = errors.New("malformed message")

// limits bounds what a peer may make the other side allocate.
type limits struct {
	maxFragment int // largest fragment payload
	maxBatch    int // most IDs in one HAS, DELETE or RENEW
}

// request is one decoded request. Which fields are set depends on op.
type request struct {
	op        op
	id        chunker.FragmentID   // PUT, GET
	owner     store.Owner          // PUT, DELETE, RENEW: Ed25519 public key
	expires   int64                // PUT, RENEW: lease expiry, Unix seconds
	timestamp int64                // DELETE, RENEW: signing time, Unix nanoseconds
	size      uint32               // PUT: length of the payload that follows the request
	ids       []chunker.FragmentID // HAS, DELETE, RENEW
	sig       [ed25519.SignatureSize]byte
}

// signDomain starts every signed message, so a fragment-protocol signature can never be
// taken for a signature of anything else the drive key signs.
const signDomain = "scatter fragment request v1\x00"

// signed reports whether requests with op carry an owner signature.
func (o op) signed() bool { return o == opDelete || o == opRenew }

// headLen returns the length of op's fixed part after the version and op bytes.
func headLen(o op) (int, error) {
	switch o {
	case opPut:
		return 32 + 32 + 8 + 4, nil
	case opGet:
		return 32, nil
	case opHas:
		return 4, nil
	case opDelete:
		return 32 + 8 + 4, nil
	case opRenew:
		return 32 + 8 + 8 + 4, nil
	case opStat:
		return 0, nil
	}
	return 0, fmt.Errorf("%w: unknown op %d", errMalformed, uint8(o))
}

// readRequestHead reads a request's version, op and fixed fields, and checks its sizes
// against lim. It returns how many body bytes follow: the payload of a PUT (which the
// caller reads itself), or the IDs and signature of a batch, which readRequestBody reads.
// Nothing is allocated in proportion to what the peer claims.
func readRequestHead(r io.Reader, lim limits) (request, int, error) {
	var req request
	var buf [2 + 32 + 32 + 8 + 8 + 4]byte
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return req, 0, err
	}
	if buf[0] != wireVersion {
		return req, 0, fmt.Errorf("%w: unknown version %d", errMalformed, buf[0])
	}
	req.op = op(buf[1])
	n, err := headLen(req.op)
	if err != nil {
		return req, 0, err
	}
	b := buf[2 : 2+n]
	if _, err := io.ReadFull(r, b); err != nil {
		return req, 0, noEOF(err)
	}
	count := 0
	switch req.op {
	case opPut:
		copy(req.id[:], b[0:32])
		copy(req.owner[:], b[32:64])
		req.expires = int64(binary.BigEndian.Uint64(b[64:72]))
		req.size = binary.BigEndian.Uint32(b[72:76])
		if req.size == 0 || int64(req.size) > int64(lim.maxFragment) {
			return req, 0, fmt.Errorf("%w: fragment of %d bytes (max %d)", errMalformed, req.size, lim.maxFragment)
		}
		return req, int(req.size), nil
	case opGet:
		copy(req.id[:], b)
		return req, 0, nil
	case opStat:
		return req, 0, nil
	case opHas:
		count = int(binary.BigEndian.Uint32(b))
	case opDelete:
		copy(req.owner[:], b[0:32])
		req.timestamp = int64(binary.BigEndian.Uint64(b[32:40]))
		count = int(binary.BigEndian.Uint32(b[40:44]))
	case opRenew:
		copy(req.owner[:], b[0:32])
		req.timestamp = int64(binary.BigEndian.Uint64(b[32:40]))
		req.expires = int64(binary.BigEndian.Uint64(b[40:48]))
		count = int(binary.BigEndian.Uint32(b[48:52]))
	}
	if count < 1 || count > lim.maxBatch {
		return req, 0, fmt.Errorf("%w: %d IDs in one %s (1..%d)", errMalformed, count, req.op, lim.maxBatch)
	}
	body := 32 * count
	if req.op.signed() {
		body += ed25519.SignatureSize
	}
	return req, body, nil
}

// readRequestBody reads the body of a batch request whose head said it is n bytes long.
func readRequestBody(r io.Reader, req *request, n int) error {
	count := n / 32
	if req.op.signed() {
		count = (n - ed25519.SignatureSize) / 32
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return noEOF(err)
	}
	req.ids = make([]chunker.FragmentID, count)
	for i := range req.ids {
		copy(req.ids[i][:], b[32*i:])
	}
	if req.op.signed() {
		copy(req.sig[:], b[32*count:])
	}
	return nil
}

// noEOF turns an EOF in the middle of a message into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendRequest appends the encoding of req (for a PUT, without its payload).
func appendRequest(b []byte, req *request) []byte {
	b = append(b, wireVersion, byte(req.op))
	switch req.op {
	case opPut:
		b = append(b, req.id[:]...)
		b = append(b, req.owner[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(req.expires))
		b = binary.BigEndian.AppendUint32(b, req.size)
	case opGet:
		b = append(b, req.id[:]...)
	case opHas:
		b = binary.BigEndian.AppendUint32(b, uint32(len(req.ids)))
	case opDelete:
		b = append(b, req.owner[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(req.timestamp))
		b = binary.BigEndian.AppendUint32(b, uint32(len(req.ids)))
	case opRenew:
		b = append(b, req.owner[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(req.timestamp))
		b = binary.BigEndian.AppendUint64(b, uint64(req.expires))
		b = binary.BigEndian.AppendUint32(b, uint32(len(req.ids)))
	case opStat:
	default:
		panic(fmt.Sprintf("BUG: dht: encoding request with op %d", req.op))
	}
	for _, id := range req.ids {
		b = append(b, id[:]...)
	}
	if req.op.signed() {
		b = append(b, req.sig[:]...)
	}
	return b
}

// signedMessage returns what the owner signs for a DELETE or RENEW: the domain string
// followed by the request's encoding up to its signature.
func signedMessage(req *request) []byte {
	b := appendRequest([]byte(signDomain), req)
	return b[:len(b)-ed25519.SignatureSize]
}

// sign sets req's owner and signature from key.
func (req *request) sign(key ed25519.PrivateKey) {
	copy(req.owner[:], key.Public().(ed25519.PublicKey))
	copy(req.sig[:], ed25519.Sign(key, signedMessage(req)))
}

// verify checks req's signature against its owner.
func (req *request) verify() bool {
	return ed25519.Verify(ed25519.PublicKey(req.owner[:]), signedMessage(req), req.sig[:])
}

// decodeRequest decodes one request from b, returning what follows it (a PUT's payload).
// The server reads from a stream in the same two steps; this form is for tests and fuzzing.
func decodeRequest(b []byte, lim limits) (request, []byte, error) {
	r := bytes.NewReader(b)
	req, n, err := readRequestHead(r, lim)
	if err != nil {
		return req, nil, err
	}
	if req.op != opPut && n > 0 {
		if err := readRequestBody(r, &req, n); err != nil {
			return req, nil, err
		}
	}
	return req, b[len(b)-r.Len():], nil
}

// response is one decoded response. Which fields are set depends on the request's op.
type response struct {
	status status
	msg    string     // not OK: what went wrong, for logs
	data   []byte     // GET
	has    []bool     // HAS
	stat   swarm.Stat // STAT
}

// appendError appends a response with a status other than OK and a message.
func appendError(b []byte, st status, msg string) []byte {
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	b = append(b, byte(st))
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	return append(b, msg...)
}

// appendGetHead appends the head of a GET response carrying n payload bytes.
func appendGetHead(b []byte, n int) []byte {
	return binary.BigEndian.AppendUint32(append(b, byte(statusOK)), uint32(n))
}

// appendHas appends an OK response to a HAS: the count, then a bitmap, bit i (LSB first)
// of byte i/8 set when the donor holds the i-th ID.
func appendHas(b []byte, has []bool) []byte {
	b = binary.BigEndian.AppendUint32(append(b, byte(statusOK)), uint32(len(has)))
	bm := make([]byte, (len(has)+7)/8)
	for i, h := range has {
		if h {
			bm[i/8] |= 1 << (i % 8)
		}
	}
	return append(b, bm...)
}

// appendStat appends an OK response to a STAT.
func appendStat(b []byte, s swarm.Stat) []byte {
	b = append(b, byte(statusOK))
	for _, v := range []int64{s.Quota, s.Used, s.Fragments} {
		b = binary.BigEndian.AppendUint64(b, uint64(max(v, 0)))
	}
	return b
}

// readResponse reads the response to a request with op. For a HAS, want is the number of
// IDs asked about; the response must answer exactly that many. A GET payload is bounded by
// lim before it is allocated, so a hostile donor cannot make the client allocate more.
func readResponse(r io.Reader, o op, want int, lim limits) (response, error) {
	var resp response
	var buf [24]byte
	if _, err := io.ReadFull(r, buf[:1]); err != nil {
		return resp, err
	}
	resp.status = status(buf[0])
	if resp.status > statusMax {
		return resp, fmt.Errorf("%w: unknown status %d", errMalformed, buf[0])
	}
	if resp.status != statusOK {
		if _, err := io.ReadFull(r, buf[:2]); err != nil {
			return resp, noEOF(err)
		}
		n := int(binary.BigEndian.Uint16(buf[:2]))
		if n > maxMessage {
			return resp, fmt.Errorf("%w: error message of %d bytes", errMalformed, n)
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(r, msg); err != nil {
			return resp, noEOF(err)
		}
		resp.msg = string(msg)
		return resp, nil
	}
	switch o {
	case opPut, opDelete, opRenew:
	case opGet:
		if _, err := io.ReadFull(r, buf[:4]); err != nil {
			return resp, noEOF(err)
		}
		n := binary.BigEndian.Uint32(buf[:4])
		if n == 0 || int64(n) > int64(lim.maxFragment) {
			return resp, fmt.Errorf("%w: fragment of %d bytes (max %d)", errMalformed, n, lim.maxFragment)
		}
		resp.data = make([]byte, n)
		if _, err := io.ReadFull(r, resp.data); err != nil {
			return resp, noEOF(err)
		}
	case opHas:
		if _, err := io.ReadFull(r, buf[:4]); err != nil {
			return resp, noEOF(err)
		}
		if n := binary.BigEndian.Uint32(buf[:4]); int64(n) != int64(want) {
			return resp, fmt.Errorf("%w: HAS answers %d IDs, asked %d", errMalformed, n, want)
		}
		bm := make([]byte, (want+7)/8)
		if _, err := io.ReadFull(r, bm); err != nil {
			return resp, noEOF(err)
		}
		resp.has = make([]bool, want)
		for i := range resp.has {
			resp.has[i] = bm[i/8]&(1<<(i%8)) != 0
		}
		if want%8 != 0 && bm[len(bm)-1]>>(want%8) != 0 {
			return resp, fmt.Errorf("%w: HAS bitmap has bits past the last ID", errMalformed)
		}
	case opStat:
		if _, err := io.ReadFull(r, buf[:24]); err != nil {
			return resp, noEOF(err)
		}
		var v [3]int64
		for i := range v {
			u := binary.BigEndian.Uint64(buf[8*i:])
			if u > math.MaxInt64 {
				return resp, fmt.Errorf("%w: STAT value %d out of range", errMalformed, u)
			}
			v[i] = int64(u)
		}
		resp.stat = swarm.Stat{Quota: v[0], Used: v[1], Fragments: v[2]}
	default:
		return resp, fmt.Errorf("%w: unknown op %d", errMalformed, uint8(o))
	}
	return resp, nil
}
