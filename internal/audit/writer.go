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
	"os"
	"path/filepath"
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
}

// Writer appends records to an audit log file. It is safe for concurrent
// use. After a write fails the Writer stays failed: every later Write
// returns the same error until the log is opened again.
type Writer struct {
	path   string
	signer ssh.Signer
	sync   bool

	mu     sync.Mutex // guards the fields below
	f      *os.File   // nil once closed
	seq    uint64     // seq of the last record in the file, 0 if none
	prev   string     // hex SHA-256 of the last line
	size   int64      // size of the file as this Writer left it
	failed error      // why the Writer failed, or nil
}

// Open opens the audit log at path for appending, creating its directory
// (mode 0750) and the file (mode 0640) if they do not exist. Records are
// signed with hostKey. If the file already holds records, the chain
// continues from its last line.
//
// Open refuses a log whose last line is not a complete record signed by
// hostKey (cut short by a crash or a full disk, damaged, or written with
// another host key), with an error naming the line: the daemon fails closed
// rather than hide the damage behind a fresh start. Check the log with
// `netauth audit verify`, then move it aside to start a new one. It also
// refuses a file that another Writer holds open.
func Open(path string, hostKey ed25519.PrivateKey, opts Options) (*Writer, error) {
	if len(hostKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("audit: host key is %d bytes, want an Ed25519 private key of %d", len(hostKey), ed25519.PrivateKeySize)
	}
	signer, err := ssh.NewSignerFromKey(hostKey)
	if err != nil {
		return nil, fmt.Errorf("audit: host key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("audit: creating the log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("audit: opening the log: %w", err)
	}
	w, err := start(f, path, signer, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	if opts.Sync {
		// Make the file's directory entry durable too, in case Open just
		// created it.
		if err := syncDir(dir); err != nil {
			f.Close()
			return nil, err
		}
	}
	return w, nil
}

// start locks the open log file f and reads where its chain ends.
func start(f *os.File, path string, signer ssh.Signer, opts Options) (*Writer, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("audit: %s is not a regular file", path)
	}
	if err := lockFile(f); err != nil {
		return nil, fmt.Errorf("audit: %s is in use by another writer (%w)", path, err)
	}
	w := &Writer{path: path, signer: signer, sync: opts.Sync, f: f, prev: zeroPrev, size: fi.Size()}
	if fi.Size() == 0 {
		return w, nil
	}
	last, err := lastLine(f, fi.Size())
	if err == nil {
		pub := signer.PublicKey()
		var rec *Record
		if rec, err = parseLine(last, pub.Marshal(), keys.Fingerprint(pub)); err == nil {
			h := sha256.Sum256(last)
			w.seq, w.prev = rec.Seq, hex.EncodeToString(h[:])
			return w, nil
		}
	}
	n, cerr := countLines(f, fi.Size())
	if cerr != nil {
		return nil, fmt.Errorf("audit: %s: the last line is not a valid record (%v), and counting its lines failed: %w", path, err, cerr)
	}
	return nil, fmt.Errorf("audit: %s: line %d, the last, is not a valid record: %v; new records will not be appended to it: check it with 'netauth audit verify', then move it aside to start a new log", path, n, err)
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

// Write appends r to the log. It sets r.Seq, r.Prev and r.HostSig, converts
// r.Time to UTC and sets it to the current time if it is zero. The line is
// written with a single write(2) call (and, with Options.Sync, flushed to
// disk) before Write returns.
//
// A nil error means the record is logged. Any error means it is not, and
// the caller must act as if the decision could not be recorded (netauthd
// refuses the connection). An error about the record itself (an unknown
// mode or decision, a line longer than MaxLineSize) leaves the Writer
// usable; an error writing the file leaves it failed, and every later Write
// returns that error until the log is opened again. If a failed write left
// part of a line in the file, Write cuts it off again when it can, so that
// the log stays well-formed and can be reopened.
func (w *Writer) Write(r *Record) error {
	if r == nil {
		return errors.New("audit: nil record")
	}
	if err := r.check(); err != nil {
		return fmt.Errorf("audit: record not logged: %w", err)
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return fmt.Errorf("audit: writing %s: %w", w.path, fs.ErrClosed)
	}
	if w.failed != nil {
		return fmt.Errorf("%w (the log has failed and takes no records until it is opened again)", w.failed)
	}
	r.Seq, r.Prev, r.HostSig = w.seq+1, w.prev, ""
	line, err := w.sign(r)
	if err != nil {
		return err
	}
	if len(line)-1 > MaxLineSize {
		return fmt.Errorf("audit: record not logged: its line is %d bytes, more than %d", len(line)-1, MaxLineSize)
	}
	n, err := w.f.Write(line)
	if err == nil && w.sync {
		if err = w.f.Sync(); err != nil {
			n = len(line)
			err = fmt.Errorf("syncing: %w", unwrapPath(err))
		}
	} else if err != nil {
		err = unwrapPath(err)
	}
	if err != nil {
		w.failed = fmt.Errorf("audit: writing %s: %w", w.path, err)
		if n > 0 {
			if terr := w.f.Truncate(w.size); terr != nil {
				w.failed = fmt.Errorf("audit: writing %s: %w (and removing the partly written line failed: %v)", w.path, err, unwrapPath(terr))
			}
		}
		return w.failed
	}
	h := sha256.Sum256(line[:len(line)-1])
	w.seq, w.prev, w.size = r.Seq, hex.EncodeToString(h[:]), w.size+int64(len(line))
	return nil
}

// sign encodes r (whose HostSig is empty) as a line with its host signature
// and newline, and sets r.HostSig.
func (w *Writer) sign(r *Record) ([]byte, error) {
	canonical, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("audit: record not logged: encoding it: %w", err)
	}
	head, ok := bytes.CutSuffix(canonical, []byte(hostSigField+`"}`))
	if !ok {
		return nil, errors.New(`audit: record not logged: its encoding does not end with the empty "host_sig" field`)
	}
	blob, err := keys.Sign(w.signer, Namespace, canonical)
	if err != nil {
		return nil, fmt.Errorf("audit: record not logged: signing it with the host key: %w", err)
	}
	r.HostSig = base64.StdEncoding.EncodeToString(blob)
	line := make([]byte, 0, len(canonical)+len(r.HostSig)+1)
	line = append(line, head...)
	line = append(line, hostSigField...)
	line = append(line, r.HostSig...)
	line = append(line, "\"}\n"...)
	return line, nil
}

// Close closes the log file. Closing a closed Writer does nothing.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return fmt.Errorf("audit: closing %s: %w", w.path, unwrapPath(err))
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
