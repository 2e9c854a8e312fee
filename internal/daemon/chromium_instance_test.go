// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth/internal/testutil"
)

// chromiumInstanceService is an instance service running each user's own unmodified
// `python3 -m http.server`, serving DIRNAME: a directory in the user's home (the instance's
// working directory) that the test makes and fills.
const chromiumInstanceService = `service web {
    listen 127.0.0.1:0
    mode instance
    instance-listen tcp
    program /usr/bin/python3
    args -m http.server %p --bind 127.0.0.1 --directory DIRNAME
    users netauth-alice netauth-bob
    idle-timeout 1m
}
`

// httpServers returns the pids of the live processes running python3 -m http.server on
// directory dir (the instances of one test: dir is its own).
func httpServers(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if len(args) < 3 || filepath.Base(args[0]) != "python3" || args[1] != "-m" || args[2] != "http.server" {
			continue
		}
		if i := slices.Index(args, "--directory"); i < 0 || i+1 >= len(args) || args[i+1] != dir || !alive(pid) {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// pageText returns the text of an HTML page, without its tags, on one line.
func pageText(dom string) string {
	return strings.Join(strings.Fields(regexp.MustCompile(`<[^>]*>`).ReplaceAllString(dom, " ")), " ")
}

// TestChromiumInstance: two users, each with their own ssh-agent, `netauth open` and headless
// Chromium run as them, load the page of an instance service whose program is an unmodified
// python3 -m http.server. Each user's page lists their own directory: their file, not the
// other's. The page is served by the user's own instance, a python3 process (the worker's
// child) running with the user's uid; a second page load reuses it. Revoking alice kills her
// instance within the revocation interval, and her next page load fails: the browser gets no
// page of hers, and her proxy's log says the server refused her. Screenshots of both pages
// are written (alice-instance.png, bob-instance.png; under $NETAUTH_TEST_ARTIFACTS when set).
func TestChromiumInstance(t *testing.T) {
	b := make([]byte, 8)
	rand.Read(b)
	dirName := "netauth-chromium-" + hex.EncodeToString(b)
	tb := newTestbed(t, strings.ReplaceAll(chromiumInstanceService, "DIRNAME", dirName))
	tb.useBuiltinWorker()
	buildNetauth(t)
	addr := tb.addr("web")

	type instanceUser struct {
		*webUser
		file    string // the name of the one file in the user's directory
		browser *testutil.Browser
		root    string // the URL of the directory's listing
	}
	var users []*instanceUser
	for _, name := range []string{"netauth-alice", "netauth-bob"} {
		u := &instanceUser{webUser: newWebUser(t, tb, name, addr)}
		// The user's directory in their home, the user's own, with one file naming them.
		dir := filepath.Join(u.acct.Home, dirName)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		u.file = name + "-" + hex.EncodeToString(b[:4]) + ".txt"
		path := filepath.Join(dir, u.file)
		if err := os.WriteFile(path, []byte("the file of "+name+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{dir, path} {
			if err := os.Chown(p, int(u.acct.UID), int(u.acct.GID)); err != nil {
				t.Fatal(err)
			}
		}
		u.browser = testutil.NewBrowser(t, int(u.acct.UID), int(u.acct.GID))
		u.root = "http://" + hostPort(u.url) + "/"
		users = append(users, u)
	}
	alice, bob := users[0], users[1]

	// instance returns the one http.server of this test running as u, checking that it is
	// u's worker's child.
	instance := func(u *instanceUser) int {
		t.Helper()
		var mine []int
		for _, pid := range httpServers(dirName) {
			if procUIDs(t, pid)[0] == strconv.Itoa(int(u.acct.UID)) {
				mine = append(mine, pid)
			}
		}
		if len(mine) != 1 {
			t.Fatalf("%s's http.server processes: %v, want one", u.name, mine)
		}
		if w := tb.workerPid("web", u.name); !slices.Contains(children(w), mine[0]) {
			t.Fatalf("%s's http.server %d is not a child of their worker %d (children %v)", u.name, mine[0], w, children(w))
		}
		return mine[0]
	}

	pids := map[*instanceUser]int{}
	for _, u := range users {
		other := alice
		if u == alice {
			other = bob
		}
		dom, err := u.browser.DOM(u.root)
		if err != nil {
			t.Fatalf("%s's browser on %s: %v", u.name, u.root, err)
		}
		if !strings.Contains(dom, "Directory listing for /") || !strings.Contains(dom, `href="`+u.file+`"`) {
			t.Errorf("%s's page does not list their file %s; DOM:\n%s", u.name, u.file, dom)
		}
		if strings.Contains(dom, other.file) {
			t.Errorf("%s's page lists %s's file %s; DOM:\n%s", u.name, other.name, other.file, dom)
		}
		pid := instance(u)
		if uids, want := procUIDs(t, pid), strconv.Itoa(int(u.acct.UID)); strings.Join(uids, " ") != strings.Repeat(want+" ", 3)+want {
			t.Errorf("%s's instance %d runs as uids %v, want all %s", u.name, pid, uids, want)
		}
		pids[u] = pid
		shot, err := u.browser.Screenshot(u.root, strings.TrimPrefix(u.name, "netauth-")+"-instance.png", 800, 400)
		if err != nil {
			t.Fatalf("screenshot of %s's page: %v", u.name, err)
		}
		t.Logf("%s's page: %s", u.name, shot)
	}
	if pids[alice] == pids[bob] {
		t.Fatalf("alice and bob were served by the same instance %d", pids[alice])
	}

	// A second page load (a new browser, a new connection) reuses alice's instance.
	if dom, err := alice.browser.DOM(alice.root); err != nil || !strings.Contains(dom, alice.file) {
		t.Fatalf("alice's second page load: %v; DOM:\n%s", err, dom)
	}
	if again := instance(alice); again != pids[alice] {
		t.Errorf("alice's second page load was served by instance %d, want %d (the same)", again, pids[alice])
	}

	// Revoking alice's key kills her instance within the revocation interval (200ms) and a
	// margin; bob's stays.
	tb.setKey("netauth-alice", nil)
	waitExited(t, 3*time.Second, "alice's instance after revocation", pids[alice])

	// netauth open's proxy speaks HTTP to the browser: it answers the server's refusal with a
	// page that names it.
	dom, err := alice.browser.DOM(alice.root)
	if want := "refused the netauth connection: not authorized"; err != nil || !strings.Contains(dom, want) {
		t.Errorf("alice's page load after revocation: %v; DOM:\n%s\nwant a page saying %q", err, dom, want)
	} else {
		t.Logf("alice's page after revocation: %s", pageText(dom))
	}
	if strings.Contains(dom, alice.file) {
		t.Errorf("alice's page after revocation still lists her file; DOM:\n%s", dom)
	}
	logFile := filepath.Join(alice.home, "run", "netauth", "open-"+strings.ReplaceAll(addr, ":", "-")+".log")
	log, _ := os.ReadFile(logFile)
	if want := "refused the connection"; !strings.Contains(string(log), want) || !strings.Contains(string(log), "not authorized") {
		t.Errorf("alice's proxy log %s does not say the server refused her connection (not authorized):\n%s", logFile, log)
	}
	if got := httpServers(dirName); len(got) != 1 || got[0] != pids[bob] {
		t.Errorf("http.server processes after alice's revocation: %v, want only bob's %d", got, pids[bob])
	}

	// Bob is not affected: his page loads, from his same instance.
	if dom, err := bob.browser.DOM(bob.root); err != nil || !strings.Contains(dom, bob.file) {
		t.Errorf("bob's page after alice's revocation: %v; DOM:\n%s", err, dom)
	}
	if again := instance(bob); again != pids[bob] {
		t.Errorf("bob's page after alice's revocation was served by instance %d, want %d", again, pids[bob])
	}
}
