package bench

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The latency figure: a panel per kind, the distribution of every
// contender as a line, round-trip time on a logarithmic x axis and the
// share of requests on a "nines" y axis, on which p50, p90, p99 and p99.9
// are evenly spaced, so that the tail reads as clearly as the body.

// ninesScale maps a share p in [0,1) to −log10(1−p).
type ninesScale struct{}

func nines(p float64) float64 { return -math.Log10(1 - min(p, 1-1e-9)) }

func (ninesScale) Normalize(lo, hi, x float64) float64 {
	return (nines(x) - nines(lo)) / (nines(hi) - nines(lo))
}

// ninesTicks labels the percentiles up to hi.
func ninesTicks(hi float64) plot.ConstantTicks {
	var ts plot.ConstantTicks
	for _, t := range []struct {
		p     float64
		label string
	}{{0, "0"}, {0.5, "p50"}, {0.9, "p90"}, {0.99, "p99"}, {0.999, "p99.9"}, {0.9999, "p99.99"}, {0.99999, "p99.999"}} {
		if t.p <= hi+1e-12 {
			ts = append(ts, plot.Tick{Value: t.p, Label: t.label})
		}
	}
	return ts
}

// usTicks puts labelled ticks at 1, 2 and 5 times the powers of ten
// between lo and hi microseconds, and unlabelled ones between.
func usTicks(lo, hi float64) plot.ConstantTicks {
	var ts plot.ConstantTicks
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for m := 1; m <= 9; m++ {
			v := float64(m) * math.Pow(10, e)
			if v < lo || v > hi {
				continue
			}
			label := ""
			if m == 1 || m == 2 || m == 5 {
				label = strconv.FormatFloat(v, 'f', -1, 64)
			}
			ts = append(ts, plot.Tick{Value: v, Label: label})
		}
	}
	return ts
}

// kindTitle is a panel's title.
func kindTitle(kind string) string {
	if kind == KindUDP {
		return "UDP echo"
	}
	return "TCP ping-pong"
}

// latencyPanel draws the distributions of a kind, one line per contender
// in the order of contenders.
func (r *LatencyReport) latencyPanel(kind string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = kindTitle(kind) + fmt.Sprintf(", %d-byte messages", r.Env.Size)
	p.X.Label.Text = "round-trip time, µs (log scale)"
	p.Y.Label.Text = "requests at or below"
	p.X.Scale = plot.LogScale{}
	p.Y.Scale = ninesScale{}
	lo, hi, top := math.Inf(1), 0.0, 0.0
	n := 0
	for i, name := range r.Env.Contenders {
		var cdf *LatencyCDF
		for j := range r.CDF {
			if r.CDF[j].Contender == name && r.CDF[j].Kind == kind {
				cdf = &r.CDF[j]
			}
		}
		if cdf == nil || len(cdf.Points) < 2 {
			continue
		}
		xys := make(plotter.XYs, len(cdf.Points))
		for j, pt := range cdf.Points {
			if !(pt.Us > 0) || math.IsInf(pt.Us, 0) || !(pt.P >= 0 && pt.P < 1) {
				return nil, fmt.Errorf("%s %s: point %d (%v µs, p %v) cannot be drawn", name, kind, j, pt.Us, pt.P)
			}
			xys[j] = plotter.XY{X: pt.Us, Y: pt.P}
			lo, hi, top = min(lo, pt.Us), max(hi, pt.Us), max(top, pt.P)
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("plot %s %s: %w", name, kind, err)
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(name, l)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("no distribution of %s", kind)
	}
	p.X.Min, p.X.Max = lo/1.2, hi*1.2
	p.X.Tick.Marker = usTicks(p.X.Min, p.X.Max)
	p.Y.Min, p.Y.Max = 0, top
	p.Y.Tick.Marker = ninesTicks(top)
	p.Add(plotter.NewGrid())
	// Bottom right: below the tails, right of the bodies, nothing is drawn.
	p.Legend.XOffs, p.Legend.YOffs = -vg.Points(8), vg.Points(8)
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Legend.ThumbnailWidth = vg.Points(28)
	return p, nil
}

// The size of the latency figure.
const latFigWidth, latFigHeight = 11 * vg.Inch, 5 * vg.Inch

// drawLatency draws the panels side by side under a title.
func (r *LatencyReport) drawLatency(dc draw.Canvas) (err error) {
	defer func() {
		// gonum/plot panics on input it cannot draw; latencyPanel checks
		// the points, but a library must not crash its caller.
		if rec := recover(); rec != nil {
			err = fmt.Errorf("plot latency: %v", rec)
		}
	}()
	var panels []*plot.Plot
	for _, kind := range LatencyKinds() {
		p, err := r.latencyPanel(kind)
		if err != nil {
			return fmt.Errorf("plot latency: %w", err)
		}
		panels = append(panels, p)
	}
	dc.FillPolygon(color.White, []vg.Point{dc.Min, {X: dc.Max.X, Y: dc.Min.Y}, dc.Max, {X: dc.Min.X, Y: dc.Max.Y}})
	tiles := draw.Tiles{
		Rows: 1, Cols: len(panels),
		PadTop: 0.7 * vg.Inch, PadBottom: 0.1 * vg.Inch, PadLeft: 0.1 * vg.Inch, PadRight: 0.2 * vg.Inch,
		PadX: 0.35 * vg.Inch,
	}
	canvases := plot.Align([][]*plot.Plot{panels}, tiles, dc)
	for i, p := range panels {
		p.Draw(canvases[0][i])
	}
	head := panels[0].Title.TextStyle
	head.Font = font.From(head.Font, 13)
	top := vg.Point{X: (dc.Min.X + dc.Max.X) / 2, Y: dc.Max.Y - 0.08*vg.Inch}
	dc.FillText(head, top, "xnic bench latency: distribution of round-trip times")
	sub := head
	sub.Font = font.From(head.Font, 9.5)
	e := r.Env
	for _, line := range []string{
		fmt.Sprintf("every request of %d rounds of %d per kind, one in flight, client in the peer netns", e.Rounds, e.Requests),
		fmt.Sprintf("%s, Linux %s, %s, %d cores", e.Date.Format("2006-01-02"), e.Kernel, e.CPUModel, e.Cores),
	} {
		top.Y -= 0.22 * vg.Inch
		dc.FillText(sub, top, line)
	}
	return nil
}

// WritePlot draws the distributions into path, an SVG or PNG file by its
// extension.
func (r *LatencyReport) WritePlot(path string) error {
	if len(r.CDF) == 0 {
		return errors.New("plot latency: no distribution measured")
	}
	return writeFigure(path, "plot latency", latFigWidth, latFigHeight, r.drawLatency)
}

// writeFigure draws a w×h figure with drawFig into path, an SVG or PNG
// file by its extension; what prefixes errors.
func writeFigure(path, what string, w, h vg.Length, drawFig func(draw.Canvas) error) error {
	var c interface {
		vg.CanvasSizer
		io.WriterTo
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".svg":
		c = vgsvg.New(w, h)
	case ".png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(120))}
	default:
		return fmt.Errorf("%s: %s: want a .svg or .png file", what, path)
	}
	if err := drawFig(draw.New(c)); err != nil {
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
