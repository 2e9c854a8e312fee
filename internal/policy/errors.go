// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"strconv"
	"strings"
)

// MaxErrors is the most errors Parse or Check reports; the last one kept
// then says that it stopped.
const MaxErrors = 100

// Error is one problem in a configuration, tied to the line it is on.
type Error struct {
	// Path is the configuration file's name; empty for a configuration
	// that was not read from a file, such as Default's.
	Path string
	// Line is the 1-based line the problem is on, or 0 when it concerns
	// no particular line.
	Line int
	// Msg says what is wrong and what to write instead.
	Msg string
}

// Error returns the problem as "path:line: msg".
func (e *Error) Error() string {
	path := e.Path
	if path == "" {
		path = "built-in configuration"
	}
	if e.Line <= 0 {
		return path + ": " + e.Msg
	}
	return path + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
}

// Errors is every problem found in a configuration, in the order found.
// Parse and Check return it as an *Errors.
type Errors []*Error

// Error returns the problems one per line.
func (e Errors) Error() string {
	var b strings.Builder
	for i, err := range e {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the problems, so that errors.As finds an *Error in them.
func (e Errors) Unwrap() []error {
	out := make([]error, len(e))
	for i, err := range e {
		out[i] = err
	}
	return out
}

// collector gathers errors up to MaxErrors.
type collector struct {
	path string
	errs Errors
	full bool
}

// add records a problem at line unless MaxErrors have been recorded.
func (c *collector) add(line int, msg string) {
	if c.full {
		return
	}
	if len(c.errs) == MaxErrors-1 {
		c.errs = append(c.errs, &Error{Path: c.path, Line: line, Msg: "too many errors; stopping here: fix the errors above and check again"})
		c.full = true
		return
	}
	c.errs = append(c.errs, &Error{Path: c.path, Line: line, Msg: msg})
}

// err returns the collected errors as an *Errors, or nil if there are none.
func (c *collector) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	errs := c.errs
	return &errs
}
