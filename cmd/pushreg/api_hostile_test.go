package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// hostileRoutes are every route that takes a body or an ID, with headers
// that get a request past authentication where the route needs it.
func hostileRoutes(a *api, kecakToken, access string) []struct {
	method, path string
	header       map[string]string
} {
	own := "http://" + a.host
	return []struct {
		method, path string
		header       map[string]string
	}{
		{"POST", "/v1/auth/login", nil},
		{"POST", "/v1/auth/token", nil},
		{"POST", "/v1/auth/revoke", nil},
		{"POST", "/v1/admin/users", bearer(a.admin())},
		{"PATCH", "/v1/admin/users/x", bearer(a.admin())},
		{"POST", "/v1/admin/apps", bearer(a.admin())},
		{"POST", kecakLogin, map[string]string{"Authorization": basic("victim", "victim-password"), "Referer": own}},
		{"PUT", kecakRefresh, map[string]string{"Authorization": kecakToken, "Referer": own}},
		{"POST", "/auth/token", nil},
		{"POST", "/auth/refresh_token", map[string]string{"Refresh-Token": "x"}},
		{"POST", "/v1/auth", nil},
		{"POST", "/v1/refreshToken", nil},
		{"POST", "/api/v1/login", nil},
		{"POST", "/api/v1/refresh", nil},
		{"POST", "/oauth/login/thirdpart", nil},
		{"POST", "/oauth/login/thirdpart/refresh", nil},
	}
}

func TestHostileRequestsChangeNothing(t *testing.T) {
	t.Parallel()
	a := newAPI(t, map[string]string{"PUSHREG_LOGIN_RATE_LIMIT": "100000"})
	victim := a.createUser(map[string]any{"username": "victim", "password": "victim-password"})
	kecakToken := a.kecakSignIn("victim", "victim-password", "victim-phone", "fcm:victim")
	access := a.login("victim", "victim-password", nil)["access_token"].(string)
	before := snapshot(t, a)

	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	payloads := []struct {
		name        string
		contentType string
		body        string
		want        int // 0: any 4xx
	}{
		{"malformed JSON", "application/json", `{"username":`, 0},
		{"truncated JSON", "application/json", `{"username":"victim","password":"vic`, 0},
		{"not an object", "application/json", `["victim"]`, 0},
		{"wrong content type", "text/plain", `{"username":"victim"}`, 0},
		{"no content type", "", `{"username":"victim"}`, 0},
		{"over the body limit", "application/json", `{"username":"` + strings.Repeat("a", 2<<20) + `"}`, http.StatusRequestEntityTooLarge},
		{"deeply nested", "application/json", deep, 0},
		{"NUL and invalid UTF-8", "application/json", "{\"username\":\"vic\\u0000tim\",\"device_id\":\"a\xff\xfeb\",\"fcm_token\":\"t\",\"password\":\"x\"}", 0},
		{"operator injection", "application/json", `{"username":{"$gt":""},"email":{"$ne":null},"password":{"$gt":""},"device_id":{"$gt":""},"fcm_token":"t","refresh_token":{"$gt":""},"refreshToken":{"$gt":""},"token":{"$gt":""}}`, 0},
		{"form injection", "application/x-www-form-urlencoded", `username[$gt]=&password[$gt]=&grant_type=refresh_token&refresh_token[$ne]=x`, 0},
	}
	for _, route := range hostileRoutes(a, kecakToken, access) {
		for _, p := range payloads {
			t.Run(route.method+" "+route.path+" "+p.name, func(t *testing.T) {
				header := map[string]string{"Content-Type": p.contentType}
				for k, v := range route.header {
					header[k] = v
				}
				r := a.send(t, request{method: route.method, path: route.path, header: header, body: p.body})
				if r.status < 400 || r.status >= 500 || (p.want != 0 && r.status != p.want) {
					t.Fatalf("= %d %s, want a 4xx%s", r.status, r.body, map[bool]string{true: " " + http.StatusText(p.want)}[p.want != 0])
				}
				if len(strings.TrimSpace(string(r.body))) < 2 {
					t.Errorf("empty error body")
				}
			})
		}
	}

	t.Run("path traversal in IDs", func(t *testing.T) {
		for _, path := range []string{
			"/v1/admin/users/..%2F..%2Fetc%2Fpasswd/devices",
			"/v1/admin/users/" + victim + "%2F..%2Fx/devices",
			"/v1/admin/users/%00/events",
		} {
			r := a.send(t, request{method: "GET", path: path, header: bearer(a.admin())})
			if r.status != http.StatusNotFound && r.status != http.StatusBadRequest {
				t.Errorf("GET %s = %d %s, want 404 or 400", path, r.status, r.body)
			}
		}
		r := a.send(t, request{method: "DELETE", path: "/v1/me/devices/..%2Fvictim-phone", header: bearer(access)})
		if r.status != http.StatusNotFound {
			t.Errorf("DELETE a traversing device ID = %d, want 404", r.status)
		}
	})

	t.Run("oversized headers", func(t *testing.T) {
		r := a.send(t, request{method: "GET", path: "/v1/me/devices", header: map[string]string{"Authorization": "Bearer " + strings.Repeat("x", 2<<20)}})
		if r.status != http.StatusRequestHeaderFieldsTooLarge && r.status != http.StatusUnauthorized {
			t.Errorf("= %d, want 431 (or 401)", r.status)
		}
	})

	if after := snapshot(t, a); after != before {
		t.Errorf("hostile requests changed the store:\nbefore %s\nafter  %s", before, after)
	}

	t.Run("another user's device", func(t *testing.T) {
		a.createUser(map[string]any{"username": "mallory", "password": "mallory-password"})
		mallory := a.login("mallory", "mallory-password", nil)["access_token"].(string)
		a.must(http.StatusNotFound, request{method: "DELETE", path: "/v1/me/devices/victim-phone", header: bearer(mallory)})
		a.must(http.StatusForbidden, request{method: "GET", path: "/v1/admin/users/" + victim + "/devices", header: bearer(mallory)})
		if d := a.device(victim, "victim-phone"); d == nil || d["fcm_token"] != "fcm:victim" {
			t.Errorf("victim's device = %v, want it untouched", d)
		}
	})

	t.Run("expired Kecak token", func(t *testing.T) {
		a.clock.Advance(a.cfg.KecakTokenTTL + time.Hour)
		r := a.kecakRefresh(kecakToken, "victim-phone", "fcm:victim")
		if r.status != http.StatusUnauthorized {
			t.Errorf("= %d %s, want 401", r.status, r.body)
		}
	})
}
