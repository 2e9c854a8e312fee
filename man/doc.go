// SPDX-License-Identifier: Apache-2.0

// Package man holds netauth's manual pages, written by hand in mdoc(7) from the code next to
// them: netauth(1), netauthd(8) (with netauthd-acceptor) and netauthd.conf(5). It has no code;
// its tests check the pages against the programs: every command, every flag that a program's
// -h prints and every directive of the configuration parser is described, and mandoc finds
// nothing to warn about.
package man
