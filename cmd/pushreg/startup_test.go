package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushreg/pushreg/push/fcmtest"
)

// A fresh start on a fresh data directory, a readiness probe polling
// while the indexes are made, a login, and a shutdown log no warning and
// no error: an operator's first run should not look alarming.
func TestFreshStartAndStopLogNoWarning(t *testing.T) {
	s := startService(t, map[string]string{"PUSHREG_ADMIN_USERNAME": "admin", "PUSHREG_ADMIN_PASSWORD": "admin-password"})
	s.waitStatus(t, "/readyz", http.StatusOK)
	s.login(t, "admin", "admin-password")
	s.stop(t)
	<-s.logsRead
	lines := strings.Split(strings.TrimSpace(s.logs.String()), "\n")
	if len(lines) < 3 {
		t.Fatalf("only %d log lines:\n%s", len(lines), s.logs.String())
	}
	for _, l := range lines {
		var line struct{ Level string }
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Errorf("log line is not JSON: %s", l)
			continue
		}
		if line.Level != "INFO" && line.Level != "DEBUG" {
			t.Errorf("a healthy start and stop logged %s", l)
		}
	}
	if !strings.Contains(s.logs.String(), `"msg":"stopped"`) {
		t.Errorf("no \"stopped\" line:\n%s", s.logs.String())
	}
}

// -h prints usage to stdout, exits 0 and shows none of the environment's
// values, whichever setting holds a secret.
func TestHelpShowsNoSecretsAndListsCommands(t *testing.T) {
	env := map[string]string{}
	for _, s := range settings() {
		env[s.env] = "env-value-of-" + s.env
	}
	env["PUSHREG_MONGODB_URI"] = "mongodb://pushreg:s3cret-mongo-pass@db.example.com/"
	env["PUSHREG_ADMIN_PASSWORD"] = "s3cret-admin-pass"
	for _, args := range [][]string{{"--help"}, {"-h"}, {"serve", "--help"}, {"help"}} {
		out, errOut, err := cliRun(env, args...)
		if err != nil {
			t.Errorf("pushreg %v: %v, want exit 0", args, err)
		}
		all := out + errOut
		for k, v := range env {
			if strings.Contains(all, v) {
				t.Errorf("pushreg %v shows %s's value", args, k)
			}
		}
		for _, secret := range []string{"s3cret", "pushreg:s3cret"} {
			if strings.Contains(all, secret) {
				t.Errorf("pushreg %v shows a secret", args)
			}
		}
		if strings.Contains(all, "help requested") || errOut != "" {
			t.Errorf("pushreg %v stderr = %q", args, errOut)
		}
		for _, c := range cliCommands() {
			if !strings.Contains(out, "pushreg "+c.group) || !strings.Contains(out, c.verb) {
				t.Errorf("pushreg %v does not list %s %s:\n%s", args, c.group, c.verb, out)
			}
		}
		if !strings.Contains(out, "PUSHREG_ADMIN_PASSWORD") || !strings.Contains(out, "-mongodb-uri") {
			t.Errorf("pushreg %v does not describe the settings:\n%s", args, out)
		}
	}
}

// A bad setting stops start-up with one line, before anything is opened
// or created: no data directory, no key file, no log line.
func TestBadSettingCreatesNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tt := range []struct {
		env, value, want string
	}{
		{"PUSHREG_PPROF_ADDR", "0.0.0.0:6060", "PUSHREG_PPROF_ADDR"},
		{"PUSHREG_PPROF_ADDR", ":6060", "PUSHREG_PPROF_ADDR"},
		{"PUSHREG_METRICS_ADDR", "9090", "PUSHREG_METRICS_ADDR"},
		{"PUSHREG_ACCESS_TTL", "fifteen", "PUSHREG_ACCESS_TTL"},
		{"PUSHREG_JWT_KEYS_FILE", "/nonexistent/keys.pem", "PUSHREG_JWT_KEYS_FILE"},
		{"PUSHREG_FCM_CREDENTIALS_FILE", "/nonexistent/sa.json", "PUSHREG_FCM"},
		{"PUSHREG_ADDR", busy.Addr().String(), "PUSHREG_ADDR"},
		{"PUSHREG_METRICS_ADDR", busy.Addr().String(), "PUSHREG_METRICS_ADDR"},
	} {
		t.Run(tt.env+"="+tt.value, func(t *testing.T) {
			root := t.TempDir()
			env := map[string]string{"PUSHREG_DATA_DIR": filepath.Join(root, "data"), "PUSHREG_ADDR": "127.0.0.1:0",
				"PUSHREG_FCM_PROJECT_ID": "p", tt.env: tt.value}
			var out, errOut strings.Builder
			err := run(context.Background(), nil, func(k string) string { return env[k] }, &out, &errOut)
			if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run = %v, want one line naming %s", err, tt.want)
			}
			if out.Len()+errOut.Len() > 0 {
				t.Errorf("printed before the refusal: %q %q", out.String(), errOut.String())
			}
			if ents, _ := os.ReadDir(root); len(ents) > 0 {
				t.Errorf("created %s", ents[0].Name())
			}
		})
	}
}

// A second pushreg on a data directory a running one holds is refused
// with one line, and logs nothing first.
func TestDataDirectoryInUseIsRefused(t *testing.T) {
	dir := t.TempDir()
	startService(t, map[string]string{"PUSHREG_DATA_DIR": dir})
	env := map[string]string{"PUSHREG_DATA_DIR": dir, "PUSHREG_ADDR": "127.0.0.1:0", "PUSHREG_LOG_FORMAT": "json"}
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, nil, func(k string) string { return env[k] }, &out, io.Discard)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "in use by another pushreg") {
		t.Errorf("run on a directory in use = %v, want one line saying so", err)
	}
	if errors.Is(err, context.DeadlineExceeded) || out.Len() > 0 {
		t.Errorf("the refused start logged %q", out.String())
	}
}

// The README's quick start, in process: the double as cmd/fcmdouble
// serves it, pushreg pointed at it by PUSHREG_FCM_ENDPOINT alone, an app
// with push:send, a user logged in with a device, a push, and the message
// listed at the double's GET /messages.
func TestQuickStartPushArrivesAtTheDouble(t *testing.T) {
	fcm, err := fcmtest.NewServer("")
	if err != nil {
		t.Fatal(err)
	}
	defer fcm.Close()
	s := startService(t, map[string]string{"PUSHREG_FCM_ENDPOINT": fcm.Endpoint(),
		"PUSHREG_ADMIN_USERNAME": "admin", "PUSHREG_ADMIN_PASSWORD": "admin-password"})
	s.waitStatus(t, "/readyz", http.StatusOK)
	env := map[string]string{"PUSHREG_URL": s.url, "PUSHREG_ADMIN_USERNAME": "admin", "PUSHREG_ADMIN_PASSWORD": "admin-password"}
	cliJSON := func(args ...string) map[string]any {
		t.Helper()
		out, errOut, err := cliRun(env, append(args, "--json")...)
		var m map[string]any
		if err != nil || json.Unmarshal([]byte(out), &m) != nil {
			t.Fatalf("pushreg %v = %q, %q, %v", args, out, errOut, err)
		}
		return m
	}
	app := cliJSON("apps", "create", "--name", "backend", "--scopes", "push:send")
	user := cliJSON("users", "create", "--user", "alice", "--user-password", "alice-password")
	post := func(path, body string, auth func(*http.Request)) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", s.url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if auth != nil {
			auth(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("/v1/auth/login", `{"username": "alice", "password": "alice-password", "device_id": "pixel-7", "fcm_token": "alice-pixel-7:APA91bExample", "platform": "android"}`, nil); code != http.StatusOK {
		t.Fatalf("login = %d %s", code, body)
	}
	code, body := post("/v1/users/"+user["id"].(string)+"/messages", `{"notification": {"title": "Hello", "body": "from pushreg"}}`,
		func(r *http.Request) { r.SetBasicAuth(app["app_id"].(string), app["app_secret"].(string)) })
	if code != http.StatusOK || !strings.Contains(body, `"sent":1`) {
		t.Fatalf("push = %d %s, want 200 with one sent", code, body)
	}
	resp, err := http.Get(fcm.URL() + "/messages")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Messages []struct {
			ValidateOnly bool `json:"validate_only"`
			Message      struct {
				Notification map[string]string `json:"notification"`
			} `json:"message"`
		} `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Messages) == 0 {
		t.Fatalf("GET /messages: %v, %d messages", err, len(list.Messages))
	}
	if m := list.Messages[0]; m.ValidateOnly || m.Message.Notification["title"] != "Hello" {
		t.Errorf("newest message at the double = %+v, want the push titled Hello", m)
	}
}
