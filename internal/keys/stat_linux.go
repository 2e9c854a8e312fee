// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"io/fs"
	"syscall"
)

// statStamp returns what identifies the content of the file fi describes (see FileCache).
func statStamp(fi fs.FileInfo) (fileStamp, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStamp{}, false
	}
	return fileStamp{
		dev: uint64(st.Dev), ino: uint64(st.Ino), size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(),
		mode: uint32(st.Mode), uid: st.Uid, gid: st.Gid, nlink: uint64(st.Nlink),
	}, true
}
