// SPDX-License-Identifier: Apache-2.0

//go:build linux && (!cgo || osusergo)

package policy

// osUserUsesNSS is false: built without cgo (or with osusergo), os/user reads /etc/passwd
// and /etc/group itself, whatever nsswitch.conf says.
const osUserUsesNSS = false
