// SPDX-License-Identifier: Apache-2.0

package logging

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
)

// maxDepth bounds the nesting of groups in a parsed line; deeper values are kept as their
// JSON text.
const maxDepth = 8

// Line is a record parsed from a line another process logged with slog's JSON handler.
type Line struct {
	Level slog.Level
	Msg   string
	Attrs []slog.Attr // in the line's order, groups as slog.Group; without time, level and msg
}

// ParseLine parses line, written by another process (and so untrusted: bound its length
// before) as one slog JSON record: an object with a string "level" slog understands and a
// string "msg". It reports false for anything else, which the caller logs as plain text. The
// level is capped at ERROR: a process cannot log above that.
func ParseLine(line string) (Line, bool) {
	var l Line
	if !strings.HasPrefix(line, "{") {
		return l, false
	}
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return l, false
	}
	attrs, fields, err := object(dec, 0, true)
	if err != nil {
		return l, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return l, false // something after the object
	}
	lv, ok1 := fields["level"]
	msg, ok2 := fields["msg"]
	if !ok1 || !ok2 {
		return l, false
	}
	if err := l.Level.UnmarshalText([]byte(lv)); err != nil {
		return l, false
	}
	l.Level = min(l.Level, slog.LevelError)
	l.Msg, l.Attrs = msg, attrs
	return l, true
}

// object reads the members of an object whose '{' was read, through its '}'. At the top
// (top), the string members time, level and msg go to fields instead of the attributes.
func object(dec *json.Decoder, depth int, top bool) ([]slog.Attr, map[string]string, error) {
	var attrs []slog.Attr
	fields := map[string]string{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		key, _ := t.(string)
		if top {
			switch key {
			case slog.TimeKey, slog.LevelKey, slog.MessageKey:
				var s string
				if err := dec.Decode(&s); err != nil {
					return nil, nil, err
				}
				fields[key] = s
				continue
			}
		}
		v, err := value(dec, depth)
		if err != nil {
			return nil, nil, err
		}
		attrs = append(attrs, slog.Attr{Key: key, Value: v})
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, nil, err
	}
	return attrs, fields, nil
}

// value reads one JSON value as a slog value: objects as groups (up to maxDepth), arrays as
// their JSON text, numbers as int64 or float64 when they fit, else as text.
func value(dec *json.Decoder, depth int) (slog.Value, error) {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return slog.Value{}, err
	}
	if depth >= maxDepth {
		return slog.StringValue(string(raw)), nil
	}
	switch raw[0] {
	case '{':
		sub := json.NewDecoder(strings.NewReader(string(raw)))
		sub.UseNumber()
		if _, err := sub.Token(); err != nil {
			return slog.Value{}, err
		}
		attrs, _, err := object(sub, depth+1, false)
		if err != nil {
			return slog.Value{}, err
		}
		return slog.GroupValue(attrs...), nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return slog.Value{}, err
		}
		return slog.StringValue(s), nil
	case 't', 'f':
		return slog.BoolValue(raw[0] == 't'), nil
	case 'n':
		return slog.AnyValue(nil), nil
	case '[':
		return slog.StringValue(string(raw)), nil
	}
	n := json.Number(raw)
	if i, err := n.Int64(); err == nil {
		return slog.Int64Value(i), nil
	}
	if f, err := n.Float64(); err == nil {
		return slog.Float64Value(f), nil
	}
	return slog.StringValue(string(raw)), nil
}
