// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"ubns.dev/netauth/internal/audit"
)

// TestVerifyCommandsDocumented: README.md and docs/SECURITY.md give the exact ssh-keygen
// commands, with the namespaces and principal, that `netauth audit export` prints (its
// format, with DIR and USER for the directory and the user), so that an auditor need not
// find them in PROTOCOL.md.
func TestVerifyCommandsDocumented(t *testing.T) {
	const format = "ssh-keygen -Y verify -f %s -I %s -n %s -s %s < %s" // as exportRecord and exportCheckpoint print
	want := []string{
		fmt.Sprintf(format, "DIR/allowed_signers", "USER", audit.UserNamespace, "DIR/statement.sig", "DIR/statement"),
		fmt.Sprintf(format, "DIR/allowed_signers", audit.HostPrincipal, audit.Namespace, "DIR/checkpoint.sig", "DIR/checkpoint"),
	}
	for _, doc := range []string{"../../README.md", "../../docs/SECURITY.md"} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(string(data), w) {
				t.Errorf("%s lacks the command\n%s", doc, w)
			}
		}
	}
}
