// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"time"
	"unicode/utf8"

	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/limits"
)

// Defaults of RefusalLimits.
const (
	DefaultRefusalInterval   = 10 * time.Second
	DefaultRefusalsPerSource = 10
	DefaultRefusalsTotal     = 100
	DefaultRefusalSources    = 256

	// MaxRefusalIntervals is how many times RefusalLimits.Interval an
	// interval grows to under a sustained flood: with the defaults, a
	// summary per source every 320 seconds, and the log growing by about
	// 3 MB an hour however many sources the flood comes from, rather than
	// the 100 MB an hour of 10-second intervals.
	MaxRefusalIntervals = 32
)

// RefusalLimits bound how many refusals WriteRefusal logs one by one. In each
// interval, a source's first PerSource refusals are logged, as long as fewer
// than Total have been logged in that interval from all sources; the others
// are counted, and a summary record per source gives their number when the
// interval ends. Zero fields take the defaults.
//
// An interval is Interval long, or longer under a sustained flood: after an
// interval in which refusals were counted the next is twice as long, up to
// MaxRefusalIntervals times Interval, and after one in which none were it is
// half as long again, down to Interval; after a quiet spell at least as long
// as the last interval, the next is Interval long.
//
// Under a flood, the log grows by at most Total refusal lines and Sources+1
// summary lines per interval, each at most MaxRefusalLine bytes; the Writer
// keeps at most Sources+1 counters.
type RefusalLimits struct {
	// Interval is the length of an interval (DefaultRefusalInterval).
	Interval time.Duration
	// PerSource is how many refusals from one source (an IPv4 address or
	// an IPv6 /64) are logged one by one in an interval
	// (DefaultRefusalsPerSource).
	PerSource int
	// Total is how many refusals are logged one by one in an interval from
	// all sources together (DefaultRefusalsTotal).
	Total int
	// Sources is how many sources are counted apart in an interval
	// (DefaultRefusalSources); refusals from further sources, and from
	// clients whose address is not an IP address, share the source
	// SourceOther.
	Sources int
}

func (l RefusalLimits) withDefaults() RefusalLimits {
	if l.Interval <= 0 {
		l.Interval = DefaultRefusalInterval
	}
	if l.PerSource <= 0 {
		l.PerSource = DefaultRefusalsPerSource
	}
	if l.Total <= 0 {
		l.Total = DefaultRefusalsTotal
	}
	if l.Sources <= 0 {
		l.Sources = DefaultRefusalSources
	}
	return l
}

// Bounds on the fields of a refusal record, in bytes of their JSON encoding.
const (
	maxClientLen  = 64  // an IPv6 address with zone and port fits
	maxServiceLen = 64  // keys.MaxNameLength
	maxKeyFPLen   = 50  // "SHA256:" and 43 characters of base64
	maxCodeLen    = 24  // the longest code name is 19
	maxReasonLen  = 200 // less if the other fields leave less room
	maxCodes      = 6   // codes counted apart in a summary, codeOther included
	codeOther     = "other"
	codeUnknown   = "unknown"
	ellipsis      = "..."
)

// Refusal is a refused connection as the caller saw it. Any of its fields may
// have been chosen by the client (and the signature has not been verified):
// WriteRefusal bounds them before logging.
type Refusal struct {
	// Client is the client's address, host:port.
	Client string
	// Service is the name of the service the client asked for.
	Service string
	// User is the user name the client asked for, if any.
	User string
	// KeyFP is the fingerprint of the key the client claimed, if any.
	KeyFP string
	// Mode is ModeFull, ModeResumed, or empty if the handshake did not get
	// that far.
	Mode string
	// Code is the refusal code the client was sent.
	Code string
	// Reason says why the connection was refused.
	Reason string
	// Signature is the binary SSHSIG signature the client sent, if any.
	Signature []byte
}

// WriteRefusal logs a refused connection, bounded and, under a flood,
// counted rather than logged (see RefusalLimits). It returns the record
// written, or nil if the refusal was only counted, to be reported in a
// summary record when its interval ends (at the first Write, WriteRefusal
// or Close after that, or by a timer).
//
// The record has the client's address, service, key fingerprint, code and
// reason cut to fixed lengths (the reason to 200 bytes, or to what room the
// other fields leave), the user name if it is a valid one (else its SHA-256
// and length), and the SHA-256 and length of the signature rather than the
// signature: its line is at most MaxRefusalLine bytes.
//
// An error means the record could not be written; the refusal is then
// counted, for a summary record once the log can be written again.
func (w *Writer) WriteRefusal(r *Refusal) (*Record, error) {
	if r == nil {
		return nil, errors.New("audit: nil refusal")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	w.rollLocked(now, false)
	t := &w.refusals
	if t.start.IsZero() {
		w.startIntervalLocked(now)
	}
	code := clip(r.Code, maxCodeLen)
	if code == "" {
		code = codeUnknown
	}
	tl := t.tallyFor(r.Client, w.limits.Sources)
	if tl.full >= w.limits.PerSource || t.full >= w.limits.Total {
		tl.count(code, now)
		w.armLocked(now)
		return nil, nil
	}
	tl.full++
	t.full++
	rec := w.refusalRecord(r, code, now)
	if err := w.writeLocked(rec, MaxRefusalLine, now); err != nil {
		tl.count(code, now)
		w.armLocked(now)
		return rec, err
	}
	return rec, nil
}

// refusalRecord returns the bounded record of refusal r, its reason cut to
// the room left on a line of MaxRefusalLine bytes. Callers hold w.mu.
func (w *Writer) refusalRecord(r *Refusal, code string, now time.Time) *Record {
	rec := &Record{
		Time:      now.UTC(),
		Client:    clip(r.Client, maxClientLen),
		Service:   clip(r.Service, maxServiceLen),
		KeyFP:     clip(r.KeyFP, maxKeyFPLen),
		HostKeyFP: w.hostFP,
		Decision:  Refused,
		Code:      code,
	}
	switch r.Mode {
	case ModeFull, ModeResumed:
		rec.Mode = r.Mode
	}
	if keys.ValidName(r.User) == nil {
		rec.User = r.User
	} else if r.User != "" {
		rec.UserSHA256, rec.UserLen = digest([]byte(r.User)), len(r.User)
	}
	if len(r.Signature) > 0 {
		rec.SigSHA256, rec.SigLen = digest(r.Signature), len(r.Signature)
	}
	// The line is the record's JSON (in the format before checkpoints, with
	// a host signature, whose length is fixed); what is left goes to the
	// reason.
	seq, prev := w.headLocked()
	rec.Seq, rec.Prev = seq+1, prev
	if base, err := json.Marshal(rec); err == nil {
		room := MaxRefusalLine - len(base) - len(`,"reason":""`)
		if w.signEach {
			room -= len(`,"host_sig":""`) + w.sigLen
		}
		rec.Reason = clip(r.Reason, min(maxReasonLen, room))
	}
	return rec
}

// digest returns the hex SHA-256 of b.
func digest(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// clip returns s if its JSON encoding (without quotes) is at most limit bytes,
// and otherwise its longest prefix of whole characters that, followed by
// "...", is.
func clip(s string, limit int) string {
	cost, cut := 0, -1
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		c := jsonCost(r, size)
		if cut < 0 && cost+c > limit-len(ellipsis) {
			cut = i
		}
		cost += c
		if cost > limit {
			if cut < 0 || limit < len(ellipsis) {
				return ""
			}
			return s[:cut] + ellipsis
		}
		i += size
	}
	return s
}

// jsonCost bounds the length of the JSON encoding of the character r, size
// bytes of UTF-8, as encoding/json writes it.
func jsonCost(r rune, size int) int {
	switch {
	case r == utf8.RuneError && size == 1: // invalid UTF-8: \ufffd
		return 6
	case r < 0x20, r == '<', r == '>', r == '&', r == '\u2028', r == '\u2029': // \u00XX
		return 6
	case r == '"', r == '\\':
		return 2
	}
	return size
}

// refusalTable counts refusals over the current interval.
type refusalTable struct {
	start   time.Time     // when the interval began; zero if none is under way
	length  time.Duration // of the interval (see RefusalLimits); 0 before the first
	end     time.Time     // when the last interval ended
	full    int           // refusals logged one by one in the interval
	sources map[netip.Prefix]*tally
	other   *tally
	timer   *time.Timer // ends the interval while refusals are counted
}

// tally is what a refusalTable knows of one source.
type tally struct {
	source      string
	full        int // refusals logged one by one in the interval
	n           uint64
	counts      map[string]uint64 // refusals counted, by code
	first, last time.Time         // of those counted
}

// count counts a refusal with code at now.
func (tl *tally) count(code string, now time.Time) {
	if tl.n == 0 {
		tl.first = now
	}
	if tl.counts == nil {
		tl.counts = make(map[string]uint64)
	}
	if _, ok := tl.counts[code]; !ok && len(tl.counts) >= maxCodes-1 {
		code = codeOther
	}
	tl.counts[code]++
	tl.n++
	tl.last = now
}

// tallyFor returns the tally of the source of a client address, counting it
// as SourceOther if it is not an IP address or the table holds limit sources.
func (t *refusalTable) tallyFor(client string, limit int) *tally {
	var src netip.Prefix
	ok := false
	if len(client) <= maxClientLen {
		if ap, err := netip.ParseAddrPort(client); err == nil {
			src, ok = limits.SourceOf(ap.Addr())
		} else if ip, err := netip.ParseAddr(client); err == nil {
			src, ok = limits.SourceOf(ip)
		}
	}
	if ok {
		if tl := t.sources[src]; tl != nil {
			return tl
		}
		if len(t.sources) < limit {
			if t.sources == nil {
				t.sources = make(map[netip.Prefix]*tally)
			}
			tl := &tally{source: src.String()}
			t.sources[src] = tl
			return tl
		}
	}
	if t.other == nil {
		t.other = &tally{source: SourceOther}
	}
	return t.other
}

// startIntervalLocked starts an interval at now, after a quiet spell (no
// interval under way): one at least as long as the last interval brings the
// length back to Interval. Callers hold w.mu.
func (w *Writer) startIntervalLocked(now time.Time) {
	t := &w.refusals
	if t.length == 0 || !now.Before(t.end.Add(t.length)) || now.Before(t.end) {
		t.length = w.limits.Interval
	}
	t.start = now
}

// armLocked makes sure a timer ends the current interval. Callers hold w.mu.
func (w *Writer) armLocked(now time.Time) {
	t := &w.refusals
	if t.timer != nil || t.start.IsZero() {
		return
	}
	t.timer = time.AfterFunc(max(t.start.Add(t.length).Sub(now), 0), w.endInterval)
}

// endInterval runs when an interval in which refusals were counted ends.
func (w *Writer) endInterval() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.refusals.timer = nil
	if w.f == nil {
		return
	}
	now := w.now()
	w.rollLocked(now, false)
	w.armLocked(now)
}

// rollLocked ends the current interval if it is over (or if force is set):
// it writes a summary record for each source with refusals counted, and
// starts afresh. The counts of summaries that cannot be written (the log has
// failed) are kept for the next interval. Callers hold w.mu.
func (w *Writer) rollLocked(now time.Time, force bool) {
	t := &w.refusals
	if t.start.IsZero() || !force && !now.Before(t.start) && now.Before(t.start.Add(t.length)) {
		return
	}
	var pending []*tally
	for _, tl := range t.sources {
		if tl.n > 0 {
			pending = append(pending, tl)
		}
	}
	slices.SortFunc(pending, func(a, b *tally) int {
		switch {
		case a.source < b.source:
			return -1
		case a.source > b.source:
			return 1
		}
		return 0
	})
	if t.other != nil && t.other.n > 0 {
		pending = append(pending, t.other)
	}
	var failed error
	for _, tl := range pending {
		if failed == nil {
			rec := &Record{Time: now.UTC(), HostKeyFP: w.hostFP, Decision: Refused,
				Summary: &Summary{Source: tl.source, Since: tl.first.UTC(), Until: tl.last.UTC(), Counts: tl.counts}}
			if failed = w.writeLocked(rec, MaxRefusalLine, now); failed == nil {
				tl.n, tl.counts = 0, nil
			}
		}
	}
	// The interval ended at its time, even if nothing made it roll then; the
	// next is longer after a flood, shorter after a calm one.
	end := now
	if due := t.start.Add(t.length); !force && now.After(due) && !now.Before(t.start) {
		end = due
	}
	if len(pending) > 0 {
		t.length = min(2*t.length, MaxRefusalIntervals*w.limits.Interval)
	} else {
		t.length = max(t.length/2, w.limits.Interval)
	}
	// A new interval: only the sources whose summary is still to be
	// written stay in the table.
	t.start, t.end, t.full = time.Time{}, end, 0
	carried := false
	for src, tl := range t.sources {
		if tl.n == 0 {
			delete(t.sources, src)
		} else {
			tl.full, carried = 0, true
		}
	}
	if t.other != nil {
		if t.other.n == 0 {
			t.other = nil
		} else {
			t.other.full, carried = 0, true
		}
	}
	if carried {
		t.start = now
		if !force {
			w.armLocked(now)
		} else {
			var n uint64
			for _, tl := range pending {
				n += tl.n
			}
			w.log.Warn("refusals counted but not logged: the audit log cannot be written", "refusals", n, "err", failed)
		}
	}
}
