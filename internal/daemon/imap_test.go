// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// imapService runs Dovecot's imap program, unmodified, in exec mode: one netauthd worker per
// user, running as the user, starts it for each connection with the session on its standard
// input and output. Dovecot's imap, started directly, serves the account named by $USER
// pre-authenticated ("* PREAUTH"), so there is no password anywhere.
const imapService = `service imap {
    listen 127.0.0.1:0
    mode exec
    program ` + dovecotIMAP + `
    args -c WORKER-dovecot.conf
    users netauth-alice netauth-bob
    idle-timeout 1m
}
`

// dovecotConf is the whole Dovecot configuration the imap program needs: where mail is, and
// where its log goes (standard error, which netauthd logs with the service, user and pid).
const dovecotConf = `# Dovecot's imap, run by netauthd in exec mode: pre-authenticated as $USER.
mail_location = maildir:~/Maildir
log_path = /dev/stderr
ssl = no
`

// imapSession is a Python imaplib client: it checks the PREAUTH greeting, APPENDs the given
// message (if any), SELECTs INBOX, SEARCHes for a subject and FETCHes what it finds.
const imapSession = `
import imaplib, json, re, sys
req = json.load(sys.stdin)
m = imaplib.IMAP4("127.0.0.1", int(req["port"]), timeout=20)
out = {"state": m.state, "welcome": m.welcome.decode()}
if req.get("message"):
    typ, data = m.append("INBOX", None, None, req["message"].encode())
    out["append"] = [typ, data[0].decode()]
typ, data = m.select("INBOX")
out["select"] = [typ, data[0].decode()]
typ, data = m.search(None, "SUBJECT", req["subject"])
out["search"] = data[0].decode().split()
typ, data = m.search(None, "ALL")
out["all"] = data[0].decode().split()
out["fetched"], out["uids"] = [], []
for num in out["search"]:
    typ, d = m.fetch(num, "(UID BODY.PEEK[])")
    out["fetched"].append(d[0][1].decode("latin-1"))
    out["uids"].append(re.search(rb"UID (\d+)", d[0][0]).group(1).decode())
typ, data = m.logout()
out["logout"] = typ
print(json.dumps(out))
`

// imapAbandonedAppend starts an APPEND with a literal, sends half of it, and disconnects.
const imapAbandonedAppend = `
import json, socket, sys
req = json.load(sys.stdin)
s = socket.create_connection(("127.0.0.1", int(req["port"])), timeout=20)
f = s.makefile("rb")
greeting = f.readline().decode()
half = req["message"].encode()
s.sendall(b"a1 APPEND INBOX {%d}\r\n" % (2 * len(half)))
continuation = f.readline().decode()
s.sendall(half)
f.close()
s.close()
print(json.dumps({"greeting": greeting, "continuation": continuation}))
`

type imapResult struct {
	State, Welcome, Logout string
	Append, Select         []string
	Search, All, UIDs      []string
	Fetched                []string
}

// imapMessage returns a message in the wire form (CRLF lines) with a unique subject.
func imapMessage(from, subject, body string) string {
	return "From: " + from + "\r\nTo: " + from + "\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@netauth.test>\r\n\r\n" + body
}

// TestDovecotIMAP serves IMAP with an unmodified Dovecot to unmodified clients (Python's
// imaplib and curl) through the netauth client proxy, with no password anywhere: mail is
// stored and read back byte for byte, each user's mail lives in their own home with their
// own uid, a client cut off in the middle of an APPEND leaves the mailbox consistent, and a
// user's successive sessions are resumed and served by one worker.
func TestDovecotIMAP(t *testing.T) {
	requireDovecot(t)
	tb := newTestbed(t, imapService)
	tb.useBuiltinWorker()
	if err := os.WriteFile(tb.workerBin+"-dovecot.conf", []byte(dovecotConf), 0o644); err != nil {
		t.Fatal(err)
	}
	aliceMail, bobMail := freshMaildir(t, "netauth-alice"), freshMaildir(t, "netauth-bob")
	alicePort := tb.startProxy("imap", "netauth-alice")
	bobPort := tb.startProxy("imap", "netauth-bob")
	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)
	aliceSubject, bobSubject, partialSubject := "alice-"+stamp, "bob-"+stamp, "partial-"+stamp
	aliceMsg := imapMessage("netauth-alice@example.org", aliceSubject, "Hello from Alice, through netauth.\r\nNo password was used.\r\n\r\n-- \r\nA\r\n")
	bobMsg := imapMessage("netauth-bob@example.org", bobSubject, "Bob's own mail.\r\n")

	// Alice: APPEND, SELECT, SEARCH, FETCH, byte for byte.
	var a imapResult
	runPython(t, imapSession, map[string]string{"port": alicePort, "message": aliceMsg, "subject": aliceSubject}, &a)
	if a.State != "AUTH" || !strings.Contains(a.Welcome, "PREAUTH") || !strings.Contains(a.Welcome, "netauth-alice") {
		t.Fatalf("alice's session is not pre-authenticated as alice: state %q, greeting %q", a.State, a.Welcome)
	}
	if len(a.Append) == 0 || a.Append[0] != "OK" || a.Select[0] != "OK" || a.Logout != "BYE" {
		t.Fatalf("alice's session: %+v", a)
	}
	if len(a.Search) != 1 || len(a.Fetched) != 1 || a.Fetched[0] != aliceMsg {
		t.Fatalf("alice's message did not come back byte for byte:\nsearch %v\ngot  %q\nwant %q", a.Search, a.Fetched, aliceMsg)
	}
	aliceWorker := tb.workerPid("imap", "netauth-alice")

	// curl fetches the same message by UID. It sees the PREAUTH greeting and sends no LOGIN
	// (it has no user name to send).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var curlErr bytes.Buffer
	curl := exec.CommandContext(ctx, "curl", "--silent", "--show-error", "--verbose", "--max-time", "20",
		"imap://127.0.0.1:"+alicePort+"/INBOX;UID="+a.UIDs[0])
	curl.Stderr = &curlErr
	got, err := curl.Output()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, curlErr.String())
	}
	if string(got) != aliceMsg {
		t.Fatalf("curl fetched %q, want %q", got, aliceMsg)
	}
	if !strings.Contains(curlErr.String(), "PREAUTH") {
		t.Errorf("curl did not see the PREAUTH greeting:\n%s", curlErr.String())
	}
	for _, line := range strings.Split(curlErr.String(), "\n") {
		if cmd, ok := strings.CutPrefix(line, "> "); ok && (strings.Contains(cmd, " LOGIN") || strings.Contains(cmd, " AUTHENTICATE")) {
			t.Errorf("curl tried to log in (%q): the session is pre-authenticated", cmd)
		}
	}

	// Bob sees only his own mail.
	var b imapResult
	runPython(t, imapSession, map[string]string{"port": bobPort, "message": bobMsg, "subject": aliceSubject}, &b)
	if !strings.Contains(b.Welcome, "netauth-bob") || len(b.Search) != 0 || len(b.All) != 1 {
		t.Fatalf("bob's INBOX: greeting %q, alice's message found %v, all messages %v; want only his own", b.Welcome, b.Search, b.All)
	}
	runPython(t, imapSession, map[string]string{"port": bobPort, "subject": bobSubject}, &b)
	if len(b.Fetched) != 1 || b.Fetched[0] != bobMsg {
		t.Fatalf("bob's message: %q", b.Fetched)
	}

	// Each user's mail is in their home, written by a process with their uid.
	for dir, user := range map[string]string{aliceMail: "netauth-alice", bobMail: "netauth-bob"} {
		want := uidOf(t, user)
		files := 0
		err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			if uid := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)); uid != want {
				t.Errorf("%s is owned by uid %s, want %s (%s)", path, uid, want, user)
			}
			if !fi.IsDir() && (filepath.Base(filepath.Dir(path)) == "new" || filepath.Base(filepath.Dir(path)) == "cur") {
				files++
			}
			return nil
		})
		if err != nil || files != 1 {
			t.Errorf("%s: %d messages (%v), want 1", dir, files, err)
		}
	}

	// A client cut off in the middle of an APPEND literal: Dovecot writes the message to
	// tmp/ and renames it into new/ only when complete, so nothing partial appears.
	var cut struct{ Greeting, Continuation string }
	runPython(t, imapAbandonedAppend, map[string]string{"port": alicePort, "message": imapMessage("netauth-alice@example.org", partialSubject, strings.Repeat("partial line\r\n", 200))}, &cut)
	if !strings.Contains(cut.Greeting, "PREAUTH") || !strings.HasPrefix(cut.Continuation, "+") {
		t.Fatalf("abandoned APPEND: greeting %q, continuation %q; want the server waiting for the literal", cut.Greeting, cut.Continuation)
	}
	waitUntil(t, 10*time.Second, func() string { return "a partial message is still in " + filepath.Join(aliceMail, "tmp") }, func() bool {
		entries, err := os.ReadDir(filepath.Join(aliceMail, "tmp"))
		return err == nil && len(entries) == 0
	})
	runPython(t, imapSession, map[string]string{"port": alicePort, "subject": partialSubject}, &a)
	if len(a.Search) != 0 || len(a.All) != 1 {
		t.Fatalf("after the abandoned APPEND: partial message found %v, all messages %v; want only the first", a.Search, a.All)
	}
	runPython(t, imapSession, map[string]string{"port": alicePort, "subject": aliceSubject}, &a)
	if len(a.Fetched) != 1 || a.Fetched[0] != aliceMsg {
		t.Fatalf("after the abandoned APPEND, alice's message is %q", a.Fetched)
	}

	// Alice's five sessions: the first a full handshake, the others resumed with the proxy's
	// ticket, all served by the same worker running as her.
	var modes []string
	for _, r := range tb.auditRecords("imap") {
		if r.User == "netauth-alice" {
			modes = append(modes, r.Mode)
		}
	}
	if len(modes) != 5 || modes[0] != "full" || strings.Count(strings.Join(modes, " "), "resumed") != 4 {
		t.Errorf("alice's audited sessions: %v, want one full and then four resumed", modes)
	}
	if pid := tb.workerPid("imap", "netauth-alice"); pid != aliceWorker {
		t.Errorf("alice's sessions went to workers %d and %d, want one per-user worker", aliceWorker, pid)
	}
}

// workerPid returns the pid of user's live per-user worker for service.
func (tb *testbed) workerPid(service, user string) int {
	tb.t.Helper()
	tb.d.mu.Lock()
	defer tb.d.mu.Unlock()
	w := tb.d.workers[workerKey{service: service, user: user}]
	if w == nil {
		tb.t.Fatalf("%s has no worker for %s", user, service)
	}
	return w.pid
}
