package console

import (
	"fmt"
	"math"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/oidcgate/oidcgate/audit"
)

// Chart geometry: one column per minute.
const (
	chartColumn = 4
	chartHeight = 100
	// chartRecords bounds the audit records one overview reads (newest
	// first): more revocations than that in the window show as a chart
	// marked partial.
	chartRecords = 1000
)

// chart is the overview's server-rendered SVG: revocations per minute and
// the slowest revocation→enforcement latency per minute, over the last
// chartWindow.
type chart struct {
	Width, Height int
	From, To      string
	Counts        []bar
	Latencies     []bar
	MaxCount      int
	MaxLatency    string
	Revocations   int
	Partial       bool
}

// bar is one column: its x, y and height in the SVG, and its tooltip.
type bar struct {
	X, Y, H int
	Title   string
}

func (c *Console) chart(q *request) (*chart, error) {
	now := c.clk.Now().UTC().Truncate(time.Minute).Add(time.Minute)
	from := now.Add(-chartWindow)
	pg, err := c.cfg.Audit.Page(q.r.Context(), audit.Query{Since: from, Limit: chartRecords, Scan: 2 * chartRecords}, 0)
	if err != nil {
		return nil, err
	}
	counts := make([]int, chartMinutes)
	lat := make([]time.Duration, chartMinutes)
	ch := &chart{Width: chartMinutes * chartColumn, Height: chartHeight, From: from.Format("15:04"), To: now.Format("15:04 MST"), Partial: pg.Next > 0}
	for _, r := range pg.Records {
		i := int(r.Time.Sub(from) / time.Minute)
		if i < 0 || i >= chartMinutes {
			continue
		}
		if r.Event == audit.EventRevocation {
			counts[i]++
			ch.Revocations++
		}
		if !r.AppliedAt.IsZero() && !r.RevokedAt.IsZero() {
			lat[i] = max(lat[i], r.AppliedAt.Sub(r.RevokedAt))
		}
	}
	peak, maxLat := 0, time.Duration(0)
	for i := range counts {
		peak, maxLat = max(peak, counts[i]), max(maxLat, lat[i])
	}
	ch.MaxCount, ch.MaxLatency = peak, maxLat.Round(time.Microsecond).String()
	// The scales: at least 1 revocation and 1 ms, so that empty windows
	// draw nothing rather than dividing by zero.
	maxCount, maxLat := max(peak, 1), max(maxLat, time.Millisecond)
	for i := range counts {
		at := from.Add(time.Duration(i) * time.Minute).Format("15:04")
		if n := counts[i]; n > 0 {
			h := max(1, n*chartHeight/maxCount)
			ch.Counts = append(ch.Counts, bar{X: i * chartColumn, Y: chartHeight - h, H: h, Title: fmt.Sprintf("%s: %d revocation(s)", at, n)})
		}
		if d := lat[i]; d > 0 {
			h := max(1, int(math.Round(float64(d)*chartHeight/float64(maxLat))))
			ch.Latencies = append(ch.Latencies, bar{X: i * chartColumn, Y: chartHeight - h, H: h, Title: fmt.Sprintf("%s: slowest %s", at, d.Round(time.Microsecond))})
		}
	}
	return ch, nil
}

// metricRow is one metric of the overview.
type metricRow struct {
	Name, Labels, Value string
}

// overviewMetrics are the metrics the overview shows, from this replica's
// registry (the names of the README's metrics section).
var overviewMetrics = []string{
	"oidcgate_revocation_entries",
	"oidcgate_store_degraded",
	"oidcgate_store_refusing",
	"oidcgate_store_staleness_seconds",
	"oidcgate_store_queue_depth",
	"oidcgate_revocation_targets_pending",
	"oidcgate_revocation_target_oldest_pending_seconds",
}

func (c *Console) metrics() []metricRow {
	if c.cfg.Metrics == nil {
		return nil
	}
	fams, err := c.cfg.Metrics.Gather()
	if err != nil && len(fams) == 0 {
		return nil
	}
	byName := make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	var out []metricRow
	for _, name := range overviewMetrics {
		f, ok := byName[name]
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := ""
			for _, l := range m.GetLabel() {
				labels += l.GetName() + "=" + l.GetValue() + " "
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue() + m.GetUntyped().GetValue()
			out = append(out, metricRow{Name: name, Labels: labels, Value: fmt.Sprintf("%g", v)})
		}
	}
	return out
}
