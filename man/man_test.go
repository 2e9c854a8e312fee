// SPDX-License-Identifier: Apache-2.0

package man_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/policy"
)

// pages are the manual pages in this directory.
var pages = []string{"netauth.1", "netauthd.8", "netauthd.conf.5"}

// bin is the directory of the programs built by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "netauth-man-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		gocmd, err := exec.LookPath("go")
		if err != nil {
			gocmd = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(gocmd, "build", "-o", dir+string(filepath.Separator), "./cmd/netauth", "./cmd/netauthd", "./cmd/netauthd-acceptor")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building the programs: %v\n%s", err, out)
			return 1
		}
		bin = dir
		return m.Run()
	}()
	os.Exit(code)
}

// TestLint: mandoc finds nothing to warn about in any page.
func TestLint(t *testing.T) {
	mandoc, err := exec.LookPath("mandoc")
	if err != nil {
		t.Skip("mandoc is not installed (apt-get install mandoc; CI installs it)")
	}
	for _, page := range pages {
		out, err := exec.Command(mandoc, "-T", "lint", "-W", "warning", page).CombinedOutput()
		if err != nil || len(out) != 0 {
			t.Errorf("mandoc -T lint -W warning %s: %v\n%s", page, err, out)
		}
	}
}

// help runs a program with args and -h, and returns what it printed: its help, which must
// go to standard output with exit status 0.
func help(t *testing.T, prog string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(filepath.Join(bin, prog), append(args, "-h")...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || errb.Len() != 0 || out.Len() == 0 {
		t.Fatalf("%s %s -h: %v, stderr %q; want its help on stdout and exit 0", prog, strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

var (
	// flagLine is a flag's first line in the Flags section flag.PrintDefaults writes.
	flagLine = regexp.MustCompile(`^  -([^\s=]+)`)
	// synopsisFlag is a flag in a usage line.
	synopsisFlag = regexp.MustCompile(`(?:^|[\s\[|(])-(-?[a-zA-Z][\w-]*)`)
	// commandLine is a command in a "Commands:" list.
	commandLine = regexp.MustCompile(`^  ([a-z]+)\s{2,}\S`)
)

// flagsOf returns the flags a help text names: those in its Flags section (what
// flag.PrintDefaults prints), and those in its usage lines (the first paragraph), such as
// netauthd's -worker or --version. A flag written --name is returned as "-name", as an mdoc
// page writes it (Fl -name).
func flagsOf(helpText string) []string {
	var flags []string
	lines := strings.Split(helpText, "\n")
	for i, line := range lines {
		if line == "" {
			break
		}
		if i > 0 && !strings.HasPrefix(line, " ") {
			break
		}
		for _, m := range synopsisFlag.FindAllStringSubmatch(line, -1) {
			flags = append(flags, m[1])
		}
	}
	if i := slices.Index(lines, "Flags:"); i >= 0 {
		for _, line := range lines[i+1:] {
			if m := flagLine.FindStringSubmatch(line); m != nil {
				flags = append(flags, m[1])
			}
		}
	}
	slices.Sort(flags)
	return slices.Compact(flags)
}

// commandsOf returns the commands listed in a help text's "Commands:" section.
func commandsOf(helpText string) []string {
	var cmds []string
	lines := strings.Split(helpText, "\n")
	i := slices.Index(lines, "Commands:")
	if i < 0 {
		return nil
	}
	for _, line := range lines[i+1:] {
		if line == "" {
			break
		}
		if m := commandLine.FindStringSubmatch(line); m != nil {
			cmds = append(cmds, m[1])
		}
	}
	return cmds
}

// readPage returns the lines of a page's source.
func readPage(t *testing.T, page string) []string {
	t.Helper()
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(b), "\n")
}

// section returns the lines of the section (.Sh) or subsection (.Ss) whose title is title,
// up to the next one of either; ok is false if there is none.
func section(lines []string, macro, title string) (sec []string, ok bool) {
	for i, line := range lines {
		if line != macro+" "+title && line != macro+` "`+title+`"` {
			continue
		}
		for _, l := range lines[i+1:] {
			if strings.HasPrefix(l, ".Sh ") || strings.HasPrefix(l, ".Ss ") {
				break
			}
			sec = append(sec, l)
		}
		return sec, true
	}
	return nil, false
}

// without returns lines without the section (.Sh) whose title is title.
func without(lines []string, title string) []string {
	var out []string
	skip := false
	for _, line := range lines {
		if strings.HasPrefix(line, ".Sh ") {
			skip = line == ".Sh "+title
		}
		if !skip {
			out = append(out, line)
		}
	}
	return out
}

// pageFlags returns the flags the mdoc lines name (every "Fl NAME" on a macro line), and
// those they describe as options (".It Fl NAME").
func pageFlags(lines []string) (named, described map[string]bool) {
	named, described = map[string]bool{}, map[string]bool{}
	for _, line := range lines {
		if !strings.HasPrefix(line, ".") {
			continue
		}
		f := strings.Fields(line[1:])
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "Fl" {
				named[f[i+1]] = true
			}
		}
		if len(f) >= 3 && f[0] == "It" && f[1] == "Fl" {
			described[f[2]] = true
		}
	}
	return named, described
}

// checkFlags reports every flag of help that lines do not name, and every option that
// lines describe that help does not have.
func checkFlags(t *testing.T, what, page string, helpText string, lines []string) {
	t.Helper()
	flags := flagsOf(helpText)
	named, described := pageFlags(lines)
	for _, f := range flags {
		if !named[f] {
			t.Errorf("%s: flag -%s is not in %s", what, f, page)
		}
	}
	for f := range described {
		if !slices.Contains(flags, f) {
			t.Errorf("%s: %s describes a flag -%s that its -h does not have", what, page, f)
		}
	}
}

// TestNetauthPage: netauth(1) has a subsection for every command (and every audit command)
// that netauth -h lists, which names every flag that command's -h prints and describes no
// other.
func TestNetauthPage(t *testing.T) {
	lines := readPage(t, "netauth.1")
	top := help(t, "netauth")
	cmds := commandsOf(top)
	if len(cmds) < 5 {
		t.Fatalf("netauth -h lists %d commands (%q); want the list after \"Commands:\"", len(cmds), cmds)
	}
	var check func(path []string)
	check = func(path []string) {
		name := "netauth " + strings.Join(path, " ")
		text := help(t, "netauth", path...)
		sec, ok := section(lines, ".Ss", name)
		if !ok {
			t.Errorf("netauth.1 has no subsection for %s (.Ss %s)", name, name)
			return
		}
		checkFlags(t, name, "netauth.1", text, sec)
		// A command with commands of its own (netauth audit) lists them in its help.
		if strings.HasPrefix(text, "usage: "+name+" <command>") {
			subs := commandsOf(text)
			if len(subs) == 0 {
				t.Errorf("%s -h lists no commands", name)
			}
			for _, sub := range subs {
				check(append(slices.Clip(path), sub))
			}
		}
	}
	for _, c := range cmds {
		check([]string{c})
	}
	// The signature namespaces ssh-keygen -Y verify needs.
	page := strings.Join(lines, "\n")
	for _, ns := range []string{audit.UserNamespace, audit.Namespace} {
		if !strings.Contains(page, ns) {
			t.Errorf("netauth.1 does not give the signature namespace %s", ns)
		}
	}
}

// TestNetauthdPage: netauthd(8) names every flag of netauthd -h and describes no other, and
// its section on the acceptor names every flag of netauthd-acceptor -h.
func TestNetauthdPage(t *testing.T) {
	lines := readPage(t, "netauthd.8")
	const acceptorSection = "THE ACCEPTOR"
	checkFlags(t, "netauthd", "netauthd.8", help(t, "netauthd"), without(lines, acceptorSection))
	sec, ok := section(lines, ".Sh", acceptorSection)
	if !ok {
		t.Fatalf("netauthd.8 has no section %q", acceptorSection)
	}
	text := help(t, "netauthd-acceptor")
	named, _ := pageFlags(sec)
	for _, f := range flagsOf(text) {
		if !named[f] {
			t.Errorf("netauthd-acceptor: flag -%s is not in netauthd.8's %s", f, acceptorSection)
		}
	}
	for _, sig := range []string{"SIGHUP", "SIGTERM", "SIGINT"} {
		if s, _ := section(lines, ".Sh", "SIGNALS"); !slices.ContainsFunc(s, func(l string) bool { return strings.Contains(l, "Dv "+sig) }) {
			t.Errorf("netauthd.8's SIGNALS does not say what %s does", sig)
		}
	}
}

// directives returns the names of every directive the configuration parser knows, global
// and in a service block, from its own error for an unknown directive, which lists them.
func directives(t *testing.T) []string {
	t.Helper()
	const bogus = "zzzzzzzzzzzzzzzz"
	_, err := policy.Parse("test.conf", strings.NewReader(bogus+" 1\nservice s {\n"+bogus+" 1\n}\n"))
	if err == nil {
		t.Fatal("the parser accepted an unknown directive")
	}
	re := regexp.MustCompile(`unknown directive "` + bogus + `"(?: in service "s")?: want one of ([a-z, -]+)`)
	ms := re.FindAllStringSubmatch(err.Error(), -1)
	if len(ms) != 2 {
		t.Fatalf("the parser's errors for an unknown directive, global and in a service, do not list the directives as expected: %v", err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, strings.Split(m[1], ", ")...)
	}
	return names
}

// TestConfPage: netauthd.conf(5) describes every directive of the parser (".It Cm NAME"),
// each with its default (or saying that it is required), and the defaults are the parser's.
func TestConfPage(t *testing.T) {
	lines := readPage(t, "netauthd.conf.5")
	names := directives(t)
	if len(names) < 10 {
		t.Fatalf("found %d directives (%q); want the parser's list", len(names), names)
	}
	defaults := map[string]string{
		"host-key":                 policy.DefaultHostKey,
		"audit-log":                policy.DefaultAuditLog,
		"authorized-keys-dir":      policy.DefaultAuthorizedKeysDir,
		"ticket-lifetime":          duration(policy.DefaultTicketLifetime),
		"max-clock-skew":           duration(policy.DefaultMaxClockSkew),
		"handshake-timeout":        duration(policy.DefaultHandshakeTimeout),
		"revocation-check":         duration(policy.DefaultRevocationCheck),
		"spare-workers":            strconv.Itoa(policy.DefaultSpareWorkers),
		"max-workers":              strconv.Itoa(policy.DefaultMaxWorkers),
		"max-connections-per-user": strconv.Itoa(policy.DefaultMaxConnsPerUser),
		"idle-timeout":             duration(policy.DefaultIdleTimeout),
	}
	for _, name := range names {
		item, ok := directiveItem(lines, name)
		if !ok {
			t.Errorf("netauthd.conf.5 does not describe directive %q (.It Cm %s ...)", name, name)
			continue
		}
		if name == "service" {
			continue
		}
		text := strings.Join(item, "\n")
		if !strings.Contains(text, "Default") && !strings.Contains(strings.ToLower(text), "required") {
			t.Errorf("netauthd.conf.5: directive %q gives no default and does not say it is required", name)
		}
		if d, ok := defaults[name]; ok && !regexp.MustCompile(`Default:\s*(\.\S+ )?`+regexp.QuoteMeta(d)+`\b`).MatchString(text) {
			t.Errorf("netauthd.conf.5: the default of %q is %s, which the page does not give", name, d)
		}
	}
	for name := range defaults {
		if !slices.Contains(names, name) {
			t.Errorf("directive %q is not in the parser's list any more: update this test and the page", name)
		}
	}
}

// directiveItem returns the item of a page's outermost lists that describes directive name:
// from its ".It Cm name" line up to the next item of that list (a nested list, such as the
// values of mode, belongs to the item).
func directiveItem(lines []string, name string) (item []string, ok bool) {
	depth := 0
	for i, line := range lines {
		switch {
		case strings.HasPrefix(line, ".Bl "):
			depth++
		case line == ".El":
			depth--
		}
		f := strings.Fields(line)
		if depth != 1 || len(f) < 3 || f[0] != ".It" || f[1] != "Cm" || f[2] != name {
			continue
		}
		d := depth
		for _, l := range lines[i+1:] {
			switch {
			case strings.HasPrefix(l, ".Bl "):
				d++
			case l == ".El":
				d--
			}
			if d == 0 || d == 1 && strings.HasPrefix(l, ".It ") {
				break
			}
			item = append(item, l)
		}
		return item, true
	}
	return nil, false
}

// duration writes d as the configuration does: 1h, 5m, 10s.
func duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// TestConfExample: the configuration in netauthd.conf(5)'s EXAMPLES parses.
func TestConfExample(t *testing.T) {
	sec, ok := section(readPage(t, "netauthd.conf.5"), ".Sh", "EXAMPLES")
	if !ok {
		t.Fatal("netauthd.conf.5 has no EXAMPLES section")
	}
	start := slices.IndexFunc(sec, func(l string) bool { return strings.HasPrefix(l, ".Bd -literal") })
	end := slices.Index(sec, ".Ed")
	if start < 0 || end < start {
		t.Fatal("netauthd.conf.5's EXAMPLES has no literal display")
	}
	conf := strings.ReplaceAll(strings.Join(sec[start+1:end], "\n"), `\e`, `\`) + "\n"
	cfg, err := policy.Parse("netauthd.conf.5", strings.NewReader(conf))
	if err != nil {
		t.Fatalf("the example does not parse: %v\n%s", err, conf)
	}
	if len(cfg.Services) == 0 {
		t.Errorf("the example has no services:\n%s", conf)
	}
}
