// SPDX-License-Identifier: Apache-2.0

// Package policy reads netauthd's configuration file and answers the policy
// questions the daemon asks: which services exist, who may use each, and as
// which account its workers run.
//
// The file format, every directive and the rules are described in
// docs/CONFIG.md. Parse turns a file into a Config: its parser checks only
// the syntax and turns values into their types, then the one validate step
// (validate.go, with the table of service modes in modes.go) applies every
// value rule, reporting each error with its line. Check runs the same
// validate step on any Config (Default's, or one built by hand, whose errors
// have no line), then validates what cannot be decided from the text alone
// (programs, accounts, overlapping listen addresses) against the running
// system.
package policy
