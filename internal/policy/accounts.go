// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"ubns.dev/netauth/internal/keys"
)

// passwdFile is where LookupAccount finds login shells.
const passwdFile = "/etc/passwd"

// Account is an account of the system user database.
type Account struct {
	// Name is the account's name, exactly as looked up.
	Name string
	// UID and GID are the account's user and primary group ids.
	UID, GID uint32
	// Groups are the ids of every group the account is in, the primary
	// group first.
	Groups []uint32
	// GroupNames are the names of the groups in Groups that have one, in
	// the same order.
	GroupNames []string
	// Home is the home directory.
	Home string
	// Shell is the login shell as listed in /etc/passwd, or empty for an
	// account not listed there (such as one from a network directory).
	Shell string
}

// LookupAccount resolves the account called name through the system user
// database (os/user: the C library's NSS when built with cgo, otherwise
// /etc/passwd and /etc/group). An account that does not exist is an error
// wrapping user.UnknownUserError. The database must return the account
// under exactly the name asked for: a directory that matches names
// case-insensitively, for example, could otherwise let one name stand for
// another account, so a different name is an error.
func LookupAccount(name string) (*Account, error) {
	return lookupAccount(name, passwdFile)
}

// lookupAccount is LookupAccount reading shells from passwd.
func lookupAccount(name, passwd string) (*Account, error) {
	if err := keys.ValidName(name); err != nil {
		return nil, fmt.Errorf("policy: looking up account %q: %w", name, err)
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("policy: looking up account %q: %w", name, err)
	}
	if u.Username != name {
		return nil, fmt.Errorf("policy: looking up account %q: the user database returned account %q instead", name, u.Username)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("policy: account %q has uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("policy: account %q has gid %q: %w", name, u.Gid, err)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("policy: listing the groups of account %q: %w", name, err)
	}
	a := &Account{Name: name, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}
	seen := map[uint32]bool{}
	for _, id := range append([]string{u.Gid}, ids...) {
		g, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("policy: account %q is in group %q: %w", name, id, err)
		}
		if seen[uint32(g)] {
			continue
		}
		seen[uint32(g)] = true
		a.Groups = append(a.Groups, uint32(g))
		grp, err := user.LookupGroupId(id)
		var unknown user.UnknownGroupIdError
		switch {
		case errors.As(err, &unknown):
			// A group id with no name cannot match a listed group.
		case err != nil:
			return nil, fmt.Errorf("policy: looking up group %s of account %q: %w", id, name, err)
		default:
			a.GroupNames = append(a.GroupNames, grp.Name)
		}
	}
	a.Shell, err = shellOf(passwd, name, u.Uid)
	if err != nil {
		return nil, fmt.Errorf("policy: finding the shell of account %q: %w", name, err)
	}
	return a, nil
}

// shellOf returns the shell of the account with name and uid in the
// passwd-format file at path, or "" if the file does not list it.
func shellOf(path, name, uid string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) == 7 && fields[0] == name && fields[2] == uid {
			return fields[6], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return "", nil
}
