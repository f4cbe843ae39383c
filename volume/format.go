package volume

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/swarm"
)

// Record encodings of the metadata store. Every value starts with a version byte so the
// layout can change (and be published into the network later) without guessing; a reader
// rejects versions it does not know. docs/format.md "Metadata store" is the spec and
// testdata/golden-*.hex pins the bytes.

// recordV1 is the version byte of every record this code writes.
const recordV1 = 1

// errBadRecord is wrapped by every decode error: a record in the store is unreadable.
var errBadRecord = errors.New("volume: bad metadata record")

func badRecord(kind string, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", errBadRecord, kind, fmt.Sprintf(format, args...))
}

func checkVersion(kind string, b []byte) error {
	if len(b) == 0 {
		return badRecord(kind, "empty")
	}
	if b[0] != recordV1 {
		return badRecord(kind, "unknown version %d", b[0])
	}
	return nil
}

// attrLen is the encoded size of an attr record v1.
const attrLen = 1 + 5*4 + 8 + 3*12

func putTime(b []byte, t time.Time) {
	binary.BigEndian.PutUint64(b, uint64(t.Unix()))
	binary.BigEndian.PutUint32(b[8:], uint32(t.Nanosecond()))
}

func getTime(b []byte) (time.Time, error) {
	ns := binary.BigEndian.Uint32(b[8:])
	if ns >= 1e9 {
		return time.Time{}, fmt.Errorf("nanoseconds %d out of range", ns)
	}
	return time.Unix(int64(binary.BigEndian.Uint64(b)), int64(ns)), nil
}

// encodeAttr encodes an inode's attributes (all but Ino, which is the key).
func encodeAttr(a *Attr) []byte {
	b := make([]byte, attrLen)
	b[0] = recordV1
	binary.BigEndian.PutUint32(b[1:], a.Mode)
	binary.BigEndian.PutUint32(b[5:], a.Nlink)
	binary.BigEndian.PutUint32(b[9:], a.UID)
	binary.BigEndian.PutUint32(b[13:], a.GID)
	binary.BigEndian.PutUint32(b[17:], a.Rdev)
	binary.BigEndian.PutUint64(b[21:], uint64(a.Size))
	putTime(b[29:], a.Atime)
	putTime(b[41:], a.Mtime)
	putTime(b[53:], a.Ctime)
	return b
}

func decodeAttr(ino uint64, b []byte) (Attr, error) {
	if err := checkVersion("attr", b); err != nil {
		return Attr{}, err
	}
	if len(b) != attrLen {
		return Attr{}, badRecord("attr", "length %d, want %d", len(b), attrLen)
	}
	a := Attr{
		Ino:   ino,
		Mode:  binary.BigEndian.Uint32(b[1:]),
		Nlink: binary.BigEndian.Uint32(b[5:]),
		UID:   binary.BigEndian.Uint32(b[9:]),
		GID:   binary.BigEndian.Uint32(b[13:]),
		Rdev:  binary.BigEndian.Uint32(b[17:]),
		Size:  int64(binary.BigEndian.Uint64(b[21:])),
	}
	if a.Size < 0 {
		return Attr{}, badRecord("attr", "negative size")
	}
	var err error
	for i, t := range []*time.Time{&a.Atime, &a.Mtime, &a.Ctime} {
		if *t, err = getTime(b[29+12*i:]); err != nil {
			return Attr{}, badRecord("attr", "%v", err)
		}
	}
	return a, nil
}

// dirent is the value of a directory entry: the child and enough to list it without
// reading the child's inode.
type dirent struct {
	Ino    uint64
	Type   uint32 // S_IFMT bits of the child's mode
	Cookie uint64 // position in the directory listing (key of the cookies bucket)
}

const direntLen = 1 + 8 + 4 + 8

func encodeDirent(d dirent) []byte {
	b := make([]byte, direntLen)
	b[0] = recordV1
	binary.BigEndian.PutUint64(b[1:], d.Ino)
	binary.BigEndian.PutUint32(b[9:], d.Type)
	binary.BigEndian.PutUint64(b[13:], d.Cookie)
	return b
}

func decodeDirent(b []byte) (dirent, error) {
	if err := checkVersion("dirent", b); err != nil {
		return dirent{}, err
	}
	if len(b) != direntLen {
		return dirent{}, badRecord("dirent", "length %d, want %d", len(b), direntLen)
	}
	return dirent{
		Ino:    binary.BigEndian.Uint64(b[1:]),
		Type:   binary.BigEndian.Uint32(b[9:]),
		Cookie: binary.BigEndian.Uint64(b[13:]),
	}, nil
}

// Extent kinds.
const (
	extentChunk  = 1 // a prefix of a chunk stored on the peers
	extentInline = 2 // bytes kept in the record itself
)

// extent is one piece of a file's content starting at the offset in its key: the first
// Len bytes of a chunk (Ref), or Len inline bytes (Data). Gaps between extents are holes.
type extent struct {
	Len  int64
	Ref  *pipeline.Ref // extentChunk
	Data []byte        // extentInline
}

// maxFragments bounds a Ref's fragment list in a record (K+M is at most 255 anyway).
const maxFragments = 255

func encodeExtent(e extent) []byte {
	if e.Ref == nil {
		b := make([]byte, 6, 6+len(e.Data))
		b[0], b[1] = recordV1, extentInline
		binary.BigEndian.PutUint32(b[2:], uint32(len(e.Data)))
		return append(b, e.Data...)
	}
	r := e.Ref
	if len(r.Fragments) > maxFragments {
		panic("BUG: chunk ref with more than 255 fragments")
	}
	b := make([]byte, 6+32+4+4+3, 6+45+len(r.Fragments)*40)
	b[0], b[1] = recordV1, extentChunk
	binary.BigEndian.PutUint32(b[2:], uint32(e.Len))
	copy(b[6:], r.ID[:])
	binary.BigEndian.PutUint32(b[38:], r.Size)
	binary.BigEndian.PutUint32(b[42:], r.SealedLen)
	b[46], b[47], b[48] = r.K, r.M, byte(len(r.Fragments))
	for _, f := range r.Fragments {
		b = append(b, f.ID[:]...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(f.Peer)))
		b = append(b, f.Peer...)
	}
	return b
}

func decodeExtent(b []byte) (extent, error) {
	if err := checkVersion("extent", b); err != nil {
		return extent{}, err
	}
	if len(b) < 6 {
		return extent{}, badRecord("extent", "short header")
	}
	n := int64(binary.BigEndian.Uint32(b[2:]))
	switch b[1] {
	case extentInline:
		if int64(len(b)-6) != n {
			return extent{}, badRecord("extent", "inline length %d, have %d bytes", n, len(b)-6)
		}
		return extent{Len: n, Data: b[6:len(b):len(b)]}, nil
	case extentChunk:
	default:
		return extent{}, badRecord("extent", "unknown kind %d", b[1])
	}
	if len(b) < 49 {
		return extent{}, badRecord("extent", "short chunk ref")
	}
	r := &pipeline.Ref{
		Size:      binary.BigEndian.Uint32(b[38:]),
		SealedLen: binary.BigEndian.Uint32(b[42:]),
		K:         b[46],
		M:         b[47],
	}
	copy(r.ID[:], b[6:38])
	if n == 0 || n > int64(r.Size) {
		return extent{}, badRecord("extent", "length %d outside chunk of %d bytes", n, r.Size)
	}
	nf := int(b[48])
	p := b[49:]
	r.Fragments = make([]pipeline.Fragment, nf)
	for i := range nf {
		if len(p) < 34 {
			return extent{}, badRecord("extent", "short fragment %d", i)
		}
		copy(r.Fragments[i].ID[:], p[:32])
		pl := int(binary.BigEndian.Uint16(p[32:]))
		p = p[34:]
		if len(p) < pl {
			return extent{}, badRecord("extent", "short peer of fragment %d", i)
		}
		r.Fragments[i].Peer = swarm.PeerID(p[:pl])
		p = p[pl:]
	}
	if len(p) != 0 {
		return extent{}, badRecord("extent", "%d trailing bytes", len(p))
	}
	return extent{Len: n, Ref: r}, nil
}

// journalRec is a file's write-back journal entry: which byte ranges of its staging file
// hold data not yet on the peers, and the file size they belong to.
type journalRec struct {
	Size  int64
	Dirty ranges
}

// maxJournalSpans bounds a journal record when decoding, so a corrupt count cannot make
// the decoder allocate without limit.
const maxJournalSpans = 1 << 20

func encodeJournal(j journalRec) []byte {
	b := make([]byte, 13, 13+16*len(j.Dirty))
	b[0] = recordV1
	binary.BigEndian.PutUint64(b[1:], uint64(j.Size))
	binary.BigEndian.PutUint32(b[9:], uint32(len(j.Dirty)))
	for _, s := range j.Dirty {
		b = binary.BigEndian.AppendUint64(b, uint64(s.off))
		b = binary.BigEndian.AppendUint64(b, uint64(s.end-s.off))
	}
	return b
}

func decodeJournal(b []byte) (journalRec, error) {
	if err := checkVersion("journal", b); err != nil {
		return journalRec{}, err
	}
	if len(b) < 13 {
		return journalRec{}, badRecord("journal", "short header")
	}
	j := journalRec{Size: int64(binary.BigEndian.Uint64(b[1:]))}
	n := int(binary.BigEndian.Uint32(b[9:]))
	if j.Size < 0 || j.Size > MaxFileSize {
		return journalRec{}, badRecord("journal", "size %d out of range", j.Size)
	}
	if n > maxJournalSpans || len(b) != 13+16*n {
		return journalRec{}, badRecord("journal", "%d spans in %d bytes", n, len(b))
	}
	var prev int64
	for i := range n {
		off := int64(binary.BigEndian.Uint64(b[13+16*i:]))
		l := int64(binary.BigEndian.Uint64(b[21+16*i:]))
		if off < prev || l <= 0 || off > MaxFileSize || l > MaxFileSize-off {
			return journalRec{}, badRecord("journal", "span %d [%d,+%d) out of order or range", i, off, l)
		}
		j.Dirty = append(j.Dirty, span{off, off + l})
		prev = off + l
	}
	return j, nil
}

// encodeCount encodes a chunk's reference count: version ‖ u64.
func encodeCount(n int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{recordV1}, uint64(n))
}

func decodeCount(b []byte) (int64, error) {
	if err := checkVersion("count", b); err != nil {
		return 0, err
	}
	if len(b) != 9 {
		return 0, badRecord("count", "length %d, want 9", len(b))
	}
	n := int64(binary.BigEndian.Uint64(b[1:]))
	if n <= 0 {
		return 0, badRecord("count", "count %d not positive", n)
	}
	return n, nil
}
