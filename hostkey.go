// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
)

// LoadOrCreateHostKey loads the OpenSSH-format Ed25519 host key at path, generating and
// saving a new one (mode 0600, with path+".pub") if the file does not exist.
func LoadOrCreateHostKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	return keys.LoadOrCreateHostKey(path)
}

// LoadHostCertificate reads the OpenSSH host certificate of key at path (the -cert.pub file
// ssh-keygen -s CA -h -I id -n names writes), for ServerConfig.HostCertificate. It refuses a
// certificate that is not a host certificate of key, has no principals or critical options,
// or is not valid now; warning, if not empty, says it expires within a week.
func LoadHostCertificate(path string, key ed25519.PrivateKey) (cert *ssh.Certificate, warning string, err error) {
	return keys.LoadHostCertificate(path, key, time.Now())
}

// DefaultKnownHostsFile returns the known_hosts file a zero Config uses.
func DefaultKnownHostsFile() (string, error) { return keys.DefaultKnownHostsPath() }

// KnownHostsFile is a known_hosts file the client reads (Config.KnownHostsFiles): Path, and
// SSH, which marks OpenSSH's own files, whose entries match the host on any port and in
// which a different key for the host is not a changed key (it is sshd's; netauthd may use a
// key of its own).
type KnownHostsFile = keys.KnownHostsFile

// SystemKnownHostsFile is the system-wide netauth known_hosts file.
const SystemKnownHostsFile = "/etc/netauth/known_hosts"

// DefaultKnownHostsFiles returns the files a client reads after its own known_hosts file
// when Config.KnownHostsFiles is nil: SystemKnownHostsFile, then OpenSSH's
// ~/.ssh/known_hosts (if the home directory is known) and /etc/ssh/ssh_known_hosts.
func DefaultKnownHostsFiles() []KnownHostsFile {
	files := []KnownHostsFile{{Path: SystemKnownHostsFile}}
	if home, err := os.UserHomeDir(); err == nil {
		files = append(files, KnownHostsFile{Path: filepath.Join(home, ".ssh", "known_hosts"), SSH: true})
	}
	return append(files, KnownHostsFile{Path: "/etc/ssh/ssh_known_hosts", SSH: true})
}

// knownHostsFiles returns the files to check, in order: first (DefaultKnownHostsFile if
// empty), then rest (DefaultKnownHostsFiles if nil).
func knownHostsFiles(first string, rest []KnownHostsFile) ([]KnownHostsFile, error) {
	if first == "" {
		p, err := keys.DefaultKnownHostsPath()
		if err != nil {
			return nil, fmt.Errorf("netauth: %w", err)
		}
		first = p
	}
	if rest == nil {
		rest = DefaultKnownHostsFiles()
	}
	return append([]KnownHostsFile{{Path: first}}, rest...), nil
}

// CheckHostKey checks key, a server's host key or host certificate, for hostport
// ("host:port") the way Dial does with a Config whose KnownHostsFile and KnownHostsFiles are
// file and files: nil if it is trusted, a *HostKeyError if it is unknown, changed or
// revoked.
//
// A key is refused if any file marks it, or the CA of its certificate, @revoked. A host
// certificate is accepted if a @cert-authority line for the host (OpenSSH patterns, hashed
// names, "[host]:port" for a port other than 22) names its CA, it is a host certificate
// whose principals match the host name (without the port), valid by this machine's clock,
// with no critical options. Otherwise its key is checked as a plain key: the first netauth
// file (SSH false) that pins an Ed25519 key for "[host]:port" decides, and another key
// there is a changed key, whatever later files say; only when none pins the host do the
// SSH files count, and any of their entries for the host, on any port, with the key
// trusts it.
func CheckHostKey(file string, files []KnownHostsFile, hostport string, key ssh.PublicKey) error {
	all, err := knownHostsFiles(file, files)
	if err != nil {
		return err
	}
	return keys.HostChecker{Files: all}.Check(hostport, key)
}

// Trust pins key as the host key of hostport in the known_hosts file (DefaultKnownHostsFile
// if file is empty). For a host certificate, its key is pinned.
func Trust(file, hostport string, key ssh.PublicKey) error {
	if cert, ok := key.(*ssh.Certificate); ok {
		key = cert.Key
	}
	if file == "" {
		var err error
		if file, err = keys.DefaultKnownHostsPath(); err != nil {
			return err
		}
	}
	return keys.KnownHosts{Path: file}.Add(hostport, key)
}

// errGotHostKey stops a handshake once the host key is known.
var errGotHostKey = errors.New("host key received")

// FetchHostKey connects to a netauth server and returns its host key (an *ssh.Certificate if
// the server presents a host certificate) and service name,
// verified by the server's signature over the handshake but NOT checked against known_hosts:
// the caller decides whether to trust it (as ssh-keyscan does). No user authenticates; the
// server sees an abandoned handshake.
func FetchHostKey(ctx context.Context, network, hostport string) (ssh.PublicKey, string, error) {
	nc, err := (&net.Dialer{}).DialContext(ctx, network, hostport)
	if err != nil {
		return nil, "", fmt.Errorf("netauth: %w", err)
	}
	defer nc.Close()
	deadline := time.Now().Add(DefaultHandshakeTimeout)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	_ = nc.SetDeadline(deadline)
	var got ssh.PublicKey
	var service string
	cfg := &handshake.ClientConfig{
		User: "nobody",
		CheckHostKey: func(k ssh.PublicKey, svc string) error {
			got, service = k, svc
			return errGotHostKey
		},
		Ephemeral: clientKeys().Get,
		KEM:       clientKEMKeys().Get,
	}
	_, err = handshake.RunClient(record.NewConn(nc), cfg)
	if !errors.Is(err, errGotHostKey) {
		if err == nil {
			err = errors.New("netauth: server completed a handshake without authenticating")
		}
		return nil, "", err
	}
	return got, service, nil
}
