package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushreg/pushreg/push/fcmtest"
)

// process is a pushreg started through run, as main starts it.
type process struct {
	url    string
	cancel context.CancelFunc
	done   chan error
	logs   syncBuffer
	// logsRead is closed once every line the service wrote has been read.
	logsRead chan struct{}
}

// startService runs pushreg with env and waits for its "listening" line.
func startService(t *testing.T, env map[string]string) *process {
	t.Helper()
	if env["PUSHREG_DATA_DIR"] == "" {
		env["PUSHREG_DATA_DIR"] = t.TempDir()
	}
	env["PUSHREG_ADDR"] = "127.0.0.1:0"
	env["PUSHREG_LOG_FORMAT"] = "json"
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	s := &process{cancel: cancel, done: make(chan error, 1), logsRead: make(chan struct{})}
	go func() {
		err := run(ctx, nil, func(k string) string { return env[k] }, pw, io.Discard)
		pw.CloseWithError(err)
		s.done <- err
	}()
	addr := make(chan string, 1)
	go func() {
		defer close(s.logsRead)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			s.logs.Write(append(sc.Bytes(), '\n'))
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "pushreg listening" {
				addr <- line.Addr
			}
		}
		io.Copy(io.Discard, pr) // a line too long for the scanner must not block the service
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatalf("pushreg exited before listening: %v", <-s.done)
		}
		s.url = "http://" + a
	case <-time.After(60 * time.Second):
		t.Fatal("pushreg did not start listening within 60s")
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *process) stop(t *testing.T) {
	t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("run returned %v, want nil after shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("pushreg did not stop within 10s of shutdown")
	}
}

func (s *process) status(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(s.url + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitStatus polls until path answers want or the deadline passes.
func (s *process) waitStatus(t *testing.T, path string, want int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, body := s.status(t, path)
		if got == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s = %d %s, want %d", path, got, body, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestServiceStartsOnEmbeddedStoreAndStops(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"PUSHREG_DATA_DIR": dir, "PUSHREG_ADMIN_USERNAME": "admin", "PUSHREG_ADMIN_PASSWORD": "first-password"}
	s := startService(t, env)
	if got, body := s.status(t, "/healthz"); got != http.StatusOK {
		t.Fatalf("/healthz = %d %s, want 200", got, body)
	}
	s.waitStatus(t, "/readyz", http.StatusOK)
	token := s.login(t, "admin", "first-password")
	s.stop(t)

	// Every collection the service uses exists, with the index that keeps
	// SQLite from scanning for an _id.
	if got, want := idIndexedCollections(t, filepath.Join(dir, "db", "pushreg.sqlite")),
		[]string{"apps", "device_tokens", "events", "idempotency_keys", "sessions", "user_devices", "user_keys", "users"}; !slices.Equal(got, want) {
		t.Errorf("collections with the _id index = %v, want %v", got, want)
	}

	fi, err := os.Stat(filepath.Join(dir, "jwt-signing-key.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("generated key: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}

	// A second start finds the first one's data: the admin (whose password
	// a changed variable does not overwrite) and the signing key.
	env["PUSHREG_ADMIN_PASSWORD"] = "second-password"
	s = startService(t, env)
	s.waitStatus(t, "/readyz", http.StatusOK)
	s.login(t, "admin", "first-password")
	req, _ := http.NewRequest("GET", s.url+"/v1/me/devices", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the first run's access token after a restart = %d, want 200 (same signing key)", resp.StatusCode)
	}
}

// idIndexedCollections returns, sorted, the collections of the embedded
// store's SQLite file whose table has the index embedded.EnsureIDIndexes
// adds, and fails the test if any collection lacks it.
func idIndexedCollections(t *testing.T, file string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT c.name, EXISTS (SELECT 1 FROM sqlite_master m
		WHERE m.type = 'index' AND m.tbl_name = c.table_name AND m.name = '$pushreg_id_' || c.table_name)
		FROM "_ferretdb_collections" c ORDER BY c.name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var indexed []string
	for rows.Next() {
		var name string
		var has bool
		if err := rows.Scan(&name, &has); err != nil {
			t.Fatal(err)
		}
		if !has {
			t.Errorf("collection %s has no _id index", name)
			continue
		}
		indexed = append(indexed, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return indexed
}

func (s *process) login(t *testing.T, user, pass string) string {
	t.Helper()
	resp, err := http.Post(s.url+"/v1/auth/login", "application/json",
		strings.NewReader(fmt.Sprintf(`{"username":%q,"password":%q}`, user, pass)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login %s = %d (%v), want 200", user, resp.StatusCode, err)
	}
	return body.AccessToken
}

func TestServiceRunsWithUnreachableMongoDB(t *testing.T) {
	s := startService(t, map[string]string{"PUSHREG_MONGODB_URI": "mongodb://127.0.0.1:1/?connectTimeoutMS=200"})
	if got, _ := s.status(t, "/healthz"); got != http.StatusOK {
		t.Fatalf("/healthz = %d, want 200", got)
	}
	body := s.waitStatus(t, "/readyz", http.StatusServiceUnavailable)
	if !strings.Contains(body, `"reason"`) {
		t.Errorf("/readyz body %s has no reason", body)
	}
}

func TestConfigRejectsBadValues(t *testing.T) {
	tests := []struct {
		env, value, wantInErr string
	}{
		{"PUSHREG_LOG_LEVEL", "loud", "PUSHREG_LOG_LEVEL"},
		{"PUSHREG_LOG_FORMAT", "xml", "PUSHREG_LOG_FORMAT"},
		{"PUSHREG_ACCESS_TTL", "fifteen", "PUSHREG_ACCESS_TTL"},
		{"PUSHREG_SESSION_MAX_AGE", "-1h", "PUSHREG_SESSION_MAX_AGE"},
		{"PUSHREG_FCM_VALIDATE_ON_ERROR", "maybe", "PUSHREG_FCM_VALIDATE_ON_ERROR"},
		{"PUSHREG_STYLES", "kecak,soap", "PUSHREG_STYLES"},
		{"PUSHREG_PUSH_CONCURRENCY", "0", "PUSHREG_PUSH_CONCURRENCY"},
		{"PUSHREG_ALLOWED_REFERERS", "not a url", "PUSHREG_ALLOWED_REFERERS"},
		{"PUSHREG_ADDR", "8080", "PUSHREG_ADDR"},
		{"PUSHREG_ADMIN_PASSWORD", "short", "PUSHREG_ADMIN_PASSWORD"},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			env := map[string]string{tt.env: tt.value, "PUSHREG_ADMIN_USERNAME": "admin"}
			if tt.env != "PUSHREG_ADMIN_PASSWORD" {
				env["PUSHREG_ADMIN_PASSWORD"] = "long-enough"
			}
			_, err := loadConfig(nil, func(k string) string { return env[k] }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantInErr) {
				t.Fatalf("loadConfig(%s=%q) error = %v, want one naming %s", tt.env, tt.value, err, tt.wantInErr)
			}
		})
	}
}

func TestConfigFlagsOverrideEnvironment(t *testing.T) {
	env := map[string]string{"PUSHREG_ADDR": "127.0.0.1:1", "PUSHREG_SESSION_MAX_AGE": "7d"}
	cfg, err := loadConfig([]string{"--addr=127.0.0.1:2", "--mongodb_database", "other"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:2" || cfg.MongoDatabase != "other" || cfg.SessionMaxAge != 7*24*time.Hour {
		t.Errorf("got addr %q db %q max age %v, want flag values and 7d from env", cfg.Addr, cfg.MongoDatabase, cfg.SessionMaxAge)
	}
	if cfg.Issuer != "http://127.0.0.1:2" {
		t.Errorf("issuer = %q, want the public URL default", cfg.Issuer)
	}
}

func TestEverySettingIsInTheREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings() {
		if !strings.Contains(string(readme), "| `"+s.env+"` |") {
			t.Errorf("README's configuration table lacks %s", s.env)
		}
	}
}

// Shutdown stops accepting connections but lets a request in flight
// finish: a login whose FCM validation is still out when the service is
// told to stop gets its answer (with a 1ms drain timeout it gets 503 as
// the store closes under it).
func TestShutdownDrainsRequestsInFlight(t *testing.T) {
	fcm := fcmtest.New(t)
	s := startService(t, map[string]string{"PUSHREG_ADMIN_USERNAME": "admin", "PUSHREG_ADMIN_PASSWORD": "admin-password",
		"PUSHREG_FCM_ENDPOINT": fcm.Endpoint(), "PUSHREG_FCM_PROJECT_ID": fcm.ProjectID(),
		"PUSHREG_FCM_VALIDATE_TIMEOUT": "10s", "PUSHREG_SHUTDOWN_TIMEOUT": "10s"})
	s.waitStatus(t, "/readyz", http.StatusOK)
	const latency = 700 * time.Millisecond
	fcm.SetLatency(latency)

	type answer struct {
		status int
		body   string
	}
	answered := make(chan answer, 1)
	go func() {
		body := `{"username":"admin","password":"admin-password","device_id":"phone","fcm_token":"drain:APA91bToken"}`
		resp, err := http.Post(s.url+"/v1/auth/login", "application/json", strings.NewReader(body))
		if err != nil {
			answered <- answer{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answered <- answer{status: resp.StatusCode, body: string(b)}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fcm.WaitRequests(ctx, 1); err != nil {
		t.Fatalf("the login's FCM validation never arrived: %v", err)
	}

	s.stop(t) // what SIGTERM does in main
	a := <-answered
	if a.status != http.StatusOK || !strings.Contains(a.body, `"access_token"`) {
		t.Fatalf("the login in flight at shutdown = %d %s, want 200 with tokens", a.status, a.body)
	}
	if _, err := http.Get(s.url + "/healthz"); err == nil {
		t.Error("a new request after shutdown was served, want the listener closed")
	}
}

// The profiler is off by default and, when asked for, served on its own
// address, not the API's.
func TestPprofIsServedOnlyWhereConfigured(t *testing.T) {
	off := startService(t, map[string]string{})
	if got, _ := off.status(t, "/debug/pprof/"); got != http.StatusNotFound {
		t.Errorf("API /debug/pprof/ = %d, want 404", got)
	}
	off.stop(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	on := startService(t, map[string]string{"PUSHREG_PPROF_ADDR": addr})
	if got, _ := on.status(t, "/debug/pprof/"); got != http.StatusNotFound {
		t.Errorf("API /debug/pprof/ with PUSHREG_PPROF_ADDR set = %d, want 404", got)
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatalf("pprof at %s: %v", addr, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Errorf("pprof goroutine profile = %d %.80s, want 200 and a goroutine profile", resp.StatusCode, body)
	}
	// The command line may hold secrets given as flags.
	if resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "pushreg") || strings.Contains(string(b), "test") {
			t.Errorf("pprof serves the command line: %.80s", b)
		}
	}

	for _, addr := range []string{":6060", "0.0.0.0:6060", "192.0.2.1:6060"} {
		err := run(context.Background(), nil, func(k string) string {
			return map[string]string{"PUSHREG_DATA_DIR": t.TempDir(), "PUSHREG_ADDR": "127.0.0.1:0", "PUSHREG_PPROF_ADDR": addr}[k]
		}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "PUSHREG_PPROF_ADDR") {
			t.Errorf("PUSHREG_PPROF_ADDR=%s: run = %v, want an error naming the setting", addr, err)
		}
	}
}

// /metrics is on the API's listener by default; with PUSHREG_METRICS_ADDR
// it moves to that address alone.
func TestMetricsMoveToTheirOwnAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := startService(t, map[string]string{"PUSHREG_METRICS_ADDR": addr})
	if got, _ := s.status(t, "/metrics"); got != http.StatusNotFound {
		t.Errorf("API /metrics with PUSHREG_METRICS_ADDR set = %d, want 404", got)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics at %s: %v", addr, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "pushreg_http_requests_total") {
		t.Errorf("metrics at their own address = %d %.80s, want 200 and pushreg's metrics", resp.StatusCode, body)
	}
}

// A push in flight when the drain gives up (PUSHREG_SHUTDOWN_TIMEOUT) is
// still sent and recorded under its Idempotency-Key before the store
// closes, so the client's retry after a restart replays the answer rather
// than sending again.
func TestShutdownRecordsAnIdempotentPushInFlight(t *testing.T) {
	fcm := fcmtest.New(t)
	dir := t.TempDir()
	env := func() map[string]string {
		return map[string]string{"PUSHREG_DATA_DIR": dir, "PUSHREG_ADMIN_USERNAME": "admin", "PUSHREG_ADMIN_PASSWORD": "admin-password",
			"PUSHREG_FCM_ENDPOINT": fcm.Endpoint(), "PUSHREG_FCM_PROJECT_ID": fcm.ProjectID(), "PUSHREG_SHUTDOWN_TIMEOUT": "100ms"}
	}
	s := startService(t, env())
	s.waitStatus(t, "/readyz", http.StatusOK)
	admin := s.login(t, "admin", "admin-password")
	// The admin's own device is the push's target; the admin may send.
	body := `{"username":"admin","password":"admin-password","device_id":"phone","fcm_token":"shutdown:APA91bToken"}`
	if resp, err := http.Post(s.url+"/v1/auth/login", "application/json", strings.NewReader(body)); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login with a device: %v %v", resp, err)
	}
	var me struct{ Sub string }
	if err := json.Unmarshal(jwtClaims(t, admin), &me); err != nil {
		t.Fatal(err)
	}
	push := func(url string) (int, http.Header) {
		req, _ := http.NewRequest("POST", url+"/v1/users/"+me.Sub+"/messages", strings.NewReader(`{"data":{"k":"v"}}`))
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "shutdown-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	fcm.Reset()
	fcm.SetLatency(time.Second) // longer than the drain waits
	done := make(chan int, 1)
	go func() { status, _ := push(s.url); done <- status }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fcm.WaitRequests(ctx, 1); err != nil {
		t.Fatal(err)
	}
	s.stop(t)
	if status := <-done; status != http.StatusOK {
		t.Errorf("the push in flight at shutdown = %d, want 200", status)
	}
	fcm.SetLatency(0)
	sent := fcm.Stats().Requests

	again := startService(t, env())
	again.waitStatus(t, "/readyz", http.StatusOK)
	status, header := push(again.url)
	if status != http.StatusOK || header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("the retry after a restart = %d, replayed %q; want 200 replayed", status, header.Get("Idempotent-Replayed"))
	}
	if n := fcm.Stats().Requests; n != sent {
		t.Errorf("the retry sent %d more messages to FCM, want none", n-sent)
	}
}

// jwtClaims returns the JSON of a JWT's claims.
func jwtClaims(t *testing.T, tok string) []byte {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.20s…", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return b
}
