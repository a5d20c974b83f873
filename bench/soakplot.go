package bench

import (
	"errors"
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// The soak figure: RSS and its high-water mark over the soak, in MiB, with
// the medians of the verdict's two windows drawn over their spans.

const soakFigWidth, soakFigHeight = 9 * vg.Inch, 4.5 * vg.Inch

// WritePlot draws RSS over time into path, an SVG or PNG file by its
// extension.
func (r *SoakReport) WritePlot(path string) error {
	if len(r.Samples) < 2 {
		return errors.New("plot soak: fewer than two samples")
	}
	return writeFigure(path, "plot soak", soakFigWidth, soakFigHeight, r.drawSoak)
}

func (r *SoakReport) drawSoak(dc draw.Canvas) (err error) {
	defer func() {
		// gonum/plot panics on input it cannot draw; a library must not
		// crash its caller.
		if rec := recover(); rec != nil {
			err = fmt.Errorf("plot soak: %v", rec)
		}
	}()
	p := plot.New()
	v := r.Verdict
	p.Title.Text = "xnic bench soak: RSS of xnic serve\n" + r.headline()
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text = "time since the load started, s"
	p.Y.Label.Text = "MiB"
	var rss, hwm plotter.XYs
	for _, s := range r.Samples {
		if s.RSSKiB == 0 {
			continue // not read
		}
		rss = append(rss, plotter.XY{X: s.T, Y: kibMiB(s.RSSKiB)})
		hwm = append(hwm, plotter.XY{X: s.T, Y: kibMiB(s.HWMKiB)})
	}
	if len(rss) < 2 {
		return errors.New("plot soak: fewer than two RSS samples")
	}
	for i, c := range []struct {
		name string
		xys  plotter.XYs
	}{{"VmRSS", rss}, {"VmHWM (peak)", hwm}} {
		l, pts, err := plotter.NewLinePoints(c.xys)
		if err != nil {
			return fmt.Errorf("plot soak: %w", err)
		}
		l.Color, pts.Color = plotutil.Color(i), plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i)
		l.Width = vg.Points(1.5)
		pts.Radius = vg.Points(1.5)
		p.Add(l, pts)
		p.Legend.Add(c.name, l)
	}
	if v.FirstSamples > 0 && v.LastSamples > 0 {
		for _, w := range []struct {
			from, to, mib float64
			name          string
		}{{v.FirstFrom, v.FirstTo, v.FirstMiB, "first window's median"}, {v.LastFrom, v.LastTo, v.LastMiB, "last window's median"}} {
			l, err := plotter.NewLine(plotter.XYs{{X: w.from, Y: w.mib}, {X: w.to, Y: w.mib}})
			if err != nil {
				return fmt.Errorf("plot soak: %w", err)
			}
			l.Color = color.Gray{Y: 0x40}
			l.Width = vg.Points(4)
			p.Add(l)
		}
		p.Legend.Add(fmt.Sprintf("window medians (%+.1f%%, bound %g%%)", v.GrowthPct, v.MaxGrowthPct),
			&plotter.Line{LineStyle: draw.LineStyle{Color: color.Gray{Y: 0x40}, Width: vg.Points(4)}})
	}
	p.X.Min, p.Y.Min = 0, 0
	p.Add(plotter.NewGrid())
	p.Legend.Top = false
	p.Legend.XOffs, p.Legend.YOffs = -vg.Points(8), vg.Points(8)
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	dc.FillPolygon(color.White, []vg.Point{dc.Min, {X: dc.Max.X, Y: dc.Min.Y}, dc.Max, {X: dc.Min.X, Y: dc.Max.Y}})
	p.Draw(dc)
	return nil
}
