// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package builtin

import "errors"

// checkPrivateNetns: network namespaces are Linux's.
func checkPrivateNetns(uint64) error {
	return errors.New("instance-listen tcp needs a network namespace of its own, which only Linux has")
}

// killGroupButSelf: without /proc there is nothing to list; netauthd's kill of the worker's
// process group stops the rest.
func killGroupButSelf() {}
