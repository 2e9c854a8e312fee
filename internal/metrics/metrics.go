// SPDX-License-Identifier: Apache-2.0

// Package metrics holds netauthd's Prometheus metrics and serves them on the address of the
// "metrics-listen" directive: a Unix socket path, or a loopback address and port. Metrics are
// off unless that directive is given. Each Metrics has a registry of its own: nothing is
// registered in the process-wide default registry.
package metrics

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/unixsock"
)

// Handshake kinds and results, the values of the labels "kind" and "result".
const (
	KindFull    = "full"
	KindResumed = "resumed"

	Accepted = "accepted"
	Refused  = "refused"
)

// Metrics are the daemon's counters, gauges and histograms. A nil *Metrics records nothing.
type Metrics struct {
	reg            *prometheus.Registry
	handshakes     *prometheus.CounterVec
	refusals       *prometheus.CounterVec
	workersRunning prometheus.Gauge
	workersStarted prometheus.Counter
	handoff        prometheus.Histogram
	auditWrite     prometheus.Histogram
}

// New returns a set of metrics registered in a registry of its own, with the Go runtime's
// and the process's collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "netauthd", Name: "handshakes_total",
			Help: "Handshakes decided by the monitor, by kind (full, resumed) and result (accepted, refused).",
		}, []string{"kind", "result"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "netauthd", Name: "refusals_total",
			Help: "Handshakes refused by the monitor, by refusal code (docs/PROTOCOL.md §8).",
		}, []string{"code"}),
		workersRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "netauthd", Name: "workers_running",
			Help: "Worker processes running.",
		}),
		workersStarted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "netauthd", Name: "workers_started_total",
			Help: "Worker processes started.",
		}),
		handoff: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "netauthd", Name: "handoff_seconds",
			Help:    "Time from an accepted connection's handoff to a worker until the worker adopts it.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10), // 100µs to ~26s
		}),
		auditWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "netauthd", Name: "audit_write_seconds",
			Help:    "Time to write one audit record (accepted or refused) to the audit log.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10), // 10µs to ~2.6s
		}),
	}
	m.reg.MustRegister(m.handshakes, m.refusals, m.workersRunning, m.workersStarted, m.handoff, m.auditWrite,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, k := range []string{KindFull, KindResumed} {
		for _, r := range []string{Accepted, Refused} {
			m.handshakes.WithLabelValues(k, r) // present from the start, at 0
		}
	}
	return m
}

// Handshake counts a handshake of kind (resumed or full) decided with result.
func (m *Metrics) Handshake(resumed bool, result string) {
	if m == nil {
		return
	}
	kind := KindFull
	if resumed {
		kind = KindResumed
	}
	m.handshakes.WithLabelValues(kind, result).Inc()
}

// Refusal counts a handshake refused with code (its name, as the audit log records it).
// It does not count the handshake itself: see Handshake.
func (m *Metrics) Refusal(code string) {
	if m == nil {
		return
	}
	m.refusals.WithLabelValues(code).Inc()
}

// WorkerStarted counts a worker process started, and running.
func (m *Metrics) WorkerStarted() {
	if m == nil {
		return
	}
	m.workersStarted.Inc()
	m.workersRunning.Inc()
}

// WorkerExited counts a started worker process gone.
func (m *Metrics) WorkerExited() {
	if m == nil {
		return
	}
	m.workersRunning.Dec()
}

// Handoff observes the time since start that a handoff to a worker took.
func (m *Metrics) Handoff(start time.Time) {
	if m == nil {
		return
	}
	m.handoff.Observe(time.Since(start).Seconds())
}

// AuditWrite observes the time since start that an audit write took.
func (m *Metrics) AuditWrite(start time.Time) {
	if m == nil {
		return
	}
	m.auditWrite.Observe(time.Since(start).Seconds())
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Listen opens addr, a metrics-listen value: an absolute path is a Unix socket made as
// unixsock.Listen makes it (mode 0600, readable only by its owner, root; in a directory
// owned by root that nobody else may write to; a stale socket there is replaced, a live one
// or any other file is an error), else a TCP address, which must be a loopback one, and
// whose bound address is checked to be loopback too (a "localhost" that the system resolves
// elsewhere is refused).
func Listen(addr string) (net.Listener, error) {
	if filepath.IsAbs(addr) {
		l, err := unixsock.Listen(addr)
		if err != nil {
			return nil, fmt.Errorf("metrics-listen: %w", err)
		}
		return l, nil
	}
	if err := policy.CheckMetricsListen(addr); err != nil {
		return nil, err
	}
	l, err := listenTCP("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics-listen: %w", err)
	}
	if err := checkLoopback(l.Addr()); err != nil {
		l.Close()
		return nil, fmt.Errorf("metrics-listen %s: %w", addr, err)
	}
	return l, nil
}

// Bounds on the clients of the metrics endpoint. A loopback port is open to every local user,
// and each connection the monitor takes costs it a descriptor and a goroutine: it takes at
// most maxConns at once (the others wait in the kernel's backlog, which costs it nothing), and
// no connection is held longer than the timeouts, whether its client is slow to ask or to read.
const (
	maxConns     = 16
	readTimeout  = 10 * time.Second
	writeTimeout = 10 * time.Second
	idleTimeout  = time.Minute
	maxHeader    = 16 << 10
)

// listenTCP listens on a TCP address (a variable for tests).
var listenTCP = net.Listen

// checkLoopback returns an error unless a is a loopback TCP address.
func checkLoopback(a net.Addr) error {
	ta, ok := a.(*net.TCPAddr)
	if !ok || !ta.IP.IsLoopback() {
		return fmt.Errorf("bound to %s, which is not a loopback address: give 127.0.0.1 or [::1]", a)
	}
	return nil
}

// Serve serves the metrics on l until it is closed.
func (m *Metrics) Serve(l net.Listener) error {
	srv := &http.Server{
		Handler:           m.Handler(),
		ReadHeaderTimeout: readTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeader,
	}
	err := srv.Serve(netutil.LimitListener(l, maxConns))
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
