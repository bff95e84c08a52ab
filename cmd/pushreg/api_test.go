package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushreg/pushreg/auth"
	"github.com/pushreg/pushreg/push/fcmtest"
	"github.com/pushreg/pushreg/registry/mongodb"
	"github.com/pushreg/pushreg/registry/mongotest"
)

func TestMain(m *testing.M) { mongotest.Main(m) }

// testClock is the service's clock in API tests.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *testClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// syncBuffer collects the service's logs for the secrets-in-logs check.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }

// api is a whole pushreg (the same assembly as main's) over HTTP, on a
// fresh database of the test MongoDB server, with the real Firebase SDK
// pointed at an FCM double.
type api struct {
	t     testing.TB
	url   string
	host  string
	fcm   *fcmtest.Server
	clock *testClock
	svc   *service
	cfg   *config
	logs  *syncBuffer
	db    *mongotest.DB

	adminOnce  sync.Once
	adminToken string

	secretsMu sync.Mutex
	secrets   map[string]bool
}

// secretFields are the JSON fields, in requests and responses of every
// style, whose values must never reach the logs.
var secretFields = map[string]bool{
	"password": true, "access_token": true, "refresh_token": true, "token": true,
	"accessToken": true, "refreshToken": true, "app_secret": true, "client_secret": true,
}

// remember records the secrets in a JSON body or form.
func (a *api) remember(values map[string]any) {
	a.secretsMu.Lock()
	defer a.secretsMu.Unlock()
	collectSecrets(values, a.secrets)
}

func collectSecrets(values map[string]any, into map[string]bool) {
	for k, v := range values {
		switch x := v.(type) {
		case string:
			if secretFields[k] && len(x) >= 8 {
				into[x] = true
			}
		case map[string]any:
			collectSecrets(x, into)
		}
	}
}

// checkLogs fails the test if any secret it used appears in the logs.
func (a *api) checkLogs() {
	logs := a.logs.String()
	a.secretsMu.Lock()
	defer a.secretsMu.Unlock()
	for s := range a.secrets {
		if strings.Contains(logs, s) {
			a.t.Errorf("a secret (%.6s…) appears in the service's logs", s)
		}
	}
}

const (
	adminName = "root"
	adminPass = "root-password-123"
)

// newAPI starts pushreg; env sets variables as an operator would, and
// each option changes the configuration as run would.
func newAPI(t testing.TB, env map[string]string, options ...func(*config)) *api {
	t.Helper()
	db := mongotest.New(t)
	return startAPI(t, mongotest.URI(t), db, env, options...)
}

// shared makes pushreg write as one of several instances on MongoDB do:
// conditions in the filters (FerretDB runs them, slowly), so the tests
// can count MongoDB's round trips on the embedded store.
func shared(c *config) { c.storeWrites = mongodb.Writes{Exclusive: false} }

// startAPI starts pushreg on the store at uri, in db's database, with the
// real Firebase SDK pointed at a fresh FCM double.
func startAPI(t testing.TB, uri string, db *mongotest.DB, env map[string]string, options ...func(*config)) *api {
	t.Helper()
	fcm := fcmtest.New(t)
	vars := map[string]string{
		"PUSHREG_FCM_ENDPOINT":   fcm.Endpoint(),
		"PUSHREG_DATA_DIR":       t.TempDir(),
		"PUSHREG_ADMIN_USERNAME": adminName,
		"PUSHREG_ADMIN_PASSWORD": adminPass,
		"PUSHREG_SWEEP_INTERVAL": "1000h",
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := loadConfig(nil, func(k string) string { return vars[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// argon2id at OWASP cost takes ~0.5 s under -race; the tests check
	// behaviour, not cost.
	cfg.passwordParams = auth.PasswordParams{MemoryKiB: 64, Iterations: 1, Parallelism: 1}
	cfg.MongoDatabase = db.Name()
	cfg.storeWrites = mongotest.Writes()
	for _, o := range options {
		o(cfg)
	}

	a := &api{t: t, fcm: fcm, clock: &testClock{t: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)},
		cfg: cfg, logs: &syncBuffer{}, db: db, secrets: map[string]bool{adminPass: true}}
	log := slog.New(slog.NewJSONHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st := store{uri: uri, idIndexes: func(ctx context.Context, _ string) error { return db.EnsureIDIndexes(ctx) }}
	a.svc, err = build(context.Background(), cfg, log, st, a.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.svc.close)
	select {
	case <-a.svc.indexes.done:
	case <-time.After(30 * time.Second):
		t.Fatal("indexes not created within 30s")
	}
	srv := httptest.NewServer(a.svc.handler)
	t.Cleanup(srv.Close)
	t.Cleanup(a.checkLogs)
	a.url = srv.URL
	a.host = strings.TrimPrefix(srv.URL, "http://")
	return a
}

// request is one HTTP call; body is JSON-encoded unless it is a string
// or url.Values.
type request struct {
	method, path string
	header       map[string]string
	body         any
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d is not a JSON object: %v: %s", r.status, err, r.body)
	}
	return m
}

func (a *api) do(req request) response {
	a.t.Helper()
	return a.send(a.t, req)
}

// send is do reporting failures to t: fuzz targets must use their own t.
func (a *api) send(t testing.TB, req request) response {
	t.Helper()
	var body io.Reader
	ctype := ""
	switch b := req.body.(type) {
	case nil:
	case string:
		body, ctype = strings.NewReader(b), "application/json"
	case url.Values:
		body, ctype = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
		for k, v := range b {
			a.remember(map[string]any{k: strings.Join(v, "")})
		}
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		body, ctype = bytes.NewReader(j), "application/json"
		var m map[string]any
		if json.Unmarshal(j, &m) == nil {
			a.remember(m)
		}
	}
	hr, err := http.NewRequest(req.method, a.url+req.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		hr.Header.Set("Content-Type", ctype)
	}
	for k, v := range req.header {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", req.method, req.path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if json.Unmarshal(b, &m) == nil {
		a.remember(m)
	}
	if auth := hr.Header.Get("Authorization"); len(auth) > 16 {
		a.remember(map[string]any{"token": auth[strings.LastIndexByte(auth, ' ')+1:]})
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// must does req and fails the test unless it answers want.
func (a *api) must(want int, req request) response {
	a.t.Helper()
	r := a.do(req)
	if r.status != want {
		a.t.Fatalf("%s %s = %d %s, want %d", req.method, req.path, r.status, r.body, want)
	}
	return r
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// admin returns an access token of the bootstrap admin.
func (a *api) admin() string {
	a.adminOnce.Do(func() {
		r := a.must(http.StatusOK, request{method: "POST", path: "/v1/auth/login",
			body: map[string]string{"username": adminName, "password": adminPass}})
		a.adminToken = r.json(a.t)["access_token"].(string)
	})
	return a.adminToken
}

// createUser makes a user through the admin API and returns its ID.
func (a *api) createUser(fields map[string]any) string {
	a.t.Helper()
	r := a.must(http.StatusCreated, request{method: "POST", path: "/v1/admin/users", header: bearer(a.admin()), body: fields})
	return r.json(a.t)["id"].(string)
}

// login signs in natively and returns the token response.
func (a *api) login(username, password string, extra map[string]string) map[string]any {
	a.t.Helper()
	body := map[string]string{"username": username, "password": password}
	for k, v := range extra {
		body[k] = v
	}
	return a.must(http.StatusOK, request{method: "POST", path: "/v1/auth/login", body: body}).json(a.t)
}

// refresh uses the OAuth token endpoint with a refresh token.
func (a *api) refresh(rt string, extra url.Values) response {
	a.t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	for k, v := range extra {
		form[k] = v
	}
	return a.do(request{method: "POST", path: "/v1/auth/token", body: form})
}
