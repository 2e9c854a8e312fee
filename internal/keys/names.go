// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"
)

// MaxNameLength is the longest user or service name netauth accepts, in bytes.
const MaxNameLength = 64

// ValidName reports an error unless s is a usable user or service name:
// 1 to 64 bytes of [A-Za-z0-9._@-], not starting with '-' or '.'.
// A valid name can never contain a path separator or be "." or "..", so it
// is safe to use as a file name.
func ValidName(s string) error {
	if s == "" {
		return errors.New("keys: empty name")
	}
	if len(s) > MaxNameLength {
		return fmt.Errorf("keys: name longer than %d bytes", MaxNameLength)
	}
	if s[0] == '-' || s[0] == '.' {
		return fmt.Errorf("keys: name %q starts with %q", s, s[0])
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return fmt.Errorf("keys: name %q contains a disallowed byte at offset %d", s, i)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '.', c == '_', c == '@', c == '-':
		return true
	}
	return false
}

// Fingerprint returns the SHA256 fingerprint of pub in OpenSSH's form
// ("SHA256:" followed by unpadded base64), as ssh-keygen -l prints it.
func Fingerprint(pub ssh.PublicKey) string {
	return ssh.FingerprintSHA256(pub)
}
