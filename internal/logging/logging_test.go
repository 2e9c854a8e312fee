// SPDX-License-Identifier: Apache-2.0

package logging

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// journalFile returns a file and the JOURNAL_STREAM value ("DEV:INODE") that names it.
func journalFile(t *testing.T, name string) (*os.File, string) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return f, fmt.Sprintf("%d:%d", uint64(st.Dev), uint64(st.Ino))
}

func logEachLevel(t *testing.T, log *slog.Logger) {
	t.Helper()
	log.Debug("a debug line", "k", 1)
	log.Info("an info line", "k", 2)
	log.Warn("a warning", "k", 3)
	log.Error("an error", "k", "x y")
	log.Log(context.Background(), slog.LevelError+4, "above error")
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// TestJournal: with JOURNAL_STREAM naming stderr's device and inode, each line starts with its
// syslog priority, "<N>", and carries neither time (the journal stamps it) nor level.
func TestJournal(t *testing.T) {
	f, stream := journalFile(t, "journal")
	t.Setenv("JOURNAL_STREAM", stream)
	if !Journal(f) {
		t.Fatalf("JOURNAL_STREAM=%s does not match the file it names", stream)
	}
	log, err := New(f, FormatText, slog.LevelDebug)
	if err != nil {
		t.Fatal(err)
	}
	logEachLevel(t, log)
	want := []string{
		`<7>msg="a debug line" k=1`,
		`<6>msg="an info line" k=2`,
		`<4>msg="a warning" k=3`,
		`<3>msg="an error" k="x y"`,
		`<3>msg="above error"`,
	}
	if got := lines(t, f.Name()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("journal lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestJournalOtherStream: a JOURNAL_STREAM that names another file (inherited by a process
// whose stderr was redirected), or none, leaves the usual text with times and levels.
func TestJournalOtherStream(t *testing.T) {
	_, stream := journalFile(t, "journal")
	f, _ := journalFile(t, "redirected")
	for _, env := range []string{stream, "", "garbage", "1:"} {
		t.Setenv("JOURNAL_STREAM", env)
		if Journal(f) {
			t.Fatalf("JOURNAL_STREAM=%q matches another file", env)
		}
	}
	t.Setenv("JOURNAL_STREAM", stream)
	log, err := New(f, FormatText, slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	logEachLevel(t, log)
	got := lines(t, f.Name())
	if len(got) != 4 {
		t.Fatalf("%d lines at level info, want 4 (no debug):\n%s", len(got), strings.Join(got, "\n"))
	}
	for _, l := range got {
		if !strings.HasPrefix(l, "time=") || !strings.Contains(l, " level=") {
			t.Fatalf("a line without time or level: %s", l)
		}
	}
}

// TestJSON: -log-format json writes one slog JSON record a line.
func TestJSON(t *testing.T) {
	f, stream := journalFile(t, "json")
	t.Setenv("JOURNAL_STREAM", stream) // JSON stays JSON under the journal too
	log, err := New(f, FormatJSON, slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	logEachLevel(t, log)
	got := lines(t, f.Name())
	if len(got) != 4 {
		t.Fatalf("%d lines, want 4: %q", len(got), got)
	}
	for i, want := range []string{"INFO", "WARN", "ERROR", "ERROR+4"} {
		var rec map[string]any
		if err := json.Unmarshal([]byte(got[i]), &rec); err != nil {
			t.Fatalf("%s: %v", got[i], err)
		}
		if rec["level"] != want || rec["time"] == nil || rec["msg"] == nil {
			t.Fatalf("record %d: %v, want level %s with a time and a message", i, rec, want)
		}
	}
	if _, err := New(f, "xml", slog.LevelInfo); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Fatalf("format xml: %v, want an error naming it", err)
	}
}

func TestPriority(t *testing.T) {
	for l, want := range map[slog.Level]int{slog.LevelDebug - 4: 7, slog.LevelDebug: 7, slog.LevelInfo - 1: 7,
		slog.LevelInfo: 6, slog.LevelInfo + 2: 6, slog.LevelWarn: 4, slog.LevelError: 3, slog.LevelError + 8: 3} {
		if got := Priority(l); got != want {
			t.Errorf("Priority(%v) = %d, want %d", l, got, want)
		}
	}
}

// TestParseLine: a slog JSON record of another process is parsed with its level (capped at
// ERROR), message and attributes in order, groups as groups; anything else is not a record.
func TestParseLine(t *testing.T) {
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).
		WithGroup("conn").Debug("handshake abandoned", "client", "192.0.2.1:5", "n", 3, "ok", true, "ratio", 0.5, slog.Group("err", "code", 7))
	l, ok := ParseLine(strings.TrimSpace(buf.String()))
	if !ok {
		t.Fatalf("not parsed: %s", buf.String())
	}
	if l.Level != slog.LevelDebug || l.Msg != "handshake abandoned" {
		t.Fatalf("level %v msg %q", l.Level, l.Msg)
	}
	got := slog.GroupValue(l.Attrs...).String()
	if want := "[conn=[client=192.0.2.1:5 n=3 ok=true ratio=0.5 err=[code=7]]]"; got != want {
		t.Fatalf("attrs %s, want %s", got, want)
	}
	if l.Attrs[0].Value.Group()[1].Value.Kind() != slog.KindInt64 {
		t.Fatalf("a number is not an int: %v", l.Attrs[0].Value.Group()[1].Value.Kind())
	}

	for line, want := range map[string]slog.Level{
		`{"time":"t","level":"WARN","msg":"m"}`:        slog.LevelWarn,
		`{"level":"ERROR+8","msg":"m"}`:                slog.LevelError,
		`{"level":"DEBUG-4","msg":"m","a":[1,2]}`:      slog.LevelDebug - 4,
		`{"msg":"m","level":"INFO","nested":{"a":{}}}`: slog.LevelInfo,
	} {
		if l, ok := ParseLine(line); !ok || l.Level != want || l.Msg != "m" {
			t.Errorf("%s: %v %v, want level %v", line, l, ok, want)
		}
	}
	deep := `{"level":"INFO","msg":"m","a":` + strings.Repeat(`{"a":`, 20) + "1" + strings.Repeat("}", 20) + "}"
	if _, ok := ParseLine(deep); !ok {
		t.Errorf("a deeply nested record is not parsed")
	}
	for _, line := range []string{
		"plain text",
		`time=2026-01-01 level=INFO msg=m`,
		`{"level":"INFO"}`,
		`{"msg":"m"}`,
		`{"level":"LOUD","msg":"m"}`,
		`{"level":1,"msg":"m"}`,
		`{"level":"INFO","msg":"m"} trailing`,
		`{"level":"INFO","msg":"m"}{}`,
		`{"level":"INFO","msg":"m","a":`,
		`{"level":"INFO","msg":"m...`,
		`[1,2]`,
	} {
		if l, ok := ParseLine(line); ok {
			t.Errorf("%s: parsed as %v", line, l)
		}
	}
}
