package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// cliRun runs pushreg with args as main would, with env as its
// environment, and returns what it printed.
func cliRun(env map[string]string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), errOut.String(), err
}

// cliTable splits an aligned table into rows of cells named by the
// header. Cells are cut at the header's column starts, so a row out of
// alignment fails here.
func cliTable(t *testing.T, out string) []map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header := lines[0]
	var starts []int
	for i := range header {
		// Columns are two or more spaces apart; names may hold one space.
		if header[i] != ' ' && (i == 0 || i >= 2 && header[i-2:i] == "  ") {
			starts = append(starts, i)
		}
	}
	cell := func(line string, c int) string {
		end := len(line)
		if c+1 < len(starts) {
			end = min(starts[c+1], len(line))
		}
		if starts[c] >= len(line) {
			return ""
		}
		return strings.TrimSpace(line[starts[c]:end])
	}
	var rows []map[string]string
	for _, line := range lines[1:] {
		row := map[string]string{}
		for c, s := range starts {
			if s >= len(line) || line[s] == ' ' || s > 0 && line[s-1] != ' ' {
				t.Fatalf("row %q is not aligned with header %q", line, header)
			}
			row[cell(header, c)] = cell(line, c)
		}
		rows = append(rows, row)
	}
	return rows
}

// cliColumn is one column of a table's rows.
func cliColumn(rows []map[string]string, name string) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r[name])
	}
	return out
}

func TestCLI(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	conn := []string{"--url", a.url, "--token", a.admin()}
	cli := func(args ...string) (string, string) {
		t.Helper()
		out, errOut, err := cliRun(nil, append(args, conn...)...)
		if err != nil {
			t.Fatalf("pushreg %s: %v (stderr %q)", strings.Join(args, " "), err, errOut)
		}
		return out, errOut
	}
	jsonOf := func(out string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("--json printed %q: %v", out, err)
		}
		return m
	}

	t.Run("users create", func(t *testing.T) {
		out, _ := cli("users", "create", "--user", "alice", "--user-password", "alice-password", "--email", "alice@example.com")
		rows := cliTable(t, out)
		if len(rows) != 1 || rows[0]["USERNAME"] != "alice" || rows[0]["EMAIL"] != "alice@example.com" || rows[0]["ROLES"] != "user" || rows[0]["LAST LOGIN"] != "-" {
			t.Errorf("users create printed %q", out)
		}
		out, _ = cli("users", "create", "--user", "albert", "--user-password", "albert-password", "--roles", "user, admin", "--json")
		u := jsonOf(out)
		if u["username"] != "albert" || u["id"] == "" || strings.Contains(out, "password") {
			t.Errorf("users create --json printed %s", out)
		}
		cli("users", "create", "--user", "bob", "--user-password", "bob-password")
	})

	t.Run("users list", func(t *testing.T) {
		out, errOut := cli("users", "list")
		rows := cliTable(t, out)
		if got := strings.Join(cliColumn(rows, "USERNAME"), " "); got != "albert alice bob root" {
			t.Errorf("users list USERNAME column = %q, from %q", got, out)
		}
		if rows[0]["ROLES"] != "user,admin" || rows[0]["DISABLED"] != "false" || len(rows[0]["ID"]) < 8 {
			t.Errorf("albert's row = %v", rows[0])
		}
		if errOut != "" {
			t.Errorf("stderr = %q with nothing more to list", errOut)
		}
		out, errOut = cli("users", "list", "--prefix", "AL", "--limit", "1")
		if got := cliColumn(cliTable(t, out), "USERNAME"); len(got) != 1 || got[0] != "albert" || !strings.Contains(errOut, "--cursor") {
			t.Errorf("a first page of one printed %q, stderr %q", out, errOut)
		}
		out, _ = cli("users", "list", "--prefix", "al", "--limit", "1", "--all")
		if got := strings.Join(cliColumn(cliTable(t, out), "USERNAME"), " "); got != "albert alice" {
			t.Errorf("--all USERNAME column = %q", got)
		}
		out, _ = cli("users", "list", "--json", "--limit", "2")
		list := jsonOf(out)
		if users, _ := list["users"].([]any); len(users) != 2 || list["next_cursor"] == "" {
			t.Errorf("users list --json = %s", out)
		}
	})

	alice := a.login("alice", "alice-password", map[string]string{"device_id": "phone", "fcm_token": "alice:phone", "platform": "android"})
	a.clock.Advance(time.Minute)
	a.login("alice", "alice-password", map[string]string{"device_id": "tablet", "fcm_token": "alice:tablet", "platform": "ios"})

	t.Run("devices list", func(t *testing.T) {
		out, _ := cli("devices", "list", "--user", "alice")
		rows := cliTable(t, out)
		if got := strings.Join(cliColumn(rows, "DEVICE"), " "); got != "tablet phone" {
			t.Fatalf("DEVICE column = %q, from %q", got, out)
		}
		if r := rows[1]; r["PLATFORM"] != "android" || r["STATUS"] != "valid" || r["SESSION"] != alice["session_id"] || r["LAST SEEN"] != "2026-11-23T08:00:00Z" {
			t.Errorf("phone's row = %v", r)
		}
		if strings.Contains(out, "alice:phone") {
			t.Error("the table shows FCM tokens")
		}
		out, _ = cli("devices", "list", "--user", "ALICE", "--platform", "android", "--json")
		devs, _ := jsonOf(out)["devices"].([]any)
		if len(devs) != 1 || devs[0].(map[string]any)["fcm_token"] != "alice:phone" {
			t.Errorf("devices list --platform android --json = %s", out)
		}
		out, _ = cli("devices", "list", "--user", "bob", "--json")
		if devs, ok := jsonOf(out)["devices"].([]any); !ok || len(devs) != 0 {
			t.Errorf("bob's devices --json = %s, want an empty list", out)
		}
		out, _ = cli("devices", "list", "--user", "bob")
		if rows := cliTable(t, out); len(rows) != 0 {
			t.Errorf("bob's devices = %q, want the header alone", out)
		}
	})

	t.Run("devices revoke", func(t *testing.T) {
		out, _ := cli("devices", "revoke", "--user", "alice", "--device", "phone")
		if out != "removed device phone of alice and revoked its session\n" {
			t.Errorf("devices revoke printed %q", out)
		}
		a.admWantInvalidGrant(alice["refresh_token"].(string), "after devices revoke")
		out, _ = cli("devices", "list", "--user", "alice")
		if got := strings.Join(cliColumn(cliTable(t, out), "DEVICE"), " "); got != "tablet" {
			t.Errorf("devices after revoking phone = %q", got)
		}
	})

	t.Run("sessions revoke", func(t *testing.T) {
		out, _ := cli("sessions", "revoke", "--user", "alice")
		if out != "revoked 1 session of alice; their devices' tokens are unbound\n" {
			t.Errorf("sessions revoke printed %q", out)
		}
		out, _ = cli("devices", "list", "--user", "alice", "--status", "unbound")
		if got := strings.Join(cliColumn(cliTable(t, out), "DEVICE"), " "); got != "tablet" {
			t.Errorf("unbound devices after sessions revoke = %q", got)
		}
		out, _ = cli("sessions", "revoke", "--user", "alice", "--json")
		if m := jsonOf(out); m["revoked"] != float64(0) || m["username"] != "alice" {
			t.Errorf("sessions revoke --json = %s", out)
		}
	})

	t.Run("apps create", func(t *testing.T) {
		out, errOut := cli("apps", "create", "--name", "backend", "--scopes", "push:send,devices:read")
		rows := cliTable(t, out)
		if len(rows) != 1 || rows[0]["NAME"] != "backend" || rows[0]["SCOPES"] != "push:send,devices:read" || !strings.Contains(errOut, "not shown again") {
			t.Fatalf("apps create printed %q, stderr %q", out, errOut)
		}
		// The printed credentials work on a read-only admin route.
		a.must(http.StatusOK, request{method: "GET", path: "/v1/admin/users", header: map[string]string{"Authorization": basic(rows[0]["APP ID"], rows[0]["SECRET"])}})
		out, _ = cli("apps", "create", "--name", "reader", "--scopes", "devices:read", "--json")
		app := jsonOf(out)
		if app["app_id"] == "" || app["app_secret"] == "" || app["name"] != "reader" {
			t.Errorf("apps create --json = %s", out)
		}
	})

	t.Run("logs in with a username and password", func(t *testing.T) {
		live := func() int64 {
			n, err := a.db.Collection("sessions").CountDocuments(context.Background(), bson.M{"username": adminName, "revoked": false})
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		before := live()
		env := map[string]string{"PUSHREG_URL": a.url, "PUSHREG_ADMIN_USERNAME": adminName, "PUSHREG_ADMIN_PASSWORD": adminPass}
		out, errOut, err := cliRun(env, "users", "list", "--prefix", "bob")
		if err != nil || len(cliTable(t, out)) != 1 {
			t.Fatalf("users list with PUSHREG_ADMIN_* = %q, %q, %v", out, errOut, err)
		}
		if after := live(); after != before {
			t.Errorf("%d live admin sessions after the command, want %d: the CLI's own session should end", after, before)
		}
	})

	userTok := a.login("bob", "bob-password", nil)["access_token"].(string)
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"unknown user", nil, append([]string{"devices", "list", "--user", "nobody"}, conn...), `devices list: user "nobody" not found`},
		{"unknown user, revoke", nil, append([]string{"sessions", "revoke", "--user", "nobody"}, conn...), `sessions revoke: user "nobody" not found`},
		{"unknown device", nil, append([]string{"devices", "revoke", "--user", "alice", "--device", "phone"}, conn...), `user alice has no device "phone"`},
		{"not an admin", nil, []string{"users", "list", "--url", a.url, "--token", userTok}, "users list: this route needs the admin role (HTTP 403)"},
		{"wrong password", nil, []string{"users", "list", "--url", a.url, "--username", adminName, "--password", "wrong-password"}, "users list: log in as root: wrong username or password (HTTP 401)"},
		{"no credentials", nil, []string{"users", "list", "--url", a.url}, "users list: no credentials"},
		{"server's validation", nil, append([]string{"users", "create", "--user", "bad name", "--user-password", "long-enough"}, conn...), "users create: username: must be"},
		{"bad status", nil, append([]string{"devices", "list", "--user", "alice", "--status", "vaild"}, conn...), "status: must be valid, unverified"},
		{"bad scope", nil, append([]string{"apps", "create", "--name", "x", "--scopes", "everything"}, conn...), `unknown scope "everything"`},
		{"missing flag", nil, append([]string{"devices", "revoke", "--user", "alice"}, conn...), "devices revoke: --device is required"},
		{"unknown flag", nil, append([]string{"users", "list", "--colour"}, conn...), "flag provided but not defined: -colour"},
		{"unknown command", nil, []string{"users", "delete"}, `users: unknown command "delete" (create, list)`},
		{"no command", nil, []string{"apps"}, "apps: a command is required"},
		{"unreachable", map[string]string{"PUSHREG_URL": "http://127.0.0.1:1", "PUSHREG_TOKEN": "x"}, []string{"users", "list"}, "cannot reach pushreg at http://127.0.0.1:1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := cliRun(tt.env, tt.args...)
			if err == nil {
				t.Fatalf("pushreg %v succeeded, printing %q", tt.args, out)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, tt.want) {
				t.Errorf("error = %q, want one line containing %q", msg, tt.want)
			}
			if out != "" {
				t.Errorf("stdout = %q on failure", out)
			}
		})
	}

	t.Run("help", func(t *testing.T) {
		for _, args := range [][]string{{"devices", "-h"}, {"devices", "list", "-h"}} {
			out, _, err := cliRun(map[string]string{"PUSHREG_TOKEN": "secret-token-value"}, args...)
			if err != nil || !strings.Contains(out, "pushreg devices list") || strings.Contains(out, "secret-token-value") {
				t.Errorf("pushreg %v = %q, %v", args, out, err)
			}
		}
	})
}

func TestCLIImport(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	file := filepath.Join(t.TempDir(), "users.ndjson")
	body := `{"username": "nia", "devices": [{"device_id": "p1", "fcm_token": "nia:phone"}]}` + "\n" +
		`{"username": "no good"}` + "\n" +
		`{"username": "oli", "email": "oli@example.com"}` // no final newline
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
	}{
		{"file then flags", []string{"import", file, "--url", a.url, "--token", a.admin()}},
		{"flags then file", []string{"import", "--url", a.url, "--token", a.admin(), file}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := cliRun(nil, tt.args...)
			if err == nil || !strings.Contains(err.Error(), "1 lines were not imported") {
				t.Errorf("error = %v, want one line not imported", err)
			}
			created, updated := 2, 0
			if i > 0 {
				created, updated = 0, 2 // the second run updates the first's users
			}
			if want := fmt.Sprintf("%d users created, %d updated, 1 devices bound, 1 line errors", created, updated); !strings.HasPrefix(out, want) {
				t.Errorf("stdout = %q, want it to start with %q", out, want)
			}
			rows := cliTable(t, out[strings.Index(out, "LINE"):])
			if len(rows) != 1 || rows[0]["LINE"] != "2" || !strings.HasPrefix(rows[0]["ERROR"], "username:") {
				t.Errorf("error rows = %v", rows)
			}
			size := fmt.Sprintf("%.1f MiB", float64(len(body))/(1<<20))
			if !strings.Contains(errOut, size+" of "+size+" sent, 3 lines\n") {
				t.Errorf("stderr = %q, want the progress of 3 lines", errOut)
			}
		})
	}
	for _, args := range [][]string{{"import"}, {"import", file, file}} {
		if _, _, err := cliRun(nil, append(args, "--url", a.url, "--token", a.admin())...); err == nil {
			t.Errorf("pushreg %v: no error", args)
		}
	}
}
