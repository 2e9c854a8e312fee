// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// keygen runs ssh-keygen with args.
func keygen(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %v: %v: %s", args, err, out)
	}
}

// TestCertificateDirectivesParse: the certificate directives parse into the Config, "none"
// turns a file off, a relative path and both principals sources are errors.
func TestCertificateDirectivesParse(t *testing.T) {
	c := mustParse(t, `trusted-user-ca-keys /etc/netauth/user_ca.pub
authorized-principals-command /usr/bin/principals %u
revoked-keys /etc/netauth/revoked
host-certificate /var/lib/netauth/host_ed25519_key-cert.pub
`)
	if c.TrustedUserCAKeys != "/etc/netauth/user_ca.pub" || c.RevokedKeys != "/etc/netauth/revoked" ||
		c.HostCertificate != "/var/lib/netauth/host_ed25519_key-cert.pub" ||
		strings.Join(c.AuthorizedPrincipalsCommand, " ") != "/usr/bin/principals %u" || c.AuthorizedPrincipalsDir != "" {
		t.Fatalf("parsed %+v", c)
	}
	c = mustParse(t, "trusted-user-ca-keys none\nauthorized-principals-dir /etc/netauth/principals\nrevoked-keys none\nhost-certificate none\n")
	if c.TrustedUserCAKeys != "" || c.RevokedKeys != "" || c.HostCertificate != "" || c.AuthorizedPrincipalsDir != "/etc/netauth/principals" {
		t.Fatalf("parsed %+v", c)
	}
	for src, want := range map[string]string{
		"trusted-user-ca-keys ca.pub\n":     `trusted-user-ca-keys "ca.pub" is not an absolute path`,
		"authorized-principals-dir p\n":     `authorized-principals-dir "p" is not an absolute path`,
		"revoked-keys krl\n":                `revoked-keys "krl" is not an absolute path`,
		"host-certificate c.pub\n":          `host-certificate "c.pub" is not an absolute path`,
		"authorized-principals-command p\n": `authorized-principals-command program "p" is not an absolute path`,
		"authorized-principals-command\n":   "authorized-principals-command",
		"trusted-user-ca-keys /a /b\n":      "trusted-user-ca-keys",
		"authorized-principals-dir /p\nauthorized-principals-command /bin/p %u\n": "are both set",
	} {
		_, err := Parse("t.conf", strings.NewReader(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error containing %q", src, err, want)
		}
	}
}

// TestWriteToEveryDirective: netauthd -T's output names every directive the parser knows
// when each has a value, and reads back to the same configuration.
func TestWriteToEveryDirective(t *testing.T) {
	const conf = `host-key /k
audit-log /a
authorized-keys-dir /d
home-authorized-keys no
key-command /bin/keys %u
ticket-lifetime 2h
max-clock-skew 1m
handshake-timeout 5s
revocation-check 2s
spare-workers 3
metrics-listen 127.0.0.1:9464
trusted-user-ca-keys /etc/netauth/user_ca.pub
authorized-principals-command /usr/bin/principals -u %u
revoked-keys /etc/netauth/revoked_keys
host-certificate /k-cert.pub
service s {
    listen 127.0.0.1:1
    mode exec
    exec-worker per-connection
    program /bin/cat
    args -u
    users alice
    groups staff
    run-as user
    max-workers 2
    max-connections-per-user 2
    idle-timeout 1m
}
service b {
    listen 127.0.0.1:2
    mode backend
    backend tcp:127.0.0.1:3
    run-as account web
    users bob
}
service h {
    listen 127.0.0.1:4
    mode http-backend
    backend tcp:127.0.0.1:5
    identity-headers X-WEBAUTH-USER
    run-as account web
    users bob
}
service i {
    listen 127.0.0.1:6
    mode instance
    program /usr/bin/python3
    args -m http.server %p --bind 127.0.0.1
    instance-listen tcp
    instance-start-timeout 10s
    users bob
}
`
	out := roundTrip(t, mustParse(t, conf))
	// authorized-principals-dir and -command exclude each other: the dir in a second file.
	out += roundTrip(t, mustParse(t, "authorized-principals-dir /etc/netauth/principals\n"))
	for _, d := range directiveTable() {
		if !strings.Contains(out, d.name+" ") {
			t.Errorf("the printed configuration lacks directive %s:\n%s", d.name, out)
		}
	}
}

// certFiles makes, in dir, a user CA, a host key with a host certificate valid for validity,
// and a KRL; it returns their paths.
func certFiles(t *testing.T, dir, validity string) (caPub, hostKey, hostCert, krlFile string) {
	t.Helper()
	keygen(t, "-q", "-t", "ed25519", "-N", "", "-C", "user CA", "-f", filepath.Join(dir, "user_ca"))
	keygen(t, "-q", "-t", "ed25519", "-N", "", "-C", "host CA", "-f", filepath.Join(dir, "host_ca"))
	hostKey = filepath.Join(dir, "host_key")
	keygen(t, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", hostKey)
	keygen(t, "-q", "-s", filepath.Join(dir, "host_ca"), "-h", "-I", "host", "-n", "host.example.com", "-V", validity, hostKey+".pub")
	krlFile = filepath.Join(dir, "revoked")
	spec := filepath.Join(dir, "spec")
	if err := os.WriteFile(spec, []byte("serial: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	keygen(t, "-q", "-k", "-f", krlFile, "-s", filepath.Join(dir, "user_ca.pub"), spec)
	return filepath.Join(dir, "user_ca.pub"), hostKey, hostKey + "-cert.pub", krlFile
}

// TestCheckCertificateFiles: Check accepts good certificate files and reports each that is
// missing, writable by others, does not parse, or is a host certificate of another key;
// a host certificate close to its expiry is a warning.
func TestCheckCertificateFiles(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen is not installed (CI installs openssh-client)")
	}
	dir := t.TempDir()
	caPub, hostKey, hostCert, krlFile := certFiles(t, dir, "-1d:+30d")
	principals := filepath.Join(dir, "principals")
	if err := os.Mkdir(principals, 0o755); err != nil {
		t.Fatal(err)
	}
	good := "host-key " + hostKey + "\ntrusted-user-ca-keys " + caPub + "\nauthorized-principals-dir " + principals +
		"\nrevoked-keys " + krlFile + "\nhost-certificate " + hostCert + "\n" + okService
	prog := program(t, 0o755)
	warnings, errs := checkSrc(t, good, prog)
	if errs != nil || hasMsg(warnings, "certificate") || hasMsg(warnings, "principals") {
		t.Fatalf("good files: %v %q", errs, warnings)
	}
	// A fleet host authenticates users by their certificates alone: that is a key source.
	warnings, errs = checkSrc(t, "authorized-keys-dir none\nhome-authorized-keys no\n"+good, prog)
	if errs != nil || hasMsg(warnings, "no key source") {
		t.Fatalf("certificates as the only key source: %v %q", errs, warnings)
	}
	// The principals command is checked as key-command is.
	cmdConf := strings.Replace(good, "authorized-principals-dir "+principals, "authorized-principals-command "+prog+" %u", 1)
	if _, errs := checkSrc(t, cmdConf, prog); errs != nil {
		t.Fatalf("principals command: %v", errs)
	}
	writable := program(t, 0o757)
	if _, errs := checkSrc(t, strings.Replace(cmdConf, prog+" %u", writable+" %u", 1), prog); !hasMsg(messages(errs), "writable by group or others") {
		t.Errorf("a principals command others may write: %v", errs)
	}

	bad := func(name, content string, perm os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, perm); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caData, _ := os.ReadFile(caPub)
	otherKey := filepath.Join(dir, "other_key")
	keygen(t, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", otherKey)
	for _, tc := range []struct{ old, new, want string }{
		{caPub, filepath.Join(dir, "missing"), "trusted-user-ca-keys " + filepath.Join(dir, "missing") + " does not exist"},
		{caPub, bad("ca_writable", string(caData), 0o646), "writable by group or others"},
		{caPub, bad("ca_garbage", "not a key\n", 0o644), "trusted-user-ca-keys: usercert:"},
		{krlFile, bad("krl_garbage", "SSHKRL\n\x00garbage", 0o644), "revoked-keys: krl:"},
		{krlFile, filepath.Join(dir, "missing_krl"), "does not exist"},
		{hostCert, bad("cert_garbage", "ssh-ed25519 AAAA\n", 0o644), "host-certificate:"},
		{"host-key " + hostKey, "host-key " + otherKey, "not the host key"},
		{"host-key " + hostKey, "host-key " + filepath.Join(dir, "no_key"), "does not exist yet"},
		{principals, caPub, "is not a directory"},
	} {
		_, errs := checkSrc(t, strings.Replace(good, tc.old, tc.new, 1), prog)
		if !hasMsg(messages(errs), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.new, messages(errs), tc.want)
		}
	}
	// Principals without a CA have no effect; a certificate expiring soon is renewed.
	soon := t.TempDir()
	_, hostKey2, hostCert2, _ := certFiles(t, soon, "-1d:+2d")
	warnings, errs = checkSrc(t, "host-key "+hostKey2+"\nauthorized-principals-dir "+principals+"\nhost-certificate "+hostCert2+"\n"+okService, prog)
	if errs != nil || !hasMsg(warnings, "expires at") || !hasMsg(warnings, "trusted-user-ca-keys is not") {
		t.Errorf("certificate expiring in 2 days, principals without a CA: %v %q", errs, warnings)
	}
}
