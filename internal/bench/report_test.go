// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"strings"
	"testing"
)

// testReport is a report with every row the targets read, each at the given median (µs).
func testReport(lat map[string]float64, cpu map[string]float64) *Report {
	rep := &Report{}
	for _, name := range []string{"tcp", "tcp-1rt", "pk-resumed", "pk-full", "fork-setuid", "netauth-resumed",
		"netauth-resumed-memory", "ubns-first", "ubns-full", "ubns-resumed"} {
		if v, ok := lat[name]; ok {
			rep.Latency = append(rep.Latency, LatencyRow{Name: name, Stats: Stats{N: 10, Median: v, P99: v}})
		}
	}
	rep.addFloors()
	rep.ratios()
	if cpu != nil {
		rep.CPU = &CPUResult{}
		for name, v := range cpu {
			rep.CPU.Rows = append(rep.CPU.Rows, CPURow{Name: name, HandshakeUS: v})
		}
	}
	return rep
}

func targetsByName(t *testing.T, rep *Report) map[string]Target {
	t.Helper()
	out := map[string]Target{}
	for i, tg := range rep.Targets {
		if i >= len(TargetNames) || tg.Name != TargetNames[i] {
			t.Fatalf("target %d is %q; want the order of TargetNames %v", i, tg.Name, TargetNames)
		}
		out[tg.Name] = tg
	}
	if len(out) != len(TargetNames) {
		t.Fatalf("%d targets, want %d", len(out), len(TargetNames))
	}
	return out
}

// TestEvaluateLimits checks each latency and CPU target at its limit (met) and just past it
// (missed), with the floor it reports.
func TestEvaluateLimits(t *testing.T) {
	lat := map[string]float64{"tcp": 200, "tcp-1rt": 250, "pk-resumed": 100, "pk-full": 400, "fork-setuid": 400,
		"netauth-resumed": 420, "netauth-resumed-memory": 400, "ubns-first": 2800, "ubns-full": 800,
		"ubns-resumed": 525}
	cpu := map[string]float64{"floor-resumed": 100, "floor-full": 200, "ubns-resumed": 150, "ubns-full": 300.5}
	rep := testReport(lat, cpu)
	rep.evaluate()
	got := targetsByName(t, rep)
	for name, want := range map[string]string{
		TargetResumedFork:      "met",    // 525 / 400 = 1.31x
		TargetResumedInProcess: "met",    // 525 / 420 = 1.25x
		TargetFullFork:         "met",    // 800 / 400 = 2x
		TargetFirstFork:        "met",    // 2800 / 400 = 7x
		TargetInProcessFloor:   "met",    // 420 / (250 + 100) = 1.2x
		TargetAgentMemory:      "met",    // 420 / 400 = 1.05x
		TargetCPUResumed:       "met",    // 150 / 100 = 1.5x
		TargetCPUFull:          "missed", // 300.5 / 200 = 1.5025x
		TargetBulkTLS:          "not measured",
		TargetBulkTCP:          "not measured",
		TargetScaleP99:         "not measured",
		TargetRoundTrips:       "not measured",
	} {
		if got[name].Status != want {
			t.Errorf("%s: %q (%s), want %q", name, got[name].Status, got[name].Got, want)
		}
	}
	if f := got[TargetResumedFork].Floor; !strings.HasPrefix(f, "0.88x (350 us)") {
		t.Errorf("resumed floor %q, want 0.88x (350 us): (250 + 100) / 400", f)
	}
	if f := got[TargetFullFork].Floor; !strings.HasPrefix(f, "1.62x (650 us)") {
		t.Errorf("full floor %q, want 1.62x (650 us)", f)
	}
	if f := got[TargetCPUFull].Floor; f != "200 us" {
		t.Errorf("CPU full floor %q", f)
	}
	if got[TargetResumedFork].Base != "fork-setuid" || got[TargetInProcessFloor].Base != "floor-resumed" {
		t.Errorf("bases: %q, %q", got[TargetResumedFork].Base, got[TargetInProcessFloor].Base)
	}

	// Just past each limit.
	lat["ubns-resumed"] = 601 // 1.50x fork-setuid, and 1.43x the in-process server
	lat["ubns-full"] = 801
	lat["ubns-first"] = 2801
	lat["netauth-resumed-memory"] = 381 // 1.102x
	lat["pk-resumed"] = 99.9            // floor 349.9: 1.2003x
	rep = testReport(lat, cpu)
	rep.evaluate()
	got = targetsByName(t, rep)
	for _, name := range []string{TargetResumedFork, TargetResumedInProcess, TargetFullFork, TargetFirstFork,
		TargetInProcessFloor, TargetAgentMemory} {
		if got[name].Status != "missed" {
			t.Errorf("%s: %q (%s), want missed", name, got[name].Status, got[name].Got)
		}
	}
}

// TestEvaluateNotMeasured checks that the targets of rows that did not run (netauthd's,
// without root) are not measured, and that a target measured elsewhere replaces its
// placeholder.
func TestEvaluateNotMeasured(t *testing.T) {
	rep := testReport(map[string]float64{"tcp": 200, "tcp-1rt": 250, "pk-resumed": 100, "pk-full": 400,
		"fork-setuid": 400, "netauth-resumed": 500, "netauth-resumed-memory": 450},
		map[string]float64{"floor-resumed": 100, "floor-full": 200, "netauth-resumed": 150})
	rep.Bulk = []BulkRow{{Name: "tcp", MBps: 2000}, {Name: "tls", MBps: 1000}, {Name: "netauth", MBps: 1500}}
	rtt := Target{Name: TargetRoundTrips, Row: "rtt", What: "round trips", Got: "3.00", Status: "met"}
	rep.evaluate(rtt)
	got := targetsByName(t, rep)
	for _, name := range []string{TargetResumedFork, TargetResumedInProcess, TargetFullFork, TargetFirstFork,
		TargetCPUFull, TargetCPUResumed} {
		if got[name].Status != "not measured" || got[name].Got != "" {
			t.Errorf("%s: %q %q, want not measured", name, got[name].Status, got[name].Got)
		}
	}
	if got[TargetInProcessFloor].Status != "missed" || got[TargetAgentMemory].Status != "missed" {
		t.Errorf("in-process targets: %+v, %+v", got[TargetInProcessFloor], got[TargetAgentMemory])
	}
	if got[TargetBulkTLS].Status != "met" || got[TargetBulkTCP].Status != "met" {
		t.Errorf("bulk: %+v, %+v", got[TargetBulkTLS], got[TargetBulkTCP])
	}
	if got[TargetRoundTrips] != rtt {
		t.Errorf("round trips: %+v, want the target passed in", got[TargetRoundTrips])
	}
}

// TestEvaluateScale checks the p99 target: measured only on a run at least as large as the
// target's.
func TestEvaluateScale(t *testing.T) {
	for _, c := range []struct {
		users, conns int
		p99          float64
		want         string
	}{
		{50, 10, 3000, "met"},
		{50, 10, 3001, "missed"},
		{49, 10, 3000, "not measured"},
		{1000, 10, 2000, "met"},
	} {
		rep := &Report{Scale: &ScaleResult{Users: c.users, Conns: c.conns, All: Stats{Median: 1000, P99: c.p99}}}
		rep.evaluate()
		tg := targetsByName(t, rep)[TargetScaleP99]
		if tg.Status != c.want {
			t.Errorf("%d x %d, p99 %v: %q (%s), want %q", c.users, c.conns, c.p99, tg.Status, tg.Got, c.want)
		}
	}
}

// TestAddFloors checks that a floor is the sum of its parts' medians, and that there is none
// without the network part.
func TestAddFloors(t *testing.T) {
	rep := testReport(map[string]float64{"tcp-1rt": 250, "pk-resumed": 100, "pk-full": 400}, nil)
	want := map[string]float64{"floor-resumed": 350, "floor-full": 650}
	for _, l := range rep.Latency {
		if v, ok := want[l.Name]; ok {
			if l.Median != v || l.N != 0 || len(l.Sum) != 2 {
				t.Errorf("%s: %+v, want median %v", l.Name, l, v)
			}
			delete(want, l.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing floors %v", want)
	}
	rep = testReport(map[string]float64{"pk-resumed": 100, "pk-full": 400}, nil)
	if len(rep.Latency) != 2 {
		t.Errorf("floors without the network part: %+v", rep.Latency)
	}
}
