// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"testing"
	"time"

	"ubns.dev/netauth/internal/keys"
)

// fakeDB is a user database of test files and a lookup that counts its calls.
type fakeDB struct {
	t                   *testing.T
	passwd, group, nssw string
	calls               int
	groups              []string // the answer's group names
	err                 error
	now                 time.Time
}

func newFakeDB(t *testing.T, nsswitch string) (*fakeDB, *AccountCache) {
	dir := t.TempDir()
	db := &fakeDB{t: t, passwd: filepath.Join(dir, "passwd"), group: filepath.Join(dir, "group"),
		nssw: filepath.Join(dir, "nsswitch.conf"), groups: []string{"staff"}, now: time.Now()}
	db.write(db.passwd, "alice:x:1000:1000::/home/alice:/bin/sh\n")
	db.write(db.group, "staff:x:50:alice\n")
	db.write(db.nssw, nsswitch)
	c := &AccountCache{passwd: db.passwd, group: db.group, nssw: db.nssw,
		now: func() time.Time { return db.now }}
	c.lookup = func(name string) (*Account, error) {
		db.calls++
		if db.err != nil {
			return nil, db.err
		}
		if name != "alice" {
			return nil, user.UnknownUserError(name)
		}
		return &Account{Name: name, UID: 1000, GID: 1000, GroupNames: append([]string(nil), db.groups...)}, nil
	}
	// The files were written just now: answers read now are not reused (see RacyWindow).
	// Most checks happen later.
	db.later()
	return db, c
}

func (db *fakeDB) write(path, text string) {
	db.t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		db.t.Fatal(err)
	}
}

// later moves the cache's clock past RacyWindow after now.
func (db *fakeDB) later() { db.now = time.Now().Add(keys.RacyWindow + time.Second) }

func (db *fakeDB) lookup(c *AccountCache, name string) (*Account, error) {
	db.t.Helper()
	return c.Lookup(name)
}

// TestAccountCacheFiles: with a user database of files only, an answer is reused for as
// long as /etc/passwd, /etc/group and nsswitch.conf do not change, whatever the time; a
// change to any of them (a user removed from a group) is seen at the next lookup.
func TestAccountCacheFiles(t *testing.T) {
	db, c := newFakeDB(t, "passwd: files\ngroup:  files [NOTFOUND=return]\nhosts: files dns\n")
	for range 3 {
		if a, err := db.lookup(c, "alice"); err != nil || a.GroupNames[0] != "staff" {
			t.Fatalf("Lookup = %v, %v", a, err)
		}
	}
	if db.calls != 1 {
		t.Fatalf("%d lookups in the database for 3 of an unchanged one; want 1", db.calls)
	}
	db.now = db.now.Add(time.Hour)
	db.lookup(c, "alice")
	if db.calls != 1 {
		t.Fatalf("after an hour: %d lookups; want 1 (files only: reused for as long as they do not change)", db.calls)
	}

	for _, path := range []string{db.group, db.passwd, db.nssw} {
		before := db.calls
		db.groups = nil
		time.Sleep(30 * time.Millisecond) // a change time of its own
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("# changed\n")
		f.Close()
		db.later()
		if a, err := db.lookup(c, "alice"); err != nil || len(a.GroupNames) != 0 || db.calls != before+1 {
			t.Fatalf("after %s changed: %v, %v, %d lookups; want the new answer from one more lookup", path, a, err, db.calls-before)
		}
		db.groups = []string{"staff"}
		db.lookup(c, "alice")
		if db.calls != before+1 {
			t.Fatalf("after %s changed: the new answer was not reused", path)
		}
	}

	// A name the database does not have: reused too.
	before := db.calls
	for range 2 {
		if _, err := db.lookup(c, "mallory"); !errors.As(err, new(user.UnknownUserError)) {
			t.Fatalf("unknown user: %v", err)
		}
	}
	if db.calls != before+1 {
		t.Errorf("unknown user: %d lookups for 2; want 1", db.calls-before)
	}
	// A failure: never reused with a database of files.
	db.err = errors.New("database unreachable")
	before = db.calls
	db.lookup(c, "bob")
	db.now = db.now.Add(time.Millisecond)
	db.lookup(c, "bob")
	if want := 2; db.calls-before != want {
		t.Errorf("a failed lookup: %d lookups for 2; want %d (not reused)", db.calls-before, want)
	}
}

// TestAccountCacheRacy: with a database of files only, answers read while the files
// changed within RacyWindow are looked up again at every use (an edit in the same clock
// tick would leave the files' status unchanged); once they have not changed for longer, an
// answer is kept.
func TestAccountCacheRacy(t *testing.T) {
	db, c := newFakeDB(t, "passwd: files\ngroup: files\n")
	db.now = time.Now()
	for range 3 {
		db.lookup(c, "alice")
	}
	if db.calls != 3 {
		t.Fatalf("answers read just after the files changed: %d lookups for 3; want 3", db.calls)
	}
	db.later()
	for range 3 {
		db.lookup(c, "alice")
	}
	if db.calls != 4 {
		t.Fatalf("once the files are older than RacyWindow: %d lookups in all; want 4", db.calls)
	}
}

// TestAccountCacheOtherSources: when nsswitch.conf names sources other than the files for
// passwd or group, an answer is reused for TTL at most (files do not tell of their
// changes), and still forgotten at once when a file changes.
func TestAccountCacheOtherSources(t *testing.T) {
	for _, conf := range []string{
		"passwd: files systemd\ngroup: files systemd\n",
		"passwd: files\ngroup: files sss\n",
		"passwd: compat\ngroup: compat\n",
		"passwd: files\n", // no group line: the C library's default
		"",
	} {
		db, c := newFakeDB(t, conf)
		c.TTL = 500 * time.Millisecond
		db.lookup(c, "alice")
		db.now = db.now.Add(400 * time.Millisecond)
		db.lookup(c, "alice")
		if db.calls != 1 {
			t.Errorf("%q: %d lookups within the TTL; want 1", conf, db.calls)
		}
		db.now = db.now.Add(200 * time.Millisecond)
		db.lookup(c, "alice")
		want := 2
		if !osUserUsesNSS {
			want = 1 // os/user reads the files itself: nsswitch.conf does not matter
		}
		if db.calls != want {
			t.Errorf("%q: %d lookups once the TTL passed; want %d", conf, db.calls, want)
		}
	}
}

func TestServicesAreFiles(t *testing.T) {
	for list, want := range map[string]bool{
		" files":                          true,
		"files [NOTFOUND=return]":         true,
		"files[NOTFOUND=return]":          true,
		"files [SUCCESS=return] files":    true,
		"files systemd":                   false,
		"systemd":                         false,
		"compat":                          false,
		"files [NOTFOUND=return] sss":     false,
		"files [":                         false,
		"files ]":                         false,
		"":                                false,
		"[NOTFOUND=return]":               false,
		"files [!UNAVAIL=return] ldap":    false,
		"files\tsss":                      false,
		"files [NOTFOUND=continue] files": true,
	} {
		if got := servicesAreFiles(list); got != want {
			t.Errorf("servicesAreFiles(%q) = %v; want %v", list, got, want)
		}
	}
}
