// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package builtin

import (
	"errors"

	"ubns.dev/netauth/internal/handoff"
)

// prepare has nothing to do where spares are not supported.
func prepare() {}

// become is implemented on Linux only, where netauthd starts spare workers.
func become(*handoff.Assignment, int, int) error {
	return errors.New("spare workers are supported on Linux only")
}
