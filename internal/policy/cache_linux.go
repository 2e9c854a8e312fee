// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"os"
	"syscall"
)

// statID returns what identifies the content of the file at path (the zero fileID if it
// cannot be stat'ed).
func statID(path string) fileID {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{exists: true, dev: uint64(st.Dev), ino: uint64(st.Ino), size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
}
