// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/policy"
)

// Bounds of the recent authorizations a service keeps.
const (
	// recentAuthTTL is how long an authorization answers the check before a resumption.
	recentAuthTTL = time.Second
	// maxRecentAuths bounds the users and keys remembered (all forgotten when it is reached).
	maxRecentAuths = 4096
)

// recentAuths are a service's last authorizations (eligible: the user's key found, with every
// file it came from re-checked, and the grant) per user and key, for the check made before a
// ticket is resumed (resumable). That check only chooses between resuming and falling back
// to a full handshake; the check after the binder, which admits, always looks again. So a
// resumption looks the key up once, not twice, when the same user and key were authorized
// less than recentAuthTTL ago with the service's current configuration. A failed
// authorization forgets the user's entry for that key: after a key or a grant is revoked, at
// most one resumption that began within recentAuthTTL of the last success is refused after
// its binder (not_authorized) rather than falling back to a full handshake that refuses it.
type recentAuths struct {
	mu sync.Mutex
	m  map[recentKey]recentAuth
}

type recentKey struct {
	user    string
	keyHash [32]byte
}

type recentAuth struct {
	sc   *policy.Service // the configuration it was made with (a reload replaces it)
	acct *policy.Account
	key  ssh.PublicKey
	at   time.Time
}

// remember records that r (User, KeyHash, Key) was authorized for sc as acct, or, with a nil
// acct, that it was not.
func (a *recentAuths) remember(sc *policy.Service, r *handshake.Result, acct *policy.Account) {
	k := recentKey{r.User, r.KeyHash}
	a.mu.Lock()
	defer a.mu.Unlock()
	if acct == nil {
		delete(a.m, k)
		return
	}
	if a.m == nil || len(a.m) >= maxRecentAuths {
		a.m = make(map[recentKey]recentAuth)
	}
	a.m[k] = recentAuth{sc: sc, acct: acct, key: r.Key, at: time.Now()}
}

// lookup returns the account and key of a recent authorization of user and key hash for sc.
func (a *recentAuths) lookup(sc *policy.Service, user string, keyHash [32]byte) (*policy.Account, ssh.PublicKey, bool) {
	a.mu.Lock()
	e, ok := a.m[recentKey{user, keyHash}]
	a.mu.Unlock()
	if !ok || e.sc != sc || time.Since(e.at) >= recentAuthTTL {
		return nil, nil, false
	}
	return e.acct, e.key, true
}

// resumable is the check before a ticket is resumed (handshake.ServerConfig.Resumable): a
// recent authorization of the ticket's user and key, or else eligible.
func (s *service) resumable(r *handshake.Result) error {
	if !s.d.caches.off.Load() {
		if acct, key, ok := s.recent.lookup(s.config(), r.User, r.KeyHash); ok {
			r.SetKey(key)
			r.Admission = acct
			return nil
		}
	}
	return s.eligible(r)
}
