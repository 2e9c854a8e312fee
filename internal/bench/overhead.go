// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"net"
	"time"

	"ubns.dev/netauth"
)

// overhead measures the paper's Table 2 rows: creating a listening server (netauth.Listen
// against net.Listen, on 127.0.0.1 port 0) and connecting (netauth.Dial through the agent
// until the handshake is complete, full and resumed, against net.Dial), alternated
// round-robin. The listeners
// are closed outside the timed part; connections are closed without sending anything.
func (r *run) overhead() error {
	scfg := &netauth.ServerConfig{HostKey: r.m.hostKey, Service: "bench",
		Keys: netauth.StaticKeys{workerAccount: {r.m.user.PublicKey()}}}
	bindTCP := func() (func() error, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		return ln.Close, nil
	}
	bindNetauth := func() (func() error, error) {
		ln, err := netauth.Listen("tcp", "127.0.0.1:0", scfg)
		if err != nil {
			return nil, err
		}
		return ln.Close, nil
	}
	connectTCP := func() (func() error, error) {
		c, err := net.Dial("tcp", r.srv.addrs.TCP)
		if err != nil {
			return nil, err
		}
		return c.Close, nil
	}
	connectNetauth := func(cfg *netauth.Config) func() (func() error, error) {
		return func() (func() error, error) {
			c, err := netauth.Dial("tcp", r.srv.addrs.Netauth, cfg)
			if err != nil {
				return nil, err
			}
			if err := c.Handshake(); err != nil {
				c.Close()
				return nil, err
			}
			return c.Close, nil
		}
	}
	type op struct {
		name, label, base string
		do                func() (func() error, error) // the timed part; returns the untimed cleanup
		lat               []time.Duration
	}
	ops := []*op{
		{name: "bind-tcp", label: "bind: net.Listen", do: bindTCP},
		{name: "bind-netauth", label: "bind: netauth.Listen", base: "bind-tcp", do: bindNetauth},
		{name: "connect-tcp", label: "connect: net.Dial", do: connectTCP},
		{name: "connect-netauth-full", label: "connect: netauth.Dial, full, through the agent", base: "connect-tcp", do: connectNetauth(r.agentConfig(true))},
		{name: "connect-netauth-resumed", label: "connect: netauth.Dial, resumed, through the agent", base: "connect-tcp", do: connectNetauth(r.agentConfig(false))},
	}
	r.prog.phase("bind and connect overhead")
	total := r.n.warm + r.n.overhead
	for i := range total {
		for k := range ops {
			o := ops[(i+k)%len(ops)]
			t0 := time.Now()
			cleanup, err := o.do()
			d := time.Since(t0)
			if err != nil {
				return err
			}
			if err := cleanup(); err != nil {
				return err
			}
			if i >= r.n.warm {
				o.lat = append(o.lat, d)
			}
		}
		r.prog.count(i+1, total)
	}
	med := map[string]float64{}
	for _, o := range ops {
		row := OverheadRow{Name: o.name, Label: o.label, Baseline: o.base, Stats: summarize(o.lat)}
		med[o.name] = row.Median
		row.Ratio = 1
		if o.base != "" {
			row.Ratio = ratio(row.Median, med[o.base])
		}
		r.rep.Overhead = append(r.rep.Overhead, row)
	}
	return nil
}
