// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"bufio"
	"errors"
	"os"
	"os/user"
	"strings"
	"sync"
	"time"

	"ubns.dev/netauth/internal/keys"
)

// DefaultAccountTTL is how long an AccountCache reuses an answer when the user database is
// not only /etc/passwd and /etc/group (see AccountCache).
const DefaultAccountTTL = time.Second

// maxCachedAccounts bounds the names an AccountCache keeps answers for (it starts afresh
// past it): names come from clients, most of them of no account at all.
const maxCachedAccounts = 4096

// The files an AccountCache watches.
const (
	groupFile     = "/etc/group"
	nsswitchFile  = "/etc/nsswitch.conf"
	passwdDBName  = "passwd"
	groupDBName   = "group"
	filesService  = "files"
	nsswitchLimit = 64 << 10
)

// AccountCache keeps LookupAccount's answers, so that a user's repeated connections do not
// each go through the user database (a lookup reads /etc/passwd, and /etc/group for every
// group of the account). Every lookup stats /etc/passwd, /etc/group and
// /etc/nsswitch.conf; any change to one of them (device, inode, size, modification or
// status-change time to the nanosecond) forgets every answer. When the database is those
// files alone — os/user reads them itself (a build without cgo), or nsswitch.conf names
// only "files" for passwd and group — an answer is reused for as long as they do not
// change, except one read within keys.RacyWindow of their last change, which is not
// reused. When nsswitch.conf names other sources (systemd, sss, ldap, nis, compat, ...),
// whose answers can change with no change to those files, an answer is reused for TTL at
// most. An error other than "no such user" is never reused in the first case, and for TTL
// at most in the second.
//
// The accounts it returns are shared: callers must not modify them. Safe for concurrent
// use; the zero value is ready, with DefaultAccountTTL.
type AccountCache struct {
	// TTL bounds the reuse of answers from a user database that is not only the files
	// (zero: DefaultAccountTTL).
	TTL time.Duration

	mu      sync.Mutex
	stamp   dbStamp
	nss     nssState
	entries map[string]cachedAccount

	// For tests: the lookup, the files, and the clock.
	lookup              func(string) (*Account, error)
	passwd, group, nssw string
	now                 func() time.Time
}

type cachedAccount struct {
	acct    *Account
	err     error
	fetched time.Time
	trusted bool // reusable for as long as the files do not change
}

// fileID is what identifies a file's content without reading it.
type fileID struct {
	exists       bool
	dev, ino     uint64
	size         int64
	mtime, ctime int64
}

// dbStamp is the status of the user database's files.
type dbStamp struct{ passwd, group, nsswitch fileID }

// newest is the latest change time among the files.
func (s dbStamp) newest() int64 {
	n := int64(0)
	for _, f := range []fileID{s.passwd, s.group, s.nsswitch} {
		n = max(n, f.mtime, f.ctime)
	}
	return n
}

// nssState is what nsswitch.conf, as last read, says of passwd and group.
type nssState struct {
	read      bool
	id        fileID
	filesOnly bool
}

func (c *AccountCache) files() (passwd, group, nssw string) {
	if c.passwd != "" {
		return c.passwd, c.group, c.nssw
	}
	return passwdFile, groupFile, nsswitchFile
}

func (c *AccountCache) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

func (c *AccountCache) ttl() time.Duration {
	if c.TTL > 0 {
		return c.TTL
	}
	return DefaultAccountTTL
}

// Lookup returns LookupAccount(name), from the cache when the answer is still good.
func (c *AccountCache) Lookup(name string) (*Account, error) {
	start := c.clock()
	passwd, group, nssw := c.files()
	st := dbStamp{passwd: statID(passwd), group: statID(group), nsswitch: statID(nssw)}
	filesOnly := c.filesOnly(nssw, st.nsswitch)
	c.mu.Lock()
	if st != c.stamp {
		c.stamp, c.entries = st, nil
	}
	e, ok := c.entries[name]
	c.mu.Unlock()
	if ok && ((filesOnly && e.trusted) || (!filesOnly && start.Sub(e.fetched) < c.ttl())) {
		return e.acct, e.err
	}
	lookup := c.lookup
	if lookup == nil {
		lookup = LookupAccount
	}
	acct, err := lookup(name)
	var unknown user.UnknownUserError
	e = cachedAccount{acct: acct, err: err, fetched: start,
		trusted: (err == nil || errors.As(err, &unknown)) && st.newest() < start.Add(-keys.RacyWindow).UnixNano()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st == c.stamp { // else the files changed meanwhile: keep nothing from before
		if c.entries == nil || len(c.entries) >= maxCachedAccounts {
			c.entries = make(map[string]cachedAccount)
		}
		c.entries[name] = e
	}
	return acct, err
}

// filesOnly reports whether the user database is /etc/passwd and /etc/group alone, reading
// nsswitch.conf again when its status changed.
func (c *AccountCache) filesOnly(path string, id fileID) bool {
	if !osUserUsesNSS {
		return true
	}
	c.mu.Lock()
	if c.nss.read && c.nss.id == id {
		defer c.mu.Unlock()
		return c.nss.filesOnly
	}
	c.mu.Unlock()
	only := nssFilesOnly(path)
	c.mu.Lock()
	c.nss = nssState{read: true, id: id, filesOnly: only}
	c.mu.Unlock()
	return only
}

// nssFilesOnly reports whether the nsswitch.conf at path names only "files" for both the
// passwd and the group databases. A file that is missing, unreadable, too large, or does
// not name both databases is taken as naming other sources: the C library's defaults
// without one differ between systems.
func nssFilesOnly(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() > nsswitchLimit {
		return false
	}
	found := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), nsswitchLimit)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		db, services, ok := strings.Cut(line, ":")
		db = strings.TrimSpace(db)
		if !ok || (db != passwdDBName && db != groupDBName) {
			continue
		}
		// Later lines for a database replace earlier ones, as in the C library.
		found[db] = servicesAreFiles(services)
	}
	if sc.Err() != nil {
		return false
	}
	return found[passwdDBName] && found[groupDBName]
}

// servicesAreFiles reports whether an nsswitch.conf service list is "files" alone, with
// or without actions in brackets.
func servicesAreFiles(list string) bool {
	var b strings.Builder
	depth := 0
	for _, r := range list {
		switch {
		case r == '[':
			depth++
			b.WriteByte(' ')
		case r == ']':
			if depth == 0 {
				return false
			}
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	words := strings.Fields(b.String())
	if depth != 0 || len(words) == 0 {
		return false
	}
	for _, w := range words {
		if w != filesService {
			return false
		}
	}
	return true
}
