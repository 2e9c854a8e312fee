// SPDX-License-Identifier: Apache-2.0

// Package version says which netauth a binary is: the version the build stamped into it, or
// else what the Go toolchain recorded (the module's version, the commit and whether the tree
// had changes, the Go release).
//
// A release build sets the version at link time:
//
//	go build -ldflags "-X ubns.dev/netauth/internal/version.Version=1.2.3" ./cmd/...
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Version is the release version, set with -ldflags "-X ubns.dev/netauth/internal/version.Version=V".
// Empty in a plain go build: the module's build information is used instead.
var Version string

// readBuildInfo is debug.ReadBuildInfo, a variable for tests.
var readBuildInfo = debug.ReadBuildInfo

// Info is what a binary knows about its own build.
type Info struct {
	Version  string // the stamped version, else the module's, else "devel"
	Revision string // the VCS commit the binary was built from, if recorded
	Modified bool   // the tree had uncommitted changes
	Go       string // the Go release that built it
}

// Get returns this binary's build information.
func Get() Info {
	info := Info{Version: Version, Go: runtime.Version()}
	if bi, ok := readBuildInfo(); ok {
		if bi.GoVersion != "" {
			info.Go = bi.GoVersion
		}
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	return info
}

// String is the version for --version, without the program's name (Line adds it):
// "1.2.3 (commit 0123456789ab, modified; go1.26.0)".
func (i Info) String() string {
	var parts []string
	if i.Revision != "" {
		rev := i.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		c := "commit " + rev
		if i.Modified {
			c += ", modified"
		}
		parts = append(parts, c)
	}
	return fmt.Sprintf("%s (%s)", i.Version, strings.Join(append(parts, i.Go), "; "))
}

// Line is what program --version prints: the program's name and its build.
func Line(program string) string {
	return program + " " + Get().String()
}
