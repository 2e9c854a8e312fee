// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"ubns.dev/netauth"
)

// scrapeMetrics fetches the metrics served on the Unix socket sock and parses them.
func scrapeMetrics(t *testing.T, sock string) map[string]*dto.MetricFamily {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := client.Get("http://netauthd/metrics")
	if err != nil {
		t.Fatalf("scraping the metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping the metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the metrics: %v", err)
	}
	return fams
}

// metricValue is the value of the counter, gauge or histogram (its sample count) called
// name with labels, or -1 when there is none.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	fam := fams[name]
	if fam == nil {
		return -1
	}
next:
	for _, m := range fam.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(labels) {
			continue
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// TestMetrics: with metrics-listen, a full and a resumed accepted handshake and a refused one
// are counted by kind, result and refusal code, with the worker started for them, its
// handoffs and the audit writes, as a Prometheus scrape of the socket shows.
func TestMetrics(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "metrics.sock")
	tb := newTestbed(t, "metrics-listen "+sock+"\n\n"+whoamiService)
	if a := tb.d.MetricsAddr(); a == nil || a.String() != sock {
		t.Fatalf("metrics served on %v, want %s", a, sock)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("metrics socket: %v, %v; want mode 0600", fi, err)
	}
	fams := scrapeMetrics(t, sock)
	if v := metricValue(fams, "netauthd_handshakes_total", map[string]string{"kind": "full", "result": "accepted"}); v != 0 {
		t.Fatalf("before any connection, full accepted handshakes = %v, want 0", v)
	}

	aliceCfg := tb.config("netauth-alice")
	for i, resumed := range []string{"false", "true"} {
		r, err := tb.whoami("whoami", "netauth-alice", aliceCfg)
		if err != nil {
			t.Fatalf("alice's connection %d: %v", i+1, err)
		}
		if r["resumed"] != resumed {
			t.Fatalf("alice's connection %d: resumed %s, want %s", i+1, r["resumed"], resumed)
		}
	}
	_, err := tb.whoami("whoami", "netauth-carol", tb.config("netauth-carol"))
	var re *netauth.RefusedError
	if !errors.As(err, &re) || re.Code != netauth.CodeNotAuthorized {
		t.Fatalf("carol: %v, want not authorized", err)
	}

	want := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"netauthd_handshakes_total", map[string]string{"kind": "full", "result": "accepted"}, 1},
		{"netauthd_handshakes_total", map[string]string{"kind": "resumed", "result": "accepted"}, 1},
		{"netauthd_handshakes_total", map[string]string{"kind": "full", "result": "refused"}, 1},
		{"netauthd_handshakes_total", map[string]string{"kind": "resumed", "result": "refused"}, 0},
		{"netauthd_refusals_total", map[string]string{"code": "not_authorized"}, 1},
		{"netauthd_workers_started_total", nil, 1},
		{"netauthd_workers_running", nil, 1},
		{"netauthd_handoff_seconds", nil, 2},     // samples: one per accepted connection
		{"netauthd_audit_write_seconds", nil, 3}, // samples: two acceptances, one refusal
	}
	// The worker's adoption (the handoff sample) may reach the monitor after the client's
	// answer: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams = scrapeMetrics(t, sock)
		var wrong []string
		for _, w := range want {
			if v := metricValue(fams, w.name, w.labels); v != w.value {
				wrong = append(wrong, fmt.Sprintf("%s%v = %v, want %v", w.name, w.labels, v, w.value))
			}
		}
		if len(wrong) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics after two accepted and one refused connection:\n%v", wrong)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A worker gone is no longer running.
	pid := tb.d.Workers()[0].Pid
	if err := killPid(pid); err != nil {
		t.Fatal(err)
	}
	for {
		v := metricValue(scrapeMetrics(t, sock), "netauthd_workers_running", nil)
		if v == 0 {
			break
		}
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatalf("workers running after the only worker was killed: %v, want 0", v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNoMetricsByDefault: without metrics-listen nothing is served.
func TestNoMetricsByDefault(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	if a := tb.d.MetricsAddr(); a != nil {
		t.Fatalf("metrics served on %v without metrics-listen", a)
	}
}
