// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
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
		"netauth in-process server, resumed", "quick run"} {
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
	names := map[string]bool{}
	for _, l := range rep.Latency {
		names[l.Name] = true
		if l.N == 0 || l.Median <= 0 || l.P99 < l.Median {
			t.Errorf("latency row %s: n %d, median %v, p99 %v", l.Name, l.N, l.Median, l.P99)
		}
	}
	want := []string{"tcp", "tls-full", "tls-resumed", "netauth-full", "netauth-resumed"}
	if root {
		want = append(want, "ubns-first", "ubns-full", "ubns-resumed")
	}
	for _, n := range want {
		if !names[n] {
			t.Errorf("no latency row %q in the JSON (have %v)", n, names)
		}
	}
	if len(rep.Overhead) != 5 || rep.CPU == nil || len(rep.CPU.Rows) != 5 || rep.Verify == nil || len(rep.Bulk) != 3 {
		t.Errorf("missing parts: overhead %d rows, cpu %v, verify %v, bulk %d rows", len(rep.Overhead), rep.CPU, rep.Verify, len(rep.Bulk))
	}
	if len(rep.Targets) != 10 {
		t.Errorf("%d targets, want 10: %+v", len(rep.Targets), rep.Targets)
	}
	for _, tg := range rep.Targets {
		if tg.Status != "met" && tg.Status != "missed" && tg.Status != "not measured" {
			t.Errorf("target %q has status %q", tg.What, tg.Status)
		}
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
