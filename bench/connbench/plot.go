package connbench

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// SeriesName is the legend entry of the rows of one cache size and window.
func SeriesName(cache, window int) string {
	return fmt.Sprintf("cache %d, W=%d", cache, window)
}

// expectedName is the legend entry of the lookahead-alone expectation of a
// window.
func expectedName(window int) string {
	return fmt.Sprintf("1/(pkts per conn in W=%d)", window)
}

// series is one line of a panel: a cache size and a window, its points
// ordered by N.
type series struct {
	cache, window int
	rows          []Row
}

// group sorts rows into series by (cache, window), in the order they first
// appear, each ordered by N.
func group(rows []Row) []series {
	var ss []series
	for _, r := range rows {
		i := slices.IndexFunc(ss, func(s series) bool { return s.cache == r.Cache && s.window == r.Window })
		if i < 0 {
			ss = append(ss, series{cache: r.Cache, window: r.Window})
			i = len(ss) - 1
		}
		ss[i].rows = append(ss[i].rows, r)
	}
	for _, s := range ss {
		slices.SortFunc(s.rows, func(a, b Row) int { return a.Conns - b.Conns })
	}
	return ss
}

func finite(vs ...float64) bool {
	for _, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return false
		}
	}
	return true
}

// checkRows rejects what gonum/plot would choke on (it panics on some of it).
func checkRows(rows []Row) error {
	if len(rows) == 0 {
		return errors.New("no rows")
	}
	for _, r := range rows {
		if r.Conns < 1 {
			return fmt.Errorf("row with %d connections: the x axis is logarithmic", r.Conns)
		}
		if !finite(r.LoadsPerPacket, r.ExpectedLoads, r.Mpps) {
			return fmt.Errorf("row N=%d cache=%d W=%d: values not finite and non-negative", r.Conns, r.Cache, r.Window)
		}
	}
	return nil
}

// connTicks puts a labelled tick on every N of the rows.
func connTicks(rows []Row) plot.ConstantTicks {
	var ns []int
	for _, r := range rows {
		if !slices.Contains(ns, r.Conns) {
			ns = append(ns, r.Conns)
		}
	}
	slices.Sort(ns)
	ticks := make(plot.ConstantTicks, len(ns))
	for i, n := range ns {
		ticks[i] = plot.Tick{Value: float64(n), Label: formatConns(n)}
	}
	return ticks
}

// newPanel is a plot with a logarithmic axis of connections.
func newPanel(rows []Row, title, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "connections N (log scale)"
	p.Y.Label.Text = ylabel
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = connTicks(rows)
	lo, hi := math.Inf(1), 0.0
	for _, r := range rows {
		lo, hi = min(lo, float64(r.Conns)), max(hi, float64(r.Conns))
	}
	p.X.Min, p.X.Max = lo/2, hi*2
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	p.Legend.Padding = vg.Points(1)
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Legend.ThumbnailWidth = vg.Points(28)
	return p
}

// addLine draws a series' values with the style of index i.
func addLine(p *plot.Plot, name string, rows []Row, value func(Row) float64, i int) error {
	xys := make(plotter.XYs, len(rows))
	for j, r := range rows {
		xys[j] = plotter.XY{X: float64(r.Conns), Y: value(r)}
	}
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	l.Color = plotutil.Color(i)
	l.Dashes = plotutil.Dashes(i)
	l.Width = vg.Points(1.5)
	pts.Color = l.Color
	pts.Shape = plotutil.Shape(i)
	pts.Radius = vg.Points(3)
	p.Add(l, pts)
	p.Legend.Add(name, l, pts)
	return nil
}

// addExpected draws the lookahead-alone expectation of a window as a thin
// grey line.
func addExpected(p *plot.Plot, window int, rows []Row) error {
	xys := make(plotter.XYs, len(rows))
	for j, r := range rows {
		xys[j] = plotter.XY{X: float64(r.Conns), Y: r.ExpectedLoads}
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("plot expectation of W=%d: %w", window, err)
	}
	l.Color = color.Gray{Y: 0x90}
	l.Width = vg.Points(1)
	l.Dashes = []vg.Length{vg.Points(1), vg.Points(2)}
	p.Add(l)
	p.Legend.Add(expectedName(window), l)
	return nil
}

// The size of the figure.
const figWidth, figHeight = 11 * vg.Inch, 5.2 * vg.Inch

// panels builds the two panels: loads per packet and Mpps against N.
func panels(rows []Row) (loads, rate *plot.Plot, err error) {
	loads = newPanel(rows, "context loads per packet", "loads from the table per packet")
	loads.Legend.Top, loads.Legend.Left = true, true
	rate = newPanel(rows, "packets per second through connection processing", "Mpps (one core)")
	rate.Legend.Top = true
	maxLoads, maxRate := 0.0, 0.0
	ss := group(rows)
	for i, s := range ss {
		name := SeriesName(s.cache, s.window)
		if err := addLine(loads, name, s.rows, func(r Row) float64 { return r.LoadsPerPacket }, i); err != nil {
			return nil, nil, err
		}
		if err := addLine(rate, name, s.rows, func(r Row) float64 { return r.Mpps }, i); err != nil {
			return nil, nil, err
		}
		for _, r := range s.rows {
			maxLoads, maxRate = max(maxLoads, r.LoadsPerPacket), max(maxRate, r.Mpps)
		}
	}
	var drawn []int
	for _, s := range ss {
		if s.window == 1 || slices.Contains(drawn, s.window) {
			continue
		}
		drawn = append(drawn, s.window)
		if err := addExpected(loads, s.window, s.rows); err != nil {
			return nil, nil, err
		}
		for _, r := range s.rows {
			maxLoads = max(maxLoads, r.ExpectedLoads)
		}
	}
	// Head room for the legends, which sit at the top.
	loads.Y.Max = max(maxLoads*1.6, 0.05)
	rate.Y.Max = max(maxRate*1.45, 0.1)
	return loads, rate, nil
}

// drawFigure draws the two panels side by side under a title.
func drawFigure(dc draw.Canvas, rows []Row, date, machine string) (err error) {
	defer func() {
		// gonum/plot panics on input it cannot draw; checkRows should
		// rule that out, but a library must not crash its caller.
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = fmt.Errorf("plot connection benchmark: %w", e)
			} else {
				err = fmt.Errorf("plot connection benchmark: %v", r)
			}
		}
	}()
	loads, rate, err := panels(rows)
	if err != nil {
		return err
	}
	// An opaque background, so that the title reads on dark pages too.
	dc.FillPolygon(color.White, []vg.Point{dc.Min, {X: dc.Max.X, Y: dc.Min.Y}, dc.Max, {X: dc.Min.X, Y: dc.Max.Y}})
	tiles := draw.Tiles{
		Rows: 1, Cols: 2,
		PadTop: 0.75 * vg.Inch, PadBottom: 0.1 * vg.Inch, PadLeft: 0.1 * vg.Inch, PadRight: 0.2 * vg.Inch,
		PadX: 0.35 * vg.Inch,
	}
	canvases := plot.Align([][]*plot.Plot{{loads, rate}}, tiles, dc)
	loads.Draw(canvases[0][0])
	rate.Draw(canvases[0][1])

	head := loads.Title.TextStyle
	head.Font = font.From(head.Font, 13)
	top := vg.Point{X: (dc.Min.X + dc.Max.X) / 2, Y: dc.Max.Y - 0.08*vg.Inch}
	dc.FillText(head, top, "xnic connection processing: lookahead window W and context cache against connections N")
	sub := head
	sub.Font = font.From(head.Font, 9.5)
	r := rows[0]
	for _, line := range []string{
		fmt.Sprintf("%s; rx batches of %d, %d-way caches; median of %d passes of %d packets",
			Traffic(rows), r.Batch, r.Ways, r.Rounds, r.Packets),
		date + ", " + machine,
	} {
		top.Y -= 0.22 * vg.Inch
		dc.FillText(sub, top, line)
	}
	return nil
}

// WriteSVG draws rows into an SVG file at path: context loads per packet
// and Mpps against the number of connections (log scale), one line per
// cache size and window, with the lookahead-alone expectation of each window
// above 1 as a dotted grey line. date and machine go into the title.
func WriteSVG(rows []Row, path, date, machine string) error {
	if err := checkRows(rows); err != nil {
		return fmt.Errorf("plot connection benchmark: %w", err)
	}
	c := vgsvg.New(figWidth, figHeight)
	if err := drawFigure(draw.New(c), rows, date, machine); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write plot: %w", err)
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write plot %s: %w", path, err)
	}
	return nil
}
