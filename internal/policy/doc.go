// SPDX-License-Identifier: Apache-2.0

// Package policy reads netauthd's configuration file and answers the policy
// questions the daemon asks: which services exist, who may use each, and as
// which account its workers run.
//
// The file format, every directive and the rules are described in
// docs/CONFIG.md. Parse turns a file into a Config and reports every syntax
// and value error it finds, each with its line; Check then validates what
// cannot be decided from the text alone (programs, accounts, overlapping
// listen addresses) against the running system.
package policy
