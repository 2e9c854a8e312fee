// SPDX-License-Identifier: Apache-2.0

package record

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultRekeyAfter is how many records a direction sends before it rekeys. AES-GCM with
// 96-bit nonces is safe far beyond this; rekeying this early bounds how much traffic any one
// key protects.
const DefaultRekeyAfter = 1 << 20

// Errors of the connection.
var (
	// ErrTruncated means the peer's stream ended without a close record: an attacker or a
	// failure cut the connection, and data may be missing.
	ErrTruncated = errors.New("netauth: connection ended without a close record (truncated)")
	// ErrRevoked is Read's error after a close record with the reason CloseRevoked: the server
	// ended the connection because the client's access was revoked.
	ErrRevoked = errors.New("netauth: access revoked: the server closed the connection")
	// ErrUnexpectedFrame means the peer sent a frame that is not valid at this point.
	ErrUnexpectedFrame = errors.New("netauth: unexpected frame from peer")
	// ErrFrameTooLarge means a frame's length exceeds the limit for its place; it is an
	// ErrUnexpectedFrame.
	ErrFrameTooLarge = fmt.Errorf("%w (too large)", ErrUnexpectedFrame)
	// ErrNoKeys means encrypted I/O was attempted before the handshake set keys.
	ErrNoKeys = errors.New("netauth: record layer used before the handshake completed")
)

// Read buffer sizes. A connection starts with a small buffer, enough for any handshake
// frame sent in plaintext (a ClientHello is at most 2110 bytes), so that a connection whose
// handshake is in progress costs little memory. The buffer grows to rbufSize (the largest
// frame plus room to read ahead) the first time a frame does not fit: after SetKeys, when
// records of any size are allowed; before, only to the size of a frame whose announced length
// the reader allowed.
const (
	rbufInitial = 4 << 10
	rbufSize    = 2 * (HeaderLen + MaxBody)
)

// Conn carries frames over a stream connection. Before the handshake completes it reads and
// writes plaintext frames (ReadFrame, QueueRaw); after SetKeys it is a net.Conn whose Read and
// Write move application data in encrypted records.
type Conn struct {
	conn net.Conn

	// activeCall is odd once Close has started; it counts Writes in flight in steps of 2
	// (the same interlock crypto/tls uses so Close does not block behind a stuck Write).
	activeCall atomic.Int32
	// readDeadline is the read deadline set through this Conn, in Unix nanoseconds (0: none);
	// Close waits for the peer's close record no longer.
	readDeadline atomic.Int64
	// sockClosed is made by Close and closed once the socket is (tests).
	sockClosed chan struct{}

	in struct {
		sync.Mutex
		half     *Half
		buf      []byte // raw bytes received, buf[pos:end] not yet processed
		pos, end int
		plain    []byte // decrypted application data not yet returned
		err      error  // sticky: io.EOF after a close record, or a fatal error
		// reasons: a close record's reason is read (ReadCloseReasons, a client's Conn).
		reasons bool
	}
	out struct {
		sync.Mutex
		half       *Half
		buf        []byte // frames queued but not yet written
		err        error  // sticky write error
		sent       uint64 // records since the last rekey
		rekeyAfter uint64
		closed     bool // no more records: a close record was sent (closeSent), or the state exported
		closeSent  bool
		closeWhy   []byte // the close record's content: empty, or a reason (CloseWithReason)
	}
}

// NewConn wraps c. The connection carries plaintext frames until SetKeys is called.
func NewConn(c net.Conn) *Conn {
	rc := &Conn{conn: c}
	rc.in.buf = make([]byte, rbufInitial)
	rc.out.rekeyAfter = DefaultRekeyAfter
	return rc
}

// ReadCloseReasons makes Read return the error of a reason in the peer's close record
// (ErrRevoked for CloseRevoked) rather than io.EOF. Only a server gives reasons
// (docs/PROTOCOL.md §7.2): a client's Conn calls it, and a server's reads any close record
// as end-of-stream, whatever a client put in it.
func (c *Conn) ReadCloseReasons() {
	c.in.Lock()
	c.in.reasons = true
	c.in.Unlock()
}

// SetKeys installs the two directions' keys; from now on frames are encrypted records.
func (c *Conn) SetKeys(send, recv *Half) {
	c.in.Lock()
	c.in.half = recv
	c.in.Unlock()
	c.out.Lock()
	c.out.half = send
	c.out.Unlock()
}

// SetSendKey replaces the sending direction's key with h, from the next record on, and wipes
// the old one: the handshake's records go under handshake keys, application data under
// application keys. Records already queued keep the key they were sealed with.
func (c *Conn) SetSendKey(h *Half) {
	c.out.Lock()
	if c.out.half != nil {
		c.out.half.Zero()
	}
	c.out.half, c.out.sent = h, 0
	c.out.Unlock()
}

// SetRecvKey replaces the receiving direction's key with h, from the next record on, and
// wipes the old one. Bytes already buffered but not yet processed are opened with h.
func (c *Conn) SetRecvKey(h *Half) {
	c.in.Lock()
	if c.in.half != nil {
		c.in.half.Zero()
	}
	c.in.half = h
	c.in.Unlock()
}

// SetRekeyAfter changes after how many records the sending direction rekeys (for tests and
// for exercising the rekey path).
func (c *Conn) SetRekeyAfter(n uint64) {
	c.out.Lock()
	c.out.rekeyAfter = n
	c.out.Unlock()
}

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.conn }

// fill makes sure at least n unprocessed bytes are buffered. Callers hold c.in.
func (c *Conn) fill(n int) error {
	if c.in.end-c.in.pos >= n {
		return nil
	}
	if c.in.pos+n > len(c.in.buf) {
		if n > len(c.in.buf) {
			c.growLocked(n)
		} else {
			copy(c.in.buf, c.in.buf[c.in.pos:c.in.end])
			c.in.end -= c.in.pos
			c.in.pos = 0
		}
	}
	for c.in.end-c.in.pos < n {
		m, err := c.conn.Read(c.in.buf[c.in.end:])
		c.in.end += m
		if c.in.end-c.in.pos >= n {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return ErrTruncated
			}
			return err
		}
	}
	return nil
}

// growLocked replaces the read buffer with one that holds at least n bytes, keeping the
// unprocessed bytes: with keys set, the full rbufSize; before, just n. The old buffer is
// wiped unless decrypted data still to be returned lives in it. Callers hold c.in.
func (c *Conn) growLocked(n int) {
	size := n
	if c.in.half != nil {
		size = max(n, rbufSize)
	}
	buf := make([]byte, size)
	c.in.end = copy(buf, c.in.buf[c.in.pos:c.in.end])
	c.in.pos = 0
	if len(c.in.plain) == 0 { // decrypted data not yet returned may alias the old buffer
		clear(c.in.buf)
	}
	c.in.buf = buf
}

// nextFrame returns the next frame's header and body, aliasing the read buffer; they stay
// valid until the next read. maxBody bounds the length, and allowed (if not empty) the type,
// both checked on the header before the body is read.
func (c *Conn) nextFrame(maxBody int, allowed ...byte) (hdr, body []byte, err error) {
	if err := c.fill(HeaderLen); err != nil {
		return nil, nil, err
	}
	hdr = c.in.buf[c.in.pos : c.in.pos+HeaderLen]
	if len(allowed) > 0 && !slices.Contains(allowed, hdr[0]) {
		return nil, nil, fmt.Errorf("%w: frame type 0x%02x", ErrUnexpectedFrame, hdr[0])
	}
	n := int(hdr[1])<<8 | int(hdr[2])
	if n > maxBody {
		return nil, nil, fmt.Errorf("%w: frame of %d bytes exceeds the limit of %d", ErrFrameTooLarge, n, maxBody)
	}
	if err := c.fill(HeaderLen + n); err != nil {
		return nil, nil, err
	}
	hdr = c.in.buf[c.in.pos : c.in.pos+HeaderLen]
	body = c.in.buf[c.in.pos+HeaderLen : c.in.pos+HeaderLen+n]
	c.in.pos += HeaderLen + n
	return hdr, body, nil
}

// PeekFrameStart waits for the next frame's header and returns it with up to n bytes of the
// body that arrived with it, without consuming anything and without waiting for more. A
// receiver can so look at a frame's first bytes before it applies the length limit (a server
// answers a ClientHello of a version it does not speak by its version byte, whatever its
// length), and still refuse an oversized header at once when they did not come with it. The
// result aliases the read buffer until the next read.
func (c *Conn) PeekFrameStart(n int) ([]byte, error) {
	c.in.Lock()
	defer c.in.Unlock()
	if c.in.err != nil {
		return nil, c.in.err
	}
	if err := c.fill(HeaderLen); err != nil {
		return nil, err
	}
	hdr := c.in.buf[c.in.pos : c.in.pos+HeaderLen]
	n = min(n, int(hdr[1])<<8|int(hdr[2]), c.in.end-c.in.pos-HeaderLen)
	return c.in.buf[c.in.pos : c.in.pos+HeaderLen+n], nil
}

// ReadFrame reads one plaintext frame (handshake phase). The limit on its body and, if any
// are given, the allowed frame types are checked on the header, before the body is read. The
// returned body is a copy owned by the caller.
func (c *Conn) ReadFrame(maxBody int, allowed ...byte) (typ byte, body []byte, err error) {
	c.in.Lock()
	defer c.in.Unlock()
	if c.in.err != nil {
		return 0, nil, c.in.err
	}
	hdr, b, err := c.nextFrame(maxBody, allowed...)
	if err != nil {
		return 0, nil, err
	}
	return hdr[0], append([]byte(nil), b...), nil
}

// ReadRecord reads and decrypts one record of any inner type (handshake phase: server and
// client authentication and the verdict). Rekey records are processed and skipped. A close
// record yields io.EOF. The returned content is a copy owned by the caller.
func (c *Conn) ReadRecord() (typ byte, content []byte, err error) {
	c.in.Lock()
	defer c.in.Unlock()
	typ, content, err = c.readRecordLocked(nil)
	if err != nil {
		return 0, nil, err
	}
	return typ, append([]byte(nil), content...), nil
}

// readRecordLocked reads the next record other than a rekey. Its content is decrypted into
// dst if dst can hold it and its inner type (then all of dst may be overwritten), and aliases
// dst; otherwise it is decrypted in place and aliases the read buffer.
func (c *Conn) readRecordLocked(dst []byte) (byte, []byte, error) {
	for {
		if c.in.err != nil {
			return 0, nil, c.in.err
		}
		if c.in.half == nil {
			return 0, nil, ErrNoKeys
		}
		hdr, body, err := c.nextFrame(MaxBody)
		if err != nil {
			c.setReadErr(err)
			return 0, nil, err
		}
		if hdr[0] != FrameRecord {
			err := fmt.Errorf("%w: frame type 0x%02x where an encrypted record was expected", ErrUnexpectedFrame, hdr[0])
			c.in.err = err
			return 0, nil, err
		}
		out := body
		if len(dst) >= len(body)-TagLen {
			out = dst
		}
		typ, content, err := c.in.half.OpenTo(out, hdr, body)
		if err != nil {
			c.in.err = err
			return 0, nil, err
		}
		switch typ {
		case TypeRekey:
			c.in.half.Rekey()
			continue
		case TypeClose:
			c.in.err = io.EOF
			if c.in.reasons && len(content) == 1 && content[0] == CloseRevoked {
				c.in.err = ErrRevoked
			}
			return 0, nil, c.in.err
		}
		return typ, content, nil
	}
}

// setReadErr records err as permanent unless it is a timeout, after which reading may resume.
func (c *Conn) setReadErr(err error) {
	if isTimeout(err) {
		return
	}
	c.in.err = err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// Read reads application data. It returns io.EOF after the peer's close record and
// ErrTruncated if the stream ends without one.
func (c *Conn) Read(p []byte) (int, error) {
	c.in.Lock()
	defer c.in.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	for len(c.in.plain) == 0 {
		// A record whose content fits in p is decrypted straight into it.
		typ, content, err := c.readRecordLocked(p)
		if err != nil {
			return 0, err
		}
		if typ != TypeData {
			err := fmt.Errorf("%w: record type 0x%02x after the handshake", ErrUnexpectedFrame, typ)
			c.in.err = err
			return 0, err
		}
		if len(content) > 0 && &content[0] == &p[0] {
			return len(content), nil
		}
		c.in.plain = content
	}
	n := copy(p, c.in.plain)
	c.in.plain = c.in.plain[n:]
	return n, nil
}

// Buffered reports how many decrypted bytes are ready to be read without blocking.
func (c *Conn) Buffered() int {
	c.in.Lock()
	defer c.in.Unlock()
	return len(c.in.plain)
}

// QueueRaw queues plaintext frame bytes to go out with the next flush.
func (c *Conn) QueueRaw(b []byte) {
	c.out.Lock()
	c.out.buf = append(c.out.buf, b...)
	c.out.Unlock()
}

// QueueRecord seals a record of inner type typ and queues it for the next flush.
func (c *Conn) QueueRecord(typ byte, content []byte) error {
	c.out.Lock()
	defer c.out.Unlock()
	return c.queueLocked(typ, content)
}

func (c *Conn) queueLocked(typ byte, content []byte) error {
	if c.out.err != nil {
		return c.out.err
	}
	if c.out.half == nil {
		return ErrNoKeys
	}
	var err error
	c.out.buf, err = c.out.half.Seal(c.out.buf, typ, content)
	if err != nil {
		c.out.err = err
		return err
	}
	c.out.sent++
	if c.out.sent >= c.out.rekeyAfter && typ != TypeClose {
		if c.out.buf, err = c.out.half.Seal(c.out.buf, TypeRekey, nil); err != nil {
			c.out.err = err
			return err
		}
		c.out.half.Rekey()
		c.out.sent = 0
	}
	return nil
}

// Flush writes all queued frames.
func (c *Conn) Flush() error {
	c.out.Lock()
	defer c.out.Unlock()
	_, err := c.flushLocked()
	return err
}

// flushLocked writes the queued bytes and reports how many were written. After a timeout the
// unwritten bytes stay queued and go out first on the next write, so a deadline never leaves
// the peer with half a record; any other error is permanent.
func (c *Conn) flushLocked() (int, error) {
	if c.out.err != nil {
		return 0, c.out.err
	}
	if len(c.out.buf) == 0 {
		return 0, nil
	}
	m, err := c.conn.Write(c.out.buf)
	if err != nil {
		if isTimeout(err) {
			c.out.buf = c.out.buf[:copy(c.out.buf, c.out.buf[m:])]
		} else {
			c.out.err = err
		}
		return m, err
	}
	c.out.buf = c.out.buf[:0]
	return m, nil
}

// writeChunk is how much application data goes into one record, and writeBatch how many
// records a Write seals before it sends them with one system call.
const (
	writeChunk = MaxPlaintext
	writeBatch = 4
)

// batchPool holds the buffers that Writes of more than one record seal their batches in.
var batchPool = sync.Pool{New: func() any { return new([]byte) }}

// Write encrypts p into records and sends them.
func (c *Conn) Write(p []byte) (int, error) {
	for {
		x := c.activeCall.Load()
		if x&1 != 0 {
			return 0, net.ErrClosed
		}
		if c.activeCall.CompareAndSwap(x, x+2) {
			break
		}
	}
	defer c.activeCall.Add(-2)

	c.out.Lock()
	defer c.out.Unlock()
	if c.out.closed {
		return 0, errors.New("netauth: write after CloseWrite")
	}
	if c.out.half == nil {
		return 0, ErrNoKeys
	}
	// Finish a record left half-sent by an earlier timeout.
	if _, err := c.flushLocked(); err != nil {
		return 0, err
	}
	if len(p) > writeChunk {
		// Records are sealed in batches in a buffer from batchPool, handed back once all is
		// sent: a connection does not keep a batch's worth of memory between Writes.
		bp := batchPool.Get().(*[]byte)
		own := c.out.buf
		c.out.buf = (*bp)[:0]
		defer func() {
			if len(c.out.buf) == 0 {
				*bp = c.out.buf
				batchPool.Put(bp)
				c.out.buf = own
			}
		}()
	}
	n := 0
	for len(p) > 0 {
		// Seal up to writeBatch records, then send them with one system call.
		var batch [writeBatch]struct {
			off, len int       // where the record starts in the queue; its content's length
			saved    halfState // the sending state before it
			sent     uint64
		}
		k := 0
		for ; k < writeBatch && len(p) > 0; k++ {
			chunk := min(len(p), writeChunk)
			b := &batch[k]
			b.off, b.len, b.saved, b.sent = len(c.out.buf), chunk, c.out.half.save(), c.out.sent
			if err := c.queueLocked(TypeData, p[:chunk]); err != nil {
				return n, err // the sending state is broken: nothing more goes out
			}
			p = p[chunk:]
		}
		m, err := c.flushLocked()
		if err != nil {
			if !isTimeout(err) {
				return n, err
			}
			// A record of which something went out is sent: its rest stays queued and goes
			// out first on the next write. The first of which nothing went out is taken
			// back with all after it, as if never sealed.
			for i := range k {
				if batch[i].off < m {
					n += batch[i].len
					continue
				}
				c.out.buf = c.out.buf[:batch[i].off-m]
				c.out.half.restore(batch[i].saved)
				c.out.sent = batch[i].sent
				break
			}
			return n, err
		}
		for i := range k {
			n += batch[i].len
		}
	}
	return n, nil
}

// closeRecordTimeout bounds the write of the close record, so that a peer that stopped
// reading cannot block the close.
const closeRecordTimeout = 5 * time.Second

// CloseWait bounds how long a closed connection goes on reading, after its close record, for
// the peer's close record (docs/PROTOCOL.md §7.2).
const CloseWait = 250 * time.Millisecond

var closeWait = CloseWait // tests change it

// sendClose sends the close record, bounded by closeRecordTimeout. It reports whether this
// side's close record has been sent (now, or before by CloseWrite).
func (c *Conn) sendClose() (bool, error) {
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.closed {
		return c.out.closeSent, nil
	}
	if c.out.half == nil || c.out.err != nil {
		return false, nil
	}
	c.out.closed = true
	_ = c.conn.SetWriteDeadline(time.Now().Add(closeRecordTimeout))
	if err := c.queueLocked(TypeClose, c.out.closeWhy); err != nil {
		return false, err
	}
	if _, err := c.flushLocked(); err != nil {
		return false, err
	}
	c.out.closeSent = true
	return true, nil
}

// CloseWithReason is Close, with reason in its close record: the peer's Read returns the
// reason's error (ErrRevoked for CloseRevoked) instead of io.EOF. A close record already sent,
// or a Write in progress, leaves the close record as it is.
func (c *Conn) CloseWithReason(reason byte) error {
	if c.out.TryLock() {
		if !c.out.closed {
			c.out.closeWhy = []byte{reason}
		}
		c.out.Unlock()
	}
	return c.Close()
}

// CloseWrite sends a close record and, for TCP and Unix connections, shuts down the writing
// side; the peer reads io.EOF and the connection can still be read from.
func (c *Conn) CloseWrite() error {
	if _, err := c.sendClose(); err != nil {
		return err
	}
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close ends the connection cleanly: it sends a close record, shuts down the writing side
// and, until the peer's close record arrives, reads and drops what the peer still sends,
// before it closes the socket. A socket closed with the peer's bytes unread, or before they
// arrive, makes the kernel answer with a reset, which can also discard what this side sent
// and the peer has not yet received. Close does not wait for the peer: if its close record
// has not already arrived, the socket is read and then closed in the background, for at most
// CloseWait (less if the read deadline comes first). Close returns at once, and the socket's
// close is not reported.
//
// If a Write is in progress, Close interrupts it and closes the socket at once, without a
// close record; so too if a Read is in progress (it returns net.ErrClosed), or after a
// failure or a handoff (Export, Detach). Keys are wiped.
func (c *Conn) Close() error {
	var x int32
	for {
		x = c.activeCall.Load()
		if x&1 != 0 {
			return net.ErrClosed
		}
		if c.activeCall.CompareAndSwap(x, x|1) {
			break
		}
	}
	c.sockClosed = make(chan struct{})
	var closeErr, err error
	sent := false
	if x == 0 {
		sent, closeErr = c.sendClose()
	} else {
		err = c.closeSocket(nil) // interrupts the Write in progress
	}
	if c.out.TryLock() {
		if c.out.half != nil {
			c.out.half.Zero()
		}
		c.out.err = net.ErrClosed
		c.out.Unlock()
	}
	var d *Conn // the receiving side, taken over to read up to the peer's close record
	if c.in.TryLock() {
		clear(c.in.plain)
		c.in.plain = nil
		if sent && c.in.half != nil && c.in.err == nil {
			d = &Conn{conn: c.conn}
			d.in.half, d.in.buf, d.in.pos, d.in.end = c.in.half, c.in.buf, c.in.pos, c.in.end
			c.in.buf, c.in.pos, c.in.end = nil, 0, 0
		} else if c.in.half != nil {
			c.in.half.Zero()
		}
		c.in.half = nil
		c.in.err = net.ErrClosed
		c.in.Unlock()
	}
	switch {
	case x != 0:
	case d == nil:
		err = c.closeSocket(nil)
	default:
		if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		if d.discard(true) { // the peer's close record is already here
			err = c.closeSocket(d)
			break
		}
		wait := time.Now().Add(closeWait)
		if rd := c.readDeadline.Load(); rd != 0 && rd < wait.UnixNano() {
			wait = time.Unix(0, rd)
		}
		_ = c.conn.SetReadDeadline(wait)
		go func() {
			d.discard(false)
			_ = c.closeSocket(d)
		}()
	}
	if err != nil {
		return err
	}
	if closeErr != nil && !errors.Is(closeErr, net.ErrClosed) {
		return fmt.Errorf("netauth: close record not sent (connection closed anyway): %w", closeErr)
	}
	return nil
}

// closeSocket wipes the receiving side d took over (if any) and closes the socket.
func (c *Conn) closeSocket(d *Conn) error {
	if d != nil {
		if d.in.half != nil {
			d.in.half.Zero()
		}
		clear(d.in.buf)
	}
	err := c.conn.Close()
	close(c.sockClosed)
	return err
}

// discard reads and drops the peer's frames until its close record, the end of the stream,
// a read error or the read deadline, and reports whether it got there. With buffered, it
// only looks at the frames already buffered and reports false where it would have to read.
// A record that does not open (the peer's verdict was never read, and its key never
// installed; or a tampered stream) ends the decryption, not the reading: the rest is
// skipped frame by frame, to the end of the stream. The caller owns d.
func (d *Conn) discard(buffered bool) bool {
	for {
		if buffered {
			avail := d.in.end - d.in.pos
			if avail < HeaderLen || avail < HeaderLen+(int(d.in.buf[d.in.pos+1])<<8|int(d.in.buf[d.in.pos+2])) {
				return false
			}
		}
		hdr, body, err := d.nextFrame(MaxBody)
		if err != nil {
			return true
		}
		if d.in.half == nil {
			continue
		}
		var typ byte
		if hdr[0] == FrameRecord {
			typ, _, err = d.in.half.Open(hdr, body)
		}
		if hdr[0] != FrameRecord || err != nil {
			d.in.half.Zero()
			d.in.half = nil
			continue
		}
		switch typ {
		case TypeRekey:
			d.in.half.Rekey()
		case TypeClose:
			return true
		}
	}
}

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the read and write deadlines of the underlying connection.
func (c *Conn) SetDeadline(t time.Time) error {
	if c.activeCall.Load()&1 != 0 {
		return net.ErrClosed
	}
	c.readDeadline.Store(unixNano(t))
	return c.conn.SetDeadline(t)
}

// SetReadDeadline sets the read deadline of the underlying connection.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.activeCall.Load()&1 != 0 {
		return net.ErrClosed
	}
	c.readDeadline.Store(unixNano(t))
	return c.conn.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline of the underlying connection. A write that times
// out leaves the connection unable to write (the peer may have a partial record).
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.activeCall.Load()&1 != 0 {
		return net.ErrClosed
	}
	return c.conn.SetWriteDeadline(t)
}

// unixNano is t in nanoseconds since the epoch, 0 for the zero time (no deadline).
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(t.UnixNano(), 1)
}
