// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"ubns.dev/netauth/internal/trace"
)

// tracer is the monitor's side of Options.Trace: the trace file, written from the monitor's
// own records and from the lines the acceptor and the workers write to a pipe of its own.
// Those processes are not trusted with the file: the monitor copies only lines that parse as
// trace lines, in its own formatting, at most trace.MaxFileSize bytes in all.
type tracer struct {
	w      *trace.Writer // to the file
	file   *os.File
	pr, pw *os.File // the pipe: pw goes to the acceptor and the workers
	copied chan struct{}
	once   sync.Once
}

// openTracer opens (appending to) the trace file at path and starts copying lines to it.
func openTracer(path string) (*tracer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("netauthd: trace file: %w", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("netauthd: trace pipe: %w", err)
	}
	t := &tracer{file: f, pr: pr, pw: pw, copied: make(chan struct{}),
		w: trace.NewWriter(&cappedWriter{w: f, left: trace.MaxFileSize})}
	go t.copyLines()
	return t, nil
}

// copyLines copies the valid trace lines other processes write to the pipe.
func (t *tracer) copyLines() {
	defer close(t.copied)
	br := bufio.NewReaderSize(t.pr, trace.MaxLineLen+1)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Not a trace line: skip to the end of it.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				return
			}
			continue
		}
		if err != nil {
			return
		}
		if l, err := trace.ParseLine(string(line[:len(line)-1])); err == nil {
			t.w.Line(l.Format())
		}
	}
}

// record returns a new record when tracing, nil otherwise.
func (t *tracer) record() *trace.Record {
	if t == nil {
		return nil
	}
	return &trace.Record{}
}

// write queues the monitor's record rec.
func (t *tracer) write(rec *trace.Record) {
	if t != nil {
		rec.Write(t.w, trace.Monitor)
	}
}

// closeWait bounds how long close waits for the lines still in the pipe (the acceptor and the
// workers have exited by then, so the pipe ends once its last lines are read).
const closeWait = time.Second

// close copies what is left in the pipe (waiting at most closeWait for its end), writes out
// what is queued, and logs how many lines the trace lost (its queue full, or the file at its
// size limit), so that a report of an incomplete trace says so.
func (t *tracer) close(log *slog.Logger) {
	if t == nil {
		return
	}
	t.once.Do(func() {
		t.pw.Close()
		select {
		case <-t.copied:
		case <-time.After(closeWait):
		}
		t.pr.Close()
		<-t.copied
		t.w.Close()
		t.file.Close()
		if n := t.w.Dropped(); n > 0 {
			log.Warn("trace incomplete: lines dropped (queue full or file at its size limit)", "path", t.file.Name(), "dropped", n)
		}
	})
}

// cappedWriter writes to w until left bytes are written, then nothing.
type cappedWriter struct {
	w    io.Writer
	left int64
}

var errTraceFull = errors.New("trace file full")

func (c *cappedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		c.left = 0
		return 0, errTraceFull
	}
	c.left -= int64(len(p))
	return c.w.Write(p)
}
