// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

func TestCommandLine(t *testing.T) {
	re := regexp.MustCompile(`^netauthd-acceptor \S+ \((commit [0-9a-f]+(, modified)?; )?go[0-9.]+\S*\)\n$`)
	for _, arg := range []string{"-version", "--version"} {
		var out, errb bytes.Buffer
		if code := run([]string{arg}, &out, &errb); code != 0 || !re.MatchString(out.String()) || errb.Len() != 0 {
			t.Errorf("netauthd-acceptor %s: exit %d, stdout %q, stderr %q; want exit 0 and one line matching %s", arg, code, out.String(), errb.String(), re)
		}
	}
	for _, arg := range []string{"-h", "-help", "--help"} {
		var out, errb bytes.Buffer
		if code := run([]string{arg}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "usage: netauthd-acceptor") || errb.Len() != 0 {
			t.Errorf("netauthd-acceptor %s: exit %d, stdout %q, stderr %q; want exit 0 and the usage on stdout", arg, code, out.String(), errb.String())
		}
	}
	// Run by hand without netauthd's arguments: one line, exit 2.
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 2 || strings.Count(errb.String(), "\n") != 1 || out.Len() != 0 {
		t.Errorf("netauthd-acceptor without arguments: exit %d, stdout %q, stderr %q; want exit 2 and one line", code, out.String(), errb.String())
	}
}
