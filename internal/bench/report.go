// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of a run. Its JSON form is what -json writes.
type Report struct {
	Time     time.Time     `json:"time"`
	Command  string        `json:"command,omitempty"`
	Machine  Machine       `json:"machine"`
	Quick    bool          `json:"quick"`
	N        int           `json:"n"`
	Latency  []LatencyRow  `json:"latency,omitempty"`
	Overhead []OverheadRow `json:"overhead,omitempty"`
	CPU      *CPUResult    `json:"cpu,omitempty"`
	Verify   *VerifyResult `json:"verify,omitempty"`
	Bulk     []BulkRow     `json:"bulk,omitempty"`
	Memory   *MemoryResult `json:"memory,omitempty"`
	Scale    *ScaleResult  `json:"scale,omitempty"`
	RTT      *RTTResult    `json:"rtt,omitempty"`
	Targets  []Target      `json:"targets"`
	Notes    []string      `json:"notes"` // how things were measured (the clients, netauthd's acceptor)
	Skipped  []Skip        `json:"skipped"`
}

// Machine describes where the run ran.
type Machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	MemoryMB   int    `json:"memory_mb"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	OS         string `json:"os"`
	LoadStart  string `json:"load_start"`
	LoadEnd    string `json:"load_end"`
}

// LatencyRow is one system's 128-byte connect-send-recv-close latency, a part of a floor
// measured in the same rounds, or a floor (Sum set: its median is the sum of those rows'
// medians, and it has no other statistics).
type LatencyRow struct {
	Name  string `json:"name"`
	Label string `json:"label"`
	Stats
	PerFork float64 `json:"per_fork_setuid,omitempty"` // median / fork-setuid's median
	PerTCP  float64 `json:"per_tcp,omitempty"`         // median / plain TCP's median
	// Resumed and Full count a netauth row's measured connections by kind.
	Resumed int      `json:"resumed,omitempty"`
	Full    int      `json:"full,omitempty"`
	Client  string   `json:"client,omitempty"` // a netauth row's client: "agent" or "in-process signer"
	Sum     []string `json:"sum,omitempty"`    // a floor: the rows whose medians it adds
}

// OverheadRow is one bind or connect measurement (the paper's Table 2).
type OverheadRow struct {
	Name     string `json:"name"`
	Label    string `json:"label"`
	Baseline string `json:"baseline,omitempty"`
	Stats
	Ratio float64 `json:"ratio"` // median / the baseline's median
}

// CPUResult is the server's CPU per connection and per handshake.
type CPUResult struct {
	Clients int      `json:"clients"`
	Rows    []CPURow `json:"rows"`
}

// CPURow is one system's CPU per 128-byte connect-send-recv.
type CPURow struct {
	Name               string  `json:"name"`
	Label              string  `json:"label"`
	Conns              int     `json:"conns"`
	ServerUS           float64 `json:"server_cpu_us_per_conn"`
	ClientUS           float64 `json:"client_cpu_us_per_conn"`
	ConnsPerCoreSecond float64 `json:"conns_per_core_second"`
	HandshakeUS        float64 `json:"handshake_cpu_us,omitempty"` // server CPU minus plain TCP's
	PerCoreSecond      float64 `json:"handshakes_per_core_second,omitempty"`
	PerFloor           float64 `json:"per_floor,omitempty"` // HandshakeUS / the floor row's
}

// VerifyResult is the cost of verifying a user's authenticator.
type VerifyResult struct {
	N                    int     `json:"n"`
	SSHSIGUS             float64 `json:"sshsig_verify_us"`
	PerCoreSecond        float64 `json:"sshsig_per_core_second"`
	Ed25519US            float64 `json:"ed25519_verify_us"`
	Ed25519PerCoreSecond float64 `json:"ed25519_per_core_second"`
}

// BulkRow is one system's bulk throughput.
type BulkRow struct {
	Name         string  `json:"name"`
	Label        string  `json:"label"`
	Transfers    int     `json:"transfers"`
	MBps         float64 `json:"mb_per_s"`
	CPUNsPerByte float64 `json:"cpu_ns_per_byte"` // both ends
}

// ProcMemory is a process's memory use, in kB (KiB), from /proc.
type ProcMemory struct {
	RSSKB  int `json:"rss_kb"`  // VmRSS
	HWMKB  int `json:"hwm_kb"`  // VmHWM, the peak RSS
	AnonKB int `json:"anon_kb"` // RssAnon: the part not backed by files
	PssKB  int `json:"pss_kb"`  // proportional set size (shared pages divided among sharers)
}

// MemoryResult is the memory of netauthd's processes.
type MemoryResult struct {
	IdleWorker ProcMemory `json:"idle_worker"`           // a per-user worker after one connection
	EchoWorker ProcMemory `json:"echo_worker,omitempty"` // the per-user worker of the latency part
	Daemon     ProcMemory `json:"daemon"`                // the monitor
	Acceptor   ProcMemory `json:"acceptor"`              // its acceptor
}

// ScaleResult is the scale run.
type ScaleResult struct {
	Users             int        `json:"users"`
	Conns             int        `json:"conns_per_user"`
	Clients           int        `json:"users_at_once"`
	VirtualUsers      bool       `json:"account_less_users"`
	Seconds           float64    `json:"seconds"`
	Overloaded        int        `json:"overloaded_retries"` // refusals as overloaded, each retried (the time includes them)
	First             Stats      `json:"first"`
	Later             Stats      `json:"later"`
	All               Stats      `json:"all"`
	DaemonBefore      ProcMemory `json:"daemon_before"`
	DaemonPeak        ProcMemory `json:"daemon_with_all_open"`
	Workers           int        `json:"workers"`
	WorkerRSSMedianKB int        `json:"worker_rss_median_kb"`
	WorkersPssKB      int        `json:"workers_pss_total_kb"`
}

// Target is one of netauth's performance targets and whether this run met it.
type Target struct {
	Name   string  `json:"name"` // which target (TargetNames)
	Row    string  `json:"row"`  // the row it concerns ("latency/ubns-resumed", ...)
	What   string  `json:"what"`
	Want   string  `json:"want"`
	Limit  float64 `json:"limit"`          // the number in Want
	Base   string  `json:"base,omitempty"` // what Limit is a ratio to ("fork-setuid", ...), if it is one
	Got    string  `json:"got"`
	Floor  string  `json:"floor,omitempty"` // the same measure for the floor of this run, where there is one
	Status string  `json:"status"`          // "met", "missed" or "not measured"
}

// Skip is something the run did not measure, and why.
type Skip struct {
	What string `json:"what"`
	Why  string `json:"why"`
}

// ratios fills in each latency row's ratios to fork-setuid and plain TCP.
func (rep *Report) ratios() {
	fork, tcp := rep.latency("fork-setuid"), rep.latency("tcp")
	for i := range rep.Latency {
		row := &rep.Latency[i]
		if fork != nil {
			row.PerFork = ratio(row.Median, fork.Median)
		}
		if tcp != nil {
			row.PerTCP = ratio(row.Median, tcp.Median)
		}
	}
}

func (rep *Report) latency(name string) *LatencyRow {
	for i := range rep.Latency {
		if rep.Latency[i].Name == name {
			return &rep.Latency[i]
		}
	}
	return nil
}

func (rep *Report) cpuRow(name string) *CPURow {
	if rep.CPU == nil {
		return nil
	}
	for i := range rep.CPU.Rows {
		if rep.CPU.Rows[i].Name == name {
			return &rep.CPU.Rows[i]
		}
	}
	return nil
}

func (rep *Report) bulkRow(name string) *BulkRow {
	for i := range rep.Bulk {
		if rep.Bulk[i].Name == name {
			return &rep.Bulk[i]
		}
	}
	return nil
}

// The targets (issue 12's table: the deployed daemon with privilege separation, medians,
// same run), by name, in the order evaluate lists them.
const (
	TargetResumedFork      = "resumed-fork-setuid" // netauthd resumed, existing worker, through the agent
	TargetResumedInProcess = "resumed-in-process"  // the same against the in-process server's
	TargetFullFork         = "full-fork-setuid"    // netauthd full, existing worker
	TargetFirstFork        = "first-fork-setuid"   // netauthd first connection (new worker)
	TargetInProcessFloor   = "in-process-floor"    // in-process resumed, through the agent, against its floor
	TargetAgentMemory      = "agent-memory-cache"  // resumed Dial through the agent against a memory cache
	TargetCPUFull          = "server-cpu-full"     // netauthd's processes' CPU per full handshake
	TargetCPUResumed       = "server-cpu-resumed"  // the same, resumed
	TargetBulkTLS          = "bulk-tls"            // bulk throughput against crypto/tls
	TargetBulkTCP          = "bulk-tcp"            // bulk throughput against plain TCP
	TargetScaleP99         = "scale-p99"           // p99 against the median in the scale run
	TargetRoundTrips       = "round-trips"         // round trips on an emulated network path
)

// TargetNames lists every target, in the order a report lists them.
var TargetNames = []string{TargetResumedFork, TargetResumedInProcess, TargetFullFork, TargetFirstFork,
	TargetInProcessFloor, TargetAgentMemory, TargetCPUFull, TargetCPUResumed, TargetBulkTLS, TargetBulkTCP,
	TargetScaleP99, TargetRoundTrips}

// The scale run the p99 target is set for: this many users with this many connections each.
const (
	targetScaleUsers = 50
	targetScaleConns = 10
)

// evaluate checks the run against netauth's targets. A target whose rows did not run is "not
// measured". extra are targets measured by parts of their own (the round trips on an
// emulated network path, TargetRoundTrips); a target of TargetNames that no part measured
// is listed as not measured.
func (rep *Report) evaluate(extra ...Target) {
	rep.Targets = nil
	add := func(t Target, measured, met bool) {
		t.Status = "not measured"
		if measured {
			t.Status = "missed"
			if met {
				t.Status = "met"
			}
		}
		rep.Targets = append(rep.Targets, t)
	}
	fork := rep.latency("fork-setuid")
	floorRes, floorFull := rep.latency("floor-resumed"), rep.latency("floor-full")
	inRes, inMem := rep.latency("netauth-resumed"), rep.latency("netauth-resumed-memory")
	ubnsRes := rep.latency("ubns-resumed")

	// Latency against fork-setuid, with the floor's ratio to it.
	vsFork := func(name, row, what string, limit float64, floor *LatencyRow, floorNote string) {
		t := Target{Name: name, Row: "latency/" + row, What: what, Want: fmt.Sprintf("<= %gx fork-setuid", limit),
			Limit: limit, Base: "fork-setuid"}
		r := rep.latency(row)
		ok := r != nil && fork != nil
		if ok {
			t.Got = fmt.Sprintf("%.2fx (%.0f us)", r.PerFork, r.Median)
		}
		if floor != nil && fork != nil {
			t.Floor = fmt.Sprintf("%.2fx (%.0f us)%s", floor.PerFork, floor.Median, floorNote)
		}
		add(t, ok, ok && r.PerFork <= limit)
	}
	// A ratio of two latency rows' medians.
	vsRow := func(name, what string, r, base *LatencyRow, rowName, baseName, want string, limit float64, floor string) {
		t := Target{Name: name, Row: "latency/" + rowName, What: what, Want: want, Limit: limit, Base: baseName, Floor: floor}
		ok := r != nil && base != nil && base.Median > 0
		if ok {
			t.Got = fmt.Sprintf("%.2fx (%.0f / %.0f us)", r.Median/base.Median, r.Median, base.Median)
		}
		add(t, ok, ok && r.Median <= limit*base.Median)
	}

	vsFork(TargetResumedFork, "ubns-resumed", "resumed connection to an existing netauthd worker, client through the agent",
		1.5, floorRes, "")
	floor := ""
	if floorRes != nil {
		floor = fmt.Sprintf("1x (the same handshake; floor %.0f us)", floorRes.Median)
	}
	vsRow(TargetResumedInProcess, "resumed connection to an existing netauthd worker against the in-process server's (both through the agent)",
		ubnsRes, inRes, "ubns-resumed", "netauth-resumed", "<= 1.25x in-process resumed", 1.25, floor)
	vsFork(TargetFullFork, "ubns-full", "full handshake to an existing netauthd worker, client through the agent",
		2, floorFull, "")
	vsFork(TargetFirstFork, "ubns-first", "first connection (new netauthd worker), client through the agent",
		7, floorFull, ", without starting a process")
	floor = ""
	if floorRes != nil {
		floor = fmt.Sprintf("%.0f us = TCP + 1 round trip %.0f + public-key ops %.0f", floorRes.Median,
			rep.median("tcp-1rt"), rep.median("pk-resumed"))
	}
	vsRow(TargetInProcessFloor, "in-process server's resumed connect-send-recv, client through the agent, against its floor",
		inRes, floorRes, "netauth-resumed", "floor-resumed", "<= 1.2x its floor", 1.2, floor)
	vsRow(TargetAgentMemory, "resumed Dial through the agent against an in-memory ticket cache (in-process server)",
		inRes, inMem, "netauth-resumed", "netauth-resumed-memory", "<= 1.1x memory cache", 1.1, "1x (the same handshake)")

	// Server CPU per handshake, every netauthd process together, against the server's
	// public-key floor.
	for _, c := range []struct{ name, row, floor, what string }{
		{TargetCPUFull, "ubns-full", "floor-full", "server CPU per full handshake, all netauthd processes together"},
		{TargetCPUResumed, "ubns-resumed", "floor-resumed", "server CPU per resumed handshake, all netauthd processes together"},
	} {
		t := Target{Name: c.name, Row: "cpu/" + c.row, What: c.what, Want: "<= 1.5x the public-key floor", Limit: 1.5, Base: "cpu/" + c.floor}
		r, f := rep.cpuRow(c.row), rep.cpuRow(c.floor)
		if f != nil {
			t.Floor = fmt.Sprintf("%.0f us", f.HandshakeUS)
		}
		ok := r != nil && f != nil && f.HandshakeUS > 0
		if ok {
			t.Got = fmt.Sprintf("%.2fx (%.0f us)", r.HandshakeUS/f.HandshakeUS, r.HandshakeUS)
		}
		add(t, ok, ok && r.HandshakeUS <= 1.5*f.HandshakeUS)
	}

	na, tls, tcp := rep.bulkRow("netauth"), rep.bulkRow("tls"), rep.bulkRow("tcp")
	{
		t := Target{Name: TargetBulkTLS, Row: "bulk/netauth", What: "bulk throughput against crypto/tls", Want: ">= 1.5x TLS", Limit: 1.5, Base: "bulk/tls"}
		ok := na != nil && tls != nil
		if ok {
			t.Got = fmt.Sprintf("%.2fx", ratio(na.MBps, tls.MBps))
		}
		add(t, ok, ok && na.MBps >= 1.5*tls.MBps)
		t = Target{Name: TargetBulkTCP, Row: "bulk/netauth", What: "bulk throughput against plain TCP", Want: ">= 50% of TCP", Limit: 0.5, Base: "bulk/tcp"}
		ok = na != nil && tcp != nil
		if ok {
			t.Got = fmt.Sprintf("%.0f%%", 100*ratio(na.MBps, tcp.MBps))
		}
		add(t, ok, ok && na.MBps >= 0.5*tcp.MBps)
	}

	{
		t := Target{Name: TargetScaleP99, Row: "scale", What: fmt.Sprintf("p99 against the median, scale run (%d users x %d connections)", targetScaleUsers, targetScaleConns),
			Want: "<= 3x median", Limit: 3}
		s := rep.Scale
		ok := s != nil && s.All.Median > 0
		if ok {
			t.Got = fmt.Sprintf("%.2fx (%.0f / %.0f us; first of a user %.2fx, later %.2fx) at %d x %d",
				s.All.P99/s.All.Median, s.All.P99, s.All.Median, ratio(s.First.P99, s.First.Median), ratio(s.Later.P99, s.Later.Median), s.Users, s.Conns)
			if s.Overloaded > 0 {
				t.Got += fmt.Sprintf(", %d overloaded refusals retried", s.Overloaded)
			}
			if s.Users < targetScaleUsers || s.Conns < targetScaleConns {
				// Too few connections for the target's p99.
				ok = false
				t.Got += fmt.Sprintf(" (run -scale %dx%d)", targetScaleUsers, targetScaleConns)
			}
		}
		add(t, ok, ok && s.All.P99 <= 3*s.All.Median)
	}

	// Targets measured by parts of their own.
	have := map[string]bool{}
	for _, t := range extra {
		rep.Targets = append(rep.Targets, t)
		have[t.Name] = true
	}
	if !have[TargetRoundTrips] {
		rep.Targets = append(rep.Targets, roundTripTarget(rep)) // not measured: the same wording
	}
}

// median returns the median of a latency row (0 if it did not run).
func (rep *Report) median(name string) float64 {
	if r := rep.latency(name); r != nil {
		return r.Median
	}
	return 0
}

// addFloors adds the connection floors to the latency rows: plain TCP with one more round
// trip, plus the public-key operations of a resumed or full handshake, each the median of
// its own row measured in the same rounds.
func (rep *Report) addFloors() {
	base := rep.latency("tcp-1rt")
	if base == nil {
		return
	}
	tcp := base.Median
	for _, f := range []struct{ name, label, pk string }{
		{"floor-resumed", "floor, resumed: TCP + 1 round trip + resumed public-key ops", "pk-resumed"},
		{"floor-full", "floor, full: TCP + 1 round trip + full public-key ops", "pk-full"},
	} {
		if pk := rep.latency(f.pk); pk != nil {
			rep.Latency = append(rep.Latency, LatencyRow{Name: f.name, Label: f.label,
				Stats: Stats{Median: tcp + pk.Median}, Sum: []string{"tcp-1rt", f.pk}})
		}
	}
}

// mib formats kB as MiB.
func mib(kb int) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// targetFor returns the targets of a row, as "want: got status" text for the table.
func (rep *Report) targetFor(row string) string {
	var parts []string
	for _, t := range rep.Targets {
		if t.Row != row {
			continue
		}
		s := t.Want
		switch t.Status {
		case "met":
			s += "  met"
		case "missed":
			s += "  MISSED"
		default:
			s += "  not measured"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// WriteTable writes the report for a person: one table per part, the targets next to the
// rows they concern, then the targets and what was skipped.
func (rep *Report) WriteTable(w io.Writer) error {
	m := rep.Machine
	fmt.Fprintf(w, "netauth bench, %s\n", rep.Time.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine: %s, %d cores (GOMAXPROCS %d), %d MiB, %s, %s %s, load %s -> %s\n",
		m.CPU, m.Cores, m.GOMAXPROCS, m.MemoryMB, m.Kernel, m.Go, m.OS, m.LoadStart, m.LoadEnd)
	if rep.Quick {
		fmt.Fprintln(w, "quick run: the counts are too small for the numbers to mean anything")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }
	num := func(v float64, format string) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf(format, v)
	}
	flush := func() { tw.Flush() }

	if len(rep.Latency) > 0 {
		fmt.Fprintf(w, "\nConnect, send %d B, receive %d B, close (the paper's Table 3); %d rounds round-robin, floors' parts included\n", msgSize, msgSize, rep.N)
		row("system", "n", "median us", "p99 us", "x fork-setuid", "x TCP", "target")
		for _, l := range rep.Latency {
			n := fmt.Sprint(l.N)
			if len(l.Sum) > 0 {
				n = "sum"
			}
			row(l.Label, n, num(l.Median, "%.1f"), num(l.P99, "%.1f"), num(l.PerFork, "%.2f"), num(l.PerTCP, "%.2f"), rep.targetFor("latency/"+l.Name))
		}
		flush()
	}
	if len(rep.Overhead) > 0 {
		fmt.Fprintln(w, "\nBind and connect (the paper's Table 2): Listen on 127.0.0.1:0; Dial until the handshake completes")
		row("operation", "n", "median us", "p99 us", "x baseline")
		for _, o := range rep.Overhead {
			row(o.Label, fmt.Sprint(o.N), num(o.Median, "%.1f"), num(o.P99, "%.1f"), num(o.Ratio, "%.2f"))
		}
		flush()
	}
	if c := rep.CPU; c != nil {
		fmt.Fprintf(w, "\nServer CPU per connect-send-recv (%d clients at once; the Go servers' process by getrusage, netauthd's monitor, acceptor and worker together from /proc; clients: this process and the agent)\n", c.Clients)
		row("system", "conns", "server us", "client us", "handshake us (- TCP)", "handshakes/core-s", "x floor", "target")
		for _, r := range c.Rows {
			row(r.Label, fmt.Sprint(r.Conns), num(r.ServerUS, "%.1f"), num(r.ClientUS, "%.1f"), num(r.HandshakeUS, "%.1f"), num(r.PerCoreSecond, "%.0f"), num(r.PerFloor, "%.2f"), rep.targetFor("cpu/"+r.Name))
		}
		flush()
	}
	if v := rep.Verify; v != nil {
		fmt.Fprintf(w, "\nUser signature verification, one core, %d in a loop\n", v.N)
		row("check", "us", "per core-second", "target")
		row("SSHSIG (Ed25519 user key)", num(v.SSHSIGUS, "%.1f"), num(v.PerCoreSecond, "%.0f"), rep.targetFor("verify"))
		row("bare Ed25519 (floor)", num(v.Ed25519US, "%.1f"), num(v.Ed25519PerCoreSecond, "%.0f"), "")
		flush()
	}
	if len(rep.Bulk) > 0 {
		fmt.Fprintln(w, "\nBulk throughput, one connection each, round-robin")
		tls, tcp := rep.bulkRow("tls"), rep.bulkRow("tcp")
		row("system", "transfers", "MB/s", "CPU ns/B (both ends)", "x TLS", "x TCP", "target")
		for _, b := range rep.Bulk {
			xt, xc := 0.0, 0.0
			if tls != nil {
				xt = ratio(b.MBps, tls.MBps)
			}
			if tcp != nil {
				xc = ratio(b.MBps, tcp.MBps)
			}
			row(b.Label, fmt.Sprint(b.Transfers), num(b.MBps, "%.0f"), num(b.CPUNsPerByte, "%.2f"), num(xt, "%.2f"), num(xc, "%.2f"), rep.targetFor("bulk/"+b.Name))
		}
		flush()
	}
	if mem := rep.Memory; mem != nil {
		fmt.Fprintln(w, "\nMemory (from /proc)")
		row("process", "VmRSS", "RssAnon", "Pss", "target")
		row("idle per-user worker (served one connection)", mib(mem.IdleWorker.RSSKB), mib(mem.IdleWorker.AnonKB), mib(mem.IdleWorker.PssKB), rep.targetFor("memory/idle"))
		if mem.EchoWorker.RSSKB > 0 {
			row("per-user worker after the latency part", mib(mem.EchoWorker.RSSKB), mib(mem.EchoWorker.AnonKB), mib(mem.EchoWorker.PssKB), "")
		}
		row("netauthd monitor (daemon process)", mib(mem.Daemon.RSSKB), mib(mem.Daemon.AnonKB), mib(mem.Daemon.PssKB), "")
		row("netauthd acceptor", mib(mem.Acceptor.RSSKB), mib(mem.Acceptor.AnonKB), mib(mem.Acceptor.PssKB), "")
		flush()
	}
	if s := rep.Scale; s != nil {
		users := "account-less users"
		if !s.VirtualUsers {
			users = "real accounts"
		}
		fmt.Fprintf(w, "\nScale: %d users (%s) x %d connections, %d users at once, all left open; %.1f s\n", s.Users, users, s.Conns, s.Clients, s.Seconds)
		row("connections", "n", "p50 us", "p90 us", "p99 us")
		for _, x := range []struct {
			label string
			st    Stats
		}{{"first of a user (new worker)", s.First}, {"later (resumed, same worker)", s.Later}, {"all", s.All}} {
			row(x.label, fmt.Sprint(x.st.N), num(x.st.Median, "%.0f"), num(x.st.P90, "%.0f"), num(x.st.P99, "%.0f"))
		}
		flush()
		if s.Overloaded > 0 {
			fmt.Fprintf(w, "netauthd refused %d connection attempts as overloaded; each was tried again after a pause, and its connection's time includes the retries\n", s.Overloaded)
		}
		fmt.Fprintf(w, "netauthd monitor VmRSS %s before, %s with every connection open (peak %s); %d workers, median VmRSS %s, Pss of all workers %s\n",
			mib(s.DaemonBefore.RSSKB), mib(s.DaemonPeak.RSSKB), mib(s.DaemonPeak.HWMKB), s.Workers, mib(s.WorkerRSSMedianKB), mib(s.WorkersPssKB))
		fmt.Fprintf(w, "target: %s\n", rep.targetFor("scale"))
	}
	rep.writeRTT(w, row, flush)
	fmt.Fprintln(w, "\nTargets (a measured ratio's floor is the same ratio for this run's floor)")
	row("target", "wanted", "measured", "", "floor")
	for _, t := range rep.Targets {
		f := t.Floor
		if f == "" {
			f = "-"
		}
		row(t.What, t.Want, t.Got, t.Status, f)
	}
	flush()
	if len(rep.Notes) > 0 {
		fmt.Fprintln(w, "\nNotes")
		for _, n := range rep.Notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	if len(rep.Skipped) > 0 {
		fmt.Fprintln(w, "\nSkipped")
		for _, s := range rep.Skipped {
			fmt.Fprintf(w, "  %s: %s\n", s.What, s.Why)
		}
	}
	return nil
}
