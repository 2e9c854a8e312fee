// SPDX-License-Identifier: Apache-2.0

//go:build !linux || (cgo && !osusergo)

package policy

// osUserUsesNSS is true: os/user asks the C library, which follows nsswitch.conf (or, off
// Linux, whatever this system's user database is).
const osUserUsesNSS = true
