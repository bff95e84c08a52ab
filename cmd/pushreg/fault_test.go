package main

// Fault tests: the store stopping and returning under load, and pushreg
// killed with SIGKILL under load. Both drive the API as apps do
// (scripts/load), record what each client saw succeed, and afterwards show
// that all of it is still there. Firebase down or slow is covered by
// TestKecakFirebaseDown.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/pushreg/pushreg/registry/embedded"
	"github.com/pushreg/pushreg/registry/mongodb"
	"github.com/pushreg/pushreg/registry/mongotest"
	"github.com/pushreg/pushreg/scripts/load"
)

// faultStore is an embedded FerretDB the test stops and starts again on
// the same address and files, as a database server restarts.
type faultStore struct {
	t    *testing.T
	dir  string
	addr string
	mu   sync.Mutex
	srv  *embedded.Server // nil while stopped
}

func startFaultStore(t *testing.T) *faultStore {
	t.Helper()
	s := &faultStore{t: t, dir: filepath.Join(t.TempDir(), "db")}
	srv, err := embedded.Start(context.Background(), embedded.Config{Dir: s.dir})
	if err != nil {
		t.Fatal(err)
	}
	s.srv, s.addr = srv, srv.Addr()
	t.Cleanup(s.stop)
	return s
}

func (s *faultStore) uri() string { return "mongodb://" + s.addr + "/" }

func (s *faultStore) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

// start starts the store again where it was. The port is free again once
// the old listener is closed, but a client socket of another test may hold
// it for a moment, so a failure is retried until a deadline.
func (s *faultStore) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for {
		srv, err := embedded.Start(context.Background(), embedded.Config{Dir: s.dir, Addr: s.addr})
		if err == nil {
			s.srv = srv
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("restart the store on %s: %v", s.addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newAPIOnStore is newAPI on a store of the test's own, which the test
// may stop and start, in its database "pushreg".
func newAPIOnStore(t *testing.T, uri string, env map[string]string) *api {
	t.Helper()
	client, err := mongodb.Connect(uri, mongodb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Disconnect(context.Background()) })
	db := &mongotest.DB{Database: client.Database("pushreg"), Client: client, Commands: &mongodb.CommandCounter{}}
	return startAPI(t, uri, db, env)
}

// loadAnswers keeps every answer the load saw, for checks over time.
type loadAnswers struct {
	mu      sync.Mutex
	answers []load.Answer
	secrets map[string]bool
}

func (l *loadAnswers) add(a load.Answer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.answers = append(l.answers, a)
	if l.secrets == nil {
		l.secrets = map[string]bool{}
	}
	if len(a.Credential) >= 8 {
		l.secrets[a.Credential] = true
	}
	var m map[string]any
	if json.Unmarshal(a.Body, &m) == nil {
		collectSecrets(m, l.secrets)
	}
}

// count reports how many answers match.
func (l *loadAnswers) count(match func(load.Answer) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.answers {
		if match(a) {
			n++
		}
	}
	return n
}

func (l *loadAnswers) all() []load.Answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.answers)
}

// faultWait polls cond until it holds or the deadline passes; details, if
// given, say what was seen when it did not.
func faultWait(t *testing.T, what string, within time.Duration, cond func() bool, details ...func() string) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			var b strings.Builder
			for _, d := range details {
				b.WriteString("\n" + d())
			}
			t.Fatalf("%s: not within %v%s", what, within, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// loadWorkers runs load steps until stopped, then drains what is pending.
type loadWorkers struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

func newLoadWorkers() *loadWorkers { return &loadWorkers{stop: make(chan struct{})} }

func (w *loadWorkers) start(ctx context.Context, name string, step func(context.Context) (load.Answer, error), pending func() bool) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		if err := load.Drive(ctx, w.stop, 10*time.Millisecond, step, pending); err != nil {
			w.mu.Lock()
			w.errs = append(w.errs, fmt.Errorf("%s: %w", name, err))
			w.mu.Unlock()
		}
	}()
}

// errors reports what stopped workers so far.
func (w *loadWorkers) errors() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.errs...)
}

// finish stops new work and waits for the drain; it returns the workers'
// errors.
func (w *loadWorkers) finish() error {
	close(w.stop)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.errs...)
}

// TestFaultStoreStopsMidLoad stops the store under a load of native and
// Kecak apps and fresh logins, and starts it again on the same address and
// files. While it is down every request is a prompt 503 (server selection
// gives up after 2 s) and /readyz answers 503; nothing is a 500 or hangs;
// once it is back pushreg recovers by itself. Afterwards no binding is half
// written (checkBindings), every device holds what its app last bound, and
// every app's last credential refreshes again.
func TestFaultStoreStopsMidLoad(t *testing.T) {
	t.Parallel()
	store := startFaultStore(t)
	// A fixed clock: every retry of an attempt whose answer was lost is
	// inside the reuse grace window, as it is for an app retrying at once.
	a := newAPIOnStore(t, store.uri(), map[string]string{"PUSHREG_MAX_DEVICES_PER_USER": "100000"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	c, err := load.NewClient(a.url, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var log loadAnswers
	c.OnAnswer = log.add
	t.Cleanup(func() {
		log.mu.Lock()
		defer log.mu.Unlock()
		a.secretsMu.Lock()
		defer a.secretsMu.Unlock()
		for s := range log.secrets {
			a.secrets[s] = true
		}
	})

	const password = "load-password"
	users := map[string]string{}
	for _, name := range []string{"nat", "kec", "logins"} {
		users[name] = a.createUser(map[string]any{"username": name, "password": password})
	}
	var chains []*load.Chain
	for i := range 2 {
		chains = append(chains,
			load.NewChain(fmt.Sprintf("nat%d", i), load.Native, users["nat"], "nat", fmt.Sprintf("nat%d-dev", i)),
			load.NewChain(fmt.Sprintf("kec%d", i), load.Kecak, users["kec"], "kec", fmt.Sprintf("kec%d-dev", i)))
	}
	// One app sends the FCM token it has now when it retries a bind.
	chains[1].FreshTokenOnRetry = true
	for _, ch := range chains {
		if ans, err := ch.SignIn(ctx, c, password); err != nil || ans.Status != http.StatusOK {
			t.Fatalf("sign in %s: %v %v", ch.Name, ans, err)
		}
	}
	logins := []*load.Logins{load.NewLogins("lg0", users["logins"], "logins", 0)}

	w := newLoadWorkers()
	for _, ch := range chains {
		i := 0
		w.start(ctx, ch.Name, func(ctx context.Context) (load.Answer, error) {
			i++
			return ch.Step(ctx, c, i%3 == 0)
		}, ch.Pending)
	}
	for _, l := range logins {
		w.start(ctx, l.Name, func(ctx context.Context) (load.Answer, error) { return l.Step(ctx, c, password) }, l.Pending)
	}
	successes := func() []int {
		var n []int
		for _, ch := range chains {
			n = append(n, ch.Successes())
		}
		for _, l := range logins {
			n = append(n, l.Successes())
		}
		return n
	}
	ready := func() int { return c.Do(ctx, "readyz", "GET", "/readyz", nil, nil).Status }
	seen := func() string {
		var b strings.Builder
		for _, ch := range chains {
			fmt.Fprintf(&b, "%s: %d successes, pending %v\n", ch.Name, ch.Successes(), ch.Pending())
		}
		for _, l := range logins {
			fmt.Fprintf(&b, "%s: %d successes, pending %v\n", l.Name, l.Successes(), l.Pending())
		}
		if err := w.errors(); err != nil {
			fmt.Fprintf(&b, "stopped: %v\n", err)
		}
		for _, line := range strings.Split(a.logs.String(), "\n") {
			if strings.Contains(line, `"status":500`) {
				fmt.Fprintf(&b, "log: %s\n", line)
			}
		}
		all := log.all()
		for _, ans := range all[max(0, len(all)-10):] {
			fmt.Fprintf(&b, "%v %s\n", ans.Start.Format("15:04:05.000"), ans)
		}
		return b.String() + c.Stats.String()
	}
	// each holds once every client succeeded more times since base; a
	// client that stopped on an answer no fault explains never will, so
	// the test ends there and says what it saw.
	each := func(base []int, more int) func() bool {
		return func() bool {
			if err := w.errors(); err != nil {
				t.Fatalf("a client saw an answer no fault explains:\n%s", seen())
			}
			for i, n := range successes() {
				if n < base[i]+more {
					return false
				}
			}
			return true
		}
	}
	faultWait(t, "every client refreshing", 60*time.Second, each(make([]int, len(chains)+len(logins)), 2), seen)

	// The store stops: its listener closes at once, its open connections
	// after FerretDB's 3 s goodbye.
	stopping := time.Now()
	store.stop()
	stopped := time.Now()
	t.Logf("store stopped in %v", stopped.Sub(stopping).Round(time.Millisecond))
	workers := len(chains) + len(logins)
	down503 := func(ans load.Answer) bool {
		return ans.Start.After(stopped) && ans.Op != "readyz" && ans.Status == http.StatusServiceUnavailable
	}
	waited := faultWait(t, "503s while the store is down", 60*time.Second, func() bool {
		return log.count(down503) >= workers && ready() == http.StatusServiceUnavailable
	}, seen)
	t.Logf("%d requests answered 503 and /readyz 503 within %v of the stop", log.count(down503), waited.Round(time.Millisecond))

	restarting := time.Now()
	store.start()
	restarted := time.Now()
	readyAfter := faultWait(t, "/readyz 200 after the store returned", 30*time.Second, func() bool { return ready() == http.StatusOK })
	loadAfter := faultWait(t, "every client succeeding after the store returned", 60*time.Second, each(successes(), 2), seen)
	t.Logf("store restarted in %v; /readyz 200 %v later; every client succeeded twice more %v after that",
		restarted.Sub(restarting).Round(time.Millisecond), readyAfter.Round(time.Millisecond), loadAfter.Round(time.Millisecond))

	if err := w.finish(); err != nil {
		t.Fatalf("clients saw answers no fault explains:\n%v", err)
	}
	t.Logf("answers: %s", c.Stats)

	// Every answer is a success or a 503, none took long, and while the
	// store was down every one was a prompt 503.
	var outage []time.Duration
	for _, ans := range log.all() {
		switch {
		case ans.Status != http.StatusOK && ans.Status != http.StatusServiceUnavailable:
			t.Errorf("%s, want 200 or 503", ans)
		case ans.Duration > 20*time.Second:
			t.Errorf("%s: too slow", ans)
		}
		if ans.Start.After(stopped) && ans.Start.Add(ans.Duration).Before(restarting) {
			outage = append(outage, ans.Duration)
			if ans.Status != http.StatusServiceUnavailable {
				t.Errorf("while the store was down: %s, want 503", ans)
			}
		}
	}
	slices.Sort(outage)
	if len(outage) == 0 {
		t.Fatal("no request was answered while the store was down")
	}
	// Server selection gives up after 2 s; the bound is generous for -race
	// on two cores.
	if worst := outage[len(outage)-1]; worst > 10*time.Second {
		t.Errorf("the slowest 503 while the store was down took %v, want a few seconds at most", worst)
	}
	t.Logf("%d answers while the store was down: median %v, max %v", len(outage),
		outage[len(outage)/2].Round(time.Millisecond), outage[len(outage)-1].Round(time.Millisecond))

	for _, line := range strings.Split(a.logs.String(), "\n") {
		var l struct {
			Msg    string
			Status int
		}
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		if l.Msg == "panic" || (l.Msg == "request failed" && l.Status != http.StatusServiceUnavailable) {
			t.Errorf("log: %s", line)
		}
	}

	checkBindings(t, a)
	for _, ch := range chains {
		devs, err := load.NewAdmin(c, adminName, adminPass).Devices(ctx, ch.UserID)
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.CheckDevice(devs); err != nil {
			t.Error(err)
		}
		if err := ch.Verify(ctx, c); err != nil {
			t.Error(err)
		}
	}
	devs, err := load.NewAdmin(c, adminName, adminPass).Devices(ctx, users["logins"])
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range logins {
		if err := l.CheckDevices(devs); err != nil {
			t.Error(err)
		}
		for _, lg := range l.Seen() {
			if r := a.refresh(lg.RefreshToken, nil); r.status != http.StatusOK {
				t.Errorf("%s: the refresh token of login %s = %d %s, want 200", l.Name, lg.SessionID, r.status, r.body)
			}
		}
	}
}

// checkBindings checks, over the database, that no binding is half
// written. Login, Refresh and RefreshKecak bind the device before they
// create the session or move its credential, so a failure between the two
// leaves the registry ahead of the session, never behind it. Once every
// client's last attempt has succeeded:
//
//   - a live session that names a device names one the registry has
//     (user, device ID);
//   - a device holding a token names a live session of its user, and that
//     session names this device and the same FCM token;
//   - no two devices hold one FCM token.
//
// A session the registry's device does not name is one a later login on
// the same device superseded, or one whose login answer was lost and was
// retried; nobody holds its token, and it only needs its device to exist.
func checkBindings(t *testing.T, a *api) {
	t.Helper()
	ctx := context.Background()
	type sessionRow struct {
		ID       string `bson:"_id"`
		UserID   string `bson:"user_id"`
		DeviceID string `bson:"device_id"`
		FCMToken string `bson:"fcm_token"`
		Revoked  bool   `bson:"revoked"`
	}
	type deviceRow struct {
		UserID      string `bson:"user_id"`
		DeviceID    string `bson:"device_id"`
		FCMToken    string `bson:"fcm_token"`
		TokenStatus string `bson:"token_status"`
		SessionID   string `bson:"session_id"`
	}
	type userRow struct {
		Devices map[string]deviceRow `bson:"devices"`
	}
	var sessions []sessionRow
	var users []userRow
	for coll, into := range map[string]any{"sessions": &sessions, "user_devices": &users} {
		cur, err := a.db.Collection(coll).Find(ctx, bson.M{})
		if err != nil {
			t.Fatal(err)
		}
		if err := cur.All(ctx, into); err != nil {
			t.Fatal(err)
		}
	}
	var devices []deviceRow
	holder := map[string]string{} // FCM token → the device holding it
	for _, u := range users {
		for _, d := range u.Devices {
			devices = append(devices, d)
			if d.FCMToken == "" {
				continue
			}
			if other, ok := holder[d.FCMToken]; ok {
				t.Errorf("devices %s and %s/%s both hold %s", other, d.UserID, d.DeviceID, d.FCMToken)
			}
			holder[d.FCMToken] = d.UserID + "/" + d.DeviceID
		}
	}
	byID := map[string]sessionRow{}
	for _, s := range sessions {
		byID[s.ID] = s
	}
	type key struct{ user, device string }
	byDevice := map[key]deviceRow{}
	for _, d := range devices {
		byDevice[key{d.UserID, d.DeviceID}] = d
	}
	superseded := 0
	for _, s := range sessions {
		if s.Revoked || s.DeviceID == "" {
			continue
		}
		d, ok := byDevice[key{s.UserID, s.DeviceID}]
		switch {
		case !ok:
			t.Errorf("session %s names device %s, which the registry lacks", s.ID, s.DeviceID)
		case d.SessionID != s.ID:
			superseded++
		}
	}
	for _, d := range devices {
		if d.TokenStatus == "unbound" || d.TokenStatus == "invalid" {
			continue
		}
		s, ok := byID[d.SessionID]
		switch {
		case !ok:
			t.Errorf("device %s holds %s for session %s, which does not exist", d.DeviceID, d.FCMToken, d.SessionID)
		case s.Revoked || s.UserID != d.UserID:
			t.Errorf("device %s holds %s for session %s, revoked %v, of user %s, want a live session of %s",
				d.DeviceID, d.FCMToken, s.ID, s.Revoked, s.UserID, d.UserID)
		case s.DeviceID != d.DeviceID || s.FCMToken != d.FCMToken:
			t.Errorf("half-written binding: device %s holds %s for session %s, which names device %s with %s",
				d.DeviceID, d.FCMToken, s.ID, s.DeviceID, s.FCMToken)
		}
	}
	t.Logf("bindings: %d sessions, %d devices agree (%d sessions superseded on their device)", len(sessions), len(devices), superseded)
}

// raceEnabled reports whether this test binary was built with -race, so
// the binary it builds can reuse the same compiled packages.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// childProcess is a pushreg binary running in a process of its own, with its
// output kept for checks.
type childProcess struct {
	*load.Process
	stdout, stderr *syncBuffer
}

// startChildProcess starts bin with env and waits for it to listen; it is killed
// when the test ends.
func startChildProcess(t *testing.T, bin string, env []string) *childProcess {
	t.Helper()
	c := &childProcess{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	p, err := load.Start(context.Background(), bin, env, c.stdout, c.stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.stderr)
	}
	c.Process = p
	t.Cleanup(p.Kill)
	return c
}

// checkLogs fails the test if the process panicked or raced, or if a
// secret reached its logs.
func (c *childProcess) checkLogs(t *testing.T, secrets map[string]bool) {
	t.Helper()
	logs := c.stdout.String() + c.stderr.String()
	for _, bad := range []string{`"msg":"panic"`, "panic:", "WARNING: DATA RACE"} {
		if i := strings.Index(logs, bad); i >= 0 {
			t.Errorf("pushreg's output has %q: %.2000s", bad, logs[i:])
		}
	}
	for s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("a secret (%.6s…) appears in pushreg's logs", s)
		}
	}
}

// TestKillDuringLoadLosesNothing kills pushreg with SIGKILL while apps
// refresh and bind new FCM tokens, and starts it again on the same data
// directory. Everything an app saw succeed is still there: its last
// refresh or Kecak token works (CheckTokenApi accepts the Kecak one) and
// refreshes again, and its device holds the FCM token it last bound, or
// the one it sent when the kill swallowed the answer. The grace window is
// what lets a token whose successor was lost with the answer still work.
func TestKillDuringLoadLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the pushreg binary")
	}
	t.Parallel()
	began := time.Now()
	bin := filepath.Join(t.TempDir(), "pushreg")
	if err := load.Build(context.Background(), bin, raceEnabled()); err != nil {
		t.Fatal(err)
	}
	t.Logf("built in %v", time.Since(began).Round(time.Millisecond))
	env := []string{
		"PUSHREG_DATA_DIR=" + t.TempDir(),
		"PUSHREG_ADDR=127.0.0.1:0",
		"PUSHREG_LOG_FORMAT=json",
		"PUSHREG_ADMIN_USERNAME=" + adminName,
		"PUSHREG_ADMIN_PASSWORD=" + adminPass,
		"PUSHREG_SWEEP_INTERVAL=1000h",
		// The restart takes a few seconds under -race; the token whose
		// answer was lost in the kill is retried after it, which must
		// still be inside the grace window.
		"PUSHREG_REFRESH_REUSE_GRACE=2m",
	}
	for _, k := range []string{"PUSHREG_MONGODB_URI", "PUSHREG_FCM_ENDPOINT", "PUSHREG_FCM_CREDENTIALS_FILE", "GOOGLE_APPLICATION_CREDENTIALS"} {
		env = append(env, k+"=")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log loadAnswers

	first := startChildProcess(t, bin, env)
	c, err := load.NewClient(first.URL, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.OnAnswer = log.add
	// The admin is created with the indexes, before /readyz answers 200.
	faultWait(t, "/readyz 200", 30*time.Second, func() bool {
		return c.Do(ctx, "readyz", "GET", "/readyz", nil, nil).Status == http.StatusOK
	})
	admin := load.NewAdmin(c, adminName, adminPass)
	const password = "load-password"
	userID, err := admin.CreateUser(ctx, "crash", password)
	if err != nil {
		t.Fatal(err)
	}
	var chains []*load.Chain
	for i := range 3 {
		chains = append(chains,
			load.NewChain(fmt.Sprintf("nat%d", i), load.Native, userID, "crash", fmt.Sprintf("nat%d-dev", i)),
			load.NewChain(fmt.Sprintf("kec%d", i), load.Kecak, userID, "crash", fmt.Sprintf("kec%d-dev", i)))
	}
	for _, ch := range chains {
		if ans, err := ch.SignIn(ctx, c, password); err != nil || ans.Status != http.StatusOK {
			t.Fatalf("sign in %s: %v %v", ch.Name, ans, err)
		}
	}

	loadCtx, stopLoad := context.WithCancel(ctx)
	w := newLoadWorkers()
	for _, ch := range chains {
		i := 0
		w.start(loadCtx, ch.Name, func(ctx context.Context) (load.Answer, error) {
			i++
			// Kecak apps bind a new token every other refresh; native ones
			// every third.
			return ch.Step(ctx, c, (ch.Kind == load.Kecak && i%2 == 0) || i%3 == 0)
		}, ch.Pending)
	}
	base := make([]int, len(chains))
	for i, ch := range chains {
		base[i] = ch.Successes()
	}
	faultWait(t, "every client refreshing", 60*time.Second, func() bool {
		if err := w.errors(); err != nil {
			t.Fatalf("clients saw answers no fault explains before the kill:\n%v", err)
		}
		for i, ch := range chains {
			if ch.Successes() < base[i]+3 {
				return false
			}
		}
		return true
	})
	killedAt := time.Now()
	first.Kill()
	stopLoad()
	werr := w.finish()
	if werr != nil && !errors.Is(werr, context.Canceled) {
		t.Fatalf("clients saw answers no fault explains before the kill:\n%v", werr)
	}
	for _, ans := range log.all() {
		switch ans.Op {
		case "readyz", "admin_login", "admin_create_user":
			continue
		}
		if ans.Status != http.StatusOK && (ans.Status != 0 || ans.Start.Add(ans.Duration).Before(killedAt)) {
			t.Errorf("before the kill: %s, want 200 (or no answer, from the kill)", ans)
		}
	}
	t.Logf("killed with SIGKILL after %s", c.Stats)

	restarting := time.Now()
	second := startChildProcess(t, bin, env)
	c2, err := load.NewClient(second.URL, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.OnAnswer = log.add
	ready := faultWait(t, "/readyz 200 after the restart", 30*time.Second, func() bool {
		return c2.Do(ctx, "readyz", "GET", "/readyz", nil, nil).Status == http.StatusOK
	})
	t.Logf("restarted: listening %v after the start, ready %v later", time.Since(restarting)-ready, ready)

	devs, err := load.NewAdmin(c2, adminName, adminPass).Devices(ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chains {
		st := ch.State()
		t.Logf("%s: %d refreshes seen succeed; last binding seen %s, sent unanswered %q; the device holds %s",
			ch.Name, ch.Successes()-1, st.FCMToken, st.Unseen, devs[ch.DeviceID].FCMToken)
		if err := ch.CheckDevice(devs); err != nil {
			t.Error(err)
		}
		if err := ch.Verify(ctx, c2); err != nil {
			t.Error(err)
		}
	}
	if err := second.Stop(30 * time.Second); err != nil {
		t.Errorf("stop after the checks: %v\n%s", err, second.stderr)
	}
	log.mu.Lock()
	secrets := log.secrets
	log.mu.Unlock()
	secrets[adminPass] = true
	second.checkLogs(t, secrets)
	first.checkLogs(t, secrets)
}

// TestFaultRetryAfterLostAnswerWithNewToken: a refresh that bound a new
// FCM token succeeded but its answer was lost; the app retries with the
// same credential and the FCM token it has by then. The retry is a
// duplicate inside the grace window and gets the same successor, and the
// session must name the binding the retry made, as the registry does.
func TestFaultRetryAfterLostAnswerWithNewToken(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "lost", "password": "lost-password"})

	t.Run("kecak", func(t *testing.T) {
		t0 := a.kecakSignIn("lost", "lost-password", "kdev", "fcm:k0")
		if r := a.kecakRefresh(t0, "kdev", "fcm:k1"); r.status != http.StatusOK {
			t.Fatalf("first refresh = %d %s", r.status, r.body) // its answer is "lost"
		}
		r := a.kecakRefresh(t0, "kdev", "fcm:k2")
		if r.status != http.StatusOK {
			t.Fatalf("retry = %d %s, want 200", r.status, r.body)
		}
		tok := r.json(t)["token"].(string)
		if _, c := jwtParts(t, tok); c["fcm_token"] != "fcm:k2" {
			t.Errorf("the retry's token names %v, want fcm:k2", c["fcm_token"])
		}
		check := a.must(http.StatusOK, request{method: "GET", path: kecakCheck, header: map[string]string{"Authorization": tok}}).json(t)
		if d := a.device(id, "kdev"); d["fcm_token"] != "fcm:k2" || check["fcm_token"] != "fcm:k2" {
			t.Errorf("device holds %v, session names %v; want both fcm:k2", d["fcm_token"], check["fcm_token"])
		}
	})
	t.Run("native", func(t *testing.T) {
		rt := a.login("lost", "lost-password", map[string]string{"device_id": "ndev", "fcm_token": "fcm:n0"})["refresh_token"].(string)
		if r := a.refresh(rt, url.Values{"device_id": {"ndev"}, "fcm_token": {"fcm:n1"}}); r.status != http.StatusOK {
			t.Fatalf("first refresh = %d %s", r.status, r.body)
		}
		r := a.refresh(rt, url.Values{"device_id": {"ndev"}, "fcm_token": {"fcm:n2"}})
		if r.status != http.StatusOK {
			t.Fatalf("retry = %d %s, want 200", r.status, r.body)
		}
		_, c := jwtParts(t, r.json(t)["access_token"].(string))
		var sess struct {
			FCMToken string `bson:"fcm_token"`
		}
		if err := a.db.Collection("sessions").FindOne(context.Background(), bson.M{"_id": c["sid"]}).Decode(&sess); err != nil {
			t.Fatal(err)
		}
		if d := a.device(id, "ndev"); d["fcm_token"] != "fcm:n2" || sess.FCMToken != "fcm:n2" {
			t.Errorf("device holds %v, session names %v; want both fcm:n2", d["fcm_token"], sess.FCMToken)
		}
	})
}
