// SPDX-License-Identifier: Apache-2.0

// Package keys handles the SSH keys netauth uses: SSHSIG signatures over
// authenticator statements, Ed25519 host keys, known_hosts pinning, and the
// sources of each user's authorized keys.
package keys
