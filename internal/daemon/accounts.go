// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"sync"
	"time"

	"ubns.dev/netauth/internal/policy"
)

// accountTTL is how long a user database answer is reused. Looking a user up through NSS
// (passwd, groups) costs a few hundred microseconds, more than the rest of a resumed
// handshake; a group change still reaches live sessions within accountTTL plus the
// revocation-check interval.
const accountTTL = time.Second

// accounts caches user database lookups for accountTTL.
type accounts struct {
	mu sync.Mutex
	m  map[string]cachedAccount
}

type cachedAccount struct {
	acct    *policy.Account
	err     error
	fetched time.Time
}

// lookup returns the account called name, from the cache if it is fresh.
func (a *accounts) lookup(name string) (*policy.Account, error) {
	now := time.Now()
	a.mu.Lock()
	c, ok := a.m[name]
	a.mu.Unlock()
	if ok && now.Sub(c.fetched) < accountTTL {
		return c.acct, c.err
	}
	acct, err := policy.LookupAccount(name)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil || len(a.m) > 4096 {
		a.m = make(map[string]cachedAccount)
	}
	a.m[name] = cachedAccount{acct: acct, err: err, fetched: now}
	return acct, err
}
