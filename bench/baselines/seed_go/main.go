// Command seed_go is the seed's relay, the userspace design steer replaces, written as its
// Go authors would with the standard library alone: one SO_REUSEPORT socket on the VIP per
// worker (one worker per core), so the kernel spreads clients over workers by 4-tuple hash
// and each worker owns its clients; each worker's reader goroutine locked to an OS thread;
// buffers allocated once. A client with no flow must open with a STUN Binding Request: the
// ufrag before ':' in USERNAME picks the transceiver (UFRAG=IP:PORT); the worker then dials
// a connected socket to it (the flow's upstream) and maps client address -> upstream. What
// the transceiver sends on an upstream goes back to its client from the worker's VIP
// socket, so clients only ever see VIP:port.
//
// Tuning, as its authors would (docs/benchmarks.md, "seed_go", says what was measured):
//   - GOMAXPROCS is left at the core count: the locked readers and the upstream readers
//     share it, and more Ps than cores only adds scheduler handoffs.
//   - The hot path allocates nothing (ReadFromUDPAddrPort / WriteToUDPAddrPort take and
//     give netip.AddrPort by value; map keys are AddrPorts), so the collector has nothing to
//     do; it is switched off (SetGCPercent(-1)) with a soft memory limit as the backstop
//     (SetMemoryLimit, Go 1.19), the GOGC=off GOMEMLIMIT=... pattern of Go services.
//   - Batch reads: the standard library has none. net.UDPConn reads one datagram per
//     system call; recvmmsg/sendmmsg are in golang.org/x/net/ipv4 (PacketConn.ReadBatch),
//     which is not the standard library, so this relay makes one read and one write per
//     packet, as a stdlib-only Go relay does.
//   - Only the VIP readers are locked (-lock): locking each flow's upstream reader would
//     give every session its own OS thread, and Go aborts the process at 10,000 threads.
//
// Tried (bench/seed_go_tuning.py, bench/results/20261207T233323Z-seed-go-tuning.json, 3
// rounds): -lock=false, -gcpercent=100, GOMAXPROCS=1 and one worker each left its own CPU
// per packet within the rounds' spread (24-33 us at ~17 kpps); one worker halved its
// full-load rate (115 against 221 kpps). So it stays as the seed has it.
//
// usage: seed_go [-lock=true] [-gcpercent=-1] VIP_IP VIP_PORT WORKERS UFRAG=IP:PORT...
// (prints "ready" once every worker's socket is bound)
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

const (
	mtu     = 2048
	sockBuf = 4 << 20 // as udp_relay.c: what an operator would set, so bursts wait
	// a flow holds a socket: per worker at most this many (a flood of first packets with
	// a known ufrag from new source ports stops here instead of at the fd limit)
	maxFlows    = 65536
	memoryLimit = 512 << 20
	soReuseport = 0xf // SO_REUSEPORT on Linux; package syscall does not name it
)

var stunMagic = []byte{0x21, 0x12, 0xa4, 0x42}

// stunUfrag is the server ufrag of a STUN Binding Request (the part of USERNAME before
// ':'), or nil. Every length is checked against the datagram before it is used.
func stunUfrag(p []byte) []byte {
	if len(p) < 20 || p[0] != 0 || p[1] != 1 || !bytes.Equal(p[4:8], stunMagic) {
		return nil
	}
	end := 20 + (int(p[2])<<8 | int(p[3]))
	if end > len(p) {
		return nil
	}
	for off := 20; off+4 <= end; {
		typ, alen := int(p[off])<<8|int(p[off+1]), int(p[off+2])<<8|int(p[off+3])
		if off+4+alen > end {
			return nil
		}
		if typ == 0x0006 {
			v := p[off+4 : off+4+alen]
			i := bytes.IndexByte(v, ':')
			if i <= 0 {
				return nil
			}
			return v[:i]
		}
		off += 4 + (alen+3)&^3
	}
	return nil
}

type worker struct {
	vip      *net.UDPConn
	backends map[string]*net.UDPAddr
	lock     bool
	flows    map[netip.AddrPort]*net.UDPConn // touched by the reader goroutine only
}

// setBuffers sets what an operator would (SO_*BUFFORCE: root, beyond net.core.*mem_max),
// and SO_REUSEPORT on the VIP sockets.
func setBuffers(c syscall.RawConn, reuseport bool) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		opts := []int{syscall.SO_RCVBUFFORCE, syscall.SO_SNDBUFFORCE}
		for _, o := range opts {
			if e := syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, o, sockBuf); e != nil {
				serr = e
			}
		}
		if reuseport {
			if e := syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReuseport, 1); e != nil {
				serr = e
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// fromClients reads the VIP socket: a known client's datagram goes to its upstream; an
// unknown client's opens a flow if it is a Binding Request for a configured ufrag.
func (w *worker) fromClients() {
	if w.lock {
		runtime.LockOSThread()
	}
	buf := make([]byte, mtu)
	for {
		n, client, err := w.vip.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		up := w.flows[client]
		if up == nil {
			if up = w.open(buf[:n], client); up == nil {
				continue // not a Binding Request for a known ufrag: dropped
			}
		}
		// a full socket buffer blocks this reader in Go's poller (back-pressure: the VIP
		// socket's buffer fills and the kernel drops there)
		_, _ = up.Write(buf[:n])
	}
}

func (w *worker) open(p []byte, client netip.AddrPort) *net.UDPConn {
	u := stunUfrag(p)
	if u == nil || len(w.flows) >= maxFlows {
		return nil
	}
	to, ok := w.backends[string(u)] // no allocation: the compiler looks up by the bytes
	if !ok {
		return nil
	}
	up, err := net.DialUDP("udp4", nil, to)
	if err != nil {
		return nil
	}
	if rc, err := up.SyscallConn(); err == nil {
		_ = setBuffers(rc, false)
	}
	w.flows[client] = up
	go w.fromBackend(up, netip.AddrPortFrom(client.Addr().Unmap(), client.Port()))
	return up
}

// fromBackend returns what the transceiver sends on a flow's upstream to its client, from
// the VIP.
func (w *worker) fromBackend(up *net.UDPConn, client netip.AddrPort) {
	buf := make([]byte, mtu)
	for {
		n, err := up.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ECONNREFUSED from an ICMP error: the next datagram may arrive
		}
		_, _ = w.vip.WriteToUDPAddrPort(buf[:n], client)
	}
}

func parseBackend(spec string) (string, *net.UDPAddr, error) {
	ufrag, addr, ok := strings.Cut(spec, "=")
	if !ok || ufrag == "" || len(ufrag) > 32 {
		return "", nil, fmt.Errorf("bad backend %q (UFRAG=IP:PORT)", spec)
	}
	to, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return "", nil, fmt.Errorf("bad backend %q: %w", spec, err)
	}
	return ufrag, to, nil
}

func run() error {
	lock := flag.Bool("lock", true, "lock each VIP reader goroutine to its OS thread")
	gcPercent := flag.Int("gcpercent", -1, "debug.SetGCPercent (-1: off, memory limit only)")
	flag.Parse()
	args := flag.Args()
	if len(args) < 4 {
		return errors.New("usage: seed_go [-lock] [-gcpercent N] VIP_IP VIP_PORT WORKERS UFRAG=IP:PORT...")
	}
	debug.SetGCPercent(*gcPercent)
	debug.SetMemoryLimit(memoryLimit)
	workers, err := strconv.Atoi(args[2])
	if err != nil || workers < 1 {
		return fmt.Errorf("bad worker count %q", args[2])
	}
	backends := map[string]*net.UDPAddr{}
	for _, spec := range args[3:] {
		ufrag, to, err := parseBackend(spec)
		if err != nil {
			return err
		}
		backends[ufrag] = to
	}
	vip := net.JoinHostPort(args[0], args[1])
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return setBuffers(c, true)
	}}
	ws := make([]*worker, workers)
	for i := range ws {
		pc, err := lc.ListenPacket(context.Background(), "udp4", vip)
		if err != nil {
			return err
		}
		ws[i] = &worker{
			vip:      pc.(*net.UDPConn),
			backends: backends,
			lock:     *lock,
			flows:    map[netip.AddrPort]*net.UDPConn{},
		}
	}
	for _, w := range ws {
		go w.fromClients()
	}
	fmt.Println("ready")
	select {} // until a signal ends the process
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "seed_go:", err)
		os.Exit(2)
	}
}
