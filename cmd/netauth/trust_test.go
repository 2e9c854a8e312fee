// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"ubns.dev/netauth"
)

// TestTrustFingerprintPaste: at the trust prompt, a pasted fingerprint is compared with the
// server's, as ssh does: the right one trusts the key, another writes nothing.
func TestTrustFingerprintPaste(t *testing.T) {
	e := newCLIEnv(t)
	old := trustFiles
	trustFiles = []netauth.KnownHostsFile{}
	t.Cleanup(func() { trustFiles = old })
	var out, errb bytes.Buffer
	wrong := "SHA256:" + strings.Repeat("A", 43)
	if code := run([]string{"trust", e.addr}, strings.NewReader(wrong+"\n"), &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "does not match the server's key "+e.hostFP) {
		t.Fatalf("trust with a wrong fingerprint: exit %d, stderr %q", code, errb.String())
	}
	if _, err := os.Stat(e.knownHosts); err == nil {
		t.Fatal("trust wrote known_hosts for a wrong fingerprint")
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"trust", e.addr}, strings.NewReader("  "+e.hostFP+"\n"), &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "(yes/no/[fingerprint])") || !strings.Contains(out.String(), "added "+e.addr) {
		t.Fatalf("trust with the fingerprint pasted: exit %d, out %q, err %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"trust", e.addr}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "already trusted") {
		t.Fatalf("trust after the paste: exit %d, %q", code, out.String())
	}
}
