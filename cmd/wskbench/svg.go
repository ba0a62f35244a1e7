package main

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
)

// point is one measurement on a curve.
type point struct{ x, y float64 }

// series is one curve of a panel.
type series struct {
	name   string
	color  string
	points []point
}

// chartPanel is one chart: y against x, both axes logarithmic or not.
type chartPanel struct {
	title, xLabel, yLabel string
	logX, logY            bool
	series                []series
}

// SVG geometry: panels side by side.
const (
	svgPanelWidth  = 420
	svgPanelHeight = 320
	svgMarginLeft  = 64
	svgMarginRight = 16
	svgMarginTop   = 40
	svgMarginBot   = 64
	svgLegendRow   = 14
)

// writeCharts draws the panels side by side into an SVG file, with a caption under them.
func writeCharts(path, caption string, panels []chartPanel) error {
	var w bytes.Buffer
	rows := 1 // legend rows: one per series, under the panels
	for _, p := range panels {
		rows = max(rows, len(p.series))
	}
	width, height := svgPanelWidth*len(panels), svgPanelHeight+svgLegendRow*(rows-1)+24
	fmt.Fprintf(&w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for i, p := range panels {
		drawChart(&w, float64(i*svgPanelWidth), p)
	}
	fmt.Fprintf(&w, `<text x="8" y="%d" fill="#444">%s</text>`+"\n", height-8, html.EscapeString(caption))
	w.WriteString("</svg>\n")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, w.Bytes(), 0o644)
}

// axis maps values to pixels, linearly or on a log scale, over bounds that include every point.
type axis struct {
	lo, hi   float64
	log      bool
	pxLo, px float64 // the pixel of lo, and the length in pixels (negative: upwards)
}

func newAxis(values []float64, log bool, pxLo, px float64) axis {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range values {
		if log && v <= 0 {
			continue
		}
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 10
	}
	if log {
		lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
		if lo == hi {
			hi = lo * 10
		}
	} else {
		lo = 0
		if hi <= 0 {
			hi = 1
		}
		hi = niceCeil(hi * 1.05)
	}
	return axis{lo: lo, hi: hi, log: log, pxLo: pxLo, px: px}
}

func (a axis) pos(v float64) float64 {
	if a.log {
		if v <= 0 {
			v = a.lo
		}
		return a.pxLo + a.px*(math.Log10(v)-math.Log10(a.lo))/(math.Log10(a.hi)-math.Log10(a.lo))
	}
	return a.pxLo + a.px*(v-a.lo)/(a.hi-a.lo)
}

// ticks are the values the axis labels: every decade on a log axis, five steps on a linear one.
func (a axis) ticks() []float64 {
	var t []float64
	if a.log {
		for v := a.lo; v <= a.hi*1.0001; v *= 10 {
			t = append(t, v)
		}
		return t
	}
	for i := range 6 {
		t = append(t, a.lo+(a.hi-a.lo)*float64(i)/5)
	}
	return t
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*e {
			return m * e
		}
	}
	return 10 * e
}

func drawChart(w *bytes.Buffer, left float64, p chartPanel) {
	x0, x1 := left+svgMarginLeft, left+svgPanelWidth-svgMarginRight
	y0, y1 := float64(svgPanelHeight-svgMarginBot), float64(svgMarginTop)
	var xs, ys []float64
	for _, s := range p.series {
		for _, pt := range s.points {
			xs, ys = append(xs, pt.x), append(ys, pt.y)
		}
	}
	ax, ay := newAxis(xs, p.logX, x0, x1-x0), newAxis(ys, p.logY, y0, y1-y0)
	fmt.Fprintf(w, `<text x="%.0f" y="20" font-size="13" font-weight="bold">%s</text>`+"\n", left+8, html.EscapeString(p.title))
	for _, t := range ax.ticks() {
		x := ax.pos(t)
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x, y0, x, y1)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#444">%s</text>`+"\n", x, y0+14, fmtTick(t))
	}
	for _, t := range ay.ticks() {
		y := ay.pos(t)
		fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0, y, x1, y)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#444">%s</text>`+"\n", x0-4, y+4, fmtTick(t))
	}
	fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#444"/>`+"\n", x0, y1, x1-x0, y0-y1)
	fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", (x0+x1)/2, y0+30, html.EscapeString(p.xLabel))
	fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle" transform="rotate(-90 %.1f %.1f)">%s</text>`+"\n",
		left+14, (y0+y1)/2, left+14, (y0+y1)/2, html.EscapeString(p.yLabel))
	for i, s := range p.series {
		var path bytes.Buffer
		for j, pt := range s.points {
			cmd := "L"
			if j == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%.1f,%.1f ", cmd, ax.pos(pt.x), ay.pos(pt.y))
		}
		fmt.Fprintf(w, `<path d="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", path.String(), s.color)
		for _, pt := range s.points {
			fmt.Fprintf(w, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s: %s, %s</title></circle>`+"\n",
				ax.pos(pt.x), ay.pos(pt.y), s.color, html.EscapeString(s.name), fmtTick(pt.x), fmtTick(pt.y))
		}
		ly := y0 + 48 + float64(i*svgLegendRow) // the legend, one row per series under the axis label
		lx := x0
		fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/>`+"\n", lx, ly-9, s.color)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+14, ly, html.EscapeString(s.name))
	}
}

// fmtTick prints an axis value briefly: 100, 1k, 10k, 0.5, 2.5.
func fmtTick(v float64) string {
	switch {
	case v >= 1e6 && math.Mod(v, 1e6) == 0:
		return fmt.Sprintf("%.0fM", v/1e6)
	case v >= 1e3 && math.Mod(v, 1e3) == 0:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.3g", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}
