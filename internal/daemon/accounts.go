// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"os/user"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/policy"
)

// caches are the monitor's caches of what every handshake looks up: the users' authorized
// keys files and the user database's answers, each revalidated on every use by the status
// of the files it came from (keys.FileCache, policy.AccountCache). A key removed, or a user
// removed from a group in /etc/group, is refused at the next handshake; answers from user
// database sources other than the files (nsswitch.conf) are reused for
// policy.DefaultAccountTTL at most.
type caches struct {
	files    keys.FileCache
	accounts policy.AccountCache
	// off makes the monitor look up as it did before these caches (for benchmarks that
	// compare both in one run): every key file read at every lookup, and user database
	// answers reused for a second whatever changed.
	off    atomic.Bool
	before ttlAccounts
}

// account returns the account called name, from the system user database.
func (c *caches) account(name string) (*policy.Account, error) {
	if c.off.Load() {
		return c.before.lookup(name)
	}
	return c.accounts.Lookup(name)
}

// ttlAccounts is the monitor's user database cache as it was before caches: every answer
// reused for a second.
type ttlAccounts struct {
	mu sync.Mutex
	m  map[string]ttlAccount
}

type ttlAccount struct {
	acct    *policy.Account
	err     error
	fetched time.Time
}

func (a *ttlAccounts) lookup(name string) (*policy.Account, error) {
	now := time.Now()
	a.mu.Lock()
	c, ok := a.m[name]
	a.mu.Unlock()
	if ok && now.Sub(c.fetched) < time.Second {
		return c.acct, c.err
	}
	acct, err := policy.LookupAccount(name)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil || len(a.m) > 4096 {
		a.m = make(map[string]ttlAccount)
	}
	a.m[name] = ttlAccount{acct: acct, err: err, fetched: now}
	return acct, err
}

// user answers as user.Lookup does, from account: the home directory and uid for the
// users' ~/.ssh/authorized_keys (keys.HomeAuthorizedKeys). Within allowed, it answers from
// the lookup allowed makes of the same account (see accountMemo).
func (c *caches) user(ctx context.Context, name string) (*user.User, error) {
	acct, err := memoFrom(ctx).lookup(c, name)
	if err != nil {
		return nil, err
	}
	return &user.User{Username: acct.Name, Uid: strconv.FormatUint(uint64(acct.UID), 10),
		Gid: strconv.FormatUint(uint64(acct.GID), 10), HomeDir: acct.Home}, nil
}

// accountMemo is one authorization's answer from the user database: the key lookup (for
// ~/.ssh/authorized_keys) and the grant need the same account, and ask once.
type accountMemo struct {
	name string
	acct *policy.Account
	err  error
	done bool
}

type accountMemoKey struct{}

// memoFrom returns the memo ctx carries, or nil.
func memoFrom(ctx context.Context) *accountMemo {
	m, _ := ctx.Value(accountMemoKey{}).(*accountMemo)
	return m
}

// lookup returns c.account(name), asking once per memo (a nil memo asks every time).
func (m *accountMemo) lookup(c *caches, name string) (*policy.Account, error) {
	if m == nil {
		return c.account(name)
	}
	if !m.done || m.name != name {
		m.acct, m.err = c.account(name)
		m.name, m.done = name, true
	}
	return m.acct, m.err
}

// keySource builds the authorized-key sources a configuration names, reading the files
// through the daemon's caches (except when they are off).
func (d *Daemon) keySource(cfg *policy.Config) keys.Source {
	return keySourceWith(cfg, &d.caches.files, d.caches.user)
}

// currentKeys returns the key source to look users' keys up in.
func (d *Daemon) currentKeys() keys.Source {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.caches.off.Load() {
		return d.keysDirect
	}
	return d.keys
}
