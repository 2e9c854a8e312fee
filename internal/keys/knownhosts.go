// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// DefaultKnownHostsPath returns the known_hosts file netauth clients use:
// $NETAUTH_KNOWN_HOSTS if set, else $XDG_CONFIG_HOME/netauth/known_hosts,
// else ~/.config/netauth/known_hosts.
func DefaultKnownHostsPath() (string, error) {
	if p := os.Getenv("NETAUTH_KNOWN_HOSTS"); p != "" {
		return p, nil
	}
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "netauth", "known_hosts"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("keys: finding the known_hosts file: %w", err)
	}
	return filepath.Join(home, ".config", "netauth", "known_hosts"), nil
}

// KnownHosts is a known_hosts file in OpenSSH's format that pins the host
// keys of netauth servers. Hosts are written as knownhosts.Normalize gives
// them: "[host]:port", or plain "host" for port 22.
type KnownHosts struct {
	// Path is the file's name.
	Path string
}

// HostKeyError reports that a server's host key is not the one pinned for
// it: unknown, changed, or revoked. Its message tells the user what to do.
type HostKeyError struct {
	// Host is the host and port as given to Check.
	Host string
	// Fingerprint is the SHA256 fingerprint of the key the server presented.
	Fingerprint string
	// KeyType is the type of the key the server presented, such as
	// "ssh-ed25519".
	KeyType string
	// Changed reports that a different key is pinned for Host.
	Changed bool
	// Known lists, when Changed, the pinned keys as "path:line fingerprint".
	Known []string
	// Revoked reports that the presented key is marked @revoked.
	Revoked bool
	// RevokedAt is, when Revoked, the "path:line" of the @revoked entry.
	RevokedAt string
	// Path is the known_hosts file that was checked.
	Path string
}

// Error returns a message saying what is wrong and how to fix it.
func (e *HostKeyError) Error() string {
	switch {
	case e.Revoked:
		return fmt.Sprintf("netauth: host key for %s (%s) is REVOKED by %s; refusing to connect", e.Host, e.Fingerprint, e.RevokedAt)
	case e.Changed:
		pins := make([]string, len(e.Known))
		for i, k := range e.Known {
			loc, fp, _ := strings.Cut(k, " ")
			pins[i] = loc + " pins " + fp
		}
		return fmt.Sprintf("netauth: HOST KEY CHANGED for %s: server presented %s, but %s; this may be an attack. "+
			"If the change is expected, remove the old entry (ssh-keygen -R '%s' -f %s) and run: netauth trust %s",
			e.Host, e.Fingerprint, strings.Join(pins, ", "), knownhosts.Normalize(e.Host), e.Path, e.Host)
	default:
		return fmt.Sprintf("netauth: unknown host key for %s (%s %s); if this is the right key, trust it with: netauth trust %s",
			e.Host, keyTypeLabel(e.KeyType), e.Fingerprint, e.Host)
	}
}

// keyTypeLabel gives the short key type name ssh-keygen -l prints.
func keyTypeLabel(t string) string {
	switch t {
	case ssh.KeyAlgoED25519:
		return "ED25519"
	case ssh.KeyAlgoRSA:
		return "RSA"
	case ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
		return "ECDSA"
	case "":
		return "key"
	}
	return t
}

// hostAddr is the net.Addr knownhosts needs next to the host name.
type hostAddr string

func (a hostAddr) Network() string { return "tcp" }
func (a hostAddr) String() string  { return string(a) }

// Check returns nil if key is pinned for hostport ("host:port") in the file.
// A missing file counts as empty. If the key is unknown, changed, or
// revoked, the error is a *HostKeyError; other errors are about the file or
// hostport.
func (k KnownHosts) Check(hostport string, key ssh.PublicKey) error {
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		return fmt.Errorf("keys: known_hosts: bad host %q: %w", hostport, err)
	}
	herr := &HostKeyError{Host: hostport, Fingerprint: Fingerprint(key), KeyType: key.Type(), Path: k.Path}
	fi, err := os.Stat(k.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return herr
	}
	cb, err := parsedKnownHosts(k.Path, fi)
	if err != nil {
		return fmt.Errorf("keys: known_hosts: %w", err)
	}
	err = cb(hostport, hostAddr(hostport), key)
	if err == nil {
		return nil
	}
	var kerr *knownhosts.KeyError
	var rerr *knownhosts.RevokedError
	switch {
	case errors.As(err, &rerr):
		herr.Revoked = true
		herr.RevokedAt = fmt.Sprintf("%s:%d", rerr.Revoked.Filename, rerr.Revoked.Line)
	case errors.As(err, &kerr):
		for _, w := range kerr.Want {
			herr.Changed = true
			herr.Known = append(herr.Known, fmt.Sprintf("%s:%d %s", w.Filename, w.Line, Fingerprint(w.Key)))
		}
	default:
		return fmt.Errorf("keys: known_hosts %s: checking %s: %w", k.Path, hostport, err)
	}
	return herr
}

// Add appends a line pinning key for hostport ("host:port") to the file,
// creating its directory (mode 0700) and the file (mode 0600) if needed.
func (k KnownHosts) Add(hostport string, key ssh.PublicKey) error {
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		return fmt.Errorf("keys: known_hosts: bad host %q: %w", hostport, err)
	}
	if err := os.MkdirAll(filepath.Dir(k.Path), 0o700); err != nil {
		return fmt.Errorf("keys: known_hosts: %w", err)
	}
	f, err := os.OpenFile(k.Path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("keys: known_hosts: %w", err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostport)}, key) + "\n"
	// Keep the new entry on a line of its own if the file lacks a final
	// newline.
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err != nil && err != io.EOF {
			f.Close()
			return fmt.Errorf("keys: known_hosts: %w", err)
		}
		if last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("keys: known_hosts: writing %s: %w", k.Path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keys: known_hosts: writing %s: %w", k.Path, err)
	}
	return nil
}

// knownHostsCache keeps parsed known_hosts files, keyed by path, while the file stays the same
// (same inode, size, modification and change times): a client dialing often (every resumed
// connection checks the host key) does not read and parse the file each time. It is a cache
// of the file system, shared by the process like the file itself.
var knownHostsCache sync.Map // path -> knownHostsEntry

type knownHostsEntry struct {
	id fileID
	cb ssh.HostKeyCallback
}

// fileID identifies a version of a file.
type fileID struct {
	ino, size            int64
	mtimeNsec, ctimeNsec int64
}

func idOf(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{ino: int64(st.Ino), size: fi.Size(), mtimeNsec: fi.ModTime().UnixNano(),
		ctimeNsec: st.Ctim.Sec*1e9 + st.Ctim.Nsec}, true
}

func parsedKnownHosts(path string, fi fs.FileInfo) (ssh.HostKeyCallback, error) {
	id, ok := fileID{}, false
	if fi != nil {
		id, ok = idOf(fi)
	}
	if ok {
		if v, hit := knownHostsCache.Load(path); hit && v.(knownHostsEntry).id == id {
			return v.(knownHostsEntry).cb, nil
		}
	}
	cb, err := knownhosts.New(path)
	if err == nil && ok {
		knownHostsCache.Store(path, knownHostsEntry{id: id, cb: cb})
	}
	return cb, err
}
