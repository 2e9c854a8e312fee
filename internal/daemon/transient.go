// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"math/rand/v2"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"ubns.dev/netauth/internal/policy"
)

// The range of uids and gids systemd reserves for its dynamic users (DynamicUser=): no
// distribution gives them to accounts of its own.
const (
	transientFirst = 61184
	transientLast  = 65519
)

// TransientAcceptorAccount returns an account for the acceptor of a daemon that a program
// runs briefly as root (the demonstration, the benchmark) on a system without netauthd's
// "netauth" account: a uid, with the gid of the same number, from systemd's dynamic range,
// that no user and no group of the system's databases has and no running process uses, so
// that nothing else runs as it and no worker can. It has no name and no home.
func TransientAcceptorAccount() (*policy.Account, error) {
	n := transientLast - transientFirst + 1
	start := rand.IntN(n)
	for i := range n {
		id := uint32(transientFirst + (start+i)%n)
		if transientFree(id) {
			return &policy.Account{UID: id, GID: id, Groups: []uint32{}}, nil
		}
	}
	return nil, errors.New("no free uid for a transient acceptor account in 61184-65519: create an account for the acceptor instead:\n  useradd --system --no-create-home --shell /usr/sbin/nologin netauth")
}

// transientFree reports whether no user, group or running process has id.
func transientFree(id uint32) bool {
	s := strconv.FormatUint(uint64(id), 10)
	if _, err := user.LookupId(s); !errors.As(err, new(user.UnknownUserIdError)) {
		return false
	}
	if _, err := user.LookupGroupId(s); !errors.As(err, new(user.UnknownGroupIdError)) {
		return false
	}
	return !idInUse(id)
}

// idInUse reports whether a running process has id among its uids or gids (real, effective,
// saved or file system), from /proc. A process that cannot be read is assumed not to.
func idInUse(id uint32) bool {
	dirs, _ := filepath.Glob("/proc/[0-9]*/status")
	want := strconv.FormatUint(uint64(id), 10)
	for _, path := range dirs {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || (f[0] != "Uid:" && f[0] != "Gid:") {
				continue
			}
			for _, v := range f[1:] {
				if v == want {
					return true
				}
			}
		}
	}
	return false
}

// BriefAcceptorAccount returns the account for the acceptor of a daemon that a program other
// than netauthd runs briefly as root (the demonstration, the benchmark): the account called
// name (netauthd's "netauth") if it exists and is not root, else a transient one
// (TransientAcceptorAccount).
func BriefAcceptorAccount(name string) (*policy.Account, error) {
	if acct, err := policy.LookupAccount(name); err == nil && acct.UID != 0 {
		return acct, nil
	}
	return TransientAcceptorAccount()
}
