// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func sameKeys(got, want []ssh.PublicKey) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !bytes.Equal(got[i].Marshal(), want[i].Marshal()) {
			return false
		}
	}
	return true
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestParseAuthorizedKeys(t *testing.T) {
	k1, k2 := newPub(t), newPub(t)
	ec := newSigner(t, "ecdsa-p256").PublicKey()
	tests := []struct {
		name    string
		data    string
		want    []ssh.PublicKey
		errLine string
	}{
		{"empty", "", nil, ""},
		{"comments and blanks", "# c\n\n   \n#" + authLine(k1) + "\n", nil, ""},
		{"two keys", authLine(k1) + " alice@laptop\n" + authLine(ec) + "\r\n", []ssh.PublicKey{k1, ec}, ""},
		{"no final newline", authLine(k2), []ssh.PublicKey{k2}, ""},
		{"options skipped", strings.Join([]string{
			"restrict " + authLine(k1),
			`command="/bin/true" ` + authLine(k1),
			`from="10.0.0.0/8" ` + authLine(k1),
			"no-pty " + authLine(k1),
			`permitopen="h:1" ` + authLine(k1),
			`principals="a" ` + authLine(k1),
			`expiry-time="20300101" ` + authLine(k1),
			`environment="A=b" ` + authLine(k1),
			"cert-authority " + authLine(k1),
			authLine(k2),
		}, "\n"), []ssh.PublicKey{k2}, ""},
		{"malformed line", authLine(k1) + "\n# ok\nssh-ed25519 AAAAnot-base64\n" + authLine(k2) + "\n", nil, "f:3:"},
		{"garbage", "hello world\n", nil, "f:1:"},
	}
	for _, tt := range tests {
		got, err := ParseAuthorizedKeys([]byte(tt.data), "f")
		if tt.errLine != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errLine) {
				t.Errorf("%s: err = %v, want one naming %q", tt.name, err, tt.errLine)
			}
			continue
		}
		if err != nil || !sameKeys(got, tt.want) {
			t.Errorf("%s: got %d keys, %v; want %d", tt.name, len(got), err, len(tt.want))
		}
	}

	// Too many keys.
	var b strings.Builder
	for range MaxKeysPerUser + 1 {
		b.WriteString(authLine(k1) + "\n")
	}
	if _, err := ParseAuthorizedKeys([]byte(b.String()), "f"); err == nil {
		t.Error("more than MaxKeysPerUser keys accepted")
	}
}

// TestUserFilesNoDir: a UserFiles without a directory reads nothing, in particular not
// /etc/netauth/authorized_keys: it is an error on every lookup, so a key source someone meant
// to turn off fails closed instead of reading a default directory.
func TestUserFilesNoDir(t *testing.T) {
	keys, err := UserFiles{}.Keys(context.Background(), "alice")
	if err == nil || !strings.Contains(err.Error(), "no directory") || keys != nil {
		t.Fatalf("UserFiles{}.Keys = %d keys, %v; want an error naming the missing directory", len(keys), err)
	}
}

func TestUserFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k1, k2 := newPub(t), newPub(t)
	writeFile(t, filepath.Join(dir, "alice"), "# alice\n"+authLine(k1)+" a@b\nrestrict "+authLine(k2)+"\n", 0o644)
	writeFile(t, filepath.Join(dir, "bob"), authLine(k1)+"\nnot a key\n", 0o644)
	writeFile(t, filepath.Join(dir, "carol"), authLine(k1)+"\n", 0o666)
	writeFile(t, filepath.Join(dir, "dave"), strings.Repeat("#", MaxKeyFileSize+1), 0o644)
	writeFile(t, filepath.Join(dir, "erin"), strings.Repeat("#", MaxKeyFileSize-1)+"\n", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "frank"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(filepath.Dir(dir), "secret"), authLine(k2)+"\n", 0o644)

	src := UserFiles{Dir: dir}
	tests := []struct {
		user    string
		want    []ssh.PublicKey
		wantErr string
	}{
		{"alice", []ssh.PublicKey{k1}, ""},
		{"nobody", nil, ""},
		{"bob", nil, filepath.Join(dir, "bob") + ":2:"},
		{"carol", nil, "writable by group or others"},
		{"dave", nil, "larger than"},
		{"erin", nil, ""},
		{"frank", nil, "not a regular file"},
		{"../secret", nil, "name"},
		{"..", nil, "name"},
		{".", nil, "name"},
		{"a/b", nil, "name"},
		{"", nil, "name"},
		{"-x", nil, "name"},
	}
	for _, tt := range tests {
		got, err := src.Keys(ctx, tt.user)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "keys: ") {
				t.Errorf("Keys(%q) = %d keys, %v; want error containing %q", tt.user, len(got), err, tt.wantErr)
			}
			continue
		}
		if err != nil || !sameKeys(got, tt.want) {
			t.Errorf("Keys(%q) = %d keys, %v; want %d", tt.user, len(got), err, len(tt.want))
		}
	}
}

// newHome makes a home directory (mode 0755) with a ~/.ssh (0700), and returns them and the
// path of ~/.ssh/authorized_keys, not yet written.
func newHome(t *testing.T) (home, sshDir, ak string) {
	t.Helper()
	home = t.TempDir()
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	sshDir = filepath.Join(home, ".ssh")
	if err := os.Mkdir(sshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	return home, sshDir, filepath.Join(sshDir, "authorized_keys")
}

func TestHomeAuthorizedKeys(t *testing.T) {
	ctx := context.Background()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	home, sshDir, ak := newHome(t)
	k1, k2 := newPub(t), newPub(t)
	writeFile(t, ak, authLine(k1)+" me@laptop\n"+`command="/bin/sh",no-pty `+authLine(k2)+"\nrestrict "+authLine(k2)+"\n", 0o600)

	emptyHome := t.TempDir()
	src := HomeAuthorizedKeys{Lookup: func(_ context.Context, name string) (*user.User, error) {
		switch name {
		case "alice":
			return &user.User{Username: name, Uid: me.Uid, HomeDir: home}, nil
		case "nokeys":
			return &user.User{Username: name, Uid: me.Uid, HomeDir: emptyHome}, nil
		case "relative":
			return &user.User{Username: name, Uid: me.Uid, HomeDir: "home/x"}, nil
		}
		return nil, user.UnknownUserError(name)
	}}
	got, err := src.Keys(ctx, "alice")
	if err != nil || !sameKeys(got, []ssh.PublicKey{k1}) {
		t.Fatalf("Keys(alice) = %d keys, %v; want only the key without options", len(got), err)
	}
	for _, name := range []string{"nokeys", "ghost"} {
		if got, err := src.Keys(ctx, name); err != nil || got != nil {
			t.Errorf("Keys(%s) = %v, %v; want no keys", name, got, err)
		}
	}
	for _, name := range []string{"relative", "../alice", ""} {
		if _, err := src.Keys(ctx, name); err == nil {
			t.Errorf("Keys(%q) succeeded", name)
		}
	}

	// Loose permissions anywhere on the way are refused, as sshd's
	// StrictModes does.
	for _, p := range []string{ak, sshDir, home} {
		fi, _ := os.Stat(p)
		os.Chmod(p, fi.Mode().Perm()|0o022)
		if _, err := src.Keys(ctx, "alice"); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
			t.Errorf("with %s group-writable: %v", p, err)
		}
		os.Chmod(p, fi.Mode().Perm())
	}
	if me.Uid == "0" {
		// Owned by someone who is neither the user nor root.
		if err := os.Chown(ak, 12345, 12345); err != nil {
			t.Fatal(err)
		}
		if _, err := src.Keys(ctx, "alice"); err == nil || !strings.Contains(err.Error(), "owned by uid 12345") {
			t.Errorf("with a foreign owner: %v", err)
		}
	}

	// The real user database: an unknown user has no keys.
	if got, err := (HomeAuthorizedKeys{}).Keys(ctx, "netauth-no-such-user"); err != nil || got != nil {
		t.Errorf("real lookup of an unknown user = %v, %v", got, err)
	}
}

func TestCommand(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k1, k2 := newPub(t), newPub(t)
	writeFile(t, filepath.Join(dir, "alice.keys"), authLine(k1)+"\nrestrict "+authLine(k2)+"\n", 0o644)
	script := filepath.Join(dir, "keys.sh")
	writeFile(t, script, `#!/bin/sh
# Refuse to answer unless the environment is the minimal one.
if [ "$PATH" != /usr/bin:/bin ] || [ -n "$HOME" ] || [ "$(pwd)" != / ]; then
	echo "unexpected environment" >&2; exit 9
fi
case "$2" in
--user=alice) cat "$1/alice.keys" ;;
--user=nokeys) ;;
--user=fail) echo "directory unreachable: $(head -c 1000 /dev/zero | tr '\0' x)" >&2; exit 3 ;;
--user=slow) sleep 10 ;;
--user=big) exec yes '# padding padding padding' ;;
--user=bad) echo "ssh-ed25519 garbage" ;;
*) echo "unexpected arguments: $*" >&2; exit 4 ;;
esac
`, 0o755)
	src := Command{Path: script, Args: []string{dir, "--user=%u"}}

	got, err := src.Keys(ctx, "alice")
	if err != nil || !sameKeys(got, []ssh.PublicKey{k1}) {
		t.Fatalf("Keys(alice) = %d keys, %v", len(got), err)
	}
	if got, err := src.Keys(ctx, "nokeys"); err != nil || got != nil {
		t.Fatalf("Keys(nokeys) = %v, %v", got, err)
	}

	tests := []struct {
		user    string
		timeout time.Duration
		want    []string
	}{
		{"fail", 0, []string{script, "exit status 3", "directory unreachable: xxx", "..."}},
		{"slow", 300 * time.Millisecond, []string{script, "timed out after 300ms"}},
		{"big", 0, []string{script, "more than 1048576 bytes"}},
		{"bad", 0, []string{"output of " + script + ":1:"}},
		{"../x", 0, []string{"name"}},
	}
	for _, tt := range tests {
		c := src
		c.Timeout = tt.timeout
		start := time.Now()
		_, err := c.Keys(ctx, tt.user)
		if elapsed := time.Since(start); elapsed > 4*time.Second {
			t.Errorf("Keys(%s) took %v", tt.user, elapsed)
		}
		if err == nil {
			t.Errorf("Keys(%s) succeeded", tt.user)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Keys(%s) error %q lacks %q", tt.user, err, w)
			}
		}
		if len(err.Error()) > 1024 {
			t.Errorf("Keys(%s) error is %d bytes long", tt.user, len(err.Error()))
		}
	}

	if _, err := (Command{}).Keys(ctx, "alice"); err == nil {
		t.Error("Command without a path succeeded")
	}
	if _, err := (Command{Path: filepath.Join(dir, "missing")}).Keys(ctx, "alice"); err == nil {
		t.Error("Command with a missing program succeeded")
	}
}

// staticSource gives fixed keys, or an error.
type staticSource struct {
	keys []ssh.PublicKey
	err  error
}

func (s staticSource) Keys(context.Context, string) ([]ssh.PublicKey, error) { return s.keys, s.err }

func TestMultiAndAuthorized(t *testing.T) {
	ctx := context.Background()
	k1, k2, k3, k4 := newPub(t), newPub(t), newPub(t), newPub(t)
	boom := errors.New("boom")
	m := Multi{staticSource{keys: []ssh.PublicKey{k1, k2}}, staticSource{}, staticSource{keys: []ssh.PublicKey{k2, k3}}}
	got, err := m.Keys(ctx, "alice")
	if err != nil || !sameKeys(got, []ssh.PublicKey{k1, k2, k3}) {
		t.Fatalf("Multi.Keys = %d keys, %v; want 3 in order", len(got), err)
	}
	if got, err := (Multi{}).Keys(ctx, "alice"); err != nil || got != nil {
		t.Fatalf("empty Multi = %v, %v", got, err)
	}
	bad := append(Multi{}, m[0], staticSource{err: boom})
	if _, err := bad.Keys(ctx, "alice"); !errors.Is(err, boom) || !strings.Contains(err.Error(), "source 1") {
		t.Fatalf("Multi with a failing source = %v", err)
	}

	tests := []struct {
		name    string
		src     Source
		user    string
		key     ssh.PublicKey
		want    bool
		wantErr bool
	}{
		{"first", m, "alice", k1, true, false},
		{"last", m, "alice", k3, true, false},
		{"absent", m, "alice", k4, false, false},
		{"no keys", Multi{}, "alice", k1, false, false},
		{"error", bad, "alice", k1, false, true},
		{"bad name", m, "a/b", k1, false, true},
	}
	for _, tt := range tests {
		ok, err := Authorized(ctx, tt.src, tt.user, tt.key)
		if ok != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("%s: Authorized = %v, %v; want %v, error %v", tt.name, ok, err, tt.want, tt.wantErr)
		}
	}
}
