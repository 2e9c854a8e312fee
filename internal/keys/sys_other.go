// SPDX-License-Identifier: Apache-2.0

//go:build !unix

package keys

import (
	"fmt"
	"io/fs"
	"os/exec"
)

// checkOwnerMode refuses everything where file ownership cannot be checked.
func checkOwnerMode(path string, _ fs.FileInfo, _ string) error {
	return fmt.Errorf("keys: cannot check the owner of %s on this system", path)
}

// killGroupOnCancel leaves cmd as it is: cancellation kills only the
// command itself.
func killGroupOnCancel(*exec.Cmd) {}
