// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package builtin

import (
	"errors"
	"log/slog"

	"ubns.dev/netauth/internal/handoff"
)

// prepare has nothing to do where spares are not supported.
func prepare() {}

// become is implemented on Linux only, where netauthd starts spare workers.
func become(*handoff.Assignment, int, int, *slog.Logger) error {
	return errors.New("spare workers are supported on Linux only")
}
