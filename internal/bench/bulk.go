// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"

	"ubns.dev/netauth"
)

// bulkIO is the size of each Write of the sender and each Read of the sink.
const bulkIO = 256 << 10

// bulk sends r.n.bulkSize bytes one way over one long-lived connection per system (plain
// TCP, TLS 1.3 and netauth, to sinks in the server process), waits for the sink's one-byte
// acknowledgment, and alternates the systems round-robin. It reports each system's median
// throughput and the CPU both ends spent per byte.
func (r *run) bulk() error {
	tc, err := net.Dial("tcp", r.srv.addrs.TCPSink)
	if err != nil {
		return err
	}
	sc, err := tls.Dial("tcp", r.srv.addrs.TLSSink, r.m.tlsClientConfig(false))
	if err != nil {
		return err
	}
	nc, err := netauth.Dial("tcp", r.srv.addrs.NetauthSink, r.memoryConfig(false))
	if err != nil {
		return err
	}
	if err := nc.Handshake(); err != nil {
		return err
	}
	conns := []net.Conn{tc, sc, nc}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	names := []string{"tcp", "tls", "netauth"}
	labels := []string{"plain TCP", "TLS 1.3 (AES-128-GCM)", "netauth (AES-256-GCM)"}
	data := make([]byte, bulkIO)
	_, _ = rand.Read(data)
	send := func(c net.Conn) error {
		for sent := 0; sent < r.n.bulkSize; sent += len(data) {
			if _, err := c.Write(data[:min(len(data), r.n.bulkSize-sent)]); err != nil {
				return err
			}
		}
		var ack [1]byte
		_, err := io.ReadFull(c, ack[:])
		return err
	}
	r.prog.phase(fmt.Sprintf("bulk throughput, %d MiB per transfer", r.n.bulkSize>>20))
	for i, c := range conns { // warm up
		if err := send(c); err != nil {
			return fmt.Errorf("%s: %w", labels[i], err)
		}
	}
	mbps := make([][]float64, len(conns))
	cpu := make([]time.Duration, len(conns))
	for i := range r.n.bulkRounds {
		for k := range conns {
			j := (i + k) % len(conns)
			srv0, err := r.srv.cpu()
			if err != nil {
				return err
			}
			cli0, err := processCPU()
			if err != nil {
				return err
			}
			t0 := time.Now()
			if err := send(conns[j]); err != nil {
				return fmt.Errorf("%s: %w", labels[j], err)
			}
			d := time.Since(t0)
			cli1, err := processCPU()
			if err != nil {
				return err
			}
			srv1, err := r.srv.cpu()
			if err != nil {
				return err
			}
			mbps[j] = append(mbps[j], float64(r.n.bulkSize)/d.Seconds()/1e6)
			cpu[j] += cli1 - cli0 + srv1 - srv0
		}
		r.prog.count(i+1, r.n.bulkRounds)
	}
	for j, name := range names {
		r.rep.Bulk = append(r.rep.Bulk, BulkRow{Name: name, Label: labels[j], Transfers: len(mbps[j]),
			MBps: medianFloat(mbps[j]), CPUNsPerByte: float64(cpu[j].Nanoseconds()) / float64(len(mbps[j])*r.n.bulkSize)})
	}
	return nil
}
