// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package audit

import (
	"os"
	"testing"
)

// makeReadOnly makes the directory dir unwritable by its mode until the test
// ends.
func makeReadOnly(t *testing.T, dir string) {
	t.Helper()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
}
