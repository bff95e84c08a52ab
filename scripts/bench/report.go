package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// report is the whole run, as printed.
type report struct {
	Machine     machine   `json:"machine"`
	Target      string    `json:"target"`
	Store       string    `json:"store"`
	Started     time.Time `json:"started"`
	Duration    string    `json:"duration_per_scenario"`
	Concurrency int       `json:"concurrency"`
	FCMLatency  string    `json:"fcm_latency,omitempty"`
	Seeded      string    `json:"seeded"`
	SeedSeconds float64   `json:"seed_seconds"`
	LoadBefore  string    `json:"load_average_1m_before"`
	LoadAfter   string    `json:"load_average_1m_after"`
	Results     []result  `json:"results"`
	// Fill and FillSessions are the seconds a --scale run spent importing
	// filler users and signing them in and out.
	Fill         float64 `json:"fill_import_seconds,omitempty"`
	FillSessions float64 `json:"fill_sessions_seconds,omitempty"`
	Ratios       []ratio `json:"ratios,omitempty"`
}

func (b *bench) newReport() *report {
	r := &report{
		Machine: thisMachine(), Target: b.tg.url, Store: b.tg.store, Started: time.Now().UTC().Truncate(time.Second),
		Duration: b.o.duration.String(), Concurrency: b.o.concurrency, SeedSeconds: b.seedTime.Seconds(),
		Seeded: fmt.Sprintf("%d users × %d devices (a Kecak and a native session each), %d background devices; "+
			"each push user's devices just before its scenario", b.o.users, b.o.devices, b.o.background),
		LoadBefore: loadAverage(),
	}
	if b.tg.fcm != nil {
		r.FCMLatency = b.o.fcmLatency.String()
	} else {
		r.Target += " (its own FCM)"
	}
	return r
}

// finish records what is known only at the end: the push users were
// seeded on the way.
func (r *report) finish(b *bench) {
	r.LoadAfter, r.SeedSeconds = loadAverage(), b.seedTime.Seconds()
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *report) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "pushreg bench, %s: %d × %s (%s), %s\n\n", r.Started.Format("2006-01-02 15:04 UTC"),
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.OS, r.Machine.GoVersion)
	fmt.Fprintf(w, "- store: %s\n", r.Store)
	fmt.Fprintf(w, "- %s per scenario, %d concurrent clients", r.Duration, r.Concurrency)
	if r.FCMLatency != "" {
		fmt.Fprintf(w, ", FCM double answering after %s", r.FCMLatency)
	}
	fmt.Fprintf(w, "\n- seeding took %.1fs: %s\n", r.SeedSeconds, r.Seeded)
	fmt.Fprintf(w, "- load average (1 min) before %s, after %s\n\n", r.LoadBefore, r.LoadAfter)

	store := false
	msgs := false
	for _, res := range r.Results {
		store = store || res.StoreCPUus != nil
		msgs = msgs || res.MsgsPerSec > 0
	}
	if r.Fill > 0 {
		fmt.Fprintf(w, "- filling: imports took %.1fs, the filler's logins and logouts %.1fs\n\n", r.Fill, r.FillSessions)
	}
	sized := false
	for _, res := range r.Results {
		sized = sized || res.Size > 0
	}
	head := []string{"scenario", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "round trips/op", "service CPU/op"}
	if store {
		head = append(head, "store CPU/op")
	}
	if msgs {
		head = append(head, "msgs/s")
	}
	head = append(head, "RSS MiB")
	rows := [][]string{head}
	for _, res := range r.Results {
		name := res.Name
		if sized {
			name = fmt.Sprintf("%s @%d", res.Name, res.Size)
		}
		row := []string{name, fmt.Sprint(res.Requests), fmt.Sprint(res.Errors), fmt.Sprintf("%.0f", res.PerSec),
			ms(res.P50ms), ms(res.P95ms), ms(res.P99ms), fmt.Sprintf("%.2f", res.RoundTrips), us(res.ServiceCPUus)}
		if store {
			row = append(row, "–")
			if res.StoreCPUus != nil {
				row[len(row)-1] = us(*res.StoreCPUus)
			}
		}
		if msgs {
			row = append(row, "–")
			if res.MsgsPerSec > 0 {
				row[len(row)-1] = fmt.Sprintf("%.0f", res.MsgsPerSec)
			}
		}
		row = append(row, fmt.Sprintf("%.0f", res.RSSMiB))
		rows = append(rows, row)
	}
	writeTable(w, rows)
	writeRatios(w, r.Ratios)

	var notes []string
	for _, res := range r.Results {
		if len(res.ErrorSamples) == 0 {
			continue
		}
		kinds := make([]string, 0, len(res.ErrorSamples))
		for k := range res.ErrorSamples {
			kinds = append(kinds, k)
		}
		sort.Slice(kinds, func(i, j int) bool { return res.ErrorSamples[kinds[i]] > res.ErrorSamples[kinds[j]] })
		for _, k := range kinds {
			notes = append(notes, fmt.Sprintf("- %s: %d × %s", res.Name, res.ErrorSamples[k], k))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\nErrors:\n%s\n", strings.Join(notes, "\n"))
	}
}

func ms(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// us formats microseconds, as ms beyond 10 ms.
func us(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.1f ms", v/1000)
	}
	return fmt.Sprintf("%.0f µs", v)
}

// writeTable writes rows as a Markdown table, the first row the header,
// text left-aligned and numbers right-aligned.
func writeTable(w io.Writer, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(row []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i == 0 {
				b.WriteString(" " + c + pad + " |")
			} else {
				b.WriteString(" " + pad + c + " |")
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(rows[0])
	sep := make([]string, len(width))
	for i, n := range width {
		if i == 0 {
			sep[i] = strings.Repeat("-", n)
		} else {
			sep[i] = strings.Repeat("-", n-1) + ":"
		}
	}
	line(sep)
	for _, row := range rows[1:] {
		line(row)
	}
}
