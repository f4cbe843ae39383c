package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	chunk "github.com/ipfs/boxo/chunker"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// writeback owns the staging budget and the uploaders. Writes reserve budget (waiting
// while staging is full); uploaders turn dirty ranges into chunks on the peers and return
// budget. It never takes a file's lock while holding its own.
type writeback struct {
	v      *Volume
	ctx    context.Context // uploads outlive the requests that staged their data
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	cond     *sync.Cond          // workers wait on it for runnable files
	closed   bool                //
	used     int64               // staged blocks plus reservations, in bytes; never above cap
	waiters  int                 // writes waiting for budget
	progress chan struct{}       // closed and replaced whenever budget is returned
	pending  map[*file]struct{}  // files that may have upload work
	stagedF  map[*file]struct{}  // files with staged bytes
	retryAt  map[*file]time.Time // backoff after a failed upload
	failures map[*file]int       //
	lastErr  error               // last upload error (for ENOSPC logs)
	timer    *time.Timer         // wakes workers when a backoff ends

	// splitters holds idle splitters for the next job, at most Uploaders of them. A
	// keyed FastCDC splitter allocates and clears a buffer of twice the largest chunk
	// (16 MiB by default) when made: once per upload job, that was ~7% of the mount's CPU
	// during rsync of small files, and 16 MiB of garbage per file.
	splitters chan resettable
	// bufs holds idle job buffers (each of capacity at least JobMax), at most Uploaders
	// of them: a buffer made per job was a quarter of the bytes the mount allocated while
	// writing a large file.
	bufs chan []byte
}

// resettable is a splitter that can be pointed at a new stream and keeps its buffer
// (chunker.Splitter is one). All splitters of a volume have its key and sizes, so any
// idle one serves any job.
type resettable interface {
	chunk.Splitter
	Reset(r io.Reader)
}

func newWriteback(v *Volume) *writeback {
	w := &writeback{
		v:         v,
		progress:  make(chan struct{}),
		pending:   map[*file]struct{}{},
		stagedF:   map[*file]struct{}{},
		retryAt:   map[*file]time.Time{},
		failures:  map[*file]int{},
		splitters: make(chan resettable, v.cfg.Uploaders),
		bufs:      make(chan []byte, v.cfg.Uploaders),
	}
	w.cond = sync.NewCond(&w.mu)
	w.ctx, w.cancel = context.WithCancel(context.Background())
	for range v.cfg.Uploaders {
		w.wg.Add(1)
		go w.worker()
	}
	w.wg.Add(1)
	go w.sweep()
	return w
}

// sweep queues every file with staged data now and then, so that files left open with
// data staged are uploaded once they have been quiet for Config.QuietUpload.
func (w *writeback) sweep() {
	defer w.wg.Done()
	t := time.NewTicker(w.v.cfg.QuietUpload / 2)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		for f := range w.stagedF {
			w.pending[f] = struct{}{}
		}
		w.cond.Broadcast()
		w.mu.Unlock()
	}
}

// close stops the workers: running uploads are cancelled, their data stays staged.
func (w *writeback) close() {
	w.mu.Lock()
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
	}
	w.cond.Broadcast()
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
}

func (w *writeback) staged() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.used
}

// reserve takes n bytes of staging budget (whole blocks, see stageBlock), waiting while
// staging is full. It fails with
// ErrNoSpace after Config.WriteWait without any upload making progress.
func (w *writeback) reserve(ctx context.Context, n int64) error {
	limit := w.v.cfg.StagingMax
	w.mu.Lock()
	defer w.mu.Unlock()
	var timer *time.Timer
	for w.used+n > limit && w.used > 0 {
		if w.closed {
			return ErrClosed
		}
		if timer == nil {
			timer = time.NewTimer(w.v.cfg.WriteWait)
			defer timer.Stop()
		}
		// Staging is full: everything staged becomes eligible for upload now.
		for f := range w.stagedF {
			w.pending[f] = struct{}{}
		}
		w.cond.Broadcast()
		w.waiters++
		ch := w.progress
		w.mu.Unlock()
		var err error
		select {
		case <-ch:
			if !timer.Stop() {
				<-timer.C
			}
			timer.Reset(w.v.cfg.WriteWait)
		case <-ctx.Done():
			err = ErrInterrupted
		case <-timer.C:
			w.mu.Lock()
			last := w.lastErr
			w.mu.Unlock()
			w.v.log.Error("write: staging full and no upload made progress; no peers can take data",
				"staged", w.used, "cap", limit, "wait", w.v.cfg.WriteWait, "last_upload_err", last)
			err = fmt.Errorf("%w: staging full for %v: %v", ErrNoSpace, w.v.cfg.WriteWait, last)
		}
		w.mu.Lock()
		w.waiters--
		if err != nil {
			return err
		}
	}
	w.used += n
	return nil
}

// unreserve returns n reserved bytes that were not staged.
func (w *writeback) unreserve(n int64) {
	if n == 0 {
		return
	}
	w.mu.Lock()
	w.used -= n
	w.progressLocked()
	w.mu.Unlock()
}

func (w *writeback) progressLocked() {
	close(w.progress)
	w.progress = make(chan struct{})
}

// unstage returns n bytes of budget that f's staged blocks no longer take.
func (w *writeback) unstage(f *file, n int64) {
	w.mu.Lock()
	w.used -= n
	if len(f.staged) == 0 {
		delete(w.stagedF, f)
	}
	if n > 0 {
		w.progressLocked()
	}
	w.mu.Unlock()
}

// markStaged records that f has staged bytes (its budget was reserved by the writer).
func (w *writeback) markStaged(f *file) {
	w.mu.Lock()
	w.stagedF[f] = struct{}{}
	w.mu.Unlock()
}

// stage counts n bytes of budget taken by blocks of f staged by journal replay, above
// the cap if need be.
func (w *writeback) stage(f *file, n int64) {
	w.mu.Lock()
	w.used += n
	w.stagedF[f] = struct{}{}
	w.pending[f] = struct{}{}
	w.mu.Unlock()
}

// notify says f may have upload work.
func (w *writeback) notify(f *file) {
	w.mu.Lock()
	if _, ok := w.stagedF[f]; ok {
		if _, queued := w.pending[f]; !queued {
			w.pending[f] = struct{}{}
			w.cond.Signal() // one worker is enough for one file
		}
	}
	w.mu.Unlock()
}

// pressure reports whether staging is short of space, so uploads should not wait for
// files to be closed.
func (w *writeback) pressure() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.waiters > 0 || w.used*4 > w.v.cfg.StagingMax*3
}

func (w *writeback) worker() {
	defer w.wg.Done()
	w.mu.Lock()
	for {
		if w.closed {
			w.mu.Unlock()
			return
		}
		f := w.pickLocked()
		if f == nil {
			w.cond.Wait()
			continue
		}
		delete(w.pending, f)
		w.mu.Unlock()
		more, err := w.v.upload(w.ctx, f)
		w.mu.Lock()
		if err != nil && w.ctx.Err() == nil {
			w.failures[f]++
			backoff := min(time.Duration(1<<min(w.failures[f], 10))*50*time.Millisecond, 30*time.Second)
			w.retryAt[f] = time.Now().Add(backoff)
			w.lastErr = err
			w.pending[f] = struct{}{}
		} else if err == nil {
			delete(w.failures, f)
			delete(w.retryAt, f)
			if more {
				w.pending[f] = struct{}{}
			}
		}
		w.cond.Broadcast()
	}
}

// pickLocked returns a pending file not backing off, or nil; it arms the timer for the
// earliest backoff. Several workers may hold one file: its jobs are on disjoint ranges.
func (w *writeback) pickLocked() *file {
	now := time.Now()
	var next time.Time
	for f := range w.pending {
		if t, ok := w.retryAt[f]; ok && t.After(now) {
			if next.IsZero() || t.Before(next) {
				next = t
			}
			continue
		}
		return f
	}
	if !next.IsZero() {
		if w.timer != nil {
			w.timer.Stop()
		}
		w.timer = time.AfterFunc(next.Sub(now), func() {
			w.mu.Lock()
			w.cond.Broadcast()
			w.mu.Unlock()
		})
	}
	return nil
}

// job is one upload: the file range [off, end) is read (staged bytes and, at its edges,
// whole old chunks), cut into chunks and put; then the chunks replace the extents of
// [off, end) in one transaction. Jobs of one file run concurrently on disjoint ranges, but
// are planned and cut one at a time, so a stream is cut where the content says.
type job struct {
	off, end int64
	start    int64 // first dirty byte taken
	keepTail bool  // the bytes after the last cut go back to dirty (more writes follow)
	clip     int64 // content at or past clip must not be committed (truncated meanwhile)
}

// upload runs one upload job on f. It reports whether f may have more work.
func (v *Volume) upload(ctx context.Context, f *file) (more bool, err error) {
	f.mu.Lock()
	j, ok, err := v.planLocked(f)
	if err != nil || !ok {
		f.mu.Unlock()
		return false, err
	}
	buf := v.wb.buffer(j.end - j.off) // every byte is written by readLocked and fillChunks
	defer v.wb.idleBuffer(buf)        // after the commit: pieces' Data are stretches of buf
	segs, err := v.readLocked(f, buf, j.off)
	f.mu.Unlock()
	if err == nil {
		fctx, cancel := context.WithTimeout(ctx, v.cfg.FetchTimeout)
		err = v.fillChunks(fctx, f.ino, buf, segs)
		cancel()
	}
	var pieces []extentAt
	if err == nil {
		pieces, err = v.split(j, buf)
	}
	f.mu.Lock()
	f.planning = false
	if err == nil && j.keepTail {
		// The bytes after the last cut wait for the writes that follow them.
		if cut := pieces[len(pieces)-1].end(); cut < j.end {
			for _, s := range f.inflight.intersect(cut, j.end) {
				f.inflight.remove(s.off, s.end)
				f.dirty.add(s.off, s.end)
			}
			j.end = cut
		}
	}
	f.mu.Unlock()
	v.wb.notify(f) // the next job of f can be planned now
	if err == nil {
		err = v.putChunks(ctx, pieces)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		err = v.commitLocked(f, j, pieces)
	}
	f.dropJobLocked(j)
	if err != nil {
		for _, s := range f.inflight.intersect(j.off, j.end) {
			f.inflight.remove(s.off, s.end)
			f.dirty.add(s.off, s.end)
		}
		f.lastErr = err
		f.signalLocked()
		if !errors.Is(err, context.Canceled) {
			v.log.Warn("upload failed; will retry", "file", v.pathOf(f.ino), "ino", f.ino, "err", err)
		}
		return true, err
	}
	f.lastErr = nil
	f.signalLocked()
	v.maybeForgetLocked(f)
	return len(f.dirty) > 0, nil
}

func (f *file) dropJobLocked(j *job) {
	for i, o := range f.jobs {
		if o == j {
			f.jobs = append(f.jobs[:i], f.jobs[i+1:]...)
			return
		}
	}
}

// planLocked chooses the next job of f and marks its dirty bytes in flight.
func (v *Volume) planLocked(f *file) (*job, bool, error) {
	if f.gone || f.planning || len(f.dirty) == 0 {
		return nil, false, nil
	}
	final := f.writers.Load() == 0 || f.syncWait > 0 || v.wb.pressure() ||
		time.Since(f.written) >= v.cfg.QuietUpload
	if final && !f.busy() {
		if ok, err := v.inlineLocked(f); err != nil || ok {
			return nil, false, err
		}
	}
	for _, s := range f.dirty {
		if !final && s.len() < v.cfg.StreamThreshold {
			continue
		}
		take := span{s.off, min(s.end, f.size)}
		cut := take.end > take.off+v.cfg.JobMax
		if cut {
			take.end = take.off + v.cfg.JobMax
		}
		if take.off >= take.end {
			continue
		}
		j := &job{off: take.off, end: take.end, start: take.off, clip: MaxFileSize}
		// Extents straddling the range's edges are rewritten whole: an extent always
		// holds a whole chunk's prefix.
		err := v.commit.view(func(tx *bolt.Tx) error {
			for _, at := range []int64{take.off, take.end - 1} {
				exts, err := extentsIn(tx, f.ino, at, at+1)
				if err != nil {
					return err
				}
				for _, e := range exts {
					j.off = min(j.off, e.Off)
					j.end = max(j.end, e.end())
				}
			}
			return nil
		})
		if err != nil {
			return nil, false, err
		}
		j.end = min(j.end, f.size)
		overlaps := false
		for _, o := range f.jobs {
			if j.off < o.end && o.off < j.end {
				overlaps = true // wait for that job to commit
			}
		}
		if overlaps {
			continue
		}
		j.keepTail = (!final || cut) && j.end == take.end
		for _, s := range f.dirty.intersect(j.off, j.end) {
			f.dirty.remove(s.off, s.end)
			f.inflight.add(s.off, s.end)
		}
		f.planning = true
		f.jobs = append(f.jobs, j)
		return j, true, nil
	}
	return nil, false, nil
}

// split cuts buf (the content of [j.off, j.end)) into chunks. With keepTail the last
// chunk is left out unless it is the only one holding dirty bytes. The chunks' Data are
// stretches of buf, which must not change until they are put.
func (v *Volume) split(j *job, buf []byte) ([]extentAt, error) {
	sp := v.wb.splitter(bytes.NewReader(buf))
	defer v.wb.idle(sp)
	next := sp.NextBytes
	if n, ok := sp.(interface{ Next() ([]byte, error) }); ok {
		next = n.Next // no copy: only the length is used
	}
	var pieces []extentAt
	off := j.off
	for {
		b, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("split: %w", err)
		}
		n := int64(len(b))
		if n == 0 || off+n > j.end {
			panic(fmt.Sprintf("BUG: splitter returned a chunk of %d bytes at %d of %d", n, off-j.off, j.end-j.off))
		}
		// The splitter read buf in order, so the chunk is buf's next n bytes: taking them
		// from buf saves copying every uploaded byte once more.
		at := off - j.off
		pieces = append(pieces, extentAt{Off: off, extent: extent{Len: n, Data: buf[at : at+n : at+n]}})
		off += n
	}
	if off != j.end {
		panic(fmt.Sprintf("BUG: splitter returned %d bytes of %d", off-j.off, j.end-j.off))
	}
	if j.keepTail && len(pieces) > 1 && pieces[len(pieces)-1].Off > j.start {
		pieces = pieces[:len(pieces)-1]
	}
	return pieces, nil
}

// splitter returns a splitter over r: an idle one reset onto r, or a new one.
func (w *writeback) splitter(r io.Reader) chunk.Splitter {
	select {
	case s := <-w.splitters:
		s.Reset(r)
		return s
	default:
		return w.v.chunks.Split(r)
	}
}

// idle keeps s for a later job if it can be reset and fewer than Uploaders are idle.
func (w *writeback) idle(s chunk.Splitter) {
	rs, ok := s.(resettable)
	if !ok {
		return
	}
	rs.Reset(eof{}) // drop the job's reader, and with it the job's buffer
	select {
	case w.splitters <- rs:
	default:
	}
}

// buffer returns a job buffer of n bytes: an idle one if it is large enough, else a new
// one of capacity at least JobMax (jobs are mostly JobMax long, a little more where they
// take in whole chunks at their edges).
func (w *writeback) buffer(n int64) []byte {
	select {
	case b := <-w.bufs:
		if int64(cap(b)) >= n {
			return b[:n]
		}
	default:
	}
	return make([]byte, n, max(n, w.v.cfg.JobMax))
}

// idleBuffer keeps b for a later job, unless Uploaders buffers are idle already.
func (w *writeback) idleBuffer(b []byte) {
	select {
	case w.bufs <- b:
	default:
	}
}

// eof is an empty stream.
type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }

// putChunks puts the pieces' chunks, PutParallel at a time, each bounded in time.
func (v *Volume) putChunks(ctx context.Context, pieces []extentAt) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(v.cfg.PutParallel)
	for i := range pieces {
		g.Go(func() error {
			pctx, cancel := context.WithTimeout(gctx, 2*v.cfg.FetchTimeout)
			defer cancel()
			ref, err := v.chunks.Put(pctx, pieces[i].Data)
			if err != nil {
				return fmt.Errorf("put chunk at %d: %w", pieces[i].Off, err)
			}
			pieces[i].Ref, pieces[i].Data = &ref, nil
			return nil
		})
	}
	return g.Wait()
}

// commitLocked swaps in the job's new extents for [j.off, j.end) and the file's journal
// entry in one transaction, then returns the staged bytes no longer needed to the budget.
// The transaction (and its sync) runs without f.mu, on a snapshot, so writes go on
// meanwhile; everything else that writes f's records waits for it (waitCommitLocked).
func (v *Volume) commitLocked(f *file, j *job, exts []extentAt) error {
	f.waitCommitLocked() // one commit of f at a time
	if f.gone {
		return nil
	}
	// What stays staged: everything but the committed range's bytes that were not
	// written again meanwhile.
	var release ranges
	for _, s := range f.staged.intersect(j.off, j.end) {
		release.add(s.off, s.end)
	}
	for _, s := range f.dirty {
		release.remove(s.off, s.end)
	}
	newStaged := append(ranges(nil), f.staged...)
	for _, s := range release {
		newStaged.remove(s.off, s.end)
	}
	var journal []byte
	if len(newStaged) > 0 {
		journal = encodeJournal(journalRec{Size: f.size, Dirty: newStaged})
	}
	limit := min(j.clip, f.size)
	size, mtime, ctime := f.size, f.mtime, f.ctime
	ino := f.ino
	f.committing = true
	f.mu.Unlock()
	err := v.commit.durable(func(tx *bolt.Tx) error {
		a, err := getAttr(tx, ino)
		if errors.Is(err, ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		old, err := extentsIn(tx, ino, j.off, j.end)
		if err != nil {
			return err
		}
		for _, e := range old {
			if err := delExtent(tx, ino, e.Off); err != nil {
				return err
			}
		}
		for _, e := range exts {
			if e.Off >= limit {
				break
			}
			e.Len = min(e.Len, limit-e.Off)
			if err := putExtent(tx, ino, e); err != nil {
				return err
			}
		}
		jb := tx.Bucket(bJournal)
		if journal == nil {
			err = jb.Delete(inoKey(ino))
		} else {
			err = jb.Put(inoKey(ino), journal)
		}
		if err != nil {
			return err
		}
		a.Size, a.Mtime, a.Ctime = size, mtime, ctime
		return putAttr(tx, &a)
	})
	f.mu.Lock()
	f.committing = false
	f.signalLocked()
	if err != nil || f.gone {
		return err
	}
	if f.size == size && f.mtime.Equal(mtime) && f.ctime.Equal(ctime) {
		f.attrDirt = false
	}
	f.inflight.remove(j.off, j.end)
	// Bytes written again while the transaction ran stay staged.
	done := release.subtract(f.dirty)
	for _, r := range done {
		f.staged.remove(r.off, r.end)
	}
	if len(f.staged) == 0 && f.stage != nil {
		f.stage.Close()
		f.stage = nil
		os.Remove(v.stagingPath(f.ino))
	}
	for _, r := range done {
		f.punchLocked(r.off, r.end)
	}
	v.wb.unstage(f, -f.rechargeLocked())
	return nil
}

// stageBlock is the unit in which staging files take disk space, and so the unit of
// the staging budget: the budget counts the blocks that hold staged bytes, which is what
// the disk holds once every other block is punched out (punchLocked). 4 KiB is the
// block of ext4, xfs and btrfs as usually made, and the page of tmpfs on amd64.
const stageBlock = 4 << 10

// blocks returns the number of stageBlock blocks that hold a byte of the set.
func (r ranges) blocks() int64 {
	var n int64
	last := int64(-1) // the last block counted
	for _, s := range r {
		first, end := s.off/stageBlock, (s.end-1)/stageBlock
		if first == last {
			first++
		}
		if end >= first {
			n += end - first + 1
			last = end
		}
	}
	return n
}

// spannedBlocks returns the bytes of the stageBlock blocks that [off, end) touches: the
// most a write there can add to a file's staged blocks.
func spannedBlocks(off, end int64) int64 {
	if off >= end {
		return 0
	}
	return ((end-1)/stageBlock - off/stageBlock + 1) * stageBlock
}

// rechargeLocked sets f's share of the staging budget to the blocks its staged bytes
// occupy and returns the change, for the caller to apply to the budget.
func (f *file) rechargeLocked() int64 {
	c := f.staged.blocks() * stageBlock
	d := c - f.charged
	f.charged = c
	return d
}

// punchLocked gives back to the disk the blocks of f's staging file around [off, end)
// (widened to whole blocks) that hold no staged byte. A block is punched whole once none
// of its bytes is staged: punching only the unaligned range each upload released would
// zero the block's bytes but leave it allocated, so the block that two ranges share would
// stay until the whole file is uploaded. Bytes that are not staged are never read from
// the staging file (readLocked), so their content does not matter.
func (f *file) punchLocked(off, end int64) {
	if f.stage == nil {
		return
	}
	lo := off / stageBlock * stageBlock
	hi := (end + stageBlock - 1) / stageBlock * stageBlock
	punch := func(a, b int64) { // the whole blocks inside the free gap [a, b)
		a = (a + stageBlock - 1) / stageBlock * stageBlock
		b = b / stageBlock * stageBlock
		if a < b {
			// Best effort: a block left allocated costs disk, not correctness.
			unix.Fallocate(int(f.stage.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, a, b-a)
		}
	}
	pos := lo
	for _, s := range f.staged.intersect(lo, hi) {
		punch(pos, s.off)
		pos = s.end
	}
	punch(pos, hi)
}

// replay re-registers journalled staged data and queues its upload.
func (v *Volume) replay() error {
	type rec struct {
		ino uint64
		j   journalRec
	}
	var recs []rec
	err := v.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bJournal).ForEach(func(k, val []byte) error {
			j, err := decodeJournal(val)
			if err != nil {
				return fmt.Errorf("journal of inode %d: %w", keyIno(k), err)
			}
			recs = append(recs, rec{keyIno(k), j})
			return nil
		})
	})
	if err != nil {
		return err
	}
	// Staging files without a journal entry hold writes that were never flushed before a
	// crash: close(2) never returned for them, so they are dropped.
	journalled := map[string]bool{}
	for _, r := range recs {
		journalled[filepath.Base(v.stagingPath(r.ino))] = true
	}
	if des, err := os.ReadDir(v.cfg.StagingDir); err == nil {
		for _, de := range des {
			if !journalled[de.Name()] {
				os.Remove(filepath.Join(v.cfg.StagingDir, de.Name()))
			}
		}
	}
	for _, r := range recs {
		st, err := os.OpenFile(v.stagingPath(r.ino), os.O_RDWR, 0)
		var a Attr
		if err == nil {
			err = v.db.View(func(tx *bolt.Tx) (err error) {
				a, err = getAttr(tx, r.ino)
				return err
			})
		}
		if err != nil {
			v.log.Error("journal replay: staged data lost", "ino", r.ino, "err", err)
			if st != nil {
				st.Close()
			}
			if err := v.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bJournal).Delete(inoKey(r.ino)) }); err != nil {
				return err
			}
			continue
		}
		f := &file{ino: r.ino, changed: make(chan struct{}), loaded: true, size: a.Size, mtime: a.Mtime, ctime: a.Ctime, stage: st}
		for _, s := range r.j.Dirty.intersect(0, a.Size) {
			f.staged.add(s.off, s.end)
			f.dirty.add(s.off, s.end)
		}
		// Blocks a crash left allocated without staged bytes are given back now.
		if fi, err := st.Stat(); err == nil {
			f.punchLocked(0, fi.Size())
		}
		n := f.rechargeLocked()
		v.mu.Lock()
		v.files[r.ino] = f
		v.mu.Unlock()
		v.wb.stage(f, n) // from here on a worker may hold f
		v.log.Info("journal replay: resuming upload", "ino", r.ino, "bytes", n)
	}
	v.wb.mu.Lock()
	v.wb.cond.Broadcast()
	v.wb.mu.Unlock()
	return nil
}

// pathOf names inode ino for logs: a path from the root, found by scanning directory
// entries (slow, but used only on error paths).
func (v *Volume) pathOf(ino uint64) string {
	var parts []string
	v.commit.view(func(tx *bolt.Tx) error {
		for i := 0; i < 256 && ino != RootIno; i++ {
			found := false
			tx.Bucket(bDirents).ForEach(func(k, val []byte) error {
				if d, err := decodeDirent(val); err == nil && d.Ino == ino {
					parts = append(parts, string(k[8:]))
					ino = keyIno(k)
					found = true
					return errStop
				}
				return nil
			})
			if !found {
				parts = append(parts, fmt.Sprintf("<inode %d>", ino))
				return nil
			}
		}
		return nil
	})
	p := ""
	for i := len(parts) - 1; i >= 0; i-- {
		p += "/" + parts[i]
	}
	if p == "" {
		p = "/"
	}
	return p
}

var errStop = errors.New("stop")
