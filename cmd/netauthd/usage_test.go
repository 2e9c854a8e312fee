// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCommandLine: -h prints the help to standard output and exits 0; -version prints one
// line; a wrong command line exits 2 with one line naming what is wrong, before anything runs.
func TestCommandLine(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		var out, errb bytes.Buffer
		if code := run([]string{arg}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "usage: netauthd") ||
			!strings.Contains(out.String(), "-listen") || errb.Len() != 0 {
			t.Errorf("netauthd %s: exit %d, stdout %q..., stderr %q; want exit 0 and the help with the flags on stdout", arg, code, firstLine(out.String()), errb.String())
		}
	}
	re := regexp.MustCompile(`^netauthd \S+ \((commit [0-9a-f]+(, modified)?; )?go[0-9.]+\S*\)\n$`)
	for _, arg := range []string{"-version", "--version"} {
		var out, errb bytes.Buffer
		if code := run([]string{arg}, &out, &errb); code != 0 || !re.MatchString(out.String()) || errb.Len() != 0 {
			t.Errorf("netauthd %s: exit %d, stdout %q, stderr %q; want exit 0 and one line matching %s", arg, code, out.String(), errb.String(), re)
		}
	}

	dir := t.TempDir()
	conf := filepath.Join(dir, "netauthd.conf")
	if err := os.WriteFile(conf, []byte("host-key "+dir+"/host_key\naudit-log "+dir+"/audit.log\n\nservice whoami {\n  listen 127.0.0.1:0\n  program /bin/cat\n  users *\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-bogus"}, "netauthd: flag provided but not defined: -bogus"},
		{[]string{"-config"}, "netauthd: flag needs an argument: -config"},
		{[]string{"extra"}, `netauthd: unexpected argument "extra"`},
		{[]string{"-log-level", "loud"}, `netauthd: -log-level "loud": want debug, info, warn or error`},
		{[]string{"-log-format", "xml"}, `netauthd: -log-format "xml": want text or json`},
		// -listen moves the embedded default's service; a file says where its services listen.
		{[]string{"-config", conf, "-listen", "127.0.0.1:4001"}, "netauthd: -listen is for the embedded default"},
		{[]string{"-check", "-listen", "127.0.0.1:4001", "-config", conf}, "netauthd: -listen is for the embedded default"},
	} {
		var out, errb bytes.Buffer
		code := run(tt.args, &out, &errb)
		if code != 2 || out.Len() != 0 || strings.Count(errb.String(), "\n") != 1 || !strings.HasPrefix(errb.String(), tt.want) ||
			!strings.HasSuffix(errb.String(), "(see 'netauthd -h')\n") {
			t.Errorf("netauthd %q: exit %d, stdout %q, stderr %q; want exit 2 and one line %q... (see 'netauthd -h')", tt.args, code, out.String(), errb.String(), tt.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("netauthd created files before refusing its command line: %v", ents)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
