package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// bench is one run: the target, the seeded population and the results.
type bench struct {
	o        options
	tg       *target
	client   *client
	progress *progress
	seedTime time.Duration

	admin  *admin
	users  []*user
	kecak  []*kecakDevice
	native []*nativeDevice
	app    struct{ id, secret string }
	// run is this run's ID, in every name it creates.
	run string
}

// seed creates the users, their sessions and devices, and the app that
// pushes. Every name carries a run ID, so a pushreg can be benchmarked
// again without clashes.
func (b *bench) seed(ctx context.Context) error {
	run := randomHex(3)
	b.admin = &admin{c: b.client, user: b.tg.adminUser, pass: b.tg.adminPassword}
	workers := max(b.o.concurrency, 2*runtime.NumCPU())

	b.users = make([]*user, b.o.users)
	err := parallel(ctx, b.o.users, workers, func(ctx context.Context, i int) error {
		u := &user{name: fmt.Sprintf("bench-%s-u%d", run, i), password: randomHex(12)}
		var err error
		u.id, err = b.admin.createUser(ctx, u.name, u.password, 0)
		b.users[i] = u
		return err
	})
	if err != nil {
		return err
	}
	if b.o.background > 0 {
		// Before the benchmark's own sessions: a store that scans (FerretDB)
		// then meets them first, as it meets any older session.
		b.progress.logf("seeding %d background devices", b.o.background)
		err = parallel(ctx, b.o.background, workers, func(ctx context.Context, i int) error {
			u, dev := b.users[i%len(b.users)], fmt.Sprintf("bg-%s-%d", run, i)
			if a := nativeLogin(ctx, b.client, u, dev, fcmToken(dev)); a.status != http.StatusOK {
				return fmt.Errorf("login of %s on %s: %s", u.name, dev, a)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	n := b.o.users * b.o.devices
	b.kecak, b.native = make([]*kecakDevice, n), make([]*nativeDevice, n)
	err = parallel(ctx, n, workers, func(ctx context.Context, i int) error {
		u := b.users[i/b.o.devices]
		k := &kecakDevice{user: u, deviceID: fmt.Sprintf("k-%s-%d", run, i)}
		k.fcm = fcmToken(k.deviceID)
		if a := k.signIn(ctx, b.client); a.status != http.StatusOK {
			return fmt.Errorf("kecak login of %s: %s", u.name, a)
		}
		d := &nativeDevice{user: u, deviceID: fmt.Sprintf("n-%s-%d", run, i)}
		d.fcm = fcmToken(d.deviceID)
		if a := d.signIn(ctx, b.client); a.status != http.StatusOK {
			return fmt.Errorf("login of %s: %s", u.name, a)
		}
		b.kecak[i], b.native[i] = k, d
		return nil
	})
	if err != nil {
		return err
	}

	b.run = run
	return nil
}

// seedPushUser creates a user with devices pushable devices, each a
// native login with device_id and fcm_token, and the app that pushes if
// there is none yet. It runs just before the user's scenario, so that the
// refresh scenarios before it see the store without these devices.
func (b *bench) seedPushUser(ctx context.Context, devices int) (*user, error) {
	if b.app.id == "" {
		var err error
		if b.app.id, b.app.secret, err = b.admin.createApp(ctx, "bench-"+b.run); err != nil {
			return nil, err
		}
	}
	u := &user{name: fmt.Sprintf("bench-%s-push%d", b.run, devices), password: randomHex(12)}
	var err error
	if u.id, err = b.admin.createUser(ctx, u.name, u.password, devices); err != nil {
		return nil, err
	}
	start := time.Now()
	if b.tg.fcm != nil {
		// Validating the tokens at login need not wait.
		b.tg.fcm.SetLatency(0)
		defer b.tg.fcm.SetLatency(b.o.fcmLatency)
	}
	var done atomic.Int64
	stop := b.progress.every(2*time.Second, func() {
		b.progress.statusf("seeding %s: %d of %d devices, %v", u.name, done.Load(), devices, time.Since(start).Round(time.Second))
	})
	err = parallel(ctx, devices, max(b.o.concurrency, 2*runtime.NumCPU()), func(ctx context.Context, i int) error {
		dev := fmt.Sprintf("p%d-%s-%d", devices, b.run, i)
		if a := nativeLogin(ctx, b.client, u, dev, fcmToken(dev)); a.status != http.StatusOK {
			return fmt.Errorf("login of %s on %s: %s", u.name, dev, a)
		}
		done.Add(1)
		return nil
	})
	stop()
	if err != nil {
		return nil, err
	}
	b.progress.logf("seeded %s with %d devices in %v", u.name, devices, time.Since(start).Round(100*time.Millisecond))
	b.seedTime += time.Since(start)
	return u, nil
}

func pushName(devices int) string { return "push-" + strconv.Itoa(devices) }

// outcome is what one operation did.
type outcome struct {
	a answer
	// msgs counts the messages FCM accepted, for pushes.
	msgs int
	// bad, when set, makes a 2xx answer an error (a push that reached
	// fewer devices than the user has).
	bad string
}

// scenario is one kind of operation, run by every worker in turn.
type scenario struct {
	name, about string
	// prepare runs before the measurement starts.
	prepare func(ctx context.Context) error
	// op does one operation for worker w.
	op func(ctx context.Context, w int) outcome
	// units names what msgs counts, when it does.
	units string
	// workers, when set, caps the workers that run it.
	workers int
}

func scenarioNames() []string {
	return []string{"floor-http", "floor-store", "kecak-refresh-same", "kecak-refresh-new-fcm", "native-refresh", "login",
		"check-token", "kecak-refresh-move", "admin-devices", "import-10k"}
}

// owned splits n chains among the workers: worker w uses chains w, w+c,
// w+2c, … in turn, so no chain is ever used by two requests at once.
type owned struct {
	next []int
	c, n int
}

func newOwned(workers, n int) *owned {
	o := &owned{next: make([]int, workers), c: workers, n: n}
	for w := range o.next {
		o.next[w] = w
	}
	return o
}

// pick returns worker w's next chain, or -1 when it has none.
func (o *owned) pick(w int) int {
	i := o.next[w]
	if i >= o.n {
		return -1
	}
	if o.next[w] += o.c; o.next[w] >= o.n {
		o.next[w] = w
	}
	return i
}

func (b *bench) scenarios() []scenario {
	c := b.o.concurrency
	kecak := func(newFCM bool) func(ctx context.Context, w int) outcome {
		own := newOwned(c, len(b.kecak))
		return func(ctx context.Context, w int) outcome {
			i := own.pick(w)
			if i < 0 {
				return outcome{a: answer{err: errors.New("no device for this worker")}}
			}
			d := b.kecak[i]
			a := d.refresh(ctx, b.client, newFCM)
			if a.status == http.StatusUnauthorized {
				// The chain broke (it should not): start it again.
				d.signIn(ctx, b.client)
			}
			return outcome{a: a}
		}
	}
	get := func(path string) func(context.Context, int) outcome {
		return func(ctx context.Context, _ int) outcome {
			return outcome{a: b.client.do(ctx, http.MethodGet, path, nil, "", nil)}
		}
	}
	list := []scenario{
		// The floors: what any request costs the service (HTTP and the
		// middleware every route has), and that plus one store round trip
		// (a ping). A refresh's cost above them is its own work.
		{name: "floor-http", about: "GET /healthz: the HTTP stack and middleware, no store", op: get("/healthz")},
		{name: "floor-store", about: "GET /readyz: the same plus one MongoDB round trip (a ping)", op: get("/readyz")},
		{name: "kecak-refresh-same", about: "Kecak refresh, device and FCM token already bound and validated, chained",
			op: kecak(false)},
		{name: "kecak-refresh-new-fcm", about: "Kecak refresh with a new FCM token each time (validated by FCM, bound), chained",
			op: kecak(true)},
		{name: "native-refresh", about: "rotating refresh on POST /v1/auth/token, chained", op: func() func(context.Context, int) outcome {
			own := newOwned(c, len(b.native))
			return func(ctx context.Context, w int) outcome {
				i := own.pick(w)
				if i < 0 {
					return outcome{a: answer{err: errors.New("no device for this worker")}}
				}
				d := b.native[i]
				a := d.rotate(ctx, b.client)
				if a.status == http.StatusBadRequest || a.status == http.StatusUnauthorized {
					d.signIn(ctx, b.client)
				}
				return outcome{a: a}
			}
		}()},
		{name: "login", about: "POST /v1/auth/login without a device (argon2id at the default cost)",
			op: func(ctx context.Context, w int) outcome {
				return outcome{a: nativeLogin(ctx, b.client, b.users[w%len(b.users)], "", "")}
			}},
	}
	list = append(list, b.scaleScenarios()...)
	for _, devices := range b.o.pushDevices {
		var token atomic.Value
		var target *user
		list = append(list, scenario{
			name:  pushName(devices),
			about: fmt.Sprintf("POST /v1/users/{id}/messages as an app, to a user with %d devices", devices),
			units: "msgs",
			prepare: func(ctx context.Context) error {
				// Seeded once: a --scale run pushes to the same user at
				// every size.
				if target == nil {
					var err error
					if target, err = b.seedPushUser(ctx, devices); err != nil {
						return err
					}
				}
				tok, err := appToken(ctx, b.client, b.app.id, b.app.secret)
				token.Store(tok)
				return err
			},
			op: func(ctx context.Context, w int) outcome {
				a := b.client.json(ctx, "POST", "/v1/users/"+target.id+"/messages", bearer(token.Load().(string)),
					map[string]any{"notification": map[string]string{"title": "bench", "body": "hello from scripts/bench"},
						"data": map[string]string{"kind": "bench"}})
				out := outcome{a: a}
				if a.ok() {
					var rep struct{ Devices, Sent, Failed int }
					if err := json.Unmarshal(a.body, &rep); err != nil {
						out.bad = "undecodable report"
					} else if out.msgs = rep.Sent; rep.Devices != devices || rep.Sent != devices {
						out.bad = fmt.Sprintf("%d devices, %d sent", rep.Devices, rep.Sent)
					}
				}
				return out
			},
		})
	}
	return list
}

// result is one scenario's measurements.
type result struct {
	Name string `json:"name"`
	// Size is the number of filler users in a --scale run.
	Size     int     `json:"size,omitempty"`
	About    string  `json:"about"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	Seconds  float64 `json:"seconds"`
	PerSec   float64 `json:"requests_per_second"`
	P50ms    float64 `json:"p50_ms"`
	P95ms    float64 `json:"p95_ms"`
	P99ms    float64 `json:"p99_ms"`
	// RoundTrips is MongoDB commands per request.
	RoundTrips float64 `json:"mongodb_round_trips_per_op"`
	// ServiceCPUus is the service's CPU time per request, in microseconds.
	ServiceCPUus float64 `json:"service_cpu_us_per_op"`
	// StoreCPUus is the store's, when measured apart.
	StoreCPUus *float64 `json:"store_cpu_us_per_op,omitempty"`
	// BenchCPUus is this program's (load generator and FCM double).
	BenchCPUus float64 `json:"bench_cpu_us_per_op"`
	// Messages and MsgsPerSec count the messages FCM accepted (pushes).
	Messages   int     `json:"messages,omitempty"`
	MsgsPerSec float64 `json:"messages_per_second,omitempty"`
	// RSSMiB is the service's resident memory at the end.
	RSSMiB float64 `json:"service_rss_mib"`
	// ErrorSamples shows what the errors were, by kind.
	ErrorSamples map[string]int `json:"error_samples,omitempty"`
	LoadAvg      string         `json:"load_average_1m"`
}

// stats collects the outcomes of one scenario's workers.
type stats struct {
	mu        sync.Mutex
	durations []time.Duration
	errors    int
	kinds     map[string]int
	msgs      int
	count     atomic.Int64
	failed    atomic.Int64
}

func (s *stats) add(o outcome) {
	s.count.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.durations = append(s.durations, o.a.dur)
	s.msgs += o.msgs
	kind := ""
	switch {
	case o.a.status == 0:
		kind = "no answer"
		if o.a.err != nil {
			kind = "no answer: " + o.a.err.Error()
		}
	case !o.a.ok():
		kind = fmt.Sprintf("%d %s", o.a.status, truncate(string(o.a.body), 120))
	case o.bad != "":
		kind = "200 but " + o.bad
	default:
		return
	}
	s.errors++
	s.failed.Add(1)
	if len(s.kinds) < 20 {
		s.kinds[kind]++
	} else if _, ok := s.kinds[kind]; ok {
		s.kinds[kind]++
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// runScenario runs sc for the configured duration and measures it.
func (b *bench) runScenario(ctx context.Context, sc scenario) (result, error) {
	if sc.prepare != nil {
		if err := sc.prepare(ctx); err != nil {
			return result{}, err
		}
	}
	before, err := b.sample()
	if err != nil {
		return result{}, err
	}
	st := &stats{kinds: map[string]int{}}
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	workers := b.o.concurrency
	if sc.workers > 0 {
		workers = min(workers, sc.workers)
	}
	for w := range workers {
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				st.add(sc.op(ctx, w))
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	deadline := time.After(b.o.duration)
	var exited error
wait:
	for {
		select {
		case <-tick.C:
			el := time.Since(start)
			b.progress.statusf("%s: %v/%v  %d requests  %.0f/s  %d errors", sc.name, el.Round(time.Second), b.o.duration,
				st.count.Load(), float64(st.count.Load())/el.Seconds(), st.failed.Load())
		case <-deadline:
			stop.Store(true)
		case <-b.tg.exited:
			stop.Store(true)
			exited = errors.New("pushreg exited during the scenario")
			<-done
			break wait
		case <-done:
			break wait
		}
	}
	elapsed := time.Since(start)
	if exited != nil {
		return result{}, exited
	}
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	after, err := b.sample()
	if err != nil {
		return result{}, err
	}

	r := result{Name: sc.name, About: sc.about, Requests: len(st.durations), Errors: st.errors, Seconds: elapsed.Seconds(),
		Messages: st.msgs, LoadAvg: loadAverage()}
	if r.Requests == 0 {
		return r, errors.New("no request completed")
	}
	ops := float64(r.Requests)
	r.PerSec = ops / elapsed.Seconds()
	slices.Sort(st.durations)
	r.P50ms, r.P95ms, r.P99ms = percentile(st.durations, 50), percentile(st.durations, 95), percentile(st.durations, 99)
	r.RoundTrips = (after.m["pushreg_mongodb_commands_total"] - before.m["pushreg_mongodb_commands_total"]) / ops
	r.ServiceCPUus = float64(after.cpu-before.cpu) / float64(time.Microsecond) / ops
	if b.tg.storeCPU != nil {
		v := float64(after.storeCPU-before.storeCPU) / float64(time.Microsecond) / ops
		r.StoreCPUus = &v
	}
	r.BenchCPUus = float64(after.self-before.self) / float64(time.Microsecond) / ops
	r.RSSMiB = after.m["process_resident_memory_bytes"] / (1 << 20)
	if sc.units != "" {
		r.MsgsPerSec = float64(r.Messages) / elapsed.Seconds()
	}
	if len(st.kinds) > 0 {
		r.ErrorSamples = st.kinds
	}
	b.progress.logf("%s: %d requests in %.1fs, %.0f/s, p50 %.1fms, %d errors", r.Name, r.Requests, r.Seconds, r.PerSec, r.P50ms, r.Errors)
	return r, nil
}

// sample is the counters at one moment.
type sample struct {
	m        metrics
	cpu      time.Duration
	storeCPU time.Duration
	self     time.Duration
}

func (b *bench) sample() (sample, error) {
	var s sample
	var err error
	if s.m, err = scrape(b.tg.url); err != nil {
		return s, err
	}
	if _, ok := s.m["pushreg_mongodb_commands_total"]; !ok {
		return s, errors.New("/metrics has no pushreg_mongodb_commands_total")
	}
	if s.cpu, err = b.tg.cpu(); err != nil {
		return s, err
	}
	if b.tg.storeCPU != nil {
		if s.storeCPU, err = b.tg.storeCPU(); err != nil {
			return s, err
		}
	}
	s.self = selfCPU()
	return s, nil
}

// percentile is the nearest-rank percentile of sorted durations, in ms.
func percentile(sorted []time.Duration, p int) float64 {
	i := (len(sorted)*p + 99) / 100
	i = min(max(i-1, 0), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

// progress writes status lines to stderr: rewritten in place on a
// terminal, one every few seconds otherwise.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	pending  bool
	lastLine time.Time
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

// every calls f every d until the returned function is called.
func (p *progress) every(d time.Duration, f func()) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() { close(quit); <-done }
}

// logf writes a line that stays.
func (p *progress) logf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending {
		fmt.Fprint(p.w, "\r\033[K")
		p.pending = false
	}
	fmt.Fprintf(p.w, "bench: "+format+"\n", args...)
}

// statusf writes a line the next one replaces (on a terminal).
func (p *progress) statusf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal {
		fmt.Fprintf(p.w, "\r\033[Kbench: "+format, args...)
		p.pending = true
		return
	}
	if time.Since(p.lastLine) >= 4*time.Second {
		fmt.Fprintf(p.w, "bench: "+format+"\n", args...)
		p.lastLine = time.Now()
	}
}
