// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// MaxKeysPerUser is the most keys any source may give for one user.
const MaxKeysPerUser = 1000

// MaxKeyFileSize is the largest authorized keys file (or command output)
// netauth reads, in bytes.
const MaxKeyFileSize = 1 << 20

// DefaultCommandTimeout is how long a Command may run when its Timeout is
// zero.
const DefaultCommandTimeout = 5 * time.Second

// maxStderr is how much of a command's standard error goes into errors.
const maxStderr = 256

// Source gives the public keys that may authenticate as a user. A user with
// no keys gets (nil, nil). Every Source in this package checks the user name
// with ValidName before using it.
//
// All sources read key lists in authorized_keys format with the same rules:
// blank lines and lines starting with '#' are ignored; keys that carry any
// option (restrict, command=, from=, no-*, permitopen=, principals=,
// expiry-time=, environment=, cert-authority, ...) are skipped, because
// those are ssh-specific restrictions netauth cannot enforce; certificates
// are skipped; and a line that cannot be parsed is an error naming the file
// and line, so that a broken file is noticed and fixed rather than half
// used.
type Source interface {
	Keys(ctx context.Context, user string) ([]ssh.PublicKey, error)
}

// Authorized reports whether key is among src's keys for user.
func Authorized(ctx context.Context, src Source, user string, key ssh.PublicKey) (bool, error) {
	k, err := Lookup(ctx, src, user, sha256.Sum256(key.Marshal()))
	return k != nil, err
}

// Lookup returns the key of user in src whose SHA-256 (of its SSH wire form, the hash a
// SHA256 fingerprint shows) is hash, or nil if the user has none. Every key of the user is
// compared, in constant time. The sources of this package give their keys' hashes with
// the keys, computed once per read of the file that lists them (see FileCache); the keys
// of any other Source are hashed here.
func Lookup(ctx context.Context, src Source, user string, hash [sha256.Size]byte) (ssh.PublicKey, error) {
	if err := ValidName(user); err != nil {
		return nil, err
	}
	keys, err := sourceHashedKeys(ctx, src, user)
	if err != nil {
		return nil, err
	}
	var found ssh.PublicKey
	for i := range keys {
		if subtle.ConstantTimeCompare(keys[i].hash[:], hash[:]) == 1 {
			found = keys[i].key
		}
	}
	return found, nil
}

// hashedSource is a Source that gives its keys with their hashes. The slice it returns
// may be shared (kept by a FileCache): it must not be modified.
type hashedSource interface {
	hashedKeys(ctx context.Context, user string) ([]hashedKey, error)
}

// sourceHashedKeys returns src's keys for user with their hashes.
func sourceHashedKeys(ctx context.Context, src Source, user string) ([]hashedKey, error) {
	if hs, ok := src.(hashedSource); ok {
		return hs.hashedKeys(ctx, user)
	}
	keys, err := src.Keys(ctx, user)
	if err != nil {
		return nil, err
	}
	return hashKeys(keys), nil
}

// ParseAuthorizedKeys parses data in authorized_keys format with the rules
// described at Source. name is the file name used in errors.
func ParseAuthorizedKeys(data []byte, name string) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	lineNo := 0
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		lineNo++
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		key, _, options, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("keys: %s:%d: cannot parse key: %w", name, lineNo, err)
		}
		if len(options) > 0 {
			continue
		}
		if _, ok := key.(*ssh.Certificate); ok {
			continue
		}
		if len(keys) == MaxKeysPerUser {
			return nil, fmt.Errorf("keys: %s: more than %d keys", name, MaxKeysPerUser)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// UserFiles reads the keys of user from the file Dir/<user>, in
// authorized_keys format: admin-owned per-user files. A missing file means
// the user has no keys. A file that group or others may write is refused.
// The parsing rules are those described at Source: keys with options are
// skipped and a malformed line is an error naming file:line.
type UserFiles struct {
	// Dir is the directory of per-user files. It must be set: an empty Dir
	// is an error on every lookup, never a default directory, so that a
	// key source turned off cannot silently read one.
	Dir string
	// Cache, if not nil, keeps the files read, revalidated by their status on every use
	// (see FileCache).
	Cache *FileCache
}

// Keys returns the keys listed in Dir/<user>.
func (u UserFiles) Keys(ctx context.Context, user string) ([]ssh.PublicKey, error) {
	hs, err := u.hashedKeys(ctx, user)
	return plainKeys(hs), err
}

func (u UserFiles) hashedKeys(ctx context.Context, user string) ([]hashedKey, error) {
	if err := ValidName(user); err != nil {
		return nil, err
	}
	if u.Dir == "" {
		return nil, errors.New("keys: UserFiles has no directory")
	}
	path := filepath.Join(u.Dir, user)
	return readKeyFile(path, func(fi fs.FileInfo) error {
		if fi.Mode().Perm()&0o022 != 0 {
			return fmt.Errorf("keys: %s is writable by group or others (mode %#o); refusing it", path, fi.Mode().Perm())
		}
		return nil
	}, u.Cache)
}

// HomeAuthorizedKeys reads the keys of user from ~user/.ssh/authorized_keys,
// finding the home directory with os/user.Lookup (the system user database,
// NSS). Keys that carry any option (restrict, command=, from=, no-*,
// permitopen=, principals=, expiry-time=, environment=, ...) are skipped,
// since netauth cannot enforce them; a malformed line is an error naming
// file:line (see Source). A missing file means no keys. Like sshd's
// StrictModes, the file, ~/.ssh and the home directory must be owned by the
// user or root and not writable by group or others.
type HomeAuthorizedKeys struct {
	// Lookup, if not nil, replaces user.Lookup: it must answer as user.Lookup does, with
	// an error wrapping user.UnknownUserError for a user the database does not have
	// (netauthd passes its cache of user database answers). ctx is the one Keys got.
	Lookup func(ctx context.Context, name string) (*user.User, error)
	// Cache, if not nil, keeps the files read, revalidated by their status on every use
	// (see FileCache); the directories are checked on every use all the same.
	Cache *FileCache
}

// Keys returns the keys in the user's ~/.ssh/authorized_keys.
func (h HomeAuthorizedKeys) Keys(ctx context.Context, name string) ([]ssh.PublicKey, error) {
	hs, err := h.hashedKeys(ctx, name)
	return plainKeys(hs), err
}

func (h HomeAuthorizedKeys) hashedKeys(ctx context.Context, name string) ([]hashedKey, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	var u *user.User
	var err error
	if h.Lookup != nil {
		u, err = h.Lookup(ctx, name)
	} else {
		u, err = user.Lookup(name)
	}
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return nil, nil
		}
		return nil, fmt.Errorf("keys: looking up user %s: %w", name, err)
	}
	if u.HomeDir == "" || !filepath.IsAbs(u.HomeDir) {
		return nil, fmt.Errorf("keys: user %s has no absolute home directory", name)
	}
	sshDir := filepath.Join(u.HomeDir, ".ssh")
	path := filepath.Join(sshDir, "authorized_keys")
	return readKeyFile(path, func(fi fs.FileInfo) error {
		if err := checkOwnerMode(path, fi, u.Uid); err != nil {
			return err
		}
		for _, dir := range []string{sshDir, u.HomeDir} {
			dfi, err := os.Stat(dir)
			if err != nil {
				return fmt.Errorf("keys: %w", err)
			}
			if err := checkOwnerMode(dir, dfi, u.Uid); err != nil {
				return err
			}
		}
		return nil
	}, h.Cache)
}

// Command runs an external program to get a user's keys, like sshd's
// AuthorizedKeysCommand, so that directories such as LDAP or SSSD can
// supply them. The program runs with an empty environment apart from
// PATH=/usr/bin:/bin, in the directory "/", with no standard input. Its
// standard output is read in authorized_keys format (see Source: keys with
// options are skipped, a malformed line is an error) and may not exceed
// MaxKeyFileSize. A non-zero exit, a timeout or too much output is an error
// naming the command and including the start of its standard error. Its answers are
// never cached: the program runs for every lookup.
type Command struct {
	// Path is the program to run; it should be an absolute path.
	Path string
	// Args are the program's arguments; each "%u" in them is replaced by
	// the user name.
	Args []string
	// Timeout bounds the program's run time; zero means
	// DefaultCommandTimeout.
	Timeout time.Duration
}

func (c Command) hashedKeys(ctx context.Context, user string) ([]hashedKey, error) {
	keys, err := c.Keys(ctx, user)
	return hashKeys(keys), err
}

// Keys runs the command for user and returns the keys it prints.
func (c Command) Keys(ctx context.Context, user string) ([]ssh.PublicKey, error) {
	out, err := c.Output(ctx, user)
	if err != nil {
		return nil, err
	}
	return ParseAuthorizedKeys(out, "output of "+c.Path)
}

// Output runs the command for user and returns its standard output, at most MaxKeyFileSize
// bytes, with the errors Keys reports for a failed run.
func (c Command) Output(ctx context.Context, user string) ([]byte, error) {
	if err := ValidName(user); err != nil {
		return nil, err
	}
	if c.Path == "" {
		return nil, errors.New("keys: command: no program given")
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = strings.ReplaceAll(a, "%u", user)
	}
	name := strings.Join(append([]string{c.Path}, args...), " ")

	cmd := exec.CommandContext(ctx, c.Path, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	killGroupOnCancel(cmd)
	stdout := &cappedWriter{max: MaxKeyFileSize, onOverflow: cancel}
	stderr := &cappedWriter{max: maxStderr, discard: true}
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	// Do not wait long for pipes held open by the program's own children
	// once it has exited or been killed.
	cmd.WaitDelay = time.Second

	err := cmd.Run()
	switch {
	case stdout.overflow:
		return nil, fmt.Errorf("keys: command %q printed more than %d bytes%s", name, MaxKeyFileSize, stderr.suffix())
	case errors.Is(ctx.Err(), context.DeadlineExceeded) && err != nil:
		return nil, fmt.Errorf("keys: command %q timed out after %v%s", name, timeout, stderr.suffix())
	case err != nil:
		return nil, fmt.Errorf("keys: command %q failed: %w%s", name, err, stderr.suffix())
	}
	return stdout.buf.Bytes(), nil
}

// cappedWriter keeps at most max bytes. Past that it either discards the
// rest silently or, when discard is false, records the overflow, calls
// onOverflow and fails the write.
type cappedWriter struct {
	buf        bytes.Buffer
	max        int
	discard    bool
	overflow   bool
	onOverflow func()
}

func (w *cappedWriter) Write(p []byte) (int, error) {
	room := w.max - w.buf.Len()
	if len(p) <= room {
		return w.buf.Write(p)
	}
	w.buf.Write(p[:max(room, 0)])
	if w.discard {
		w.overflow = true
		return len(p), nil
	}
	w.overflow = true
	if w.onOverflow != nil {
		w.onOverflow()
	}
	return 0, errors.New("output too large")
}

// suffix formats captured standard error for an error message.
func (w *cappedWriter) suffix() string {
	s := strings.TrimSpace(w.buf.String())
	if s == "" {
		return ""
	}
	if w.overflow {
		s += "..."
	}
	return fmt.Sprintf("; stderr: %q", s)
}

// Multi is the union of its sources, in order, without duplicate keys. An
// error from any source is returned, wrapped with which source failed.
type Multi []Source

// Keys returns the keys all sources give for user.
func (m Multi) Keys(ctx context.Context, user string) ([]ssh.PublicKey, error) {
	hs, err := m.hashedKeys(ctx, user)
	if err != nil {
		return nil, err
	}
	return plainKeys(dedupKeys(hs)), nil
}

func (m Multi) hashedKeys(ctx context.Context, user string) ([]hashedKey, error) {
	if err := ValidName(user); err != nil {
		return nil, err
	}
	var lists [][]hashedKey
	total := 0
	for i, src := range m {
		ks, err := sourceHashedKeys(ctx, src, user)
		if err != nil {
			return nil, fmt.Errorf("keys: source %d (%T): %w", i, src, err)
		}
		if len(ks) > 0 {
			lists = append(lists, ks)
			total += len(ks)
		}
	}
	switch {
	case len(lists) == 0:
		return nil, nil
	case len(lists) == 1 && total <= MaxKeysPerUser:
		// One source's keys, as it gave them (a cached file's are shared, not copied):
		// duplicates among them change neither a lookup nor the limit.
		return lists[0], nil
	}
	keys := dedupKeys(slices.Concat(lists...))
	if len(keys) > MaxKeysPerUser {
		return nil, fmt.Errorf("keys: more than %d keys for user %s", MaxKeysPerUser, user)
	}
	return keys, nil
}

// dedupKeys returns the keys of hs without repeats, in order of first appearance.
func dedupKeys(hs []hashedKey) []hashedKey {
	if len(hs) == 0 {
		return nil
	}
	seen := make(map[[sha256.Size]byte]bool, len(hs))
	out := make([]hashedKey, 0, len(hs))
	for _, h := range hs {
		if !seen[h.hash] {
			seen[h.hash] = true
			out = append(out, h)
		}
	}
	return out
}
