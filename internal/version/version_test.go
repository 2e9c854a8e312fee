// SPDX-License-Identifier: Apache-2.0

package version

import (
	"runtime/debug"
	"testing"
)

func TestGet(t *testing.T) {
	defer func(v string, r func() (*debug.BuildInfo, bool)) { Version, readBuildInfo = v, r }(Version, readBuildInfo)
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "ubns.dev/netauth", Version: "v0.4.1"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}
	readBuildInfo = func() (*debug.BuildInfo, bool) { return bi, true }

	tests := []struct {
		stamped, module, want string
	}{
		// -ldflags -X wins over the module's version.
		{"1.2.3", "v0.4.1", "netauth 1.2.3 (commit 0123456789ab, modified; go1.26.0)"},
		// go install ubns.dev/netauth/cmd/netauth@v0.4.1
		{"", "v0.4.1", "netauth v0.4.1 (commit 0123456789ab, modified; go1.26.0)"},
		// go build in a checkout
		{"", "(devel)", "netauth devel (commit 0123456789ab, modified; go1.26.0)"},
	}
	for _, tt := range tests {
		Version, bi.Main.Version = tt.stamped, tt.module
		if got := Line("netauth"); got != tt.want {
			t.Errorf("stamped %q, module %q: %q, want %q", tt.stamped, tt.module, got, tt.want)
		}
	}
	bi.Settings = nil
	Version, bi.Main.Version = "", "v0.4.1"
	if got := Line("netauthd"); got != "netauthd v0.4.1 (go1.26.0)" {
		t.Errorf("no VCS information: %q", got)
	}
	readBuildInfo = func() (*debug.BuildInfo, bool) { return nil, false }
	if got := Get(); got.Version != "devel" || got.Go == "" {
		t.Errorf("no build information: %+v", got)
	}
}
