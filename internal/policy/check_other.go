// SPDX-License-Identifier: Apache-2.0

//go:build !unix

package policy

import "io/fs"

// fileOwner reports that file owners are unknown on this system.
func fileOwner(fs.FileInfo) (uint32, bool) {
	return 0, false
}
