// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/identity"
	"ubns.dev/netauth/internal/keys"
)

// TestAuditExportCertificate: the record of a full handshake signed with an OpenSSH user
// certificate (made by ssh-keygen -s) exports an allowed_signers line naming the CA with
// cert-authority, and the printed ssh-keygen -Y verify command accepts it, also after the
// certificate expired (it checks the certificate at the record's time).
func TestAuditExportCertificate(t *testing.T) {
	dir := t.TempDir()
	hostPriv, host, hostPub := auditHost(t, dir)
	ca, id := filepath.Join(dir, "ca"), filepath.Join(dir, "id")
	for _, args := range [][]string{
		{"-q", "-t", "ed25519", "-N", "", "-f", ca},
		{"-q", "-t", "ed25519", "-N", "", "-f", id},
		{"-q", "-s", ca, "-I", "alice@laptop", "-n", "alice", "-z", "17", "-V", "20200101:20200201", id + ".pub"},
	} {
		if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %v: %v: %s", args, err, out)
		}
	}
	privPEM, err := os.ReadFile(id)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	certText, err := os.ReadFile(id + "-cert.pub")
	if err != nil {
		t.Fatal(err)
	}
	certKey, _, _, _, err := ssh.ParseAuthorizedKey(certText)
	if err != nil {
		t.Fatal(err)
	}
	cert := certKey.(*ssh.Certificate)
	certSigner, err := ssh.NewCertSigner(cert, signer)
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2020, 1, 15, 12, 0, 0, 0, time.UTC)
	st := keys.Statement{HandshakeHash: bytes.Repeat([]byte{7}, 32), HostKey: host, Service: "imap", User: "alice", Time: when}
	text, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := keys.Sign(certSigner, audit.UserNamespace, text)
	if err != nil {
		t.Fatal(err)
	}
	idt := &identity.Identity{User: "alice", Service: "imap", Statement: text, Signature: sig}
	idt.SetKey(cert)
	idt.SetHostKey(host)
	rec := audit.NewRecord(idt, "192.0.2.1:40000", audit.Accepted)
	rec.Time = when
	logPath := filepath.Join(dir, "audit.log")
	w, err := audit.Open(logPath, hostPriv, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	line, _ := os.ReadFile(logPath)
	if !bytes.Contains(line, []byte(`"cert_key_id":"alice@laptop","cert_serial":17,"cert_ca_fp":"SHA256:`)) {
		t.Fatalf("the record does not name the certificate:\n%s", line)
	}
	if code, out, errOut := runAudit("verify", "-host-key", hostPub, logPath); code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
	}

	outDir := t.TempDir()
	code, out, errOut := runAudit("export", "-seq", "1", "-dir", outDir, "-host-key", hostPub, logPath)
	if code != 0 {
		t.Fatalf("export: exit %d\n%s%s", code, out, errOut)
	}
	signers, err := os.ReadFile(filepath.Join(outDir, "allowed_signers"))
	if err != nil {
		t.Fatal(err)
	}
	caText, _ := os.ReadFile(ca + ".pub")
	caPub, _, _, _, _ := ssh.ParseAuthorizedKey(caText)
	if want := `alice cert-authority,namespaces="netauth-v1@ubns.dev" ` + string(ssh.MarshalAuthorizedKey(caPub)); string(signers) != want {
		t.Fatalf("allowed_signers %q, want %q", signers, want)
	}
	if !strings.Contains(out, `the key is certificate "alice@laptop" (serial 17) of CA `+ssh.FingerprintSHA256(caPub)) {
		t.Errorf("export output:\n%s", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	cmd := lines[len(lines)-1]
	if !strings.Contains(cmd, " -Overify-time=20200115120000Z ") {
		t.Fatalf("the printed command does not check the certificate at the record's time: %s", cmd)
	}
	res, err := exec.Command("/bin/sh", "-c", cmd).CombinedOutput()
	if err != nil || !strings.Contains(string(res), `Good "netauth-v1@ubns.dev" signature for alice`) {
		t.Fatalf("the printed command failed: %v\n%s", err, res)
	}
	// Checked now, the certificate has expired: ssh-keygen refuses it.
	now := strings.Replace(cmd, " -Overify-time=20200115120000Z", "", 1)
	if res, err := exec.Command("/bin/sh", "-c", now).CombinedOutput(); err == nil {
		t.Fatalf("ssh-keygen accepted an expired certificate:\n%s", res)
	}
}
