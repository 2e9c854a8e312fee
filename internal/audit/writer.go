// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
)

// Options configure a Writer.
type Options struct {
	// Sync makes each Write call fsync(2) after write(2), so that a record
	// Write reported as logged survives a crash of the machine or a power
	// failure, not only a crash of the daemon. It costs a disk flush per
	// record (from tens of microseconds on NVMe to milliseconds on other
	// disks), taken while holding the Writer's lock, which bounds how many
	// decisions per second can be logged. Without it (the default) a record
	// is in the kernel's page cache when Write returns: it survives the
	// daemon crashing or being killed, and the kernel writes it out within
	// seconds, but records from the last seconds before a machine crash can
	// be lost (they are then missing from the end of the log).
	Sync bool

	// Logger receives a message when the log becomes unwritable, when it
	// can be written again, and when Reopen switches to a new file; nil
	// discards them.
	Logger *slog.Logger

	// Refusals bounds how many refusals WriteRefusal logs one by one.
	Refusals RefusalLimits

	// CheckpointRecords and CheckpointInterval say how often a checkpoint
	// covers the records written: once CheckpointRecords records are not
	// yet covered (DefaultCheckpointRecords), or CheckpointInterval after
	// the first of them was written (DefaultCheckpointInterval), whichever
	// comes first. A checkpoint is signed in the background: records are
	// written meanwhile, without waiting for it.
	CheckpointRecords  int
	CheckpointInterval time.Duration

	// signEach makes the Writer sign every record and write no
	// checkpoints: the format before checkpoints, for tests and for
	// measuring what checkpoints save.
	signEach bool
}

// RetryInterval is how long a Writer whose last write failed waits before it
// tries the file again: Write calls in between fail at once, without
// touching the disk.
const RetryInterval = 500 * time.Millisecond

// Writer appends records to an audit log file. It is safe for concurrent
// use.
//
// After a write fails (a full disk, an I/O error) the Writer cuts off what
// it wrote of the line, reports the error, and keeps reporting it without
// touching the disk until RetryInterval has passed; the next Write after
// that tries again, and the log is written from then on if it succeeds. The
// chain goes on from the last record written.
type Writer struct {
	path       string
	signer     ssh.Signer
	hostFP     string // fingerprint of the host key
	sigLen     int    // length of a host signature, base64
	sync       bool
	log        *slog.Logger
	limits     RefusalLimits
	now        func() time.Time
	ckRecords  int
	ckInterval time.Duration
	signEach   bool
	bg         sync.WaitGroup // the goroutine signing a checkpoint

	mu   sync.Mutex // guards the fields below
	f    *os.File   // nil once closed
	seq  uint64     // seq of the last line in the file, 0 if none
	prev string     // hex SHA-256 of the last line
	size int64      // size of the file as this Writer left it

	// Checkpoints: the first seq the next one vouches for, the number of
	// records written since the last one, whether one is being signed, the
	// timer that starts one CheckpointInterval after the first record not
	// covered, and a number that changes whenever the file or where its
	// chain ends changes under the Writer (Reopen), so that a checkpoint
	// signed before is not written after.
	from      uint64
	uncovered int
	signing   bool
	ckTimer   *time.Timer
	gen       uint64
	// opening is the opening checkpoint line (with its newline) of a file
	// that already held lines, if it could not be written yet: it is
	// written before the next line. openHash is its hex SHA-256.
	opening  []byte
	openHash string

	// The state of a failed log: why the last write failed (nil while the
	// log is writable), when the failure began, when the file was last
	// tried, whether part of a line may be left at its end, and how many
	// writes failed since.
	failed      error
	failedSince time.Time
	triedAt     time.Time
	dirty       bool
	failures    int

	refusals refusalTable
}

// Open opens the audit log at path for appending, creating its directory
// (mode 0750) and the file (mode 0640) if they do not exist. Checkpoints are
// signed with hostKey. If the file already holds lines, the chain continues
// from its last line, after an opening checkpoint that seals them (if that
// cannot be written, a full disk, the Writer starts as after a failed write,
// and writes it before the next record).
//
// Open refuses a log whose last line is not a complete record or checkpoint
// (cut short by a crash or a full disk, or damaged), or whose last line
// carries a host signature that does not verify with hostKey (written with
// another host key), with an error naming the line: the daemon fails closed
// rather than hide the damage behind a fresh start. A last line that is a
// record not yet covered by a checkpoint (the Writer before stopped before it
// signed one) is accepted and logged: the opening checkpoint seals such
// records without vouching for them, and Verify reports them as not covered. Check the log with
// `netauth audit verify`, then move it aside to start a new one. It also
// refuses a file that another Writer holds open, a symbolic link at path, a
// file owned by another user than root or this process's, and a directory
// that group or others may write to (see openLog).
func Open(path string, hostKey ed25519.PrivateKey, opts Options) (*Writer, error) {
	if len(hostKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("audit: host key is %d bytes, want an Ed25519 private key of %d", len(hostKey), ed25519.PrivateKeySize)
	}
	signer, err := ssh.NewSignerFromKey(hostKey)
	if err != nil {
		return nil, fmt.Errorf("audit: host key: %w", err)
	}
	// Every host signature has the same length (Ed25519), which bounds the
	// length of a refusal's line before it is signed.
	sample, err := keys.Sign(signer, Namespace, nil)
	if err != nil {
		return nil, fmt.Errorf("audit: host key: %w", err)
	}
	w := &Writer{path: path, signer: signer, hostFP: keys.Fingerprint(signer.PublicKey()),
		sigLen: base64.StdEncoding.EncodedLen(len(sample)), sync: opts.Sync, log: opts.Logger,
		limits: opts.Refusals.withDefaults(), now: time.Now,
		ckRecords: opts.CheckpointRecords, ckInterval: opts.CheckpointInterval, signEach: opts.signEach}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.ckRecords <= 0 {
		w.ckRecords = DefaultCheckpointRecords
	}
	if w.ckInterval <= 0 {
		w.ckInterval = DefaultCheckpointInterval
	}
	f, end, err := openLog(path, signer, opts.Sync)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.startFileLocked(f, end, nil)
	return w, nil
}

// startFileLocked makes f, whose chain ends at end, the file the Writer
// writes to, and writes its opening checkpoint if it holds lines, or, if it
// is empty and follows a file rotated away whose last line is after, its
// continuing checkpoint. Callers hold w.mu.
func (w *Writer) startFileLocked(f *os.File, end chainEnd, after *Link) {
	w.f, w.seq, w.prev, w.size, w.dirty, w.triedAt = f, end.seq, end.prev, end.size, false, time.Time{}
	w.from, w.uncovered, w.opening, w.openHash = end.seq+1, 0, nil, ""
	w.gen++
	if end.uncovered {
		w.log.Warn("the audit log ends in records no checkpoint covers: netauthd stopped before it signed them; sealing them as found ('netauth audit verify' reports them as not covered)",
			"path", w.path, "last_seq", end.seq)
	}
	if w.signEach || end.seq == 0 && after == nil {
		return
	}
	ck, prev := &Checkpoint{Seq: end.seq, Head: end.prev, From: end.seq + 1, Event: EventOpen}, end.prev
	if end.seq == 0 {
		ck, prev = &Checkpoint{Seq: after.Seq, Head: after.Hash, From: after.Seq + 1, Event: EventContinue}, after.Hash
	}
	now := w.now()
	line, err := w.sealLine(ck, end.seq+1, prev, now)
	if err != nil {
		w.failLocked(err, false, now)
		return
	}
	if err := w.appendLocked(line, end.seq+1, now); err != nil {
		// Written before the next line, once the file can be written.
		h := sha256.Sum256(line[:len(line)-1])
		w.opening, w.openHash = line, hex.EncodeToString(h[:])
	}
}

// chainEnd is where the chain of a log file ends.
type chainEnd struct {
	seq       uint64 // seq of the last line, 0 if none
	prev      string // hex SHA-256 of the last line, zeroPrev if none
	size      int64  // size of the file
	uncovered bool   // the last line is a record no checkpoint covers
}

// openLog opens (creating it and its directory if needed) and locks the log
// file at path, and reads where its chain ends.
//
// netauthd runs as root: whoever may write to the log's directory could
// replace or remove the log, or plant a link there that makes root create or
// append to any file. The directory must therefore be owned by root (or this
// process's user) and not be writable by group or others; a symbolic link
// at the path is refused, not followed, and so is a file owned by another
// user.
func openLog(path string, signer ssh.Signer, sync bool) (*os.File, chainEnd, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, chainEnd{}, fmt.Errorf("audit: creating the log directory: %w", err)
	}
	if err := checkDir(dir); err != nil {
		return nil, chainEnd{}, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|openFlags, 0o640)
	if err != nil {
		if isSymlinkError(err) {
			return nil, chainEnd{}, fmt.Errorf("audit: %s is a symbolic link (or the path has too many); refusing it: give the real path of the log", path)
		}
		return nil, chainEnd{}, fmt.Errorf("audit: opening the log: %w", err)
	}
	end, err := start(f, path, signer)
	if err == nil && sync {
		// Make the file's directory entry durable too, in case it was just
		// created.
		err = syncDir(dir)
	}
	if err != nil {
		f.Close()
		return nil, chainEnd{}, err
	}
	return f, end, nil
}

// start locks the open log file f and reads where its chain ends.
func start(f *os.File, path string, signer ssh.Signer) (chainEnd, error) {
	fi, err := f.Stat()
	if err != nil {
		return chainEnd{}, fmt.Errorf("audit: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return chainEnd{}, fmt.Errorf("audit: %s is not a regular file", path)
	}
	if err := checkOwner(path, fi); err != nil {
		return chainEnd{}, err
	}
	if err := lockFile(f); err != nil {
		return chainEnd{}, fmt.Errorf("audit: %s is in use by another writer (%w)", path, err)
	}
	return readEnd(f, fi.Size(), path, signer)
}

// readEnd reads where the chain of the log file f, size bytes long, ends: its
// last line must be a complete record or checkpoint, and a host signature it
// carries must be signer's.
func readEnd(f *os.File, size int64, path string, signer ssh.Signer) (chainEnd, error) {
	if size == 0 {
		return chainEnd{prev: zeroPrev}, nil
	}
	last, err := lastLine(f, size)
	if err == nil {
		pub := signer.PublicKey()
		var p *parsed
		if p, err = parseLine(last, pub.Marshal(), keys.Fingerprint(pub)); err == nil && p.kind == lineUnsigned {
			// Nothing vouches for it: it must at least be a record the
			// Writer could have written.
			err = p.rec.check()
			if err == nil && (len(p.rec.Prev) != len(zeroPrev) || !isHex(p.rec.Prev)) {
				err = errors.New("its prev is not a hex SHA-256")
			}
		}
		if err == nil {
			h := sha256.Sum256(last)
			return chainEnd{seq: p.rec.Seq, prev: hex.EncodeToString(h[:]), size: size, uncovered: p.kind == lineUnsigned}, nil
		}
	}
	n, cerr := countLines(f, size)
	if cerr != nil {
		return chainEnd{}, fmt.Errorf("audit: %s: the last line is not a valid record (%v), and counting its lines failed: %w", path, err, cerr)
	}
	return chainEnd{}, fmt.Errorf("audit: %s: line %d, the last, is not a valid record: %v; new records will not be appended to it: check it with 'netauth audit verify', then move it aside to start a new log", path, n, err)
}

// checkDir checks that the log's directory is one only its owner, root or
// this process's user, may write to.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("audit: the log directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("audit: the log directory %s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("audit: the log directory %s is writable by group or others (mode %#o): whoever can write to it could replace or remove the log; refusing it (chmod go-w %s, or give the log a directory of its own)", dir, perm, dir)
	}
	return checkOwner("the log directory "+dir, fi)
}

// lastLine returns the last line of the file f of the given size, which
// must end in a newline, without that newline.
func lastLine(f *os.File, size int64) ([]byte, error) {
	var end [1]byte
	if _, err := f.ReadAt(end[:], size-1); err != nil {
		return nil, fmt.Errorf("reading the end of the file: %w", err)
	}
	if end[0] != '\n' {
		return nil, errors.New("incomplete line (no newline at the end): a write was interrupted")
	}
	body := size - 1 // bytes before the final newline
	for chunk := int64(64 << 10); ; chunk *= 4 {
		n := min(body, chunk, MaxLineSize+1)
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, body-n); err != nil {
			return nil, fmt.Errorf("reading the end of the file: %w", err)
		}
		if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
			return buf[i+1:], nil
		}
		if n > MaxLineSize {
			return nil, fmt.Errorf("line is longer than %d bytes", MaxLineSize)
		}
		if n == body {
			return buf, nil
		}
	}
}

// countLines returns the number of lines in the first size bytes of f,
// counting an incomplete last line.
func countLines(f *os.File, size int64) (int, error) {
	r := io.NewSectionReader(f, 0, size)
	buf := make([]byte, 64<<10)
	n, last := 0, byte('\n')
	for {
		k, err := r.Read(buf)
		n += bytes.Count(buf[:k], []byte("\n"))
		if k > 0 {
			last = buf[k-1]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	if last != '\n' {
		n++
	}
	return n, nil
}

// Write appends r to the log. It sets r.Seq and r.Prev, converts r.Time to
// UTC and sets it to the current time if it is zero. The line is written
// with a single write(2) call (and, with Options.Sync, flushed to disk)
// before Write returns; a checkpoint covers it later (see Options), without
// Write waiting for it.
//
// A nil error means the record is logged. Any error means it is not, and
// the caller must act as if the decision could not be recorded (netauthd
// refuses the connection). An error about the record itself (an unknown
// mode or decision, a line longer than MaxLineSize) leaves the Writer
// usable. An error writing the file makes every Write fail at once until
// RetryInterval has passed; then the next Write tries the file again. If a
// failed write left part of a line in the file, Write cuts it off again, so
// that the log stays well-formed and its chain intact.
func (w *Writer) Write(r *Record) error {
	if r == nil {
		return errors.New("audit: nil record")
	}
	if err := r.check(); err != nil {
		return fmt.Errorf("audit: record not logged: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if r.Time.IsZero() {
		r.Time = now
	}
	r.Time = r.Time.UTC()
	w.rollLocked(now, false)
	return w.writeLocked(r, MaxLineSize, now)
}

// writeLocked appends r to the file, if its line is at most limit bytes.
// Callers hold w.mu.
func (w *Writer) writeLocked(r *Record, limit int, now time.Time) error {
	if w.f == nil {
		return fmt.Errorf("audit: writing %s: %w", w.path, fs.ErrClosed)
	}
	if w.failed != nil {
		if err := w.retryLocked(now); err != nil {
			return err
		}
	}
	seq, prev := w.headLocked()
	r.Seq, r.Prev, r.HostSig = seq+1, prev, ""
	line, err := w.encode(r)
	if err != nil {
		return err
	}
	if len(line)-1 > limit {
		return fmt.Errorf("audit: record not logged: its line is %d bytes, more than %d", len(line)-1, limit)
	}
	if err := w.appendLocked(line, r.Seq, now); err != nil {
		return err
	}
	w.noteRecordLocked()
	return nil
}

// headLocked returns the seq and hash of the last line of the file, as it
// will be once the opening checkpoint is written. Callers hold w.mu.
func (w *Writer) headLocked() (uint64, string) {
	if w.opening != nil {
		return w.seq + 1, w.openHash
	}
	return w.seq, w.prev
}

// appendLocked appends line (with its newline), the line with seq seq, to the
// file with one write(2) call, after the opening checkpoint if that is still
// to be written. If the write fails, it cuts off what it wrote and fails the
// log. Callers hold w.mu and have checked that the log may be written.
func (w *Writer) appendLocked(line []byte, seq uint64, now time.Time) error {
	buf := line
	if w.opening != nil {
		buf = append(append(make([]byte, 0, len(w.opening)+len(line)), w.opening...), line...)
	}
	n, err := w.f.Write(buf)
	if err == nil && w.sync {
		if err = w.f.Sync(); err != nil {
			n = len(buf)
			err = fmt.Errorf("syncing: %w", unwrapPath(err))
		}
	} else if err != nil {
		err = unwrapPath(err)
	}
	// If anything was written, the file's offset is now where it ends
	// (O_APPEND): the line began n bytes before. The file may have been cut
	// or written to by something else since the last write: the size the
	// Writer remembers is then not where the line began, and cutting a
	// partial line off at that size would extend the file instead.
	start := w.size
	if err == nil || n > 0 {
		if off, serr := w.f.Seek(0, io.SeekCurrent); serr == nil && off >= int64(n) {
			start = off - int64(n)
		}
	}
	if start != w.size {
		w.log.Warn("audit log changed by something else since the last record (cut or copied and truncated in place?): its chain is broken there",
			"path", w.path, "size_written", w.size, "size", start)
		w.size = start
	}
	if err != nil {
		w.failLocked(fmt.Errorf("audit: writing %s: %w", w.path, err), n > 0, now)
		return w.failed
	}
	h := sha256.Sum256(line[:len(line)-1])
	w.seq, w.prev, w.size, w.opening, w.openHash = seq, hex.EncodeToString(h[:]), start+int64(len(buf)), nil, ""
	if w.failed != nil {
		w.log.Info("audit log writable again", "path", w.path,
			"failed_for", now.Sub(w.failedSince).Round(time.Millisecond), "failed_writes", w.failures)
		w.failed, w.failures = nil, 0
	}
	return nil
}

// failLocked records that a write failed with err; partial means that part
// of the line may have reached the file, which is then cut off.
func (w *Writer) failLocked(err error, partial bool, now time.Time) {
	if w.failed == nil {
		w.failedSince = now
		w.log.Error("audit log unwritable: records are refused until it can be written again; retrying", "path", w.path, "err", err)
	}
	w.failed, w.triedAt = err, now
	w.failures++
	if partial {
		if terr := w.f.Truncate(w.size); terr != nil {
			w.dirty = true
			w.failed = fmt.Errorf("%w (and removing the partly written line failed: %v)", err, unwrapPath(terr))
		}
	}
}

// Failing returns the error a Write now would return at once, without trying the file: the
// log failed and RetryInterval has not passed since it was last tried (Reopen ends the wait).
// It is nil when the next Write would write, or try, the file. A caller that must prepare
// something costly before it writes (netauthd starts the connection's worker) asks first.
func (w *Writer) Failing() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed == nil || !w.waitingLocked(w.now()) {
		return nil
	}
	return w.failingErrLocked()
}

// waitingLocked reports whether a failed log is still waiting, at now, to be tried again.
func (w *Writer) waitingLocked(now time.Time) bool {
	return now.Sub(w.triedAt) < RetryInterval && !now.Before(w.triedAt)
}

// failingErrLocked is the error of a Write refused while a failed log waits.
func (w *Writer) failingErrLocked() error {
	return fmt.Errorf("%w (the log cannot be written; it is tried again every %v)", w.failed, RetryInterval)
}

// retryLocked decides whether a failed log is tried again now: it returns
// the failure if RetryInterval has not passed since the last try, and
// otherwise makes sure that the file ends where the last record written
// ends, cutting off what a failed write left. A nil error means the write
// may go ahead.
func (w *Writer) retryLocked(now time.Time) error {
	if w.waitingLocked(now) {
		w.failures++
		return w.failingErrLocked()
	}
	w.triedAt = now
	if err := w.cutLocked(); err != nil {
		w.failures++
		w.failed = err
		return err
	}
	return nil
}

// cutLocked makes the file end where the last record this Writer wrote ends,
// removing the rest of a line a failed write left.
func (w *Writer) cutLocked() error {
	fi, err := w.f.Stat()
	if err != nil {
		return fmt.Errorf("audit: %s: %w", w.path, unwrapPath(err))
	}
	switch size := fi.Size(); {
	case size > w.size:
		if err := w.f.Truncate(w.size); err != nil {
			return fmt.Errorf("audit: writing %s: removing a partly written line: %w", w.path, unwrapPath(err))
		}
	case size < w.size:
		return fmt.Errorf("audit: %s is %d bytes, shorter than the %d written to it: something else cut it; reopen the log (netauthd: SIGHUP) to go on from what it holds", w.path, size, w.size)
	}
	w.dirty = false
	return nil
}

// Reopen opens the log's path again, so that a log rotated by renaming the
// file goes on in a new file at that path: created if it does not exist, and
// then continuing the chain of the file rotated away (its first line, seq 1,
// is a continuing checkpoint naming that file's last line), or continuing
// the chain of the records it holds, as Open does. If the path still names the file already open, Reopen
// re-reads where its chain ends. Either way, a Writer whose last write
// failed tries the file again at the next Write. If the path cannot be
// opened, or its file is not a log Open would accept, Reopen returns the
// error and the Writer goes on as before, with the file it had open.
func (w *Writer) Reopen() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return fmt.Errorf("audit: reopening %s: %w", w.path, fs.ErrClosed)
	}
	cur, err := w.f.Stat()
	if err != nil {
		return fmt.Errorf("audit: reopening %s: %w", w.path, unwrapPath(err))
	}
	now := w.now()
	if fi, err := os.Stat(w.path); err == nil && os.SameFile(cur, fi) {
		size := cur.Size()
		if size > w.size && (w.dirty || w.failed != nil) {
			if err := w.f.Truncate(w.size); err != nil {
				return fmt.Errorf("audit: reopening %s: removing a partly written line: %w", w.path, unwrapPath(err))
			}
			size = w.size
		}
		if size == w.size && w.failed == nil && w.uncovered > 0 {
			// Cover what this Writer wrote while the file is as it left it.
			if err := w.checkpointLocked("", now); err != nil {
				w.log.Warn("writing a checkpoint of the audit log", "path", w.path, "err", err)
			}
			size = w.size
		}
		end, err := readEnd(w.f, size, w.path, w.signer)
		if err != nil {
			return err
		}
		if end.seq != w.seq || end.prev != w.prev {
			// Something else changed the file: what this Writer wrote and
			// did not cover may be gone, and lines it did not write may be
			// there.
			w.from, w.uncovered = end.seq+1, 0
		}
		w.seq, w.prev, w.size, w.dirty, w.triedAt = end.seq, end.prev, end.size, false, time.Time{}
		w.gen++
		return nil
	}
	f, end, err := openLog(w.path, w.signer, w.sync)
	if err != nil {
		return fmt.Errorf("%w (still writing to the file open before)", err)
	}
	// The file rotated away ends with a closing checkpoint, and a new file
	// continues its chain from the last line written to it.
	if err := w.closeFileLocked(now); err != nil {
		w.log.Warn("closing the audit log file before", "path", w.path, "err", err)
	}
	var after *Link
	if w.seq > 0 {
		after = &Link{Seq: w.seq, Hash: w.prev}
	}
	w.startFileLocked(f, end, after)
	if end.seq == 0 && after != nil {
		w.log.Info("audit log reopened: the new file continues the chain", "path", w.path, "previous_last_seq", after.Seq)
	} else {
		w.log.Info("audit log reopened", "path", w.path, "next_seq", end.seq+1)
	}
	return nil
}

// encode encodes r (whose HostSig is empty) as a line with its newline. With
// signEach, the line carries a host signature over its canonical bytes, and
// r.HostSig is set, as in the format before checkpoints.
func (w *Writer) encode(r *Record) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("audit: record not logged: encoding it: %w", err)
	}
	if !w.signEach {
		return append(b, '\n'), nil
	}
	head, ok := bytes.CutSuffix(b, []byte("}"))
	if !ok {
		return nil, errors.New("audit: record not logged: its encoding is not a JSON object")
	}
	canonical := append(bytes.Clone(head), `,"host_sig":""}`...)
	blob, err := keys.Sign(w.signer, Namespace, canonical)
	if err != nil {
		return nil, fmt.Errorf("audit: record not logged: signing it with the host key: %w", err)
	}
	r.HostSig = base64.StdEncoding.EncodeToString(blob)
	line := make([]byte, 0, len(canonical)+len(r.HostSig)+1)
	line = append(line, head...)
	line = append(line, ","+hostSigField...)
	line = append(line, r.HostSig...)
	line = append(line, "\"}\n"...)
	return line, nil
}

// signCheckpoint sets ck's Kind, Time and HostKeyFP, and returns its JSON
// and the host key's signature over it. It uses no state under w.mu.
func (w *Writer) signCheckpoint(ck *Checkpoint, now time.Time) (body, sig []byte, err error) {
	ck.Kind, ck.Time, ck.HostKeyFP = CheckpointKind, now.UTC(), w.hostFP
	if body, err = json.Marshal(ck); err != nil {
		return nil, nil, fmt.Errorf("audit: encoding a checkpoint: %w", err)
	}
	if sig, err = keys.Sign(w.signer, Namespace, body); err != nil {
		return nil, nil, fmt.Errorf("audit: signing a checkpoint with the host key: %w", err)
	}
	return body, sig, nil
}

// checkpointLine returns the line, with its newline, of the checkpoint ck
// whose JSON is body and signature sig, at seq seq after the line whose hash
// is prev.
func checkpointLine(ck *Checkpoint, body, sig []byte, seq uint64, prev string) []byte {
	line := make([]byte, 0, 128+len(body)+len(prev)+base64.StdEncoding.EncodedLen(len(sig)))
	line = append(line, `{"seq":`...)
	line = strconv.AppendUint(line, seq, 10)
	line = append(line, `,"time":"`...)
	line = ck.Time.AppendFormat(line, time.RFC3339Nano)
	line = append(line, `","checkpoint":`...)
	line = append(line, body...)
	line = append(line, `,"prev":"`...)
	line = append(line, prev...)
	line = append(line, `",`+hostSigField...)
	line = base64.StdEncoding.AppendEncode(line, sig)
	line = append(line, "\"}\n"...)
	return line
}

// sealLine signs ck and returns its line at seq seq after the line whose hash
// is prev.
func (w *Writer) sealLine(ck *Checkpoint, seq uint64, prev string, now time.Time) ([]byte, error) {
	body, sig, err := w.signCheckpoint(ck, now)
	if err != nil {
		return nil, err
	}
	return checkpointLine(ck, body, sig, seq, prev), nil
}

// noteRecordLocked counts a record written, and starts a checkpoint when one
// is due, or the timer that will. Callers hold w.mu.
func (w *Writer) noteRecordLocked() {
	if w.signEach {
		return
	}
	w.uncovered++
	if w.uncovered >= w.ckRecords {
		w.startCheckpointLocked()
	} else if w.ckTimer == nil && !w.signing {
		w.ckTimer = time.AfterFunc(w.ckInterval, w.checkpointDue)
	}
}

// checkpointDue runs CheckpointInterval after a record was written that no
// checkpoint covers.
func (w *Writer) checkpointDue() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ckTimer = nil
	if w.f != nil && w.uncovered > 0 {
		w.startCheckpointLocked()
	}
}

// startCheckpointLocked starts signing a checkpoint in the background, unless
// one is being signed. Callers hold w.mu.
func (w *Writer) startCheckpointLocked() {
	if w.signing || w.f == nil {
		return
	}
	if w.ckTimer != nil {
		w.ckTimer.Stop()
		w.ckTimer = nil
	}
	w.signing = true
	w.bg.Add(1)
	go w.checkpoint()
}

// checkpoint signs a checkpoint of the chain head without holding w.mu, and
// appends it: records written meanwhile follow the head, and wait for the
// next checkpoint. It writes nothing while the log has failed; the first
// record written after that starts the timer again.
func (w *Writer) checkpoint() {
	defer w.bg.Done()
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() {
		w.signing = false
		if w.f != nil && w.failed == nil && w.uncovered > 0 && w.ckTimer == nil {
			w.ckTimer = time.AfterFunc(w.ckInterval, w.checkpointDue)
		}
	}()
	for range 8 {
		if w.f == nil || w.failed != nil || w.uncovered == 0 {
			return
		}
		head, hash := w.headLocked()
		ck := &Checkpoint{Seq: head, Head: hash, From: w.from}
		gen, n, now := w.gen, w.uncovered, w.now()
		w.mu.Unlock()
		body, sig, err := w.signCheckpoint(ck, now)
		w.mu.Lock()
		if err != nil {
			w.log.Error("audit log checkpoint", "path", w.path, "err", err)
			return
		}
		if w.f == nil || w.failed != nil {
			return
		}
		seq, prev := w.headLocked()
		if w.gen != gen || seq+1-head >= MaxCheckpointLag {
			continue
		}
		// The line's own seq and prev are not signed.
		if err := w.appendLocked(checkpointLine(ck, body, sig, seq+1, prev), seq+1, now); err != nil {
			return
		}
		w.from, w.uncovered = head+1, w.uncovered-n
		if w.uncovered < w.ckRecords {
			return
		}
	}
}

// checkpointLocked signs and appends a checkpoint whose head is the line
// before it, with event (EventClose or ""), holding w.mu as it signs: for
// Close and Reopen. It tries the file even if the log has failed, at once.
// Callers hold w.mu.
func (w *Writer) checkpointLocked(event string, now time.Time) error {
	head, hash := w.headLocked()
	line, err := w.sealLine(&Checkpoint{Seq: head, Head: hash, From: w.from, Event: event}, head+1, hash, now)
	if err != nil {
		return err
	}
	if w.failed != nil {
		w.triedAt = time.Time{}
		if err := w.retryLocked(now); err != nil {
			return err
		}
	}
	if err := w.appendLocked(line, head+1, now); err != nil {
		return err
	}
	w.from, w.uncovered = head+1, 0
	if w.ckTimer != nil {
		w.ckTimer.Stop()
		w.ckTimer = nil
	}
	return nil
}

// closeFileLocked ends the file with a closing checkpoint, if it holds lines,
// and closes it. Callers hold w.mu.
func (w *Writer) closeFileLocked(now time.Time) error {
	var errs []error
	if seq, _ := w.headLocked(); seq > 0 && !w.signEach {
		if err := w.checkpointLocked(EventClose, now); err != nil {
			errs = append(errs, fmt.Errorf("writing the closing checkpoint: %w", err))
		}
	}
	if w.ckTimer != nil {
		w.ckTimer.Stop()
		w.ckTimer = nil
	}
	if err := w.f.Close(); err != nil {
		errs = append(errs, unwrapPath(err))
	}
	w.f = nil
	return errors.Join(errs...)
}

// Close writes the summaries of refusals counted so far and a closing
// checkpoint, which covers every record written, and closes the log file.
// Closing a closed Writer does nothing.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.f == nil {
		w.mu.Unlock()
		return nil
	}
	now := w.now()
	w.rollLocked(now, true)
	if t := w.refusals.timer; t != nil {
		t.Stop()
		w.refusals.timer = nil
	}
	err := w.closeFileLocked(now)
	w.mu.Unlock()
	w.bg.Wait()
	if err != nil {
		return fmt.Errorf("audit: closing %s: %w", w.path, err)
	}
	return nil
}

// unwrapPath returns the error inside a *fs.PathError, whose message would
// repeat the file name, or err itself.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// syncDir flushes the directory dir to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit: syncing the log directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("audit: syncing the log directory %s: %w", dir, unwrapPath(err))
	}
	return nil
}
