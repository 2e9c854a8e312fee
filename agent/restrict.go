// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strings"
)

// maxRestrictionLine is the longest line ParseRestrictions accepts, in bytes.
const maxRestrictionLine = 64 << 10

// ParseRestrictions reads a host restriction file, the format of
// Options.Restrictions. Each line names a user key by its fingerprint and
// lists the host key fingerprints that key may authenticate to through
// netauth, separated by white space:
//
//	# comment
//	SHA256:<user key> SHA256:<host key> [SHA256:<host key>...]
//
// Fingerprints are in the form ssh-keygen -l prints ("SHA256:" followed by
// unpadded base64). A '#' starts a comment that runs to the end of the
// line; blank lines are ignored.
// A key named on several lines may use the hosts of all of them. Errors
// name the offending line.
func ParseRestrictions(r io.Reader) (map[string][]string, error) {
	out := make(map[string][]string)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxRestrictionLine)
	n := 0
	for sc.Scan() {
		n++
		// '#' starts a comment; fingerprints never contain it.
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 2 {
			return nil, fmt.Errorf("agent: restrictions line %d: want a key fingerprint followed by at least one host key fingerprint", n)
		}
		for i, f := range fields {
			if err := checkFingerprint(f); err != nil {
				what := "host key"
				if i == 0 {
					what = "key"
				}
				return nil, fmt.Errorf("agent: restrictions line %d: %s fingerprint %q: %w", n, what, f, err)
			}
		}
		hosts := out[fields[0]]
		for _, h := range fields[1:] {
			if !slices.Contains(hosts, h) {
				hosts = append(hosts, h)
			}
		}
		out[fields[0]] = hosts
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("agent: restrictions line %d: %w", n+1, err)
	}
	return out, nil
}

// checkFingerprint reports an error unless f is a SHA256 key fingerprint in
// OpenSSH's form.
func checkFingerprint(f string) error {
	b64, ok := strings.CutPrefix(f, "SHA256:")
	if !ok {
		return fmt.Errorf("not a SHA256 fingerprint (want SHA256:...)")
	}
	sum, err := base64.RawStdEncoding.Strict().DecodeString(b64)
	if err != nil || len(sum) != 32 {
		return fmt.Errorf("not 32 bytes of unpadded base64 after SHA256:")
	}
	return nil
}
