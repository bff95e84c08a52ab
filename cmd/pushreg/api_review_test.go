package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The tests in this file each close a way around rotation or a leak that
// an independent review of every auth path found.

// An access token must not renew itself: the Kecak refresh takes only
// Kecak session tokens, so a stolen 15-minute access token ends when it
// expires.
func TestKecakRefreshRefusesAccessTokens(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "vic", "password": "vic-password"})
	tok := a.login("vic", "vic-password", nil)
	r := a.kecakRefresh("Bearer "+tok["access_token"].(string), "tablet", "fcm:tablet")
	if r.status != http.StatusUnauthorized {
		t.Fatalf("Kecak refresh with an access token = %d %s, want 401", r.status, r.body)
	}
	if msg, _ := r.json(t)["message"].(string); msg == "" {
		t.Errorf("body %s, want Kecak's {\"message\"}", r.body)
	}
	if d := a.device(id, "tablet"); d != nil {
		t.Errorf("the refused request bound a device: %v", d)
	}
	if n := len(a.fcm.Requests()); n != 0 {
		t.Errorf("Firebase was asked %d times for a refused request", n)
	}
}

// A session's refresh mode is fixed when it is created: a rotating
// session's refresh token is refused by the non-rotating routes (kalsel,
// Duktig), and a non-rotating one's by the rotating routes, each with its
// style's invalid-token answer. The refused use changes nothing.
func TestRefreshModeIsFixedAtLogin(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "rhea", "password": "rhea-password", "email": "rhea@example.com"})
	native := a.login("rhea", "rhea-password", nil)["refresh_token"].(string)
	kalsel := a.must(http.StatusOK, request{method: "POST", path: "/api/v1/login",
		body: map[string]string{"username": "rhea", "password": "rhea-password"}}).json(t)["refresh_token"].(string)

	cases := []struct {
		name string
		req  request
		want int
	}{
		{"rotating token on kalsel refresh", request{method: "POST", path: "/api/v1/refresh",
			body: map[string]any{"refresh_token": native, "limit": 10080}}, http.StatusUnauthorized},
		{"rotating token on Duktig refresh", request{method: "POST", path: "/auth/refresh_token",
			header: map[string]string{"Refresh-Token": native}}, http.StatusUnauthorized},
		{"fixed token on the native token endpoint", request{method: "POST", path: "/v1/auth/token",
			body: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {kalsel}}}, http.StatusBadRequest},
		{"fixed token on abitmedia refresh", request{method: "POST", path: "/v1/refreshToken",
			body: map[string]string{"refreshToken": kalsel}}, http.StatusBadRequest},
	}
	for _, c := range cases {
		if r := a.do(c.req); r.status != c.want {
			t.Errorf("%s = %d %s, want %d", c.name, r.status, r.body, c.want)
		}
	}
	// Both sessions are untouched: each token still works on its own kind.
	if r := a.refresh(native, nil); r.status != http.StatusOK {
		t.Errorf("native refresh afterwards = %d %s, want 200", r.status, r.body)
	}
	a.must(http.StatusOK, request{method: "POST", path: "/api/v1/refresh", body: map[string]any{"refresh_token": kalsel}})
}

// A token checked against its session carries the session's roles, so
// removing a role reaches a 7-day kalsel token at once.
func TestRoleRemovalReachesLongLivedTokens(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "boss", "password": "boss-password", "roles": []string{"admin", "user"}})
	rt := a.must(http.StatusOK, request{method: "POST", path: "/api/v1/login",
		body: map[string]string{"username": "boss", "password": "boss-password"}}).json(t)["refresh_token"].(string)
	week := a.must(http.StatusOK, request{method: "POST", path: "/api/v1/refresh",
		body: map[string]any{"refresh_token": rt, "limit": 10080}}).json(t)["access_token"].(string)
	a.must(http.StatusOK, request{method: "GET", path: "/v1/admin/users", header: bearer(week)})
	a.must(http.StatusOK, request{method: "PATCH", path: "/v1/admin/users/" + id, header: bearer(a.admin()),
		body: map[string]any{"roles": []string{"user"}}})
	if r := a.do(request{method: "GET", path: "/v1/admin/users", header: bearer(week)}); r.status != http.StatusForbidden {
		t.Errorf("a 7-day token after its admin role was removed = %d, want 403", r.status)
	}
}

// A login in flight when its user is disabled must not leave a live
// session behind: Firebase is made slow, and the user is disabled while
// the login waits for it, after the login has read the user.
func TestDisableRacingALoginLeavesNoLiveSession(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "dina", "password": "dina-password"})
	admin := a.admin()
	a.fcm.SetLatency(time.Second)
	done := make(chan response, 1)
	go func() {
		done <- a.do(request{method: "POST", path: "/v1/auth/login", body: map[string]string{
			"username": "dina", "password": "dina-password", "device_id": "phone", "fcm_token": fcmToken("phone")}})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.fcm.WaitRequests(ctx, 1); err != nil {
		t.Fatal(err)
	}
	a.must(http.StatusOK, request{method: "PATCH", path: "/v1/admin/users/" + id, header: bearer(admin),
		body: map[string]any{"disabled": true}})
	if r := <-done; r.status != http.StatusForbidden {
		t.Errorf("the login racing the disable = %d %s, want 403", r.status, r.body)
	}
	n, err := a.db.Collection("sessions").CountDocuments(context.Background(), bson.M{"user_id": id, "revoked": false})
	if err != nil || n != 0 {
		t.Errorf("live sessions of the disabled user = %d (%v), want 0", n, err)
	}
	if d := a.device(id, "phone"); d != nil && d["token_status"] != "unbound" {
		t.Errorf("the disabled user's device = %v, want no pushable token", d)
	}
}

// Firebase is asked about an FCM token only once the credential that
// carries it has been checked: a token of a revoked session gets its 401
// without a dry run (no oracle, no quota spent).
func TestFirebaseIsAskedOnlyAfterTheCredential(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "finn", "password": "finn-password"})
	kecak := a.kecakSignIn("finn", "finn-password", "phone", fcmToken("phone"))
	native := a.login("finn", "finn-password", nil)["refresh_token"].(string)
	a.must(http.StatusOK, request{method: "POST", path: "/v1/auth/revoke", body: url.Values{"token": {kecak}}})
	a.must(http.StatusOK, request{method: "POST", path: "/v1/auth/revoke", body: url.Values{"token": {native}}})
	a.fcm.Reset()

	if r := a.kecakRefresh(kecak, "phone", fcmToken("probe-kecak")); r.status != http.StatusUnauthorized {
		t.Errorf("Kecak refresh of a revoked session = %d, want 401", r.status)
	}
	if r := a.refresh(native, url.Values{"device_id": {"phone"}, "fcm_token": {fcmToken("probe-native")}}); r.status != http.StatusBadRequest {
		t.Errorf("native refresh of a revoked session = %d, want 400", r.status)
	}
	for _, probe := range []string{"probe-kecak", "probe-native"} {
		if got := a.fcm.RequestsFor(fcmToken(probe)); len(got) != 0 {
			t.Errorf("Firebase was asked about %s, which came with a revoked session's token", probe)
		}
	}
}

// Reuse of a retired credential caught by RFC 7009 revocation or by
// CheckTokenApi is a theft signal like any other: audited.
func TestReuseCaughtByRevokeAndCheckIsAudited(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "rex", "password": "rex-password"})
	rt1 := a.login("rex", "rex-password", nil)["refresh_token"].(string)
	a.refresh(rt1, nil)
	k1 := a.kecakSignIn("rex", "rex-password", "phone", fcmToken("phone"))
	a.must(http.StatusOK, request{method: "PUT", path: kecakRefresh,
		header: map[string]string{"Authorization": k1, "Referer": "http://" + a.host},
		body:   map[string]string{"device_id": "phone", "fcm_token": fcmToken("phone")}})
	a.clock.Advance(time.Minute) // past the grace window

	a.must(http.StatusOK, request{method: "POST", path: "/v1/auth/revoke", body: url.Values{"token": {rt1}}})
	a.must(http.StatusUnauthorized, request{method: "GET", path: kecakCheck, header: map[string]string{"Authorization": k1}})

	events := a.must(http.StatusOK, request{method: "GET", path: "/v1/admin/users/" + id + "/events?limit=200",
		header: bearer(a.admin())}).json(t)["events"].([]any)
	reuse := 0
	for _, e := range events {
		if e.(map[string]any)["type"] == "reuse_detected" {
			reuse++
		}
	}
	if reuse != 2 {
		t.Errorf("reuse_detected events = %d, want 2 (one by revoke, one by CheckTokenApi)", reuse)
	}
}

// /readyz tells anyone that the store is down, not the driver's text
// (addresses, topology).
func TestReadyzGivesAShortReason(t *testing.T) {
	t.Parallel()
	fcmURL := "http://127.0.0.1:1/v1"
	vars := map[string]string{"PUSHREG_FCM_ENDPOINT": fcmURL, "PUSHREG_DATA_DIR": t.TempDir()}
	cfg, err := loadConfig(nil, func(k string) string { return vars[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	svc, err := build(context.Background(), cfg, slog.New(slog.NewJSONHandler(logs, nil)),
		store{uri: "mongodb://127.0.0.1:1/", idIndexes: noIDIndexes}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.close)
	srv := httptest.NewServer(svc.handler)
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d, want 503", resp.StatusCode)
	}
	if strings.Contains(string(body), "127.0.0.1:1") || len(body) > 80 {
		t.Errorf("/readyz body %s, want a short reason without the driver's details", body)
	}
	if !strings.Contains(logs.String(), "127.0.0.1:1") {
		t.Error("the driver's error is not in the logs")
	}
}

// An admin's password change ends the user's sessions, unless the request
// says to keep them.
func TestPasswordChangeRevokesSessions(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "pat", "password": "pat-password"})
	kept := a.login("pat", "pat-password", nil)["refresh_token"].(string)
	a.must(http.StatusOK, request{method: "PATCH", path: "/v1/admin/users/" + id, header: bearer(a.admin()),
		body: map[string]any{"password": "pat-password-2", "keep_sessions": true}})
	r := a.refresh(kept, nil)
	if r.status != http.StatusOK {
		t.Fatalf("refresh after a password change with keep_sessions = %d, want 200", r.status)
	}
	kept = r.json(t)["refresh_token"].(string)
	a.must(http.StatusOK, request{method: "PATCH", path: "/v1/admin/users/" + id, header: bearer(a.admin()),
		body: map[string]any{"password": "pat-password-3"}})
	if r := a.refresh(kept, nil); r.status != http.StatusBadRequest {
		t.Errorf("refresh after a password change = %d, want 400 (session revoked)", r.status)
	}
	a.login("pat", "pat-password-3", nil)
}

// Listings that show FCM tokens are not cacheable, and access tokens carry
// the device but not its push address.
func TestDeviceListingsAreNotCachedAndAccessTokensCarryNoFCMToken(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "nell", "password": "nell-password"})
	tok := a.login("nell", "nell-password", map[string]string{"device_id": "phone", "fcm_token": fcmToken("phone")})
	_, claims := jwtParts(t, tok["access_token"].(string))
	if claims["device_id"] != "phone" {
		t.Errorf("access token claims %v, want device_id", claims)
	}
	if _, ok := claims["fcm_token"]; ok {
		t.Errorf("access token claims carry fcm_token: %v", claims)
	}
	for _, req := range []request{
		{method: "GET", path: "/v1/me/devices", header: bearer(tok["access_token"].(string))},
		{method: "GET", path: "/v1/admin/users/" + id + "/devices", header: bearer(a.admin())},
	} {
		r := a.must(http.StatusOK, req)
		if got := r.header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("%s Cache-Control = %q, want no-store", req.path, got)
		}
	}
}
