// SPDX-License-Identifier: Apache-2.0

// Package logging builds netauthd's logger: slog text for a person at a terminal or in a file,
// text with sd-daemon(3) priority prefixes and no timestamps when stderr is the systemd
// journal (journald stamps each line itself), or slog JSON.
package logging

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Formats accepted by New.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// New returns a logger writing to w at level and above, in format ("text" or "json"). With
// "text", when w is the systemd journal's stream (Journal), lines carry a "<N>" syslog priority
// prefix in place of the time and level.
func New(w io.Writer, format string, level slog.Leveler) (*slog.Logger, error) {
	h, err := NewHandler(w, format, level)
	if err != nil {
		return nil, err
	}
	return slog.New(h), nil
}

// NewHandler is New's handler.
func NewHandler(w io.Writer, format string, level slog.Leveler) (slog.Handler, error) {
	switch format {
	case FormatJSON:
		return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}), nil
	case FormatText, "":
		if Journal(w) {
			return slog.NewTextHandler(&journalWriter{w: w}, &slog.HandlerOptions{Level: level, ReplaceAttr: DropTime}), nil
		}
		return slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// Journal reports whether w is the stream systemd connected to the journal: a file whose
// device and inode are those named by $JOURNAL_STREAM ("DEV:INODE", sd-daemon(3)). A
// JOURNAL_STREAM inherited by a process whose stderr went elsewhere does not match.
func Journal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	dev, ino, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	wantDev, err1 := strconv.ParseUint(dev, 10, 64)
	wantIno, err2 := strconv.ParseUint(ino, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == wantDev && uint64(st.Ino) == wantIno
}

// DropTime, as a slog.HandlerOptions ReplaceAttr, leaves out each record's time, for a
// reader that stamps each record itself: the journal, or netauthd reading a worker's records.
func DropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// journalWriter turns each line of a TextHandler without times, "level=L msg=…", into
// "<N>msg=…" with N the syslog priority of L. The handler writes each record in one Write.
type journalWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (j *journalWriter) Write(p []byte) (int, error) {
	line := p
	prio := 6
	if rest, ok := bytes.CutPrefix(line, []byte("level=")); ok {
		word, after, _ := bytes.Cut(rest, []byte(" "))
		var l slog.Level
		if l.UnmarshalText(word) == nil {
			prio = Priority(l)
			line = after
		}
	}
	buf := make([]byte, 0, len(line)+3)
	buf = append(buf, '<', byte('0'+prio), '>')
	buf = append(buf, line...)
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.w.Write(buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Priority is the syslog priority of a level: 3 (err) from ERROR up, 4 (warning) from WARN,
// 6 (info) from INFO, 7 (debug) below.
func Priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}
