package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The histogram has a logarithmic latency axis, the same for every panel so that they compare at a glance.
const (
	plotWidth     = 1300
	panelHeight   = 190
	plotLeft      = 70
	plotRight     = 30
	plotTop       = 34 // room for the panel's title
	plotBottom    = 30 // room for the axis labels
	binsPerDecade = 12
	plotMinExp    = -4 // 100 µs
	plotMaxExp    = 1  // 10 s
	glyphScale    = 2
)

var (
	colBackground = color.RGBA{255, 255, 255, 255}
	colAxis       = color.RGBA{60, 60, 60, 255}
	colGrid       = color.RGBA{225, 225, 225, 255}
	colBar        = color.RGBA{90, 130, 190, 255}
	colP50        = color.RGBA{40, 160, 60, 255}
	colP99        = color.RGBA{210, 50, 40, 255}
	colText       = color.RGBA{20, 20, 20, 255}
)

// histogramPanel is one latency distribution.
type histogramPanel struct {
	title         string
	latencies     []time.Duration // sorted
	p50, p99, max time.Duration
}

// histogramPanels are the latency distributions of the run, consume then fan-out.
func (b *bench) histogramPanels() []histogramPanel {
	var panels []histogramPanel
	add := func(name string, r latencyResult) {
		panels = append(panels, histogramPanel{
			title: fmt.Sprintf("%s: %d/%d, p50 %s p99 %s max %s", name, r.delivered, r.sent*int64(r.subscribers),
				fmtDur(r.p50), fmtDur(r.p99), fmtDur(r.max)),
			latencies: r.latencies, p50: r.p50, p99: r.p99, max: r.max,
		})
	}
	for _, c := range b.consumeResult {
		add(fmt.Sprintf("%s consume %s, %d msg/s", b.env.section(), c.label, c.rate), c)
	}
	for _, f := range b.fanoutResult {
		add(fmt.Sprintf("%s fan-out %s, %d subs × %d msg/s", b.env.section(), f.mode, f.subscribers, f.rate), f.latencyResult)
	}
	return panels
}

// writeHistogram draws one panel per distribution into a PNG: bars are the share of deliveries per bin, a green
// line marks p50, a red one p99.
func writeHistogram(path string, panels []histogramPanel) error {
	img := image.NewRGBA(image.Rect(0, 0, plotWidth, panelHeight*len(panels)+20))
	fill(img, img.Bounds(), colBackground)
	for i, p := range panels {
		drawPanel(img, image.Rect(0, i*panelHeight, plotWidth, (i+1)*panelHeight), p)
	}
	drawText(img, 8, img.Bounds().Dy()-18, "latency: raw writer send to socket read, log scale. bars: share of deliveries. green p50, red p99.", colAxis)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		_ = f.Close() // the error being returned says more
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

func drawPanel(img *image.RGBA, r image.Rectangle, p histogramPanel) {
	drawText(img, r.Min.X+8, r.Min.Y+8, p.title, colText)
	plot := image.Rect(r.Min.X+plotLeft, r.Min.Y+plotTop, r.Max.X-plotRight, r.Max.Y-plotBottom)
	bins := make([]int, (plotMaxExp-plotMinExp)*binsPerDecade)
	for _, l := range p.latencies {
		bins[binOf(l, len(bins))]++
	}
	peak := 1
	for _, n := range bins {
		peak = max(peak, n)
	}
	// Grid and axis labels at every decade.
	for e := plotMinExp; e <= plotMaxExp; e++ {
		x := plot.Min.X + (e-plotMinExp)*plot.Dx()/(plotMaxExp-plotMinExp)
		fill(img, image.Rect(x, plot.Min.Y, x+1, plot.Max.Y), colGrid)
		label := strings.ReplaceAll(fmtDur(time.Duration(math.Pow(10, float64(e))*float64(time.Second))), " ", "")
		drawText(img, x-textWidth(label)/2, plot.Max.Y+8, label, colAxis)
	}
	share := 100 * float64(peak) / float64(max(len(p.latencies), 1))
	drawText(img, r.Min.X+4, plot.Min.Y, fmt.Sprintf("%.0f%%", share), colAxis)
	drawText(img, r.Min.X+4, plot.Max.Y-14, "0", colAxis)
	barWidth := float64(plot.Dx()) / float64(len(bins))
	for i, n := range bins {
		if n == 0 {
			continue
		}
		h := max(1, n*plot.Dy()/peak)
		x0 := plot.Min.X + int(float64(i)*barWidth)
		x1 := plot.Min.X + int(float64(i+1)*barWidth) - 1
		fill(img, image.Rect(x0, plot.Max.Y-h, x1, plot.Max.Y), colBar)
	}
	for _, m := range []struct {
		d time.Duration
		c color.RGBA
	}{{p.p50, colP50}, {p.p99, colP99}} {
		if len(p.latencies) == 0 {
			break
		}
		x := plot.Min.X + int(position(m.d)*float64(plot.Dx()))
		fill(img, image.Rect(x-1, plot.Min.Y, x+1, plot.Max.Y), m.c)
	}
	fill(img, image.Rect(plot.Min.X, plot.Max.Y, plot.Max.X, plot.Max.Y+1), colAxis)
	fill(img, image.Rect(plot.Min.X-1, plot.Min.Y, plot.Min.X, plot.Max.Y), colAxis)
}

// position is where d falls on the axis, from 0 to 1.
func position(d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	e := math.Log10(d.Seconds())
	return min(1, max(0, (e-plotMinExp)/float64(plotMaxExp-plotMinExp)))
}

func binOf(d time.Duration, bins int) int {
	return min(bins-1, int(position(d)*float64(bins)))
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

func textWidth(s string) int { return len([]rune(s)) * 6 * glyphScale }

// drawText writes s with the 5×7 font below, scaled; letters are drawn lower-case, unknown runes as blanks.
func drawText(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for _, r := range strings.ToLower(s) {
		if g, ok := font[r]; ok {
			for row, bits := range g {
				for col := range 5 {
					if bits[col] == '#' {
						fill(img, image.Rect(x+col*glyphScale, y+row*glyphScale, x+(col+1)*glyphScale, y+(row+1)*glyphScale), c)
					}
				}
			}
		}
		x += 6 * glyphScale
	}
}

// font is a 5×7 bitmap font of what the plot writes: the standard library draws no text.
var font = map[rune][7]string{
	'0':  {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."},
	'1':  {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'2':  {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"},
	'3':  {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."},
	'4':  {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."},
	'5':  {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."},
	'6':  {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."},
	'7':  {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."},
	'8':  {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."},
	'9':  {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."},
	'a':  {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"},
	'b':  {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."},
	'c':  {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."},
	'd':  {"....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"},
	'e':  {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."},
	'f':  {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."},
	'g':  {".....", ".####", "#...#", "#...#", ".####", "....#", ".###."},
	'h':  {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"},
	'i':  {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."},
	'j':  {"...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##.."},
	'k':  {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."},
	'l':  {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'm':  {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"},
	'n':  {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"},
	'o':  {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."},
	'p':  {".....", ".....", "####.", "#...#", "####.", "#....", "#...."},
	'q':  {".....", ".....", ".##.#", "#..##", ".####", "....#", "....#"},
	'r':  {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."},
	's':  {".....", ".....", ".###.", "#....", ".###.", "....#", "####."},
	't':  {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."},
	'u':  {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"},
	'v':  {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."},
	'w':  {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."},
	'x':  {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"},
	'y':  {".....", ".....", "#...#", "#...#", ".####", "....#", ".###."},
	'z':  {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"},
	'µ':  {".....", ".....", "#...#", "#...#", "#...#", "##.##", "#.#.."},
	'.':  {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."},
	',':  {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."},
	':':  {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."},
	';':  {".....", ".##..", ".##..", ".....", ".##..", "..#..", ".#..."},
	'/':  {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."},
	'%':  {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"},
	'-':  {".....", ".....", ".....", "#####", ".....", ".....", "....."},
	'+':  {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."},
	'=':  {".....", ".....", "#####", ".....", "#####", ".....", "....."},
	'(':  {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."},
	')':  {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."},
	'_':  {".....", ".....", ".....", ".....", ".....", ".....", "#####"},
	'×':  {".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "....."},
	'\'': {"..#..", "..#..", ".#...", ".....", ".....", ".....", "....."},
}
