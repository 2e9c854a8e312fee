// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// floodSignature is the largest signature a ClientAuth carries.
var floodSignature = make([]byte, 16<<10)

// floodRefusal is the largest refusal a client can provoke: a valid user name of 64 bytes, a
// 16 KiB signature, the longest reason the monitor writes.
func floodRefusal(source, port int) *Refusal {
	user := "netauth-" + strings.Repeat("x", 56)
	return &Refusal{Client: fmt.Sprintf("[2001:db8:0:%x::1]:%d", source, 40000+port), Service: "whoami", User: user,
		KeyFP: "SHA256:" + strings.Repeat("A", 43), Mode: ModeFull, Code: "not_authorized",
		Reason:    `not authorized: key SHA256:` + strings.Repeat("A", 43) + ` is not authorized for user "` + user + `"`,
		Signature: floodSignature}
}

// TestRefusalFloodGrowthPerHour: an hour of refusals from 256 IPv6 /64s (one /56), ten a
// second from ten of them and one an interval from each other one, about 35 handshakes a
// second in all, grows the log by a few megabytes: past a flooded interval the next is twice
// as long, up to 32 times DefaultRefusalInterval. With intervals of 10 seconds throughout,
// each brought 100 refusal lines and 256 summaries, about 96 MB an hour (2.3 GB a day). Once
// the flood stops, the intervals shrink back: after a quiet spell, refusals are logged one by
// one again and counted ones are summed up after DefaultRefusalInterval.
func TestRefusalFloodGrowthPerHour(t *testing.T) {
	host := newHostKey(t)
	w, clock, path := refusalWriter(t, host, RefusalLimits{})
	start := clock.Now()
	for clock.Now().Sub(start) < time.Hour {
		for s := range 256 {
			n := 1
			if s < 10 {
				n = 10
			}
			for i := range n {
				if _, err := w.WriteRefusal(floodRefusal(s, i)); err != nil {
					t.Fatal(err)
				}
			}
		}
		clock.Add(DefaultRefusalInterval)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("an hour of refusals from 256 sources grew the log by %d bytes", fi.Size())
	if grown := fi.Size(); grown > 8<<20 {
		t.Fatalf("an hour of refusals from 256 sources grew the log by %d bytes, more than 8 MiB", grown)
	}

	// Quiet for a while: a refusal is logged one by one, and a flood's counts are written
	// within DefaultRefusalInterval.
	clock.Add(time.Hour)
	if rec, err := w.WriteRefusal(floodRefusal(0, 0)); err != nil || rec == nil {
		t.Fatalf("a refusal after an hour of quiet was not logged: %v", err)
	}
	countSummaries := func() int {
		n := 0
		for _, l := range readLines(t, path) {
			if strings.Contains(string(l), `"summary":{`) {
				n++
			}
		}
		return n
	}
	before := countSummaries()
	for i := range 20 {
		w.WriteRefusal(floodRefusal(1, i))
	}
	clock.Add(DefaultRefusalInterval)
	if err := w.Write(refusedRecord(host.pub, "next")); err != nil {
		t.Fatal(err)
	}
	if after := countSummaries(); after != before+1 {
		t.Fatalf("%d summaries written %v after a flood that followed a quiet hour, want 1", after-before, DefaultRefusalInterval)
	}
	w.Close()
	if rep := verifyBytes(t, joinLines(readLines(t, path)), host.pub); !rep.OK() {
		t.Fatalf("the log does not verify: %v", rep.Problems[:min(len(rep.Problems), 5)])
	}
}
