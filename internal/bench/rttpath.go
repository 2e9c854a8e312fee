// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The rtt part's emulated network path. Its process runs in a network namespace of its own
// (started with CLONE_NEWNET), and so do the servers, netauthd and the agent it starts: the
// namespace's loopback interface is the path. Every IPv4 packet sent through lo is queued by
// an iptables rule (NFQUEUE) to the process, which lets it through (its verdict) a fixed delay
// after the kernel queued it: each direction of a TCP connection crosses lo once, so a delay
// of 5 ms makes a round trip of 10 ms. lo's MTU is set to 1500. Unix sockets (the agent's,
// netauthd's own) are not delayed: they are local on a real path too.
//
// netem (tc qdisc ... netem delay) would do the same in the kernel, but it is not built into
// every kernel (it is not into the Firecracker guests netauth is developed on); the
// netfilter queue is.

// NFQUEUE's netlink protocol (linux/netfilter/nfnetlink_queue.h).
const (
	nfqnlMsgPacket       = 0 // a queued packet (kernel to us)
	nfqnlMsgConfig       = 2 // queue configuration
	nfqnlMsgVerdictBatch = 3 // a verdict on every packet up to an id

	nfqaPacketHdr  = 1 // struct nfqnl_msg_packet_hdr: be32 id, be16 hw protocol, u8 hook
	nfqaVerdictHdr = 2 // struct nfqnl_msg_verdict_hdr: be32 verdict, be32 id
	nfqaTimestamp  = 4 // struct nfqnl_msg_packet_timestamp: be64 seconds, be64 microseconds

	nfqaCfgCmd         = 1 // struct nfqnl_msg_config_cmd: u8 command, u8 pad, be16 pf
	nfqaCfgParams      = 2 // struct nfqnl_msg_config_params: be32 copy range, u8 copy mode
	nfqaCfgQueueMaxlen = 3 // be32

	nfqnlCfgCmdBind = 1
	nfqnlCopyMeta   = 1 // the packet's metadata only, not its bytes
	nfAccept        = 1

	netlinkNoENOBUFS = 5 // NETLINK_NO_ENOBUFS
)

// rttQueue is the NFQUEUE number the path uses (queues belong to a network namespace).
const rttQueue = 7

// rttMTU is the path's MTU.
const rttMTU = 1500

// errPathUnsupported marks a failure to build the path that comes from this machine (no
// iptables, no netfilter queue in the kernel), not from netauth: the part is skipped.
var errPathUnsupported = errors.New("this machine cannot emulate the path")

// delayPath is the running emulated path.
type delayPath struct {
	fd     int
	tsSock int   // a socket asking for receive timestamps, so that every packet gets one
	delay  int64 // nanoseconds
	stop   atomic.Bool
	done   chan struct{}
	mu     sync.Mutex
	err    error // the first error of the verdict loop
}

// newDelayPath sets lo up with the path's MTU and starts delaying every IPv4 packet sent
// through it by delay. The process must be alone in its network namespace's loopback traffic
// (a namespace of its own) and be root.
func newDelayPath(delay time.Duration) (*delayPath, error) {
	if err := loopbackUp(rttMTU); err != nil {
		return nil, fmt.Errorf("setting lo up: %w", err)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("%w: netfilter netlink socket: %v", errPathUnsupported, err)
	}
	p := &delayPath{fd: fd, delay: delay.Nanoseconds(), done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netfilter netlink socket: bind: %w", err)
	}
	// A burst of packets must not overflow the socket (an overflow loses no packet, the next
	// batch verdict covers it, but it would delay it by more than the path's delay).
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, netlinkNoENOBUFS, 1)
	var cmd [4]byte
	cmd[0] = nfqnlCfgCmdBind
	binary.BigEndian.PutUint16(cmd[2:], unix.AF_INET)
	if err := p.config(nfqaCfgCmd, cmd[:]); err != nil {
		return nil, fmt.Errorf("%w: binding netfilter queue %d: %v (is nfnetlink_queue in the kernel?)", errPathUnsupported, rttQueue, err)
	}
	var params [5]byte // copy range 0, metadata only
	params[4] = nfqnlCopyMeta
	if err := p.config(nfqaCfgParams, params[:]); err != nil {
		return nil, fmt.Errorf("configuring netfilter queue %d: %w", rttQueue, err)
	}
	var maxlen [4]byte
	binary.BigEndian.PutUint32(maxlen[:], 1<<16)
	if err := p.config(nfqaCfgQueueMaxlen, maxlen[:]); err != nil {
		return nil, fmt.Errorf("configuring netfilter queue %d: %w", rttQueue, err)
	}
	// The kernel stamps received packets with the time they arrived only while some socket
	// asks for it; with the stamp, a packet's delay runs from its arrival at the queue, not
	// from when this process got to read it.
	if p.tsSock, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
		return nil, err
	}
	if err := unix.SetsockoptInt(p.tsSock, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		unix.Close(p.tsSock)
		return nil, fmt.Errorf("SO_TIMESTAMPNS: %w", err)
	}
	defer func() {
		if !ok {
			unix.Close(p.tsSock)
		}
	}()
	if err := queueLoopback(); err != nil {
		return nil, err
	}
	ok = true
	go p.run()
	return p, nil
}

// loopbackUp sets lo's MTU and brings it up.
func loopbackUp(mtu uint32) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	ifr.SetUint32(mtu)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
		return fmt.Errorf("MTU: %w", err)
	}
	if ifr, err = unix.NewIfreq("lo"); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr)
}

// queueLoopback adds the iptables rule that queues every IPv4 packet leaving through lo.
// iptables-legacy is preferred: it uses the NFQUEUE target as such, where iptables-nft may
// translate it to nftables' queue expression, which fewer kernels have.
func queueLoopback() error {
	bin := ""
	for _, name := range []string{"iptables-legacy", "iptables"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		return fmt.Errorf("%w: it needs iptables (the package iptables) to queue lo's packets", errPathUnsupported)
	}
	args := []string{"-w", "-A", "INPUT", "-i", "lo", "-j", "NFQUEUE", "--queue-num", fmt.Sprint(rttQueue)}
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s %s: %v: %s", errPathUnsupported, bin, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// config sends one queue configuration attribute and waits for the kernel's answer.
func (p *delayPath) config(attr uint16, value []byte) error {
	msg := nfqMessage(nfqnlMsgConfig, unix.NLM_F_REQUEST|unix.NLM_F_ACK, attr, value)
	if err := unix.Sendto(p.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(p.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		for m := buf[:n]; len(m) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(m))
			if l < unix.NLMSG_HDRLEN || l > len(m) {
				return errors.New("a malformed netlink answer")
			}
			if binary.NativeEndian.Uint16(m[4:]) == unix.NLMSG_ERROR && l >= unix.NLMSG_HDRLEN+4 {
				if e := int32(binary.NativeEndian.Uint32(m[unix.NLMSG_HDRLEN:])); e != 0 {
					return unix.Errno(-e)
				}
				return nil
			}
			m = m[min(len(m), nlAlign(l)):]
		}
	}
}

// nfqMessage builds a netlink message of the queue subsystem for rttQueue with one attribute.
func nfqMessage(typ, flags, attr uint16, value []byte) []byte {
	alen := 4 + len(value)
	msg := make([]byte, unix.NLMSG_HDRLEN+4+nlAlign(alen))
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.NFNL_SUBSYS_QUEUE<<8|typ)
	binary.NativeEndian.PutUint16(msg[6:], flags)
	// nfgenmsg: family, version, queue number (big-endian)
	msg[16] = unix.AF_UNSPEC
	msg[17] = unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(msg[18:], rttQueue)
	binary.NativeEndian.PutUint16(msg[20:], uint16(alen))
	binary.NativeEndian.PutUint16(msg[22:], attr)
	copy(msg[24:], value)
	return msg
}

func nlAlign(n int) int { return (n + 3) &^ 3 }

// queued is a packet waiting for its verdict.
type queued struct {
	id  uint32
	due int64 // CLOCK_MONOTONIC nanoseconds
}

// run is the verdict loop, on one OS thread of its own with the finest timer slack, so that
// its timeouts end when asked: it waits (ppoll) for queued packets or for the next packet's
// time, and lets through every packet whose time has come with one batch verdict.
func (p *delayPath) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(p.done)
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	var pending []queued
	buf := make([]byte, 1<<16)
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	for !p.stop.Load() {
		timeout := unix.NsecToTimespec(int64(100 * time.Millisecond)) // to see stop
		if len(pending) > 0 {
			timeout = unix.NsecToTimespec(max(0, pending[0].due-monotonic()))
		}
		if _, err := unix.Ppoll(fds, &timeout, nil); err != nil && !errors.Is(err, unix.EINTR) {
			p.fail(fmt.Errorf("ppoll: %w", err))
			return
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			var err error
			if pending, err = p.receive(buf, pending); err != nil {
				p.fail(err)
				return
			}
		}
		now := monotonic()
		i := 0
		for i < len(pending) && pending[i].due <= now {
			i++
		}
		if i > 0 {
			verdict := make([]byte, 8)
			binary.BigEndian.PutUint32(verdict[0:], nfAccept)
			binary.BigEndian.PutUint32(verdict[4:], pending[i-1].id)
			msg := nfqMessage(nfqnlMsgVerdictBatch, unix.NLM_F_REQUEST, nfqaVerdictHdr, verdict)
			if err := unix.Sendto(p.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
				p.fail(fmt.Errorf("verdict: %w", err))
				return
			}
			pending = slices.Delete(pending, 0, i)
		}
	}
}

// receive reads every queued packet's notice that is waiting, and appends the packets to
// pending with the time they are due.
func (p *delayPath) receive(buf []byte, pending []queued) ([]queued, error) {
	for {
		n, _, err := unix.Recvfrom(p.fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOBUFS) {
				return pending, nil
			}
			return pending, fmt.Errorf("receiving from the netfilter queue: %w", err)
		}
		now := monotonic()
		var real unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_REALTIME, &real)
		toMono := now - real.Nano() // the packets' stamps are in CLOCK_REALTIME
		for m := buf[:n]; len(m) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(m))
			if l < unix.NLMSG_HDRLEN || l > len(m) {
				return pending, errors.New("a malformed message from the netfilter queue")
			}
			switch typ := binary.NativeEndian.Uint16(m[4:]); {
			case typ == unix.NFNL_SUBSYS_QUEUE<<8|nfqnlMsgPacket:
				if id, stamp, ok := packetInfo(m[unix.NLMSG_HDRLEN:l]); ok {
					at := now
					if stamp != 0 {
						// Never later than now: a clock step must not hold a packet.
						at = min(now, stamp+toMono)
					}
					pending = append(pending, queued{id: id, due: at + p.delay})
				}
			case typ == unix.NLMSG_ERROR && l >= unix.NLMSG_HDRLEN+4:
				if e := int32(binary.NativeEndian.Uint32(m[unix.NLMSG_HDRLEN:])); e != 0 {
					return pending, fmt.Errorf("the netfilter queue refused a verdict: %w", unix.Errno(-e))
				}
			}
			m = m[min(len(m), nlAlign(l)):]
		}
	}
}

// packetInfo finds a queued packet's id and, if it has one, the time it arrived (CLOCK_REALTIME
// nanoseconds; 0 if it has none) in its attributes (after the nfgenmsg header).
func packetInfo(b []byte) (id uint32, stamp int64, ok bool) {
	if len(b) < 4 {
		return 0, 0, false
	}
	for a := b[4:]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a))
		if l < 4 || l > len(a) {
			return 0, 0, false
		}
		switch binary.NativeEndian.Uint16(a[2:]) & 0x3fff {
		case nfqaPacketHdr:
			if l >= 4+4 {
				id, ok = binary.BigEndian.Uint32(a[4:]), true
			}
		case nfqaTimestamp:
			if l >= 4+16 {
				sec, usec := binary.BigEndian.Uint64(a[4:]), binary.BigEndian.Uint64(a[12:])
				stamp = int64(sec)*1e9 + int64(usec)*1e3
			}
		}
		a = a[min(len(a), nlAlign(l)):]
	}
	return id, stamp, ok
}

func monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

func (p *delayPath) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

// Err returns the verdict loop's error, if it stopped on one (packets are then no longer let
// through).
func (p *delayPath) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// close stops the verdict loop. Packets sent through lo afterwards are dropped: stop
// everything that uses the path first.
func (p *delayPath) close() {
	p.stop.Store(true)
	<-p.done
	unix.Close(p.fd)
	unix.Close(p.tsSock)
}

// measureRoundTrip returns the median time of n TCP connects over lo (a connect takes one
// round trip: SYN, SYN-ACK), to check the path.
func measureRoundTrip(n int) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	d := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return 0, err
		}
		d = append(d, time.Since(t0))
		c.Close()
	}
	slices.Sort(d)
	return d[len(d)/2], nil
}
