// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"ubns.dev/netauth/internal/testutil"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/policy"
)

// keyMap is a key source held in memory; err, if set, is every lookup's failure.
type keyMap struct {
	m   map[string][]ssh.PublicKey
	err error
}

func (k keyMap) Keys(_ context.Context, user string) ([]ssh.PublicKey, error) {
	if k.err != nil {
		return nil, k.err
	}
	return k.m[user], nil
}

// revokedBefore is the revocation check as it was before netauthd had one authorization
// function (allowed): the service, the account, the grant, then each key used compared with
// the user's keys blob for blob, a failed lookup skipped.
func revokedBefore(d *Daemon, cfg *policy.Config, src keys.Source, service, user string, used []ssh.PublicKey) string {
	sc := cfg.Lookup(service)
	if sc == nil {
		return "service removed from the configuration"
	}
	acct, err := d.userAccountMemo(sc, user, nil)
	if err != nil {
		return "user no longer exists"
	}
	if !sc.Allowed(user, acct.GroupNames) {
		return "user no longer allowed to use the service"
	}
	for _, k := range used {
		ks, err := src.Keys(context.Background(), user)
		if err != nil {
			continue
		}
		found := false
		for _, have := range ks {
			found = found || bytes.Equal(have.Marshal(), k.Marshal())
		}
		if !found {
			return "key " + keys.Fingerprint(k) + " removed"
		}
	}
	return ""
}

// TestRevokedAsBefore: the revocation check, now the authorization every handshake passes
// (allowed: the key found by its hash among the user's keys, the account, the grant), revokes
// exactly what it revoked before, over every combination of: a key kept, removed, moved to
// another user or shared with one, one of two keys used removed; a user granted by name, by
// "users *", no longer listed, or without a system account on a service whose workers run as
// the user; the service removed; and a key source that fails (never a revocation: a directory
// down does not close every session). Where it revokes, the reason says why.
func TestRevokedAsBefore(t *testing.T) {
	users := []string{"revka", "revkb"}
	for _, name := range users {
		if _, err := policy.LookupAccount(name); err == nil {
			t.Fatalf("%s is a system account: the test needs a name that is not", name)
		}
	}
	if os.Geteuid() == 0 {
		requireRoot(t) // creates the test accounts: a real user on a run-as-user service too
		users = append(users, "netauth-alice")
	}
	text := `service shared {
    listen 127.0.0.1:0
    program /bin/true
    run-as account nobody
    users revka revkb netauth-alice
}
service onlyb {
    listen 127.0.0.1:0
    program /bin/true
    run-as account nobody
    users revkb
}
service asuser {
    listen 127.0.0.1:0
    program /bin/true
    users *
}
`
	cfg, err := policy.Parse("test.conf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{log: slog.New(slog.DiscardHandler)}
	k1, k2, k3 := testutil.Signer(t).PublicKey(), testutil.Signer(t).PublicKey(), testutil.Signer(t).PublicKey()
	sources := map[string]keyMap{
		"own keys":      {m: map[string][]ssh.PublicKey{"revka": {k1, k2}, "revkb": {k3}, "netauth-alice": {k1, k2}}},
		"k1 shared":     {m: map[string][]ssh.PublicKey{"revka": {k1, k2}, "revkb": {k1, k3}, "netauth-alice": {k1, k2}}},
		"k1 moved to b": {m: map[string][]ssh.PublicKey{"revka": {k2}, "revkb": {k1, k3}, "netauth-alice": {k2}}},
		"all removed":   {m: map[string][]ssh.PublicKey{}},
		"failing":       {err: errors.New("ldap: connection refused")},
	}
	used := map[string][]ssh.PublicKey{"none": nil, "k1": {k1}, "k2": {k2}, "k1 and k2": {k1, k2}, "k3": {k3}}
	services := []string{"shared", "onlyb", "asuser", "gone"}
	revocations := 0
	for sname, src := range sources {
		for uname, ks := range used {
			for _, svc := range services {
				for _, user := range users {
					got := d.revoked(context.Background(), cfg, &certState{}, src, svc, user, usedKeys(ks))
					want := revokedBefore(d, cfg, src, svc, user, ks)
					what := fmt.Sprintf("%s on %s with %s used, keys %s", user, svc, uname, sname)
					if (got == "") != (want == "") {
						t.Errorf("%s: revoked %q, before %q", what, got, want)
					}
					if got != "" {
						revocations++
					}
				}
			}
		}
	}
	if revocations == 0 {
		t.Fatal("nothing was revoked in any combination")
	}

	// The named cases, and their reasons.
	for _, tc := range []struct {
		src, svc, user string
		used           []ssh.PublicKey
		reason         string // empty: not revoked
	}{
		{"own keys", "shared", "revka", []ssh.PublicKey{k1, k2}, ""},
		{"k1 shared", "shared", "revkb", []ssh.PublicKey{k1}, ""},
		{"k1 moved to b", "shared", "revka", []ssh.PublicKey{k1}, "key " + keys.Fingerprint(k1) + ` is not authorized for user "revka"`},
		{"k1 moved to b", "shared", "revka", []ssh.PublicKey{k2, k1}, "key " + keys.Fingerprint(k1) + ` is not authorized for user "revka"`},
		{"k1 moved to b", "shared", "revka", []ssh.PublicKey{k2}, ""},
		{"k1 moved to b", "shared", "revkb", []ssh.PublicKey{k1}, ""},
		{"own keys", "onlyb", "revka", []ssh.PublicKey{k1}, `user "revka" may not use service "onlyb"`},
		{"own keys", "asuser", "revka", []ssh.PublicKey{k1}, "no such system user"},
		{"own keys", "gone", "revka", []ssh.PublicKey{k1}, "service removed from the configuration"},
		{"failing", "shared", "revka", []ssh.PublicKey{k1}, ""},
	} {
		got := d.revoked(context.Background(), cfg, &certState{}, sources[tc.src], tc.svc, tc.user, usedKeys(tc.used))
		if got != tc.reason {
			t.Errorf("%s on %s, keys %s: revoked %q, want %q", tc.user, tc.svc, tc.src, got, tc.reason)
		}
	}
}

// usedKeys are keys as a worker's connections used them.
func usedKeys(ks []ssh.PublicKey) []usedKey {
	var out []usedKey
	for _, k := range ks {
		out = append(out, usedKey{key: k, client: "127.0.0.1:1"})
	}
	return out
}
