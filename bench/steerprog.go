package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/xnic/xnic/bench/internal/stat"
	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/bpf/bpftest"
	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/umem"
)

// The cases of `xnic bench steer-prog`, in report order.
const (
	SteerBare      = "bare"                 // bpf_redirect_map(&xsks, rx_queue_index, XDP_PASS) and nothing else
	SteerParse     = "parse-only"           // xnic_raw: parse.h's whole parser, then the bare redirect; no lookup, no counter
	SteerCatchAll  = "catch-all"            // xnic_steer, the two catch-all rules only
	SteerRule1     = "rules-1"              // one /32 UDP rule on the frame's destination
	SteerRules100  = "rules-100"            //
	SteerRules10k  = "rules-10k"            //
	SteerFlows100k = "rules-10k-flows-100k" // and 100k installed exact flows, the frame's among them
	SteerIPv6      = "ipv6-rules-1"         // one /128 rule, an IPv6 frame
	SteerVLAN      = "vlan-rules-1"         // one rule, the frame 802.1Q-tagged
	// Receive congestion (bpf.Steer.SetClassThreshold), one rule: the
	// slot's threshold set and its occupancy below it (the admission's
	// cost), at it (an early drop), and at it with ECN on and an ECT(0)
	// frame (marked CE and let in; BPF_PROG_TEST_RUN keeps the frame
	// between runs, so after the first the repeats find it CE already).
	SteerCongUnder  = "rules-1-under-threshold"
	SteerCongDrop   = "rules-1-early-drop"
	SteerCongECN    = "rules-1-ecn-mark"
	steerProgFlows  = 100_000
	steerProgRules  = 10_000
	steerProgMedium = 100
)

// SteerProgCases are the cases in report order.
func SteerProgCases() []string {
	return []string{SteerBare, SteerParse, SteerCatchAll, SteerRule1, SteerRules100, SteerRules10k, SteerFlows100k, SteerIPv6, SteerVLAN,
		SteerCongUnder, SteerCongDrop, SteerCongECN}
}

// SteerProgVerdict is the verdict a case must return: XDP_REDIRECT, but
// XDP_DROP for the early drop.
func SteerProgVerdict(name string) string {
	if name == SteerCongDrop {
		return "XDP_DROP"
	}
	return "XDP_REDIRECT"
}

// SteerProgOptions configure RunSteerProg.
type SteerProgOptions struct {
	// Rounds of each case; the report shows the median.
	Rounds int
	// Repeat is BPF_PROG_TEST_RUN's repeat count: one call runs the
	// program this many times over the same frame and reports the mean.
	Repeat int
	// Only, when not empty, selects cases by name.
	Only []string
	// Log gets a line per measurement; nil: none.
	Log io.Writer
}

// DefaultSteerProgOptions: 5 rounds of 2M runs.
func DefaultSteerProgOptions() SteerProgOptions {
	return SteerProgOptions{Rounds: 5, Repeat: 2_000_000}
}

// Validate names the field at fault.
func (o SteerProgOptions) Validate() error {
	if o.Rounds < 1 || o.Rounds > 1000 {
		return &OptionError{Field: "rounds", Msg: fmt.Sprintf("must be 1..1000, got %d", o.Rounds)}
	}
	if o.Repeat < 1 || o.Repeat > 1<<30 {
		return &OptionError{Field: "repeat", Msg: fmt.Sprintf("must be 1..%d, got %d", 1<<30, o.Repeat)}
	}
	for _, n := range o.Only {
		if !slices.Contains(SteerProgCases(), n) {
			return &OptionError{Field: "only", Msg: fmt.Sprintf("no case %q (cases: %s)", n, strings.Join(SteerProgCases(), ", "))}
		}
	}
	return nil
}

// SteerProgRow is one case over its rounds.
type SteerProgRow struct {
	Case    string    `json:"case"`
	Verdict string    `json:"verdict"` // the program's return value, e.g. XDP_REDIRECT
	Rounds  []float64 `json:"rounds_ns"`
	Median  float64   `json:"median_ns"`
	Min     float64   `json:"min_ns"`
	Max     float64   `json:"max_ns"`
	// XBare is Median over the bare program's median (0 when bare did not run).
	XBare float64 `json:"x_bare"`
}

// SteerProgReport is a whole `xnic bench steer-prog` run.
type SteerProgReport struct {
	Machine Machine        `json:"machine"`
	Repeat  int            `json:"repeat"`
	Socket  string         `json:"socket"` // what the XSKMAP slot held
	Rows    []SteerProgRow `json:"rows"`
}

// RunSteerProg measures the steering program in isolation: for each case it
// loads the program (xnic_steer, or the bare redirect program), fills its
// tables, registers an AF_XDP socket in the slot the frame goes to, and times
// BPF_PROG_TEST_RUN over one frame, Repeat runs per call. No interface, no
// traffic: the cost of the program itself, per frame, in nanoseconds. It
// needs root (BPF, an AF_XDP socket on lo).
func RunSteerProg(ctx context.Context, o SteerProgOptions) (*SteerProgReport, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	sock, closeSock, err := loopbackXSK()
	if err != nil {
		return nil, fmt.Errorf("bench steer-prog: %w", err)
	}
	defer closeSock()
	rep := &SteerProgReport{Machine: ThisMachine(time.Now()), Repeat: o.Repeat,
		Socket: "an AF_XDP socket bound to lo queue 0 (copy mode) in the frame's slot"}
	cases := SteerProgCases()
	if len(o.Only) > 0 {
		cases = o.Only
	}
	var bare float64
	for _, name := range cases {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		row, err := steerProgCase(name, o, sock)
		if err != nil {
			return rep, fmt.Errorf("bench steer-prog: %s: %w", name, err)
		}
		if name == SteerBare {
			bare = row.Median
		}
		if bare > 0 {
			row.XBare = row.Median / bare
		}
		if o.Log != nil {
			fmt.Fprintf(o.Log, "%-22s %8.2f ns (%s)\n", name, row.Median, row.Verdict)
		}
		rep.Rows = append(rep.Rows, row)
	}
	return rep, nil
}

// steerProgCase sets up and times one case.
func steerProgCase(name string, o SteerProgOptions, sock int) (SteerProgRow, error) {
	row := SteerProgRow{Case: name}
	frame, err := steerProgFrame(name)
	if err != nil {
		return row, err
	}
	var prog *ebpf.Program
	if name == SteerParse {
		var objs bpftest.TestprogsObjects
		if err := bpftest.LoadTestprogsObjects(&objs, nil); err != nil {
			return row, fmt.Errorf("load xnic_raw: %w", err)
		}
		defer objs.Close()
		if err := objs.RawXsks.Put(uint32(0), uint32(sock)); err != nil {
			return row, fmt.Errorf("register socket: %w", err)
		}
		prog = objs.XnicRaw
	} else if name == SteerBare {
		xsks, p, err := loadBareRedirect()
		if err != nil {
			return row, err
		}
		defer xsks.Close()
		defer p.Close()
		if err := xsks.Put(uint32(0), uint32(sock)); err != nil {
			return row, fmt.Errorf("register socket: %w", err)
		}
		prog = p
	} else {
		st, err := bpf.LoadSteer(bpf.DefaultSteerOptions())
		if err != nil {
			return row, err
		}
		defer st.Close()
		if err := fillSteer(st, name); err != nil {
			return row, err
		}
		if err := st.RegisterSocket(0, sock); err != nil {
			return row, err
		}
		prog = st.Program()
	}
	for r := 0; r < o.Rounds; r++ {
		ret, per, err := prog.Benchmark(frame, o.Repeat, nil)
		if err != nil {
			return row, err
		}
		row.Verdict = xdpVerdict(ret)
		if want := SteerProgVerdict(name); row.Verdict != want { // every case must take the path it claims to measure
			return row, fmt.Errorf("the program returned %s, not %s: the case does not measure what it says", row.Verdict, want)
		}
		row.Rounds = append(row.Rounds, float64(per.Nanoseconds())) // the kernel reports whole ns per run
	}
	row.Median = stat.Median(row.Rounds)
	row.Min, row.Max = row.Rounds[0], row.Rounds[0]
	for _, v := range row.Rounds {
		row.Min, row.Max = min(row.Min, v), max(row.Max, v)
	}
	return row, nil
}

// fillSteer installs the tables of a case.
func fillSteer(st *bpf.Steer, name string) error {
	switch name {
	case SteerCatchAll:
		_, err := st.AddCatchAll(0, 0)
		return err
	case SteerRule1, SteerVLAN:
		return gen.InstallSteering(st, 1, 0)
	case SteerCongUnder, SteerCongDrop, SteerCongECN:
		if err := gen.InstallSteering(st, 1, 0); err != nil {
			return err
		}
		// The frame's slot: queue 0, guest 0, class 0. Under: a threshold
		// the repeats' since never reaches; over: occupancy at it.
		thresh, occ := uint32(bpf.MaxClassThreshold), uint32(0)
		if name != SteerCongUnder {
			thresh, occ = 64, 64
		}
		if err := st.SetClassThreshold(0, 0, 0, thresh, name == SteerCongECN); err != nil {
			return err
		}
		b := st.OccupancyBoard()
		b.Publish(b.Slot(0, 0, 0), occ)
		return nil
	case SteerRules100:
		return gen.InstallSteering(st, steerProgMedium, 0)
	case SteerRules10k:
		return gen.InstallSteering(st, steerProgRules, 0)
	case SteerFlows100k:
		return gen.InstallSteering(st, steerProgRules, steerProgFlows)
	case SteerIPv6:
		_, err := st.AddRule(bpf.Rule{Prefix: netip.PrefixFrom(gen.DefaultDstIPv6, 128), Proto: bpf.ProtoUDP})
		return err
	}
	return fmt.Errorf("unknown case %q", name)
}

// steerProgFrame is the generator's default 60-byte UDP frame of a case:
// flow 0, the one the installed rules and flows match.
func steerProgFrame(name string) ([]byte, error) {
	fo := gen.FrameOptions{
		SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
		SrcIP: gen.DefaultSrcIPv4, DstIP: gen.DefaultDstIPv4,
		SrcPort: gen.DefaultOptions().SrcPortBase, DstPort: gen.DefaultOptions().DstPort,
		Size: gen.MinFrameSize,
	}
	if name == SteerIPv6 {
		fo.SrcIP, fo.DstIP, fo.Size = gen.DefaultSrcIPv6, gen.DefaultDstIPv6, gen.MinSize(true)
	}
	f, err := gen.BuildUDP(fo)
	if err != nil {
		return nil, err
	}
	if name == SteerCongECN {
		// ECT(0) in the IPv4 TOS, and the header checksum again.
		h := f[14:34]
		h[1] |= 0x2
		binary.BigEndian.PutUint16(h[10:], 0)
		var sum uint32
		for i := 0; i < len(h); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(h[i:]))
		}
		sum = sum&0xffff + sum>>16
		sum = sum&0xffff + sum>>16
		binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
	}
	if name == SteerVLAN {
		// 802.1Q, VLAN 100, between the MAC addresses and the EtherType.
		tagged := append(append(append([]byte{}, f[:12]...), 0x81, 0x00, 0x00, 100), f[12:]...)
		f = tagged
	}
	return f, nil
}

// loadBareRedirect loads the program an AF_XDP receiver with no steering
// loads: redirect every frame to the socket of its rx queue, else pass it.
func loadBareRedirect() (*ebpf.Map, *ebpf.Program, error) {
	xsks, err := ebpf.NewMap(&ebpf.MapSpec{Name: "xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 64})
	if err != nil {
		return nil, nil, fmt.Errorf("create xskmap: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xsk_bare", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 16, asm.Word), // ctx->rx_queue_index
			asm.LoadMapPtr(asm.R1, xsks.FD()),
			asm.Mov.Imm(asm.R3, 2), // XDP_PASS when the slot is empty
			asm.FnRedirectMap.Call(),
			asm.Return(),
		},
	})
	if err != nil {
		xsks.Close()
		return nil, nil, fmt.Errorf("load bare redirect: %w", err)
	}
	return xsks, prog, nil
}

// loopbackXSK binds an AF_XDP socket to lo, queue 0, in copy mode: a valid
// XSKMAP value for BPF_PROG_TEST_RUN, which returns the verdict and does not
// redirect.
func loopbackXSK() (int, func(), error) {
	u, err := umem.New(umem.Options{NumFrames: 64, FrameSize: 2048})
	if err != nil {
		return 0, nil, err
	}
	so := umem.DefaultSocketOptions()
	so.Mode = umem.BindCopy
	so.RxSize, so.TxSize, so.FillSize, so.CompletionSize = 64, 64, 64, 64
	s, err := umem.NewSocket(u, 1, 0, so)
	if err != nil {
		u.Close()
		return 0, nil, fmt.Errorf("xsk on lo: %w", err)
	}
	return s.FD(), func() { s.Close(); u.Close() }, nil
}

func xdpVerdict(ret uint32) string {
	if n := []string{"XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT"}; int(ret) < len(n) {
		return n[ret]
	}
	return fmt.Sprintf("verdict %d", ret)
}

// WriteTable prints the report as a table, the figures in ns per run.
func (r *SteerProgReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "xnic bench steer-prog: BPF_PROG_TEST_RUN, %d runs per call, median of %d calls; %s\n",
		r.Repeat, roundsOf(r), r.Socket)
	fmt.Fprintf(w, "%s, %s\n\n", r.Machine.Date.Format("2006-01-02 15:04"), r.Machine)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tns per run\tmin\tmax\tx bare\tverdict\t")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%s\t%s\t\n", row.Case, row.Median, row.Min, row.Max, xBare(row), row.Verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var redirect, drop float64
	for _, row := range r.Rows {
		switch row.Case {
		case SteerRule1:
			redirect = row.Median
		case SteerCongDrop:
			drop = row.Median
		}
	}
	if redirect > 0 && drop > 0 {
		fmt.Fprintf(w, "\nxnic_steer early drop / redirect (1 rule)   %.2f\n", drop/redirect)
	}
	for _, row := range r.Rows {
		if row.Case == SteerRule1 && row.XBare > 0 {
			verdict := "met"
			if row.XBare > 1.3 {
				verdict = "missed"
			}
			_, err := fmt.Fprintf(w, "\nxnic_steer with 1 rule / bare   %.2f  (target <= 1.30: %s)\n", row.XBare, verdict)
			return err
		}
	}
	return nil
}

// WriteMarkdown prints the table in Markdown for the README.
func (r *SteerProgReport) WriteMarkdown(w io.Writer) error {
	fmt.Fprintf(w, "| case | ns per run | x bare |\n|---|---:|---:|\n")
	for _, row := range r.Rows {
		if _, err := fmt.Fprintf(w, "| %s | %.2f | %s |\n", row.Case, row.Median, xBare(row)); err != nil {
			return err
		}
	}
	return nil
}

// WriteJSON writes the report as indented JSON.
func (r *SteerProgReport) WriteJSON(w io.Writer) error {
	return writeJSON(w, r, "steer-prog bench report")
}

func xBare(row SteerProgRow) string {
	if row.XBare == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", row.XBare)
}

func roundsOf(r *SteerProgReport) int {
	if len(r.Rows) == 0 {
		return 0
	}
	return len(r.Rows[0].Rounds)
}
