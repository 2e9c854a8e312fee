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

// LatencyRow is one system's 128-byte connect-send-recv-close latency.
type LatencyRow struct {
	Name  string `json:"name"`
	Label string `json:"label"`
	Stats
	PerFork float64 `json:"per_fork_setuid,omitempty"` // median / fork-setuid's median
	PerTCP  float64 `json:"per_tcp,omitempty"`         // median / plain TCP's median
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
	Row    string  `json:"row"` // the row it concerns ("latency/ubns-resumed", ...)
	What   string  `json:"what"`
	Want   string  `json:"want"`
	Limit  float64 `json:"limit"` // the number in Want
	Got    string  `json:"got"`
	Status string  `json:"status"` // "met", "missed" or "not measured"
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

// Scale target: this many users with this many connections each, and the daemon's memory.
const (
	targetScaleUsers = 1000
	targetScaleConns = 10
	targetDaemonMB   = 200
	targetWorkerMB   = 10
)

// evaluate checks the run against netauth's targets. A target whose row did not run is "not
// measured".
func (rep *Report) evaluate() {
	rep.Targets = nil
	add := func(row, what, want string, limit float64, measured bool, got string, met bool) {
		t := Target{Row: row, What: what, Want: want, Limit: limit, Got: got, Status: "not measured"}
		if measured {
			t.Status = "missed"
			if met {
				t.Status = "met"
			}
		}
		rep.Targets = append(rep.Targets, t)
	}
	// Connection latency, against fork-setuid: netauthd's rows, or the in-process server's
	// when netauthd did not run.
	for _, t := range []struct {
		ubns, inproc, what string
		max                float64
	}{
		{"ubns-resumed", "netauth-resumed", "resumed connection", 0.75},
		{"ubns-first", "", "first connection (new worker)", 7},
		{"ubns-full", "netauth-full", "full handshake to an existing worker", 1.5},
	} {
		name := t.ubns
		row := rep.latency(name)
		if row == nil && t.inproc != "" {
			name = t.inproc
			row = rep.latency(name)
		}
		fork := rep.latency("fork-setuid")
		what := t.what
		if name == t.inproc && row != nil {
			what += " (in-process server: netauthd needs root)"
		}
		measured := row != nil && fork != nil
		got := ""
		if measured {
			got = fmt.Sprintf("%.2fx", row.PerFork)
		}
		add("latency/"+name, what, fmt.Sprintf("<= %gx fork-setuid", t.max), t.max, measured, got, measured && row.PerFork <= t.max)
	}
	na, tls, tcp := rep.bulkRow("netauth"), rep.bulkRow("tls"), rep.bulkRow("tcp")
	{
		measured := na != nil && tls != nil
		got := ""
		if measured {
			got = fmt.Sprintf("%.2fx", ratio(na.MBps, tls.MBps))
		}
		add("bulk/netauth", "bulk throughput against crypto/tls", ">= 1.5x TLS", 1.5, measured, got, measured && na.MBps >= 1.5*tls.MBps)
		measured = na != nil && tcp != nil
		if measured {
			got = fmt.Sprintf("%.0f%%", 100*ratio(na.MBps, tcp.MBps))
		}
		add("bulk/netauth", "bulk throughput against plain TCP", ">= 50% of TCP", 0.5, measured, got, measured && na.MBps >= 0.5*tcp.MBps)
	}
	for _, t := range []struct {
		name, what string
		min        float64
	}{
		{"netauth-full", "full handshakes per core-second", 6600},
		{"netauth-resumed", "resumed handshakes per core-second", 14000},
	} {
		row := rep.cpuRow(t.name)
		got := ""
		if row != nil {
			got = fmt.Sprintf("%.0f", row.PerCoreSecond)
		}
		add("cpu/"+t.name, t.what, fmt.Sprintf(">= %.0f", t.min), t.min, row != nil, got, row != nil && row.PerCoreSecond >= t.min)
	}
	if v := rep.Verify; v != nil {
		add("verify", "signature verifications per core-second", ">= 19000", 19000, true, fmt.Sprintf("%.0f", v.PerCoreSecond), v.PerCoreSecond >= 19000)
	} else {
		add("verify", "signature verifications per core-second", ">= 19000", 19000, false, "", false)
	}
	if m := rep.Memory; m != nil {
		add("memory/idle", "idle per-user worker VmRSS", fmt.Sprintf("<= %d MiB", targetWorkerMB), targetWorkerMB, true, mib(m.IdleWorker.RSSKB), m.IdleWorker.RSSKB <= targetWorkerMB*1024)
	} else {
		add("memory/idle", "idle per-user worker VmRSS", fmt.Sprintf("<= %d MiB", targetWorkerMB), targetWorkerMB, false, "", false)
	}
	what := fmt.Sprintf("netauthd VmRSS with %d users x %d connections open", targetScaleUsers, targetScaleConns)
	want := fmt.Sprintf("<= %d MiB", targetDaemonMB)
	if s := rep.Scale; s != nil {
		got := fmt.Sprintf("%s at %d x %d", mib(s.DaemonPeak.RSSKB), s.Users, s.Conns)
		full := s.Users >= targetScaleUsers && s.Conns >= targetScaleConns
		t := Target{Row: "scale", What: what, Want: want, Limit: targetDaemonMB, Got: got, Status: "missed"}
		switch {
		case s.DaemonPeak.RSSKB > targetDaemonMB*1024:
		case full:
			t.Status = "met"
		default:
			t.Status = "not measured"
			t.Got += fmt.Sprintf(" (run -scale %dx%d)", targetScaleUsers, targetScaleConns)
		}
		rep.Targets = append(rep.Targets, t)
	} else {
		add("scale", what, want, targetDaemonMB, false, "", false)
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
		fmt.Fprintf(w, "\nConnect, send %d B, receive %d B, close (the paper's Table 3); %d rounds round-robin\n", msgSize, msgSize, rep.N)
		row("system", "n", "median us", "p99 us", "x fork-setuid", "x TCP", "target")
		for _, l := range rep.Latency {
			row(l.Label, fmt.Sprint(l.N), num(l.Median, "%.1f"), num(l.P99, "%.1f"), num(l.PerFork, "%.2f"), num(l.PerTCP, "%.2f"), rep.targetFor("latency/"+l.Name))
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
		fmt.Fprintf(w, "\nServer CPU per connect-send-recv (server process's getrusage; %d clients at once)\n", c.Clients)
		row("system", "conns", "server us", "client us", "handshake us (- TCP)", "handshakes/core-s", "target")
		for _, r := range c.Rows {
			row(r.Label, fmt.Sprint(r.Conns), num(r.ServerUS, "%.1f"), num(r.ClientUS, "%.1f"), num(r.HandshakeUS, "%.1f"), num(r.PerCoreSecond, "%.0f"), rep.targetFor("cpu/"+r.Name))
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
		fmt.Fprintf(w, "netauthd monitor VmRSS %s before, %s with every connection open (peak %s); %d workers, median VmRSS %s, Pss of all workers %s\n",
			mib(s.DaemonBefore.RSSKB), mib(s.DaemonPeak.RSSKB), mib(s.DaemonPeak.HWMKB), s.Workers, mib(s.WorkerRSSMedianKB), mib(s.WorkersPssKB))
		fmt.Fprintf(w, "target: %s\n", rep.targetFor("scale"))
	}
	rep.writeRTT(w, row, flush)
	fmt.Fprintln(w, "\nTargets")
	row("target", "wanted", "measured", "")
	for _, t := range rep.Targets {
		row(t.What, t.Want, t.Got, t.Status)
	}
	flush()
	if len(rep.Skipped) > 0 {
		fmt.Fprintln(w, "\nSkipped")
		for _, s := range rep.Skipped {
			fmt.Fprintf(w, "  %s: %s\n", s.What, s.Why)
		}
	}
	return nil
}
