// Command gvisorxdp is the gVisor contender of xnic's TCP benchmark (`xnic
// bench tcp`): gVisor's netstack on gVisor's own AF_XDP link endpoint,
// gvisor.dev/gvisor/pkg/tcpip/link/xdp, serving the HTTP service of
// engine/services on one address, as `xnic serve` does on an xnic guest;
// with --echo PORT also the TCP echo and UDP echo services on that port, the
// gVisor contender of `xnic bench latency`.
//
// How frames reach gVisor's socket. gVisor's endpoint takes an AF_XDP socket
// and sets up its UMEM and rings (pkg/xdp), but loads no XDP program, and an
// AF_XDP socket receives only what an XDP program on its interface and queue
// redirects into an XSKMAP entry holding it. In gVisor's own set-up, the
// `xdp_loader redirect` tool (tools/xdp) attaches redirect_host_ebpf.o, which
// sends every frame except SSH to key 0 of an XSKMAP it pins under
// /sys/fs/bpf/IFACE/, and runsc inserts the socket at key 0 and binds it
// (the endpoint's Options.Bind is false there; runsc binds). gvisorxdp does
// the same with xnic's steering program (bpf.LoadSteer) in the role of the
// redirect program, narrower than gVisor's: it redirects to the socket only
// what is addressed to this stack, that is ARP whose target is the IPv4
// address, every IP protocol to the IPv4 and IPv6 addresses, and ICMPv6 to
// the solicited-node group of the IPv6 address (neighbour solicitations),
// as engine/stack.OwnRules does for an xnic guest; everything else goes on
// to the host's kernel. The socket is bound to the queue here (copy mode on
// a veth), put into the XSKMAP slot of guest 0, class 0 on that queue, and
// the program is attached (natively by default) last.
//
// The stack gets the TCP settings of engine/stack.DefaultOptions where
// gVisor's endpoint allows them: SACK, receive buffer moderation, the
// default and maximum buffer sizes and the congestion control. It cannot
// have TSO or GRO (the endpoint supports neither, and its MTU is fixed at
// 1500) and, like runsc, it queues sends through a FIFO qdisc. By default
// the endpoint does not claim receive checksum offload, so netstack checks
// every checksum: nothing on a veth has validated them (--rx-csum-offload
// trusts them instead).
//
// Usage:
//
//	gvisorxdp --iface IF --mac MAC --ipv4 A/LEN [--ipv6 A/LEN] [--queue 0] [--port 80]
//	          [--echo PORT] [--attach native] [--duration 0] [--rx-csum-offload] [--json]
//
// It prints "gvisorxdp: ready ..." on stderr once it serves, and stops on
// SIGTERM or SIGINT (or after --duration), detaching its program; with
// --json it then prints its counters as one JSON object on stdout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/qdisc/fifo"
	xdplink "gvisor.dev/gvisor/pkg/tcpip/link/xdp"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/xdp"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine/services"
	xstack "github.com/xnic/xnic/engine/stack"
)

// ReadyPrefix starts the line printed on stderr once the service is up.
const ReadyPrefix = "gvisorxdp: ready"

// nicID is the one NIC of the stack.
const nicID tcpip.NICID = 1

// bindRetry is how long a busy queue (the socket of the previous
// contender, freed asynchronously) is retried.
const bindRetry = 5 * time.Second

// fifoQueueLen is the qdisc's queue length per queue, as runsc sets it.
const fifoQueueLen = 1000

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "gvisorxdp: %s\n", err)
		os.Exit(1)
	}
}

// options are the parsed flags.
type options struct {
	iface    string
	queue    int
	mac      net.HardwareAddr
	v4, v6   netip.Prefix
	port     int
	echo     int // TCP and UDP echo port; 0: none
	attach   bpf.AttachMode
	duration time.Duration
	rxCsum   bool
	json     bool
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("gvisorxdp", flag.ContinueOnError)
	fs.StringVar(&o.iface, "iface", "", "interface to serve on (required)")
	fs.IntVar(&o.queue, "queue", 0, "receive queue to bind the AF_XDP socket to")
	mac := fs.String("mac", "", "the stack's own MAC address (required)")
	v4 := fs.String("ipv4", "", "IPv4 address with prefix length, e.g. 198.18.0.10/24 (required)")
	v6 := fs.String("ipv6", "", "IPv6 address with prefix length, e.g. 2001:2::10/64")
	fs.IntVar(&o.port, "port", services.DefaultPort(services.HTTP), "TCP port of the HTTP service")
	fs.IntVar(&o.echo, "echo", 0, "also serve TCP echo and UDP echo on this port (0: no echo)")
	attach := fs.String("attach", "native", "XDP attach mode of the redirect program: native, generic or auto")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: until SIGTERM or SIGINT)")
	fs.BoolVar(&o.rxCsum, "rx-csum-offload", false, "claim receive checksum offload: netstack then trusts every checksum")
	fs.BoolVar(&o.json, "json", false, "print the counters as one JSON object on stdout at the end")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.iface == "" {
		return o, errors.New("--iface: required")
	}
	if o.queue < 0 || o.queue >= bpf.MaxQueues {
		return o, fmt.Errorf("--queue: must be 0..%d, got %d", bpf.MaxQueues-1, o.queue)
	}
	if o.mac, err = net.ParseMAC(*mac); err != nil || len(o.mac) != 6 || o.mac[0]&1 != 0 {
		return o, fmt.Errorf("--mac: want a unicast Ethernet address, got %q", *mac)
	}
	if o.v4, err = netip.ParsePrefix(*v4); err != nil || !o.v4.Addr().Is4() {
		return o, fmt.Errorf("--ipv4: want an IPv4 address with prefix length, got %q", *v4)
	}
	if *v6 != "" {
		if o.v6, err = netip.ParsePrefix(*v6); err != nil || !o.v6.Addr().Is6() || o.v6.Addr().Is4In6() {
			return o, fmt.Errorf("--ipv6: want an IPv6 address with prefix length, got %q", *v6)
		}
	}
	if o.port < 1 || o.port > 65535 {
		return o, fmt.Errorf("--port: must be 1..65535, got %d", o.port)
	}
	if o.echo < 0 || o.echo > 65535 || (o.echo != 0 && o.echo == o.port) {
		return o, fmt.Errorf("--echo: must be 0 (none) or 1..65535 other than --port, got %d", o.echo)
	}
	if o.attach, err = bpf.ParseAttachMode(*attach); err != nil {
		return o, fmt.Errorf("--attach: %w", err)
	}
	if o.duration < 0 {
		return o, fmt.Errorf("--duration: must not be negative, got %s", o.duration)
	}
	return o, nil
}

func run() error {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		// Root without CAP_SYS_RESOURCE: BPF memory is charged to the
		// memory cgroup since 5.11 and CAP_IPC_LOCK covers the UMEM.
		fmt.Fprintf(os.Stderr, "gvisorxdp: warning: raise RLIMIT_MEMLOCK: %s\n", err)
	}
	ifc, err := net.InterfaceByName(o.iface)
	if err != nil {
		return fmt.Errorf("find interface %s: %w", o.iface, err)
	}

	// The redirect program and its rules, not yet attached.
	steer, err := loadSteer(o)
	if err != nil {
		return err
	}
	defer steer.Close() // detaches and frees

	// gVisor's endpoint on a fresh AF_XDP socket, bound here to the queue.
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open AF_XDP socket: %w", err)
	}
	defer unix.Close(fd)
	ep, err := xdplink.New(&xdplink.Options{
		FD:                fd,
		Address:           tcpip.LinkAddress(o.mac),
		InterfaceIndex:    ifc.Index,
		RXChecksumOffload: o.rxCsum,
		Bind:              false, // its own Bind would pick queue 0
	})
	if err != nil {
		return fmt.Errorf("create gvisor xdp endpoint: %w", err)
	}
	if err := bindQueue(ctx, fd, ifc.Index, o.queue); err != nil {
		return err
	}
	mode := "copy"
	if v, err := unix.GetsockoptInt(fd, unix.SOL_XDP, unix.XDP_OPTIONS); err == nil && v&unix.XDP_OPTIONS_ZEROCOPY != 0 {
		mode = "zero-copy"
	}
	if err := steer.RegisterSocket(o.queue, fd); err != nil {
		return fmt.Errorf("register socket in the xskmap: %w", err)
	}

	s, err := newStack(o, ep)
	if err != nil {
		return err
	}
	// Close aborts the connections; no Wait and no RemoveNIC: once told
	// to stop, the endpoint's dispatch loop (Attach in link/xdp) calls its
	// dispatch again, which finds the stop eventfd still set and returns
	// at once, forever, so waiting for it never ends. The process exits
	// instead, which ends the goroutine and closes the socket.
	defer s.Close()
	ln, err := listen(s, o)
	if err != nil {
		return err
	}
	var counters services.Counters
	srv := &http.Server{
		Handler:           services.HTTPHandler("gvisorxdp", &counters, func() any { return stackStatus(s) }),
		ReadHeaderTimeout: 10 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var echo services.Counters
	echoFailed := make(chan error, 2)
	stopEcho, err := startEcho(s, o, &echo, echoFailed)
	if err != nil {
		srv.Close()
		return err
	}
	defer stopEcho()

	if _, err := steer.Attach(ifc.Index, o.attach); err != nil {
		srv.Close()
		return fmt.Errorf("attach redirect program to %s: %w", o.iface, err)
	}
	addr := netip.AddrPortFrom(o.v4.Addr(), uint16(o.port))
	echoOn := ""
	if o.echo != 0 {
		echoOn = fmt.Sprintf(", tcp and udp echo on port %d", o.echo)
	}
	fmt.Fprintf(os.Stderr, "%s: http on %s%s (iface %s queue %d, AF_XDP %s mode, xnic_steer %s)\n",
		ReadyPrefix, addr, echoOn, o.iface, o.queue, mode, o.attach)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		serveErr = fmt.Errorf("serve http: %w", serveErr)
	case serveErr = <-echoFailed:
	}
	srv.Close()
	if o.json {
		if err := writeReport(os.Stdout, &counters, &echo, s, steer); err != nil {
			serveErr = errors.Join(serveErr, err)
		}
	}
	return serveErr
}

// loadSteer loads xnic_steer sized for one guest on the queue, with the
// rules that steer everything addressed to the stack to guest 0, class 0.
func loadSteer(o options) (*bpf.Steer, error) {
	so := bpf.SteerOptions{Queues: o.queue + 1, Guests: 1, Classes: 1, Prefixes: 8, Flows: 1024}
	st, err := bpf.LoadSteer(so)
	if err != nil {
		return nil, fmt.Errorf("load steering program: %w", err)
	}
	for _, r := range ownRules(o.v4.Addr(), o.v6.Addr()) {
		if _, err := st.AddRule(r); err != nil {
			st.Close()
			return nil, fmt.Errorf("add rule %s: %w", r, err)
		}
	}
	return st, nil
}

// ownRules are the rules for the stack's addresses (v6 may be the zero
// Addr): every IP protocol to each, ARP for the IPv4 one, ICMPv6 to the
// IPv6 one's solicited-node group.
func ownRules(v4, v6 netip.Addr) []bpf.Rule {
	rs := []bpf.Rule{
		{Prefix: netip.PrefixFrom(v4, 32), Proto: bpf.ProtoAny},
		{Prefix: netip.PrefixFrom(v4, 32), Proto: bpf.ProtoARP},
	}
	if v6.IsValid() {
		b := v6.As16()
		sn := netip.AddrFrom16([16]byte{0xff, 0x02, 11: 0x01, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
		rs = append(rs,
			bpf.Rule{Prefix: netip.PrefixFrom(v6, 128), Proto: bpf.ProtoAny},
			bpf.Rule{Prefix: netip.PrefixFrom(sn, 128), Proto: bpf.ProtoICMPv6})
	}
	return rs
}

// bindQueue binds the socket to the queue, retrying while the queue is
// still held by a socket that is being released.
func bindQueue(ctx context.Context, fd, ifindex, queue int) error {
	giveUp := time.Now().Add(bindRetry)
	for {
		err := xdp.Bind(fd, uint32(ifindex), uint32(queue), false)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(giveUp) || ctx.Err() != nil {
			return fmt.Errorf("bind AF_XDP socket to ifindex %d queue %d: %w", ifindex, queue, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newStack builds netstack on ep with the addresses and the TCP settings of
// engine/stack's defaults.
func newStack(o options, ep gstack.LinkEndpoint) (*gstack.Stack, error) {
	s := gstack.New(gstack.Options{
		NetworkProtocols: []gstack.NetworkProtocolFactory{
			ipv4.NewProtocol,
			ipv6.NewProtocolWithOptions(ipv6.Options{AutoGenLinkLocal: true}),
			arp.NewProtocol,
		},
		TransportProtocols: []gstack.TransportProtocolFactory{
			tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6,
		},
	})
	if err := setTCPOptions(s, xstack.DefaultOptions()); err != nil {
		s.Destroy()
		return nil, err
	}
	qd := fifo.New(ep, runtime.GOMAXPROCS(0), fifoQueueLen)
	if e := s.CreateNICWithOptions(nicID, ep, gstack.NICOptions{Name: "xdp0", QDisc: qd}); e != nil {
		s.Destroy()
		return nil, fmt.Errorf("create nic: %s", e)
	}
	routes := []tcpip.Route{}
	for _, p := range []netip.Prefix{o.v4, o.v6} {
		if !p.IsValid() {
			continue
		}
		proto, def := ipv4.ProtocolNumber, header.IPv4EmptySubnet
		if p.Addr().Is6() {
			proto, def = ipv6.ProtocolNumber, header.IPv6EmptySubnet
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: tcpip.AddrFromSlice(p.Addr().AsSlice()), PrefixLen: p.Bits()}}
		if e := s.AddProtocolAddress(nicID, pa, gstack.AddressProperties{}); e != nil {
			s.Close() // not Destroy: see run
			return nil, fmt.Errorf("add address %s: %s", p, e)
		}
		// The subnet, and every other destination on-link as well.
		routes = append(routes, tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: nicID},
			tcpip.Route{Destination: def, NIC: nicID})
	}
	s.SetRouteTable(routes)
	return s, nil
}

// setTCPOptions applies the TCP settings of engine/stack's options.
func setTCPOptions(s *gstack.Stack, o xstack.Options) error {
	sack := tcpip.TCPSACKEnabled(o.SACK)
	mod := tcpip.TCPModerateReceiveBufferOption(o.ModerateReceiveBuffer)
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: xstack.MinTCPBufferSize, Default: o.TCPSendBufferSize, Max: o.TCPMaxBufferSize}
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: xstack.MinTCPBufferSize, Default: o.TCPReceiveBufferSize, Max: o.TCPMaxBufferSize}
	cc := tcpip.CongestionControlOption(o.CongestionControl)
	for _, opt := range []struct {
		name string
		v    tcpip.SettableTransportProtocolOption
	}{
		{"sack", &sack}, {"moderate receive buffer", &mod}, {"send buffer size", &snd},
		{"receive buffer size", &rcv}, {"congestion control", &cc},
	} {
		if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt.v); e != nil {
			return fmt.Errorf("set tcp %s: %s", opt.name, e)
		}
	}
	if e := s.SetOption(tcpip.SendBufferSizeOption{Min: xstack.MinTCPBufferSize, Default: o.TCPSendBufferSize, Max: o.TCPMaxBufferSize}); e != nil {
		return fmt.Errorf("set send buffer limits: %s", e)
	}
	if e := s.SetOption(tcpip.ReceiveBufferSizeOption{Min: xstack.MinTCPBufferSize, Default: o.TCPReceiveBufferSize, Max: o.TCPMaxBufferSize}); e != nil {
		return fmt.Errorf("set receive buffer limits: %s", e)
	}
	return nil
}

// listen opens the service's listener: dual-stack with an IPv6 address,
// else IPv4 only.
func listen(s *gstack.Stack, o options) (net.Listener, error) {
	proto := ipv4.ProtocolNumber
	if o.v6.IsValid() {
		proto = ipv6.ProtocolNumber // accepts IPv4 as IPv4-mapped addresses
	}
	ln, err := gonet.ListenTCP(s, tcpip.FullAddress{NIC: nicID, Port: uint16(o.port)}, proto)
	if err != nil {
		return nil, fmt.Errorf("listen on port %d: %w", o.port, err)
	}
	return ln, nil
}

// startEcho starts the TCP echo and UDP echo services on port o.echo
// (nothing when it is 0), counting into c; a service that fails sends its
// error to failed. stop closes both.
func startEcho(s *gstack.Stack, o options, c *services.Counters, failed chan<- error) (stop func(), err error) {
	if o.echo == 0 {
		return func() {}, nil
	}
	eo := o
	eo.port = o.echo
	ln, err := listen(s, eo)
	if err != nil {
		return nil, err
	}
	// UDP on the IPv4 address: the benchmark's client speaks IPv4.
	pc, err := gonet.DialUDP(s, &tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(o.v4.Addr().AsSlice()), Port: uint16(o.echo)},
		nil, ipv4.ProtocolNumber)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on udp port %d: %w", o.echo, err)
	}
	report := func(what string, err error) {
		if err != nil {
			select {
			case failed <- fmt.Errorf("%s: %w", what, err):
			default:
			}
		}
	}
	go func() { report("tcp echo", services.ServeEcho(ln, c)) }()
	go func() { report("udp echo", services.ServeUDPEcho(pc, c)) }()
	return func() { ln.Close(); pc.Close() }, nil
}

// stackStatus is the netstack part of GET /status and of the report.
func stackStatus(s *gstack.Stack) map[string]uint64 {
	st := s.Stats()
	return map[string]uint64{
		"tcp_retransmits":        st.TCP.Retransmits.Value(),
		"tcp_segments_sent":      st.TCP.SegmentsSent.Value(),
		"tcp_valid_segments_in":  st.TCP.ValidSegmentsReceived.Value(),
		"tcp_checksum_errors":    st.TCP.ChecksumErrors.Value(),
		"ip_packets_received":    st.IP.PacketsReceived.Value(),
		"ip_malformed_received":  st.IP.MalformedPacketsReceived.Value(),
		"nic_tx_dropped_packets": st.NICs.TxPacketsDroppedNoBufferSpace.Value(),
	}
}

// writeReport prints the final counters as one JSON line.
func writeReport(f *os.File, c, echo *services.Counters, s *gstack.Stack, steer *bpf.Steer) error {
	rep := map[string]any{
		"conns": c.Conns.Load(), "bytes_in": c.BytesIn.Load(), "bytes_out": c.BytesOut.Load(),
		"requests": c.Requests.Load(), "serve_errors": c.ServeErrors.Load(),
		"stack": stackStatus(s),
	}
	if o := echo.Conns.Load() + echo.Datagrams.Load(); o > 0 {
		rep["echo"] = map[string]any{
			"conns": echo.Conns.Load(), "bytes_in": echo.BytesIn.Load(), "bytes_out": echo.BytesOut.Load(),
			"datagrams": echo.Datagrams.Load(), "serve_errors": echo.ServeErrors.Load(),
		}
	}
	if msg, _ := c.LastError(); msg != "" {
		rep["last_error"] = msg
	}
	if st, err := steer.SlotStats(0, 0); err == nil {
		rep["steered"] = st
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	_, err = fmt.Fprintln(f, strings.TrimSpace(string(b)))
	return err
}
