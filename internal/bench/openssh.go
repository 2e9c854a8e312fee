// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// openSSH is a private sshd on 127.0.0.1 (its own host key, configuration and authorized
// keys in the run's directory) and the client command lines that log in to it as root with
// a generated key and run a command echoing msgSize bytes, directly or over a multiplexed
// master connection.
type openSSH struct {
	sshd   *exec.Cmd
	master *exec.Cmd
	ssh    string
	base   []string // client arguments common to every connection
	dest   []string // user@host and the remote command
	ctl    string   // the master's control socket
	stderr *tailWriter
}

// sshSkip explains how to include OpenSSH when it cannot be measured.
const sshSkip = "install openssh-server to include OpenSSH"

// startOpenSSH starts sshd and a multiplexing master. It returns a reason to skip the rows
// (and no error) when sshd or the ssh client is missing, or when not running as root.
func startOpenSSH(dir string, root bool) (o *openSSH, skip string, err error) {
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/sshd"); serr != nil {
			return nil, "no sshd: " + sshSkip, nil
		}
		sshd = "/usr/sbin/sshd"
	}
	if sshd, err = filepath.Abs(sshd); err != nil {
		return nil, "", err
	}
	client, err := exec.LookPath("ssh")
	if err != nil {
		return nil, "no ssh client: install openssh-client to include OpenSSH", nil
	}
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		return nil, "no ssh-keygen: install openssh-client to include OpenSSH", nil
	}
	if !root {
		return nil, "a private sshd that logs users in needs root", nil
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, "", fmt.Errorf("sshd's privilege separation directory: %w", err)
	}
	hostKey, userKey := filepath.Join(dir, "ssh_host_ed25519_key"), filepath.Join(dir, "ssh_user_ed25519_key")
	for _, k := range []string{hostKey, userKey} {
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "netauth-bench", "-f", k).CombinedOutput(); err != nil {
			return nil, "", fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	userPub, err := os.ReadFile(userKey + ".pub")
	if err != nil {
		return nil, "", err
	}
	hostPub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		return nil, "", err
	}
	authKeys := filepath.Join(dir, "ssh_authorized_keys")
	if err := os.WriteFile(authKeys, userPub, 0o600); err != nil {
		return nil, "", err
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	known := filepath.Join(dir, "ssh_known_hosts")
	f := strings.Fields(string(hostPub))
	if err := os.WriteFile(known, fmt.Appendf(nil, "[127.0.0.1]:%d %s %s\n", port, f[0], f[1]), 0o644); err != nil {
		return nil, "", err
	}
	conf := filepath.Join(dir, "sshd_config")
	text := fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s
PidFile %s
AuthorizedKeysFile %s
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 100:30:200
MaxSessions 100
`, port, hostKey, filepath.Join(dir, "sshd.pid"), authKeys)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, "", err
	}
	o = &openSSH{ssh: client, ctl: filepath.Join(dir, "ssh_ctl"), stderr: &tailWriter{max: 4 << 10}}
	o.sshd = exec.Command(sshd, "-D", "-e", "-f", conf)
	o.sshd.Stderr = o.stderr
	if err := o.sshd.Start(); err != nil {
		return nil, "", fmt.Errorf("starting sshd: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitListening(addr, 5*time.Second); err != nil {
		o.stop()
		return nil, "", fmt.Errorf("sshd: %w %s", err, o.stderr)
	}
	o.base = []string{"-F", "/dev/null", "-i", userKey, "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=" + known,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-o", "LogLevel=ERROR", "-p", strconv.Itoa(port)}
	o.dest = []string{"root@127.0.0.1", "head -c " + strconv.Itoa(msgSize)}
	o.master = exec.Command(client, append(o.base, "-o", "ControlMaster=yes", "-o", "ControlPath="+o.ctl, "-N", "root@127.0.0.1")...)
	o.master.Stderr = o.stderr
	if err := o.master.Start(); err != nil {
		o.stop()
		return nil, "", fmt.Errorf("starting the ssh master connection: %w", err)
	}
	for i := 0; ; i++ {
		if exec.Command(client, "-o", "ControlPath="+o.ctl, "-O", "check", "root@127.0.0.1").Run() == nil {
			break
		}
		if i == 500 {
			o.stop()
			return nil, "", fmt.Errorf("the ssh master connection did not come up %s", o.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return o, "", nil
}

// op returns the workload over a new OpenSSH login (mux false) or a new session on the
// master connection (mux true).
func (o *openSSH) op(mux bool) func() error {
	args := append([]string(nil), o.base...)
	if mux {
		args = append(args, "-o", "ControlMaster=no", "-o", "ControlPath="+o.ctl)
	} else {
		args = append(args, "-o", "ControlMaster=no", "-o", "ControlPath=none")
	}
	args = append(args, o.dest...)
	req := bytes.Repeat([]byte{'n'}, msgSize)
	return func() error {
		cmd := exec.Command(o.ssh, args...)
		cmd.Stdin = bytes.NewReader(req)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("ssh: %v: %s", err, strings.TrimSpace(errOut.String()))
		}
		if !bytes.Equal(out.Bytes(), req) {
			return fmt.Errorf("ssh: got %d bytes back, want the %d sent", out.Len(), msgSize)
		}
		return nil
	}
}

// stop ends the master connection and sshd.
func (o *openSSH) stop() {
	for _, c := range []*exec.Cmd{o.master, o.sshd} {
		if c != nil && c.Process != nil {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits until addr accepts TCP connections.
func waitListening(addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(addr + " is not listening")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
