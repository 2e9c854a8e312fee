// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"fmt"
	"strings"
)

// DefaultIdentityHeaders are the request headers an http-backend service
// sets to the user's name when it has no identity-headers directive: the
// names most authenticating proxies send. (Grafana's auth proxy and Gitea's
// reverse-proxy authentication read X-WEBAUTH-USER unless told otherwise:
// name it in identity-headers, or point them at Remote-User.)
var DefaultIdentityHeaders = []string{"Remote-User", "X-Forwarded-User"}

// The headers an http-backend service always sets, whatever
// identity-headers says: the user's name, their key's SHA256 fingerprint,
// and whether the connection was resumed ("true" or "false"). Every
// request header whose name starts with NetauthHeaderPrefix is netauthd's:
// the worker removes each one the client sent.
const (
	NetauthUserHeader           = "X-Netauth-User"
	NetauthKeyFingerprintHeader = "X-Netauth-Key-Fingerprint"
	NetauthResumedHeader        = "X-Netauth-Resumed"
	NetauthHeaderPrefix         = "X-Netauth-"
)

// MaxIdentityHeaders bounds the names an identity-headers directive gives,
// and maxHeaderName the length of each.
const (
	MaxIdentityHeaders = 8
	maxHeaderName      = 64
)

// headersNotForIdentity are request headers that carry the request's
// framing, routing, hop-by-hop connection handling, forwarding or the
// client's own credentials: setting one to the user's name would break the
// request or hide what the client sent, so identity-headers refuses them.
// Lower case.
var headersNotForIdentity = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "proxy-authenticate": true,
	"proxy-authorization": true, "te": true, "trailer": true, "transfer-encoding": true, "upgrade": true,
	"host": true, "content-length": true, "content-type": true, "content-encoding": true, "expect": true,
	"cookie": true, "authorization": true,
	"forwarded": true, "x-forwarded-for": true, "x-forwarded-host": true, "x-forwarded-proto": true,
}

// UserHeaders returns the request headers an http-backend service sets to
// the user's name: its identity-headers, or DefaultIdentityHeaders.
func (s *Service) UserHeaders() []string {
	if len(s.IdentityHeaders) > 0 {
		return s.IdentityHeaders
	}
	return DefaultIdentityHeaders
}

// HeaderKey is how an http-backend worker compares header names: lower
// case, with '_' read as '-', since CGI-style servers hand "Remote_User"
// and "Remote-User" to the application alike (as REMOTE_USER).
func HeaderKey(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, "_", "-"))
}

// identityHeaderProblem returns what is wrong with name as one of the
// headers identity-headers names, or "".
func identityHeaderProblem(name string) string {
	what := "identity-headers " + q(name)
	if len(name) == 0 || len(name) > maxHeaderName {
		return fmt.Sprintf("%s: a header name has 1 to %d characters", what, maxHeaderName)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return what + `: use only letters, digits and "-" in a header name (an "_" would be read as "-" by some servers and not by others)`
		}
	}
	if name[0] == '-' || name[len(name)-1] == '-' {
		return what + `: a header name does not start or end with "-"`
	}
	k := HeaderKey(name)
	switch {
	case strings.HasPrefix(k, HeaderKey(NetauthHeaderPrefix)):
		return fmt.Sprintf("%s: the %s* headers are netauthd's own and always set; name others", what, NetauthHeaderPrefix)
	case headersNotForIdentity[k]:
		return what + ": this header says how the request is carried, forwarded or authorized by the client; choose a header the application reads the user's name from"
	}
	return ""
}

// IdentityHeadersProblems returns what is wrong with the names of an
// identity-headers directive: too many, one not valid, or one given twice
// (as header names compare). The http-backend worker holds the names it is
// given to the same rules.
func IdentityHeadersProblems(names []string) []string {
	var out []string
	if len(names) > MaxIdentityHeaders {
		out = append(out, fmt.Sprintf("identity-headers gives %d names; at most %d are allowed", len(names), MaxIdentityHeaders))
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if msg := identityHeaderProblem(n); msg != "" {
			out = append(out, msg)
			continue
		}
		if seen[HeaderKey(n)] {
			out = append(out, fmt.Sprintf("identity-headers %s is given twice (header names ignore case): keep one", q(n)))
			continue
		}
		seen[HeaderKey(n)] = true
	}
	return out
}
