package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry"
	"github.com/pushreg/pushreg/registry/mongotest"
)

// The admin API's wire shapes, as a client decodes them.
type (
	admDevice struct {
		DeviceID         string     `json:"device_id"`
		Platform         string     `json:"platform"`
		FCMToken         string     `json:"fcm_token"`
		TokenStatus      string     `json:"token_status"`
		TokenValidatedAt *time.Time `json:"token_validated_at"`
		TokenUpdatedAt   time.Time  `json:"token_updated_at"`
		LastSeenAt       time.Time  `json:"last_seen_at"`
		CreatedAt        time.Time  `json:"created_at"`
		SessionID        string     `json:"session_id"`
	}
	admDevicePage struct {
		Devices    []admDevice `json:"devices"`
		NextCursor string      `json:"next_cursor"`
	}
	admUserPage struct {
		Users []struct {
			ID       string `json:"id"`
			Username string `json:"username"`
		} `json:"users"`
		NextCursor string `json:"next_cursor"`
	}
	admEvent struct {
		ID        string    `json:"id"`
		Type      string    `json:"type"`
		Actor     string    `json:"actor"`
		DeviceID  string    `json:"device_id"`
		SessionID string    `json:"session_id"`
		Outcome   string    `json:"outcome"`
		At        time.Time `json:"at"`
	}
	admEventPage struct {
		Events     []admEvent `json:"events"`
		NextCursor string     `json:"next_cursor"`
	}
)

// admGet GETs path as the admin and decodes the 200 answer into a T.
func admGet[T any](a *api, path string) T {
	a.t.Helper()
	var out T
	r := a.must(http.StatusOK, request{method: "GET", path: path, header: bearer(a.admin())})
	if err := json.Unmarshal(r.body, &out); err != nil {
		a.t.Fatalf("GET %s: %v: %s", path, err, r.body)
	}
	return out
}

// admJSON decodes a JSON object body (the harness's api.t may be any
// testing.TB).
func admJSON(tb testing.TB, r response) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		tb.Fatalf("response %d is not a JSON object: %v: %s", r.status, err, r.body)
	}
	return m
}

// admApp creates an app holding scopes and returns its ID and its HTTP
// Basic Authorization header.
func (a *api) admApp(scopes ...string) (string, map[string]string) {
	a.t.Helper()
	r := a.must(http.StatusCreated, request{method: "POST", path: "/v1/admin/apps", header: bearer(a.admin()),
		body: map[string]any{"name": "app " + strings.Join(scopes, " "), "scopes": scopes}})
	m := admJSON(a.t, r)
	id := m["app_id"].(string)
	return id, map[string]string{"Authorization": basic(id, m["app_secret"].(string))}
}

// admAppToken trades an app's Basic credentials for a client-credentials
// access token.
func (a *api) admAppToken(creds map[string]string) string {
	a.t.Helper()
	r := a.must(http.StatusOK, request{method: "POST", path: "/v1/auth/token", header: creds,
		body: url.Values{"grant_type": {"client_credentials"}}})
	return admJSON(a.t, r)["access_token"].(string)
}

// admDeviceIDs is every device of the user, newest seen first.
func (a *api) admDeviceIDs(userID, query string) []string {
	a.t.Helper()
	var ids []string
	for _, d := range admGet[admDevicePage](a, "/v1/admin/users/"+userID+"/devices?limit=200&"+query).Devices {
		ids = append(ids, d.DeviceID)
	}
	return ids
}

// admWantInvalidGrant checks that a refresh token no longer works.
func (a *api) admWantInvalidGrant(rt, what string) {
	a.t.Helper()
	r := a.refresh(rt, nil)
	if r.status != http.StatusBadRequest || admJSON(a.t, r)["error"] != "invalid_grant" {
		a.t.Errorf("refresh %s = %d %s, want 400 invalid_grant", what, r.status, r.body)
	}
}

func TestAdminRoutesAuthorization(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	uid := a.createUser(map[string]any{"username": "uma", "password": "uma-password"})
	userTok := a.login("uma", "uma-password", map[string]string{"device_id": "phone", "fcm_token": "uma:phone"})["access_token"].(string)
	a.login("uma", "uma-password", nil) // a second session, without a device
	_, reader := a.admApp("devices:read")
	_, pusher := a.admApp("push:send")
	readerTok := bearer(a.admAppToken(reader))
	victimApp, _ := a.admApp("push:send")

	routes := []struct {
		method, path string
		body         any
		readOnly     bool
		want         int
	}{
		{"GET", "/v1/admin/users", nil, true, http.StatusOK},
		{"GET", "/v1/admin/users?prefix=u&limit=10", nil, true, http.StatusOK},
		{"GET", "/v1/admin/users?username=uma", nil, true, http.StatusOK},
		{"GET", "/v1/admin/users/" + uid, nil, true, http.StatusOK},
		{"GET", "/v1/admin/users/" + uid + "/devices", nil, true, http.StatusOK},
		{"GET", "/v1/admin/users/" + uid + "/events", nil, true, http.StatusOK},
		{"POST", "/v1/admin/users", map[string]any{"username": "victor", "password": "victor-password"}, false, http.StatusCreated},
		{"PATCH", "/v1/admin/users/" + uid, map[string]any{"nickname": "Uma"}, false, http.StatusOK},
		{"DELETE", "/v1/admin/users/" + uid + "/devices/phone", nil, false, http.StatusNoContent},
		{"DELETE", "/v1/admin/users/" + uid + "/sessions", nil, false, http.StatusOK},
		{"POST", "/v1/admin/apps", map[string]any{"name": "new", "scopes": []string{"push:send"}}, false, http.StatusCreated},
		{"DELETE", "/v1/admin/apps/" + victimApp, nil, false, http.StatusNoContent},
	}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			call := func(who string, header map[string]string, want int) response {
				t.Helper()
				r := a.do(request{method: rt.method, path: rt.path, header: header, body: rt.body})
				if r.status != want {
					t.Fatalf("as %s = %d %s, want %d", who, r.status, r.body, want)
				}
				if want >= 400 {
					if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
						t.Errorf("as %s: Content-Type %q, want application/problem+json", who, ct)
					}
					if r.json(t)["detail"] == "" {
						t.Errorf("as %s: problem without detail: %s", who, r.body)
					}
				}
				return r
			}
			call("nobody", nil, http.StatusUnauthorized)
			call("a plain user", bearer(userTok), http.StatusForbidden)
			call("an app without devices:read", pusher, http.StatusForbidden)
			readerWant := http.StatusForbidden
			if rt.readOnly {
				readerWant = rt.want
			}
			call("an app with devices:read (Basic)", reader, readerWant)
			call("an app with devices:read (client-credentials token)", readerTok, readerWant)
			// The refusals changed nothing: the admin's call still has its
			// effect (a second DELETE of the device would answer 404).
			r := call("the admin", bearer(a.admin()), rt.want)
			if rt.path == "/v1/admin/users/"+uid+"/sessions" {
				if got := r.json(t)["revoked"]; got != float64(1) {
					t.Errorf("revoked = %v, want 1 (the device's session went with the device)", got)
				}
			}
		})
	}

	for _, path := range []string{"/v1/admin/users/nobody", "/v1/admin/users/nobody/devices", "/v1/admin/users/nobody/events", "/v1/admin/users?username=nobody"} {
		a.must(http.StatusNotFound, request{method: "GET", path: path, header: bearer(a.admin())})
		a.must(http.StatusNotFound, request{method: "GET", path: path, header: reader})
	}
	for _, path := range []string{"/v1/admin/users/nobody/devices/phone", "/v1/admin/users/nobody/sessions", "/v1/admin/users/" + uid + "/devices/phone"} {
		a.must(http.StatusNotFound, request{method: "DELETE", path: path, header: bearer(a.admin())})
	}
}

func TestAdminDevicesPaginationStableUnderInserts(t *testing.T) {
	t.Parallel()
	// With the clock still, every device is seen at the same instant and
	// only the _id tie-break orders them.
	for _, step := range []time.Duration{time.Minute, 0} {
		t.Run(fmt.Sprintf("devices seen %s apart", step), func(t *testing.T) {
			t.Parallel()
			a := newAPI(t, nil)
			id := a.createUser(map[string]any{"username": "walt", "password": "walt-password"})
			bind := func(device string) {
				a.login("walt", "walt-password", map[string]string{"device_id": device, "fcm_token": "walt:" + device})
				a.clock.Advance(step)
			}
			var original []string
			for i := range 7 {
				original = append(original, fmt.Sprintf("orig-%d", i))
				bind(original[i])
			}

			seen := map[string]int{}
			var prev *admDevice
			cursor, added := "", 0
			for page := 0; ; page++ {
				if page > 20 {
					t.Fatal("pagination does not end")
				}
				p := admGet[admDevicePage](a, "/v1/admin/users/"+id+"/devices?limit=3&cursor="+url.QueryEscape(cursor))
				if len(p.Devices) > 3 {
					t.Fatalf("page %d has %d devices, limit 3", page, len(p.Devices))
				}
				for _, d := range p.Devices {
					seen[d.DeviceID]++
					// The walk is strictly descending in (last_seen_at, _id),
					// whatever was inserted meanwhile.
					if prev != nil && (d.LastSeenAt.After(prev.LastSeenAt) || d.LastSeenAt.Equal(prev.LastSeenAt) && d.DeviceID >= prev.DeviceID) {
						t.Errorf("page %d: %s (seen %s) after %s (seen %s): not newest seen first", page, d.DeviceID, d.LastSeenAt, prev.DeviceID, prev.LastSeenAt)
					}
					prev = &d
				}
				if p.NextCursor == "" {
					break
				}
				cursor = p.NextCursor
				for range 2 { // new devices appear between pages
					bind(fmt.Sprintf("new-%d", added))
					added++
				}
			}
			for _, dev := range original {
				if seen[dev] != 1 {
					t.Errorf("original device %s listed %d times, want once", dev, seen[dev])
				}
			}
			for dev, n := range seen {
				if n != 1 {
					t.Errorf("%s listed %d times", dev, n)
				}
			}
			if added < 4 {
				t.Errorf("only %d devices were inserted between pages", added)
			}
			// Seen after the originals, the new devices lead a fresh listing.
			all := a.admDeviceIDs(id, "")
			if len(all) != 7+added {
				t.Errorf("%d devices listed, want %d", len(all), 7+added)
			}
			if step > 0 && !strings.HasPrefix(all[0], "new-") {
				t.Errorf("newest seen device = %s, want a new one", all[0])
			}
		})
	}
}

func TestAdminDevicesFilters(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "xena", "password": "xena-password"})
	sessions := map[string]map[string]any{}
	bind := func(device, platform string) {
		sessions[device] = a.login("xena", "xena-password", map[string]string{"device_id": device, "fcm_token": "xena:" + device, "platform": platform})
		a.clock.Advance(time.Minute)
	}
	bind("a1", "android")
	bind("i1", "ios")
	bind("a2", "android")
	bind("w1", "web")
	a.fcm.SetDown(true) // Firebase cannot tell: bound as unverified
	bind("a3", "android")
	a.fcm.SetDown(false)
	a.must(http.StatusNoContent, request{method: "POST", path: "/v1/auth/logout", header: bearer(sessions["i1"]["access_token"].(string))})

	for _, tt := range []struct {
		query string
		want  []string
	}{
		{"", []string{"a3", "w1", "a2", "i1", "a1"}},
		{"platform=android", []string{"a3", "a2", "a1"}},
		{"platform=android&status=valid", []string{"a2", "a1"}},
		{"status=unverified", []string{"a3"}},
		{"status=unbound", []string{"i1"}},
		{"status=valid", []string{"w1", "a2", "a1"}},
		{"platform=ios&status=valid", nil},
		{"status=stale", nil},
	} {
		if got := a.admDeviceIDs(id, tt.query); !slices.Equal(got, tt.want) {
			t.Errorf("?%s lists %v, want %v", tt.query, got, tt.want)
		}
	}

	// A filtered listing pages like any other.
	p := admGet[admDevicePage](a, "/v1/admin/users/"+id+"/devices?platform=android&limit=2")
	if len(p.Devices) != 2 || p.NextCursor == "" {
		t.Fatalf("first page of android devices = %+v, want 2 and a cursor", p)
	}
	p = admGet[admDevicePage](a, "/v1/admin/users/"+id+"/devices?platform=android&limit=2&cursor="+url.QueryEscape(p.NextCursor))
	if len(p.Devices) != 1 || p.Devices[0].DeviceID != "a1" || p.NextCursor != "" {
		t.Errorf("second page of android devices = %+v, want a1 alone and no cursor", p)
	}

	// The wire shape of one device.
	for _, d := range admGet[admDevicePage](a, "/v1/admin/users/"+id+"/devices").Devices {
		switch d.DeviceID {
		case "a2":
			if d.Platform != "android" || d.FCMToken != "xena:a2" || d.TokenStatus != "valid" || d.TokenValidatedAt == nil ||
				d.SessionID != sessions["a2"]["session_id"] || d.LastSeenAt.IsZero() || d.CreatedAt.IsZero() || d.TokenUpdatedAt.IsZero() {
				t.Errorf("a2 = %+v", d)
			}
		case "a3":
			if d.TokenStatus != "unverified" || d.TokenValidatedAt != nil {
				t.Errorf("a3 = %+v, want unverified, never validated", d)
			}
		case "i1":
			if d.TokenStatus != "unbound" || d.FCMToken != "" {
				t.Errorf("i1 after logout = %+v, want unbound without a token", d)
			}
		}
	}

	for _, q := range []string{"status=vaild", "platform=blackberry", "limit=0", "limit=201", "limit=ten", "cursor=not-a-cursor", "cursor=" + url.QueryEscape(p.NextCursor+"x")} {
		r := a.do(request{method: "GET", path: "/v1/admin/users/" + id + "/devices?" + q, header: bearer(a.admin())})
		if r.status != http.StatusBadRequest {
			t.Errorf("?%s = %d %s, want 400", q, r.status, r.body)
		}
	}
}

func TestAdminUsersListPaginationAndPrefix(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	names := []string{"al", "Alan", "albert", "alfred", "alice", "bob", "carol", "dave"}
	for _, n := range names {
		a.createUser(map[string]any{"username": n, "password": n + "-password"})
	}
	// walk lists every page, creating a user after each of the first two.
	walk := func(query string, insert ...string) []string {
		t.Helper()
		var got []string
		cursor := ""
		for page := 0; ; page++ {
			if page > 20 {
				t.Fatal("pagination does not end")
			}
			p := admGet[admUserPage](a, "/v1/admin/users?limit=2&"+query+"&cursor="+url.QueryEscape(cursor))
			if len(p.Users) > 2 {
				t.Fatalf("page of %d users, limit 2", len(p.Users))
			}
			for _, u := range p.Users {
				got = append(got, u.Username)
			}
			if p.NextCursor == "" {
				return got
			}
			cursor = p.NextCursor
			if page < len(insert) {
				a.createUser(map[string]any{"username": insert[page], "password": "inserted-password"})
			}
		}
	}
	// aaron sorts before the cursor, so this walk never shows it; zoe after.
	all := walk("", "aaron", "zoe")
	want := []string{"al", "Alan", "albert", "alfred", "alice", "bob", "carol", "dave", "root", "zoe"}
	if !slices.Equal(all, want) {
		t.Errorf("all users = %v, want %v (in username order, case-insensitively)", all, want)
	}
	for _, tt := range []struct{ prefix, want string }{
		{"al", "al Alan albert alfred alice"},
		{"AL", "al Alan albert alfred alice"},
		{"alf", "alfred"},
		{"b", "bob"},
		{"x", ""},
	} {
		if got := strings.Join(walk("prefix="+url.QueryEscape(tt.prefix)), " "); got != tt.want {
			t.Errorf("prefix %q lists %q, want %q", tt.prefix, got, tt.want)
		}
	}
	// A cursor from the unfiltered walk, used with a prefix, stays inside it.
	p := admGet[admUserPage](a, "/v1/admin/users?prefix=al&cursor=alan")
	if got := len(p.Users); got != 3 || p.Users[0].Username != "albert" {
		t.Errorf("prefix al after alan = %+v, want albert alfred alice", p.Users)
	}

	found := admGet[admUserPage](a, "/v1/admin/users?username=ALICE")
	if len(found.Users) != 1 || found.Users[0].Username != "alice" || found.NextCursor != "" {
		t.Errorf("exact lookup = %+v, want alice alone", found)
	}
	if u := admGet[map[string]any](a, "/v1/admin/users/"+found.Users[0].ID); u["username"] != "alice" {
		t.Errorf("GET user = %v", u)
	}
	a.must(http.StatusBadRequest, request{method: "GET", path: "/v1/admin/users?limit=201", header: bearer(a.admin())})
}

func TestAdminRevokeDevice(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "yuri", "password": "yuri-password"})
	phone := a.login("yuri", "yuri-password", map[string]string{"device_id": "phone", "fcm_token": "yuri:phone"})
	tablet := a.login("yuri", "yuri-password", map[string]string{"device_id": "tablet", "fcm_token": "yuri:tablet"})

	a.must(http.StatusNoContent, request{method: "DELETE", path: "/v1/admin/users/" + id + "/devices/phone", header: bearer(a.admin())})

	a.admWantInvalidGrant(phone["refresh_token"].(string), "of the removed device's session")
	if r := a.refresh(tablet["refresh_token"].(string), nil); r.status != http.StatusOK {
		t.Errorf("refresh of the other device's session = %d %s, want 200", r.status, r.body)
	}
	if got := a.admDeviceIDs(id, ""); !slices.Equal(got, []string{"tablet"}) {
		t.Errorf("devices after revoking phone = %v, want [tablet]", got)
	}
	pushable, err := registry.New(a.db.Database, registry.Config{}).Pushable(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(pushable) != 1 || pushable[0].DeviceID != "tablet" {
		t.Errorf("pushable devices = %+v, want the tablet alone", pushable)
	}
	a.must(http.StatusNotFound, request{method: "DELETE", path: "/v1/admin/users/" + id + "/devices/phone", header: bearer(a.admin())})
	// The device belongs to yuri: another user's ID does not reach it.
	other := a.createUser(map[string]any{"username": "zack", "password": "zack-password"})
	a.must(http.StatusNotFound, request{method: "DELETE", path: "/v1/admin/users/" + other + "/devices/tablet", header: bearer(a.admin())})
	if got := a.admDeviceIDs(id, ""); !slices.Equal(got, []string{"tablet"}) {
		t.Errorf("devices = %v, want [tablet]", got)
	}
}

func TestAdminRevokeSessions(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "vera", "password": "vera-password"})
	var refresh []string
	for _, dev := range []string{"phone", "tablet", ""} {
		extra := map[string]string{"device_id": dev, "fcm_token": "vera:" + dev}
		if dev == "" {
			extra = nil
		}
		refresh = append(refresh, a.login("vera", "vera-password", extra)["refresh_token"].(string))
	}
	// A session that moved from one device to another: the first device
	// still holds its token, bound by that session.
	moved := a.login("vera", "vera-password", map[string]string{"device_id": "old-phone", "fcm_token": "vera:old-phone"})
	r := a.refresh(moved["refresh_token"].(string), url.Values{"device_id": {"new-phone"}, "fcm_token": {"vera:new-phone"}})
	if r.status != http.StatusOK {
		t.Fatalf("refresh moving to a new device = %d %s", r.status, r.body)
	}
	refresh = append(refresh, admJSON(t, r)["refresh_token"].(string))
	other := a.createUser(map[string]any{"username": "otto", "password": "otto-password"})
	otto := a.login("otto", "otto-password", map[string]string{"device_id": "phone", "fcm_token": "otto:phone"})

	r = a.must(http.StatusOK, request{method: "DELETE", path: "/v1/admin/users/" + id + "/sessions", header: bearer(a.admin())})
	if got := r.json(t)["revoked"]; got != float64(4) {
		t.Errorf("revoked = %v, want 4", got)
	}
	for i, rt := range refresh {
		a.admWantInvalidGrant(rt, fmt.Sprintf("of session %d after revoking every session", i))
	}
	devs := admGet[admDevicePage](a, "/v1/admin/users/"+id+"/devices").Devices
	if len(devs) != 4 {
		t.Fatalf("devices = %+v, want all four still listed", devs)
	}
	for _, d := range devs {
		if d.TokenStatus != "unbound" || d.FCMToken != "" {
			t.Errorf("%s = %+v, want token_status unbound and no token", d.DeviceID, d)
		}
	}
	store := registry.New(a.db.Database, registry.Config{})
	if p, err := store.Pushable(context.Background(), id); err != nil || len(p) != 0 {
		t.Errorf("pushable devices = %+v (%v), want none", p, err)
	}
	// Another user's sessions and devices are untouched.
	if r := a.refresh(otto["refresh_token"].(string), nil); r.status != http.StatusOK {
		t.Errorf("otto's refresh = %d %s, want 200", r.status, r.body)
	}
	if p, err := store.Pushable(context.Background(), other); err != nil || len(p) != 1 {
		t.Errorf("otto's pushable devices = %+v (%v), want his phone", p, err)
	}
	r = a.must(http.StatusOK, request{method: "DELETE", path: "/v1/admin/users/" + id + "/sessions", header: bearer(a.admin())})
	if got := r.json(t)["revoked"]; got != float64(0) {
		t.Errorf("second revocation revoked %v, want 0", got)
	}
	// Logging in again works and binds again.
	a.login("vera", "vera-password", map[string]string{"device_id": "phone", "fcm_token": "vera:phone"})
	if p, _ := store.Pushable(context.Background(), id); len(p) != 1 {
		t.Errorf("pushable after a new login = %+v, want the phone", p)
	}
}

// isSubsequence reports whether want appears in got in order, with any
// other entries between.
func isSubsequence(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestAdminEventsAuditTrail(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "wendy", "password": "wendy-password"})
	bob := a.createUser(map[string]any{"username": "bobby", "password": "bobby-password"})
	secrets := []string{"wendy-password", "bobby-password", adminPass, a.admin()}
	keep := func(m map[string]any) map[string]any {
		for _, k := range []string{"access_token", "refresh_token"} {
			if s, ok := m[k].(string); ok {
				secrets = append(secrets, s)
			}
		}
		return m
	}

	// A login that binds a device, then a refresh that binds a new token.
	first := keep(a.login("wendy", "wendy-password", map[string]string{"device_id": "phone", "fcm_token": "wendy:phone-1"}))
	r := a.refresh(first["refresh_token"].(string), url.Values{"device_id": {"phone"}, "fcm_token": {"wendy:phone-2"}})
	if r.status != http.StatusOK {
		t.Fatalf("refresh binding a new token = %d %s", r.status, r.body)
	}
	keep(r.json(t))
	a.clock.Advance(time.Minute)
	// A second device, whose token then moves to another user.
	keep(a.login("wendy", "wendy-password", map[string]string{"device_id": "tablet", "fcm_token": "wendy:tablet"}))
	keep(a.login("bobby", "bobby-password", map[string]string{"device_id": "bob-tablet", "fcm_token": "wendy:tablet"}))
	// Firebase rejects the phone's token on a push: the token is pruned.
	if ok, err := registry.New(a.db.Database, registry.Config{Now: a.clock.Now}).MarkInvalid(context.Background(), id, "phone", "wendy:phone-2", "UNREGISTERED"); err != nil || !ok {
		t.Fatalf("prune = %v, %v", ok, err)
	}
	// The first, rotated refresh token comes back after the grace window
	// (its session's devices are unbound at once; the phone's token is
	// already gone).
	a.clock.Advance(a.cfg.RefreshReuseGrace + time.Second)
	a.admWantInvalidGrant(first["refresh_token"].(string), "with a retired token")
	// The plan shrinks to two devices; a third evicts the least recently seen.
	a.clock.Advance(time.Minute)
	a.must(http.StatusOK, request{method: "PATCH", path: "/v1/admin/users/" + id, header: bearer(a.admin()),
		body: map[string]any{"plan": map[string]any{"name": "small", "device_count": 2}}})
	keep(a.login("wendy", "wendy-password", map[string]string{"device_id": "watch", "fcm_token": "wendy:watch"}))
	// Admin revocations.
	a.must(http.StatusNoContent, request{method: "DELETE", path: "/v1/admin/users/" + id + "/devices/watch", header: bearer(a.admin())})
	a.must(http.StatusOK, request{method: "DELETE", path: "/v1/admin/users/" + id + "/sessions", header: bearer(a.admin())})

	full := a.must(http.StatusOK, request{method: "GET", path: "/v1/admin/users/" + id + "/events?limit=200", header: bearer(a.admin())})
	var all admEventPage
	if err := json.Unmarshal(full.body, &all); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range all.Events {
		types = append(types, e.Type)
	}
	slices.Reverse(types) // oldest first, as it happened
	want := []string{
		"admin_action",         // created
		"token_bound", "login", // phone
		"token_bound", "refresh", // phone's new token
		"token_bound", "login", // tablet
		"token_moved",                            // to bobby
		"token_pruned",                           // Firebase said unregistered
		"reuse_detected",                         // retired refresh token
		"admin_action",                           // plan changed
		"token_bound", "device_evicted", "login", // watch
		"session_revoked", "device_deleted", "admin_action", // admin removes the watch
		"session_revoked", "admin_action", // admin revokes every session
	}
	if !isSubsequence(types, want) {
		t.Errorf("events, oldest first:\n%v\nwant in this order:\n%v", types, want)
	}
	adminActor := ""
	for _, e := range all.Events {
		if e.ID == "" || e.At.IsZero() {
			t.Errorf("event %+v lacks an ID or a time", e)
		}
		switch e.Type {
		case "token_moved":
			if e.DeviceID != "tablet" || e.Actor != "user:"+bob {
				t.Errorf("token_moved = %+v, want wendy's tablet, moved by bobby", e)
			}
		case "reuse_detected":
			if e.SessionID != first["session_id"] {
				t.Errorf("reuse_detected = %+v, want session %v", e, first["session_id"])
			}
		case "token_pruned":
			if e.DeviceID != "phone" || e.Actor != "fcm" {
				t.Errorf("token_pruned = %+v", e)
			}
		case "device_evicted":
			if e.DeviceID != "phone" {
				t.Errorf("device_evicted = %+v, want the phone (least recently seen)", e)
			}
		case "admin_action":
			if adminActor == "" {
				adminActor = e.Actor
			}
			if !strings.HasPrefix(e.Actor, "user:") || e.Actor != adminActor {
				t.Errorf("admin_action by %q, want the admin user", e.Actor)
			}
		}
	}
	if !all.Events[0].At.Equal(a.clock.Now()) {
		t.Errorf("newest event at %s, want the service clock's %s", all.Events[0].At, a.clock.Now())
	}
	body := string(full.body)
	for _, s := range append(secrets, "wendy:phone-1", "wendy:phone-2", "wendy:tablet", "wendy:watch") {
		if strings.Contains(body, s) {
			t.Errorf("the audit trail holds a secret or token (%.12s…)", s)
		}
	}

	// Paged through, the trail is the same list: none twice, none missed,
	// even with new logins recorded between pages. Logins come from the
	// sessions and the rest from the events, merged, with many entries
	// sharing the clock's instant.
	for _, limit := range []int{1, 3, 4} {
		full := admGet[admEventPage](a, "/v1/admin/users/"+id+"/events?limit=200")
		var ids []string
		for _, e := range full.Events {
			ids = append(ids, e.ID)
		}
		var paged []string
		cursor := ""
		for page := 0; ; page++ {
			if page > 100 {
				t.Fatal("pagination does not end")
			}
			p := admGet[admEventPage](a, fmt.Sprintf("/v1/admin/users/%s/events?limit=%d&cursor=%s", id, limit, url.QueryEscape(cursor)))
			if len(p.Events) > limit {
				t.Fatalf("limit %d: a page of %d events", limit, len(p.Events))
			}
			for _, e := range p.Events {
				paged = append(paged, e.ID)
			}
			if p.NextCursor == "" {
				break
			}
			cursor = p.NextCursor
			a.login("wendy", "wendy-password", nil) // a newer entry, before the cursor
		}
		if !slices.Equal(paged, ids) {
			t.Errorf("limit %d: paged event IDs\n%v\nwant\n%v", limit, paged, ids)
		}
	}
	a.must(http.StatusBadRequest, request{method: "GET", path: "/v1/admin/users/" + id + "/events?cursor=zzz", header: bearer(a.admin())})
}

// A store written by an earlier version holds sessions without a place in
// the trail's order and a "login" event for each login. After an upgrade
// the trail lists each login once and pages through all of them, and the
// old events index is gone.
func TestAuditTrailAfterUpgradeFromEarlierData(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "olga", "password": "olga-password"})
	a.login("olga", "olga-password", nil)
	ctx := context.Background()
	now := a.clock.Now()
	for i := range 3 {
		sid := fmt.Sprintf("legacy-%d", i)
		if _, err := a.db.Collection("sessions").InsertOne(ctx, bson.M{"_id": sid, "user_id": id, "username": "olga",
			"style": "native", "device_id": "", "created_at": now, "revoked": true}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.db.Collection("events").InsertOne(ctx, bson.M{"_id": bson.NewObjectID(), "user_id": id,
			"type": "login", "actor": "user:" + id, "session_id": sid, "at": now}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.db.Collection("events").Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys: bson.D{{Key: "user_id", Value: 1}, {Key: "_id", Value: -1}}, Options: options.Index().SetName("user_newest")}); err != nil {
		t.Fatal(err)
	}

	b := startAPI(t, mongotest.URI(t), a.db, nil) // the upgraded version starts
	full := admGet[admEventPage](b, "/v1/admin/users/"+id+"/events?limit=200")
	logins := map[string]int{}
	var ids []string
	for _, e := range full.Events {
		ids = append(ids, e.ID)
		if e.Type == "login" {
			logins[e.SessionID]++
		}
	}
	if len(logins) != 4 {
		t.Errorf("logins in the trail: %v, want the 3 earlier sessions and the new one", logins)
	}
	for sid, n := range logins {
		if n != 1 {
			t.Errorf("session %s listed as a login %d times, want once", sid, n)
		}
	}
	var paged []string
	cursor := ""
	for page := 0; page < 50; page++ {
		p := admGet[admEventPage](b, "/v1/admin/users/"+id+"/events?limit=1&cursor="+url.QueryEscape(cursor))
		for _, e := range p.Events {
			paged = append(paged, e.ID)
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	if !slices.Equal(paged, ids) {
		t.Errorf("paged one by one\n%v\nwant\n%v", paged, ids)
	}
	specs, err := a.db.Collection("events").Indexes().ListSpecifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		if s.Name == "user_newest" {
			t.Error("the old user_newest index is still there after the upgrade")
		}
	}
}
