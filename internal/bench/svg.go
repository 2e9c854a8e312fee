// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"errors"
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// WriteSVG writes a horizontal bar chart of the connect-send-recv medians as ratios to the
// fork-setuid server's median, on a logarithmic axis (the systems span three orders of
// magnitude), with the fork-setuid line and, for the netauthd rows, the target marked.
func (rep *Report) WriteSVG(w io.Writer) error {
	var rows []LatencyRow
	for _, l := range rep.Latency {
		if l.PerFork > 0 {
			rows = append(rows, l)
		}
	}
	if len(rows) == 0 {
		return errors.New("no connect-send-recv ratios to fork-setuid to draw (the latency part or the fork-setuid server did not run)")
	}
	const (
		plotWidth, right = 480, 180
		top, barH, gap   = 64, 22, 8
	)
	// Room on the left for the longest label (about 6.6 px a character at 13 px).
	left := 300
	for _, r := range rows {
		left = max(left, int(6.6*float64(len(r.Label)))+16)
	}
	width := left + plotWidth + right
	lo, hi := 0.1, 10.0
	for _, r := range rows {
		for hi < r.PerFork {
			hi *= 10
		}
		for lo > r.PerFork {
			lo /= 10
		}
	}
	plotW := float64(plotWidth)
	x := func(v float64) float64 {
		return float64(left) + plotW*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	height := top + len(rows)*(barH+gap) + 48
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="13">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">128-byte connect-send-recv-close: median time / fork-setuid server's</text>`+"\n", 20)
	fmt.Fprintf(&b, `<text x="%d" y="42" fill="#555">%s; %s, %d cores; log scale; lower is better</text>`+"\n",
		20, rep.Time.Format("2006-01-02"), html.EscapeString(rep.Machine.CPU), rep.Machine.Cores)
	axisY := top + len(rows)*(barH+gap)
	for v := lo; v <= hi*1.0001; v *= 10 {
		px := x(v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", px, top-6, px, axisY)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%sx</text>`+"\n", px, axisY+16, trimFloat(v))
	}
	for i, r := range rows {
		y := top + i*(barH+gap)
		color := "#8a8a8a"
		switch {
		case strings.HasPrefix(r.Name, "ubns-"), strings.HasPrefix(r.Name, "netauth-"):
			color = "#2b6cb0"
		case r.Name == "fork-setuid":
			color = "#c05621"
		case strings.HasPrefix(r.Name, "floor-"):
			color = "#2f855a"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+barH-6, html.EscapeString(r.Label))
		x0 := x(lo)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0, y, math.Max(1, x(r.PerFork)-x0), barH, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%.2fx (%s us)</text>`+"\n", x(r.PerFork)+4, y+barH-6, r.PerFork, trimFloat(math.Round(r.Median)))
		for _, t := range rep.Targets {
			if t.Row == "latency/"+r.Name && t.Base == "fork-setuid" && t.Limit > 0 {
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#c53030" stroke-width="2"><title>target %s</title></line>`+"\n",
					x(t.Limit), y-2, x(t.Limit), y+barH+2, html.EscapeString(t.Want))
			}
		}
	}
	fx := x(1)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#c05621" stroke-dasharray="4 3"/>`+"\n", fx, top-6, fx, axisY)
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">blue: netauth; green: its floors; orange: the fork-setuid baseline; red ticks: targets</text>`+"\n", 20, axisY+36)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// trimFloat formats v without trailing zeros.
func trimFloat(v float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}
