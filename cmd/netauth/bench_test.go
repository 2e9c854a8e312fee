// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/bench"
)

// benchChildEnv marks the test binary started as the benchmark's server process.
const benchChildEnv = "NETAUTH_BENCH_TEST_CHILD"

// TestBenchChild is not a test: TestBenchQuick starts the test binary with it selected as
// the benchmark's server process (with benchChildEnv set), and netauthd starts copies of it
// as workers (recognized by the control socket they inherit: workers get no environment).
func TestBenchChild(t *testing.T) {
	if os.Getenv(benchChildEnv) != "1" && !netauth.IsWorker() {
		t.Skip("the server process and workers of TestBenchQuick")
	}
	args := flag.Args()
	if len(args) > 0 && args[0] == "bench" {
		os.Exit(benchMain(args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(run(args, os.Stdin, os.Stdout, os.Stderr))
}

// TestBenchQuick runs `netauth bench -quick` and checks the structure of its table, JSON and
// SVG (not the timings). As root it includes netauthd's rows, worker memory and a small
// scale run; otherwise it checks that they are reported as skipped.
func TestBenchQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers and, as root, netauthd workers")
	}
	t.Setenv(benchChildEnv, "1")
	dir := t.TempDir()
	jsonFile, svgFile := filepath.Join(dir, "bench.json"), filepath.Join(dir, "bench.svg")
	cmd := benchCommand{self: []string{os.Args[0], "-test.run=^TestBenchChild$", "--"}}
	var stdout, stderr bytes.Buffer
	if rc := cmd.run([]string{"-quick", "-json", jsonFile, "-svg", svgFile}, &stdout, &stderr); rc != 0 {
		t.Fatalf("netauth bench -quick: exit %d\nstderr:\n%s", rc, stderr.String())
	}
	table := stdout.String()
	root := os.Geteuid() == 0

	for _, want := range []string{"Connect, send 128 B", "Bind and connect", "Server CPU per connect-send-recv",
		"User signature verification", "Bulk throughput", "Targets", "plain TCP (the limit)", "TLS 1.3 mutual, resumed",
		"netauth in-process server, resumed, through the agent", "in-process signer, memory cache",
		"floor part: plain TCP + 1 round trip", "floor, resumed", "floor, full", "Notes", "quick run"} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q:\n%s", want, table)
		}
	}
	if !strings.Contains(stderr.String(), "[1/") {
		t.Errorf("no progress on stderr: %q", stderr.String())
	}

	data, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("the JSON does not parse: %v", err)
	}
	rows := map[string]bench.LatencyRow{}
	for _, l := range rep.Latency {
		rows[l.Name] = l
	}
	names := map[string]bool{}
	for _, l := range rep.Latency {
		names[l.Name] = true
		if len(l.Sum) > 0 {
			// A floor: the sum of its parts' medians, measured in the same rounds.
			sum := 0.0
			for _, part := range l.Sum {
				p, ok := rows[part]
				if !ok || p.N == 0 {
					t.Errorf("floor %s adds row %q, which was not measured", l.Name, part)
				}
				sum += p.Median
			}
			if l.Median <= 0 || math.Abs(l.Median-sum) > 1e-6*sum {
				t.Errorf("floor %s: median %v, want the sum of %v = %v", l.Name, l.Median, l.Sum, sum)
			}
			continue
		}
		if l.N == 0 || l.Median <= 0 || l.P99 < l.Median {
			t.Errorf("latency row %s: n %d, median %v, p99 %v", l.Name, l.N, l.Median, l.P99)
		}
		// Every netauth row's measured connections resumed, or did not, as its label says;
		// the other rows count none.
		if strings.HasPrefix(l.Name, "netauth-") || strings.HasPrefix(l.Name, "ubns-") {
			resumed := strings.Contains(l.Label, "resumed")
			if resumed != strings.Contains(l.Name, "-resumed") {
				t.Errorf("latency row %s is labelled %q", l.Name, l.Label)
			}
			if resumed && (l.Resumed != l.N || l.Full != 0) || !resumed && (l.Full != l.N || l.Resumed != 0) {
				t.Errorf("latency row %s (%q): %d connections, %d resumed, %d full", l.Name, l.Label, l.N, l.Resumed, l.Full)
			}
			// Its client is what the label says: through the agent (the default path), or
			// signing in process.
			agent := l.Client == "agent"
			if agent != strings.Contains(l.Label, "through the agent") || agent == strings.Contains(l.Label, "in-process signer") ||
				agent == strings.HasSuffix(l.Name, "-memory") || !agent && l.Client != "in-process signer" {
				t.Errorf("latency row %s (%q): client %q", l.Name, l.Label, l.Client)
			}
		} else if l.Resumed != 0 || l.Full != 0 || l.Client != "" {
			t.Errorf("latency row %s counts netauth connections: %d resumed, %d full, client %q", l.Name, l.Resumed, l.Full, l.Client)
		}
	}
	want := []string{"tcp", "tcp-1rt", "pk-resumed", "pk-full", "floor-resumed", "floor-full", "tls-full", "tls-resumed",
		"netauth-full", "netauth-resumed", "netauth-full-memory", "netauth-resumed-memory"}
	if root {
		want = append(want, "ubns-first", "ubns-full", "ubns-resumed", "ubns-resumed-memory")
	}
	for _, n := range want {
		if !names[n] {
			t.Errorf("no latency row %q in the JSON (have %v)", n, names)
		}
	}
	cpuRows := 5
	if root {
		cpuRows = 7
	}
	if len(rep.Overhead) != 5 || rep.CPU == nil || len(rep.CPU.Rows) != cpuRows || rep.Verify == nil || len(rep.Bulk) != 3 {
		t.Fatalf("missing parts: overhead %d rows, cpu %v (want %d rows), verify %v, bulk %d rows", len(rep.Overhead), rep.CPU, cpuRows, rep.Verify, len(rep.Bulk))
	}
	cpu := map[string]bench.CPURow{}
	for _, r := range rep.CPU.Rows {
		cpu[r.Name] = r
	}
	cpuWant := []string{"netauth-full", "netauth-resumed"}
	if root {
		cpuWant = append(cpuWant, "ubns-full", "ubns-resumed")
	}
	for _, n := range cpuWant {
		if r := cpu[n]; r.ServerUS <= 0 || r.HandshakeUS <= 0 || r.PerFloor <= 0 {
			t.Errorf("cpu row %q: %+v", n, r)
		}
	}
	for _, n := range []string{"floor-resumed", "floor-full"} {
		if r := cpu[n]; r.HandshakeUS <= 0 {
			t.Errorf("cpu row %q: %+v", n, r)
		}
	}

	// Every target, in order, each met, missed or not measured; what must be measured here
	// is.
	if len(rep.Targets) != len(bench.TargetNames) {
		t.Errorf("%d targets, want %d: %+v", len(rep.Targets), len(bench.TargetNames), rep.Targets)
	}
	status := map[string]string{}
	for i, tg := range rep.Targets {
		if i < len(bench.TargetNames) && tg.Name != bench.TargetNames[i] {
			t.Errorf("target %d is %q, want %q", i, tg.Name, bench.TargetNames[i])
		}
		if tg.Status != "met" && tg.Status != "missed" && tg.Status != "not measured" {
			t.Errorf("target %q has status %q", tg.What, tg.Status)
		}
		if (tg.Status == "not measured") != (tg.Got == "") && tg.Name != bench.TargetScaleP99 {
			t.Errorf("target %q: status %q, measured %q", tg.Name, tg.Status, tg.Got)
		}
		status[tg.Name] = tg.Status
		if !strings.Contains(table, tg.What) {
			t.Errorf("the table lacks target %q", tg.What)
		}
	}
	measured := []string{bench.TargetInProcessFloor, bench.TargetAgentMemory, bench.TargetBulkTLS, bench.TargetBulkTCP}
	if root {
		measured = append(measured, bench.TargetResumedInProcess, bench.TargetCPUFull, bench.TargetCPUResumed)
		if names["fork-setuid"] {
			measured = append(measured, bench.TargetResumedFork, bench.TargetFullFork, bench.TargetFirstFork)
		}
	}
	for _, n := range measured {
		if status[n] == "not measured" {
			t.Errorf("target %q not measured", n)
		}
	}
	// A quick run's scale run is smaller than the target's. The round trips are measured as
	// root (their counts are TestRoundTrips's to check).
	if status[bench.TargetScaleP99] != "not measured" {
		t.Errorf("target %q: %q, want not measured", bench.TargetScaleP99, status[bench.TargetScaleP99])
	}
	if rt := status[bench.TargetRoundTrips]; (rt == "not measured") == root {
		t.Errorf("target %q: %q as root=%v", bench.TargetRoundTrips, rt, root)
	}
	note := func(prefix string) bool {
		for _, n := range rep.Notes {
			if strings.HasPrefix(n, prefix) {
				return true
			}
		}
		return false
	}
	if !note("netauth clients: netauth.Dial's default path, through a `netauth agent -D` process") {
		t.Errorf("no note on the clients: %q", rep.Notes)
	}
	if note("netauthd's acceptor: this program's hidden `netauth acceptor` command") != root {
		t.Errorf("root %v, notes %q", root, rep.Notes)
	}
	skipped := func(what string) bool {
		for _, s := range rep.Skipped {
			if strings.Contains(s.What, what) {
				return true
			}
		}
		return false
	}
	if root {
		if rep.Memory == nil || rep.Memory.IdleWorker.RSSKB == 0 {
			t.Errorf("no worker memory as root: %+v", rep.Memory)
		}
		// netauthd runs as deployed: an acceptor process parses the connections.
		if rep.Memory == nil || rep.Memory.Acceptor.RSSKB == 0 || !strings.Contains(table, "netauthd acceptor") {
			t.Errorf("no acceptor memory as root: %+v", rep.Memory)
		}
		if rep.Scale == nil || rep.Scale.All.N != rep.Scale.Users*rep.Scale.Conns || rep.Scale.Workers == 0 {
			t.Errorf("scale run: %+v", rep.Scale)
		}
	} else if !skipped("netauthd rows") {
		t.Errorf("not root, but the netauthd rows are not reported as skipped: %+v", rep.Skipped)
	}
	if names["fork-setuid"] == skipped("fork-setuid") {
		t.Errorf("fork-setuid row present %v, reported skipped %v", names["fork-setuid"], skipped("fork-setuid"))
	}
	if names["ssh"] == skipped("OpenSSH") {
		t.Errorf("OpenSSH rows present %v, reported skipped %v", names["ssh"], skipped("OpenSSH"))
	}

	svg, err := os.ReadFile(svgFile)
	if names["fork-setuid"] {
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			XMLName xml.Name
			Rects   []struct{} `xml:"rect"`
		}
		if err := xml.Unmarshal(svg, &doc); err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
		// One background rectangle and one bar per latency row.
		if doc.XMLName.Local != "svg" || len(doc.Rects) != 1+len(rep.Latency) {
			t.Errorf("SVG root %q with %d rects, want svg with %d", doc.XMLName.Local, len(doc.Rects), 1+len(rep.Latency))
		}
	}
}

// TestBenchUsage checks that bad flags are refused before anything runs.
func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-only", "latency,nonsense"},
		{"-scale", "100"},
		{"-scale", "0x10"},
		{"-n", "-1"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		if rc := (benchCommand{self: []string{"/nonexistent"}}).run(args, &stdout, &stderr); rc != 2 {
			t.Errorf("netauth bench %q: exit %d, want 2 (stderr %q)", args, rc, stderr.String())
		}
	}
}
