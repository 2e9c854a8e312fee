// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"testing"
)

func TestLookupAccountRoot(t *testing.T) {
	a, err := LookupAccount("root")
	if err != nil {
		t.Fatalf("LookupAccount(root): %v", err)
	}
	if a.Name != "root" || a.UID != 0 || a.GID != 0 || len(a.Groups) == 0 || a.Groups[0] != 0 ||
		len(a.GroupNames) == 0 || a.GroupNames[0] != "root" || a.Home == "" {
		t.Errorf("LookupAccount(root) = %+v", a)
	}
	seen := map[uint32]bool{}
	for _, g := range a.Groups {
		if seen[g] {
			t.Errorf("group %d listed twice in %v", g, a.Groups)
		}
		seen[g] = true
	}
	if a.Shell == "" {
		t.Logf("root has no shell in /etc/passwd")
	}
}

func TestLookupAccountMissing(t *testing.T) {
	_, err := LookupAccount("netauth-no-such-user")
	var unknown user.UnknownUserError
	if !errors.As(err, &unknown) {
		t.Errorf("LookupAccount of a missing user: %v, want a user.UnknownUserError", err)
	}
	if _, err := LookupAccount("../root"); err == nil {
		t.Errorf("LookupAccount of an invalid name succeeded")
	}
}

func TestShellOf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	data := "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/zsh\nbroken line\nbob:x:1001:1001::/home/bob:\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, uid, want string }{
		{"alice", "1000", "/bin/zsh"},
		{"alice", "1001", ""},
		{"bob", "1001", ""},
		{"carol", "1002", ""},
	} {
		got, err := shellOf(path, tt.name, tt.uid)
		if err != nil || got != tt.want {
			t.Errorf("shellOf(%s, %s) = %q, %v; want %q", tt.name, tt.uid, got, err, tt.want)
		}
	}
	if got, err := shellOf(filepath.Join(t.TempDir(), "none"), "alice", "1000"); got != "" || err != nil {
		t.Errorf("shellOf of a missing file = %q, %v", got, err)
	}
}
