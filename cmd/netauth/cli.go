// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// The exit statuses of every command: 0 done, 1 failed, 2 a usage error (the command line
// itself is wrong). netauth audit verify adds 3 (see its help).
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// newFlags returns the flag set of the command name ("netauth dial"). It prints nothing
// itself: parseFlags reports -h and errors.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args into fs. It returns ok if the command should go on, and otherwise
// its exit status: 0 after -h, -help or --help (help, usage then the flags, printed to
// stdout), 2 after a bad flag (one line on stderr).
func parseFlags(fs *flag.FlagSet, usage string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return exitOK, true
	case errors.Is(err, flag.ErrHelp):
		printHelp(fs, usage, stdout)
		return exitOK, false
	}
	return usageError(stderr, fs.Name(), "%v", err), false
}

// printHelp writes a command's help: its usage text, then its flags.
func printHelp(fs *flag.FlagSet, usage string, w io.Writer) {
	fmt.Fprint(w, usage)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// usageError writes one line to stderr saying what is wrong with the command line of cmd
// and where its help is, and returns the usage error status.
func usageError(stderr io.Writer, cmd, format string, a ...any) int {
	fmt.Fprintf(stderr, "%s: %s (see '%s -h')\n", cmd, fmt.Sprintf(format, a...), cmd)
	return exitUsage
}

// argsError reports a command line whose arguments (after the flags) are not the one
// argument wanted, named by what: missing, or with one too many.
func argsError(stderr io.Writer, fs *flag.FlagSet, what string) int {
	if fs.NArg() == 0 {
		return usageError(stderr, fs.Name(), "missing %s", what)
	}
	return usageError(stderr, fs.Name(), "unexpected argument %q", fs.Arg(1))
}

// fail writes err to stderr as the failure of cmd, with one prefix, and returns the failure
// status.
func fail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "%s: %s\n", cmd, errorText(err))
	return exitFail
}

// errorText is err's message without the "netauth: " prefixes that the packages it came
// through put on it, so that the command's own prefix is the only one:
// "netauth: signing the authenticator: netauth: the agent has no keys" reads
// "signing the authenticator: the agent has no keys".
func errorText(err error) string {
	const prefix = "netauth: "
	s := err.Error()
	for strings.HasPrefix(s, prefix) {
		s = s[len(prefix):]
	}
	for _, before := range []string{": ", "(", "; "} {
		for strings.Contains(s, before+prefix) {
			s = strings.ReplaceAll(s, before+prefix, before)
		}
	}
	return s
}
