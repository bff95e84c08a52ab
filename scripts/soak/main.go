// Command soak runs pushreg under a mixed load for a long time (an hour by
// default) with faults injected, and reports answers by status, lost
// writes and memory.
//
//	go run ./scripts/soak                      # its own pushreg, store and FCM double
//	go run ./scripts/soak --duration 10m --fault-every 1m
//	go run ./scripts/soak --url http://127.0.0.1:8080 --admin-username root --admin-password secret --pid 1234
//
// By default it builds pushreg, starts an embedded FerretDB and an FCM
// double (push/fcmtest) of its own, and runs pushreg as a child process on
// them, so it can stop and start the store and make Firebase fail or slow
// down. With --url it drives a pushreg that is already running and
// injects no faults.
//
// The load: apps refreshing natively (rotating refresh tokens, binding a
// new FCM token now and then), Kecak apps refreshing and binding new
// tokens, and fresh logins. Every app remembers the last credential and
// binding it saw succeed; at the end, with every fault undone, each last
// credential must refresh again and each device must hold the token last
// bound to it (or one sent after it whose answer was lost). Anything else
// is a lost write. A refresh refused mid-run (400 or 401) with the last
// credential the app saw succeed is counted too: it means the service
// forgot a rotation.
//
// A progress line every --report, a summary at the end; the exit status is
// 1 if anything was lost, any answer was a 5xx other than 503, or pushreg
// logged a panic.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pushreg/pushreg/push/fcmtest"
	"github.com/pushreg/pushreg/registry/embedded"
	"github.com/pushreg/pushreg/scripts/load"
)

type options struct {
	duration   time.Duration
	url        string
	adminUser  string
	adminPass  string
	pid        int
	bin        string
	native     int
	kecak      int
	logins     int
	pause      time.Duration
	faultEvery time.Duration
	outage     time.Duration
	report     time.Duration
	keep       bool
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", time.Hour, "how long the load runs")
	flag.StringVar(&o.url, "url", "", "drive this running pushreg instead of starting one (no faults are injected)")
	flag.StringVar(&o.adminUser, "admin-username", "", "an admin of the pushreg at --url")
	flag.StringVar(&o.adminPass, "admin-password", "", "that admin's password")
	flag.IntVar(&o.pid, "pid", 0, "process ID of the pushreg at --url, to sample its memory")
	flag.StringVar(&o.bin, "bin", "", "pushreg binary to run (default: built from this tree)")
	flag.IntVar(&o.native, "native", 4, "native apps (rotating refresh tokens)")
	flag.IntVar(&o.kecak, "kecak", 4, "Kecak apps")
	flag.IntVar(&o.logins, "logins", 1, "workers logging in again and again")
	flag.DurationVar(&o.pause, "pause", 50*time.Millisecond, "pause between one app's requests")
	flag.DurationVar(&o.faultEvery, "fault-every", 5*time.Minute, "time between the starts of two faults (0: none)")
	flag.DurationVar(&o.outage, "outage", 20*time.Second, "how long a fault lasts")
	flag.DurationVar(&o.report, "report", 30*time.Second, "time between progress lines and memory samples")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (store, logs) of a pushreg started here")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// target is the pushreg under load and what the soak controls of it.
type target struct {
	url   string
	admin [2]string
	pid   func() int
	store *store          // nil with --url
	fcm   *fcmtest.Server // nil with --url
	logs  *logCounter
	close func() error
}

func run(ctx context.Context, o options) (bool, error) {
	if o.faultEvery > 0 && o.faultEvery <= o.outage {
		return false, errors.New("--fault-every must be longer than --outage")
	}
	var tg *target
	var err error
	if o.url != "" {
		if o.adminUser == "" || o.adminPass == "" {
			return false, errors.New("--url needs --admin-username and --admin-password")
		}
		tg = &target{url: o.url, admin: [2]string{o.adminUser, o.adminPass}, pid: func() int { return o.pid },
			close: func() error { return nil }}
	} else if tg, err = startTarget(ctx, o); err != nil {
		return false, err
	}
	closed := false
	defer func() {
		if !closed {
			tg.close()
		}
	}()

	c, err := load.NewClient(tg.url, 30*time.Second)
	if err != nil {
		return false, err
	}
	defer c.Close()
	s := &soak{o: o, tg: tg, c: c, admin: load.NewAdmin(c, tg.admin[0], tg.admin[1]), started: time.Now()}
	c.OnAnswer = s.observe
	// A starting pushreg creates its admin with the indexes, before /readyz
	// answers 200.
	s.waitReady(ctx, time.Minute)
	if err := s.setUp(ctx); err != nil {
		return false, err
	}
	fmt.Printf("soak: %d native and %d Kecak apps, %d login workers against %s for %v\n",
		o.native, o.kecak, o.logins, tg.url, o.duration)

	s.runLoad(ctx)
	// The checks run even when the run was interrupted.
	fctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ok := s.finish(fctx)
	closed = true
	if err := tg.close(); err != nil {
		fmt.Println("soak: stopping pushreg:", err)
		ok = false
	}
	if tg.logs != nil {
		ok = tg.logs.report() && ok
	}
	return ok, nil
}

// startTarget builds pushreg and runs it on an embedded store and an FCM
// double of its own.
func startTarget(ctx context.Context, o options) (*target, error) {
	dir, err := os.MkdirTemp("", "pushreg-soak-")
	if err != nil {
		return nil, err
	}
	cleanup := []func(){}
	undo := func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}
	if !o.keep {
		cleanup = append(cleanup, func() { os.RemoveAll(dir) })
	} else {
		fmt.Println("soak: keeping", dir)
	}
	bin := o.bin
	if bin == "" {
		bin = filepath.Join(dir, "pushreg")
		fmt.Println("soak: building pushreg")
		if err := load.Build(ctx, bin, false); err != nil {
			undo()
			return nil, err
		}
	}
	st, err := startStore(ctx, filepath.Join(dir, "db"))
	if err != nil {
		undo()
		return nil, err
	}
	cleanup = append(cleanup, st.stop)
	fcm, err := fcmtest.NewServer("")
	if err != nil {
		undo()
		return nil, err
	}
	fcm.SetRecord(false) // memory stays flat; Stats still count
	cleanup = append(cleanup, fcm.Close)

	logFile, err := os.Create(filepath.Join(dir, "pushreg.log"))
	if err != nil {
		undo()
		return nil, err
	}
	cleanup = append(cleanup, func() { logFile.Close() })
	logs := &logCounter{w: logFile}
	admin := [2]string{"soak-admin", randomString()}
	// A request whose answer a store outage swallowed is retried after the
	// outage; it must still be inside the reuse grace window, or the
	// retry would revoke the session as theft.
	grace := o.outage + time.Minute
	env := []string{
		"PUSHREG_ADDR=127.0.0.1:0",
		"PUSHREG_MONGODB_URI=" + st.uri(),
		"PUSHREG_DATA_DIR=" + dir,
		"PUSHREG_FCM_ENDPOINT=" + fcm.Endpoint(),
		"PUSHREG_FCM_CREDENTIALS_FILE=",
		"GOOGLE_APPLICATION_CREDENTIALS=",
		"PUSHREG_FCM_VALIDATE_TIMEOUT=1s",
		"PUSHREG_LOG_FORMAT=json",
		"PUSHREG_LOG_LEVEL=info", // the "listening" line is at info
		"PUSHREG_ADMIN_USERNAME=" + admin[0],
		"PUSHREG_ADMIN_PASSWORD=" + admin[1],
		"PUSHREG_REFRESH_REUSE_GRACE=" + grace.String(),
	}
	p, err := load.Start(ctx, bin, env, logs, logs)
	if err != nil {
		undo()
		return nil, err
	}
	fmt.Printf("soak: pushreg (pid %d) at %s on FerretDB at %s, FCM double at %s; its logs: %s\n",
		p.Pid(), p.URL, st.addr, fcm.URL(), logFile.Name())
	return &target{
		url: p.URL, admin: admin, pid: p.Pid, store: st, fcm: fcm, logs: logs,
		close: func() error {
			err := p.Stop(30 * time.Second)
			undo()
			return err
		},
	}, nil
}

func randomString() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// store is the embedded FerretDB the soak stops and starts again.
type store struct {
	dir, addr string
	mu        sync.Mutex
	srv       *embedded.Server
}

func startStore(ctx context.Context, dir string) (*store, error) {
	srv, err := embedded.Start(ctx, embedded.Config{Dir: dir})
	if err != nil {
		return nil, err
	}
	return &store{dir: dir, addr: srv.Addr(), srv: srv}, nil
}

func (s *store) uri() string { return "mongodb://" + s.addr + "/" }

func (s *store) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

// start starts the store again on its address, retrying for a minute in
// case another socket holds the port for a moment.
func (s *store) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	deadline := time.Now().Add(time.Minute)
	for {
		srv, err := embedded.Start(ctx, embedded.Config{Dir: s.dir, Addr: s.addr})
		if err == nil {
			s.srv = srv
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Second)
	}
}

// logCounter copies pushreg's warnings, errors and anything that is not a
// JSON log line (a panic's trace) to a file, and counts them by message.
// Info lines (one per request) are dropped: an hour of them is large.
type logCounter struct {
	mu     sync.Mutex
	w      io.Writer
	counts map[string]int
	panics int
}

func (l *logCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts = map[string]int{}
	}
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		line := sc.Text()
		level, msg := jsonField(line, "level"), jsonField(line, "msg")
		if level == "WARN" || level == "ERROR" {
			l.counts[level+" "+msg]++
		}
		if msg == "panic" || strings.HasPrefix(line, "panic:") || strings.Contains(line, "DATA RACE") {
			l.panics++
		}
		if level != "INFO" && level != "DEBUG" {
			fmt.Fprintln(l.w, line)
		}
	}
	return len(p), nil
}

// jsonField finds "name":"value" in a JSON log line without decoding it.
func jsonField(line, name string) string {
	_, after, ok := strings.Cut(line, `"`+name+`":"`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, `"`)
	return v
}

func (l *logCounter) report() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.counts))
	for k := range l.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Println("pushreg's log: warnings and errors by message:")
	if len(keys) == 0 {
		fmt.Println("  none")
	}
	for _, k := range keys {
		fmt.Printf("  %6d  %s\n", l.counts[k], k)
	}
	if l.panics > 0 {
		fmt.Printf("pushreg panicked or raced %d times\n", l.panics)
	}
	return l.panics == 0
}

// soak is one run.
type soak struct {
	o       options
	tg      *target
	c       *load.Client
	admin   *load.Admin
	started time.Time

	chains []*load.Chain
	logins []*load.Logins
	users  map[string]string // username → ID
	pass   string

	requests   atomic.Int64
	lastN      int64         // requests at the last progress line
	lastAt     time.Duration // and when it was
	mu         sync.Mutex
	unexpected []string // first few unexpected answers
	nUnexp     int
	forgotten  int // refreshes refused with the last credential seen succeed
	memory     []memSample
	faults     []faultRecord
	fault      string // the fault now in force
}

type memSample struct {
	at   time.Duration
	rss  int64
	heap int64 // -1: unknown
}

type faultRecord struct {
	name       string
	start, end time.Duration
	recovered  time.Duration // from the end until /readyz answered 200
}

func (s *soak) observe(a load.Answer) { s.requests.Add(1) }

func (s *soak) setUp(ctx context.Context) error {
	run := randomString()[:6]
	s.pass = "soak-" + randomString()
	s.users = map[string]string{}
	for _, kind := range []string{"nat", "kec", "login"} {
		name := "soak-" + run + "-" + kind
		id, err := s.admin.CreateUser(ctx, name, s.pass)
		if err != nil {
			return err
		}
		s.users[name] = id
	}
	user := func(kind string) (string, string) { n := "soak-" + run + "-" + kind; return n, s.users[n] }
	for i := range s.o.native {
		name, id := user("nat")
		s.chains = append(s.chains, load.NewChain(fmt.Sprintf("nat%d", i), load.Native, id, name, fmt.Sprintf("nat%d-dev", i)))
	}
	for i := range s.o.kecak {
		name, id := user("kec")
		ch := load.NewChain(fmt.Sprintf("kec%d", i), load.Kecak, id, name, fmt.Sprintf("kec%d-dev", i))
		ch.FreshTokenOnRetry = i%2 == 1
		s.chains = append(s.chains, ch)
	}
	for _, ch := range s.chains {
		if err := s.signIn(ctx, ch); err != nil {
			return err
		}
	}
	for i := range s.o.logins {
		name, id := user("login")
		// Twenty devices each keeps the user under the default device limit.
		s.logins = append(s.logins, load.NewLogins(fmt.Sprintf("lg%d", i), id, name, 20))
	}
	return nil
}

// signIn starts a chain's session, retrying while the service is
// unavailable.
func (s *soak) signIn(ctx context.Context, ch *load.Chain) error {
	for {
		a, err := ch.SignIn(ctx, s.c, s.pass)
		if err != nil {
			return err
		}
		if a.Status == http.StatusOK {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// runLoad runs the apps and the faults until the duration is over (or ctx
// is cancelled), then ends any fault in force and lets every app finish
// its last request.
func (s *soak) runLoad(ctx context.Context) {
	// The apps' requests are not cancelled with ctx: an interrupted run
	// still drains and checks.
	loadCtx, cancelLoad := context.WithCancel(context.Background())
	defer cancelLoad()
	var apps sync.WaitGroup
	stop := make(chan struct{})
	for _, ch := range s.chains {
		apps.Add(1)
		go func() {
			defer apps.Done()
			i := 0
			s.drive(loadCtx, stop, ch.Name, func(ctx context.Context) (load.Answer, error) {
				i++
				a, err := ch.Step(ctx, s.c, i%5 == 0)
				if err == nil {
					return a, nil
				}
				if a.Status == http.StatusBadRequest || a.Status == http.StatusUnauthorized {
					s.mu.Lock()
					s.forgotten++
					s.mu.Unlock()
				}
				// The session is lost to the app; it signs in again.
				s.note(err)
				return a, s.signIn(ctx, ch)
			}, ch.Pending)
		}()
	}
	for _, l := range s.logins {
		apps.Add(1)
		go func() {
			defer apps.Done()
			s.drive(loadCtx, stop, l.Name, func(ctx context.Context) (load.Answer, error) {
				a, err := l.Step(ctx, s.c, s.pass)
				if err != nil {
					s.note(err)
				}
				return a, nil
			}, l.Pending)
		}()
	}
	faultCtx, cancelFaults := context.WithCancel(ctx)
	faultsDone := make(chan struct{})
	go func() { defer close(faultsDone); s.injectFaults(faultCtx) }()

	tick := time.NewTicker(s.o.report)
	defer tick.Stop()
	end := time.NewTimer(s.o.duration)
	defer end.Stop()
	s.sample()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end.C:
			break loop
		case <-tick.C:
			s.sample()
			s.progress()
		}
	}
	fmt.Println("soak: load stopping; undoing faults and letting every app finish its last request")
	cancelFaults()
	<-faultsDone
	s.undoFaults(loadCtx)
	close(stop)
	drained := make(chan struct{})
	go func() { apps.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(2 * time.Minute):
		s.note(errors.New("the apps did not finish their last requests within 2 minutes"))
		cancelLoad()
		<-drained
	}
	s.sample()
}

// drive runs one worker until ctx is done (the drain comes later, in
// finish).
func (s *soak) drive(ctx context.Context, stop <-chan struct{}, name string,
	step func(context.Context) (load.Answer, error), pending func() bool) {
	err := load.Drive(ctx, stop, s.o.pause, step, pending)
	if err != nil && ctx.Err() == nil {
		s.note(fmt.Errorf("%s stopped: %w", name, err))
	}
}

func (s *soak) note(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nUnexp++
	if len(s.unexpected) < 20 {
		s.unexpected = append(s.unexpected, fmt.Sprintf("%v: %v", time.Since(s.started).Round(time.Second), err))
	}
}

// injectFaults cycles through the faults the soak controls.
func (s *soak) injectFaults(ctx context.Context) {
	if s.tg.store == nil || s.o.faultEvery <= 0 {
		return
	}
	faults := []struct {
		name    string
		on, off func()
	}{
		{"store down", s.tg.store.stop, func() {
			if err := s.tg.store.start(context.Background()); err != nil {
				s.note(fmt.Errorf("restart the store: %w", err))
			}
		}},
		{"FCM down (UNAVAILABLE)", func() { s.tg.fcm.SetDown(true) }, func() { s.tg.fcm.SetDown(false) }},
		{"FCM slow (3s)", func() { s.tg.fcm.SetLatency(3 * time.Second) }, func() { s.tg.fcm.SetLatency(0) }},
	}
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.o.faultEvery - s.o.outage):
		}
		f := faults[i%len(faults)]
		rec := faultRecord{name: f.name, start: time.Since(s.started)}
		s.setFault(f.name)
		f.on()
		select {
		case <-ctx.Done():
		case <-time.After(s.o.outage):
		}
		f.off()
		rec.end = time.Since(s.started)
		s.setFault("")
		rec.recovered = s.waitReady(context.Background(), time.Minute)
		s.mu.Lock()
		s.faults = append(s.faults, rec)
		s.mu.Unlock()
		fmt.Printf("soak: %v fault %q over; ready again %v later\n", rec.end.Round(time.Second), f.name, rec.recovered.Round(time.Millisecond))
	}
}

func (s *soak) setFault(name string) {
	s.mu.Lock()
	s.fault = name
	s.mu.Unlock()
}

// undoFaults ends any fault in force and waits until pushreg is ready.
func (s *soak) undoFaults(ctx context.Context) {
	if s.tg.store != nil {
		if err := s.tg.store.start(ctx); err != nil {
			s.note(fmt.Errorf("restart the store: %w", err))
		}
		s.tg.fcm.SetDown(false)
		s.tg.fcm.SetLatency(0)
	}
	s.waitReady(ctx, time.Minute)
}

// waitReady polls /readyz until it answers 200 and returns how long that
// took (or within, if it never did).
func (s *soak) waitReady(ctx context.Context, within time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < within && ctx.Err() == nil {
		if s.c.Do(ctx, "readyz", "GET", "/readyz", nil, nil).Status == http.StatusOK {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// sample records pushreg's memory: RSS from /proc, and its Go heap when
// GET /metrics exposes go_memstats_heap_alloc_bytes.
func (s *soak) sample() {
	m := memSample{at: time.Since(s.started), rss: -1, heap: -1}
	if pid := s.tg.pid(); pid > 0 {
		if rss, err := load.RSS(pid); err == nil {
			m.rss = rss
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if a := s.c.Do(ctx, "metrics", "GET", "/metrics", nil, nil); a.Status == http.StatusOK {
		for _, line := range strings.Split(string(a.Body), "\n") {
			if v, ok := strings.CutPrefix(line, "go_memstats_heap_alloc_bytes "); ok {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					m.heap = int64(f)
				}
			}
		}
	}
	s.mu.Lock()
	s.memory = append(s.memory, m)
	s.mu.Unlock()
}

func mib(n int64) string {
	if n < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func statusLine(by map[int]int64) string {
	keys := make([]int, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		name := strconv.Itoa(k)
		if k == 0 {
			name = "none"
		}
		parts = append(parts, fmt.Sprintf("%s×%d", name, by[k]))
	}
	return strings.Join(parts, " ")
}

func (s *soak) progress() {
	el := time.Since(s.started)
	n := s.requests.Load()
	recent := float64(n-s.lastN) / (el - s.lastAt).Seconds()
	s.lastN, s.lastAt = n, el
	s.mu.Lock()
	mem := s.memory[len(s.memory)-1]
	first := s.memory[0]
	fault, unexp, forgotten := s.fault, s.nUnexp, s.forgotten
	s.mu.Unlock()
	if fault == "" {
		fault = "none"
	}
	fmt.Printf("soak %v/%v: %d requests (%.1f/s, lately %.1f/s) %s; unexpected %d, forgotten rotations %d; rss %s (start %s), heap %s; fault: %s\n",
		el.Round(time.Second), s.o.duration, n, float64(n)/el.Seconds(), recent, statusLine(s.c.Stats.ByStatus()),
		unexp, forgotten, mib(mem.rss), mib(first.rss), mib(mem.heap), fault)
}

// finish checks what the apps saw succeed and prints the summary; it
// reports whether nothing was lost or wrong.
func (s *soak) finish(ctx context.Context) bool {
	var lost []string
	devices := map[string]map[string]load.Device{}
	for _, id := range s.users {
		devs, err := s.admin.Devices(ctx, id)
		if err != nil {
			lost = append(lost, fmt.Sprintf("cannot list devices: %v", err))
			continue
		}
		devices[id] = devs
	}
	for _, ch := range s.chains {
		if err := ch.CheckDevice(devices[ch.UserID]); err != nil {
			lost = append(lost, err.Error())
		}
		if err := ch.Verify(ctx, s.c); err != nil {
			lost = append(lost, err.Error())
		}
	}
	logins := 0
	for _, l := range s.logins {
		if err := l.CheckDevices(devices[l.UserID]); err != nil {
			lost = append(lost, err.Error())
		}
		for _, lg := range l.Seen() {
			logins++
			if err := verifyRefresh(ctx, s.c, lg.RefreshToken); err != nil {
				lost = append(lost, fmt.Sprintf("%s: login on %s: %v", l.Name, lg.DeviceID, err))
			}
		}
	}

	el := time.Since(s.started)
	fmt.Printf("\nsoak summary after %v: %d requests (%.1f/s)\n", el.Round(time.Second), s.requests.Load(), float64(s.requests.Load())/el.Seconds())
	fmt.Println("answers by status:", statusLine(s.c.Stats.ByStatus()))
	fmt.Println("answers by operation and status:")
	for _, r := range s.c.Stats.Rows() {
		status := strconv.Itoa(r.Status)
		if r.Status == 0 {
			status = "none"
		}
		fmt.Printf("  %-18s %4s %8d  mean %8v  max %8v\n", r.Op, status, r.N, r.Mean.Round(time.Millisecond), r.Max.Round(time.Millisecond))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Printf("faults: %d\n", len(s.faults))
	for _, f := range s.faults {
		fmt.Printf("  %-24s %v–%v, ready again %v after\n", f.name, f.start.Round(time.Second), f.end.Round(time.Second), f.recovered.Round(time.Millisecond))
	}
	fmt.Printf("memory (pushreg): %d samples every %v\n", len(s.memory), s.o.report)
	var lo, hi int64 = -1, -1
	for i, m := range s.memory {
		if m.rss >= 0 && (lo < 0 || m.rss < lo) {
			lo = m.rss
		}
		hi = max(hi, m.rss)
		if every := max(1, len(s.memory)/12); i%every == 0 || i == len(s.memory)-1 {
			fmt.Printf("  %8v  rss %-10s heap %s\n", m.at.Round(time.Second), mib(m.rss), mib(m.heap))
		}
	}
	fmt.Printf("  rss min %s, max %s\n", mib(lo), mib(hi))
	fmt.Printf("checked: %d apps' last credentials and bindings, %d logins' devices and refresh tokens\n", len(s.chains), logins)
	fmt.Printf("lost writes: %d (and %d refreshes refused mid-run with the last credential seen succeed)\n", len(lost), s.forgotten)
	for _, l := range lost {
		fmt.Println("  ", l)
	}
	fmt.Printf("unexpected answers or errors: %d\n", s.nUnexp)
	for _, u := range s.unexpected {
		fmt.Println("  ", u)
	}
	bad5xx := int64(0)
	for st, n := range s.c.Stats.ByStatus() {
		if st >= 500 && st != http.StatusServiceUnavailable {
			bad5xx += n
		}
	}
	if bad5xx > 0 {
		fmt.Printf("5xx other than 503: %d\n", bad5xx)
	}
	return len(lost) == 0 && s.forgotten == 0 && bad5xx == 0 && s.nUnexp == 0
}

// verifyRefresh shows a refresh token still refreshes.
func verifyRefresh(ctx context.Context, c *load.Client, rt string) error {
	for range 10 {
		a := c.Do(ctx, "refresh", "POST", "/v1/auth/token", nil, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		if a.Status == http.StatusOK {
			return nil
		}
		if !a.Retryable() {
			return fmt.Errorf("its refresh token is refused: %s", a)
		}
		time.Sleep(time.Second)
	}
	return errors.New("its refresh token got no answer but 503s")
}
