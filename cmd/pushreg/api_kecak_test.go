package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/pushreg/pushreg/push/fcmtest"
)

const (
	kecakLogin   = "/web/json/plugin/com.kinnara.kecakplugins.mobileapi.LoginApi/service"
	kecakCheck   = "/web/json/plugin/com.kinnara.kecakplugins.mobileapi.CheckTokenApi/service"
	kecakRefresh = "/web/json/plugin/com.kinnara.kecakplugins.mobileapi.RefreshTokenApi/service"
)

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// kecakSignIn logs in through Kecak's LoginApi and returns the token.
func (a *api) kecakSignIn(user, pass, deviceID, fcmToken string) string {
	a.t.Helper()
	r := a.must(http.StatusOK, request{method: "POST", path: kecakLogin,
		header: map[string]string{"Authorization": basic(user, pass), "Referer": "http://" + a.host},
		body:   map[string]string{"device_id": deviceID, "fcm_token": fcmToken}})
	return r.json(a.t)["token"].(string)
}

func (a *api) kecakRefresh(token, deviceID, fcmToken string) response {
	a.t.Helper()
	return a.do(request{method: "PUT", path: kecakRefresh,
		header: map[string]string{"Authorization": token, "Referer": "http://" + a.host},
		body:   map[string]string{"device_id": deviceID, "fcm_token": fcmToken}})
}

// device reads a user's device as the admin API shows it.
func (a *api) device(userID, deviceID string) map[string]any {
	a.t.Helper()
	devs := a.must(http.StatusOK, request{method: "GET", path: "/v1/admin/users/" + userID + "/devices", header: bearer(a.admin())}).json(a.t)
	for _, d := range devs["devices"].([]any) {
		if m := d.(map[string]any); m["device_id"] == deviceID {
			return m
		}
	}
	return nil
}

func TestKecakLoginCheckAndRefresh(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "lina", "password": "lina-password", "email": "lina@example.com", "nickname": "Lina L"})

	r := a.must(http.StatusOK, request{method: "POST", path: kecakLogin,
		header: map[string]string{"Authorization": basic("lina", "lina-password"), "Referer": "http://" + a.host},
		body:   map[string]string{"device_id": "pixel-7", "fcm_token": "fcm:first"}})
	login := r.json(t)
	if login["full_name"] != "Lina L" || login["email"] != "lina@example.com" || login["username"] != "lina" {
		t.Errorf("login = %v", login)
	}
	token := login["token"].(string)

	check := a.must(http.StatusOK, request{method: "GET", path: kecakCheck, header: map[string]string{"Authorization": token}}).json(t)
	if check["valid"] != true || check["fcm_token"] != "fcm:first" || check["username"] != "lina" {
		t.Errorf("check = %v", check)
	}

	r = a.kecakRefresh("Bearer "+token, "pixel-7", "fcm:second")
	if r.status != http.StatusOK {
		t.Fatalf("refresh = %d %s", r.status, r.body)
	}
	updated := r.json(t)["token"].(string)
	if updated == token {
		t.Fatal("refresh answered the same token")
	}
	_, claims := jwtParts(t, updated)
	if claims["device_id"] != "pixel-7" || claims["fcm_token"] != "fcm:second" || claims["sub"] != id {
		t.Errorf("updated token claims = %v, want device pixel-7, the new FCM token and the same user", claims)
	}
	if d := a.device(id, "pixel-7"); d["fcm_token"] != "fcm:second" || d["token_status"] != "valid" {
		t.Errorf("device after refresh = %v, want the new token, valid", d)
	}
	check = a.must(http.StatusOK, request{method: "GET", path: kecakCheck, header: map[string]string{"Authorization": updated}}).json(t)
	if check["fcm_token"] != "fcm:second" {
		t.Errorf("check after refresh = %v", check)
	}

	// The presented token is retired: refused once the grace window is over,
	// and its reuse revokes the session like a rotated refresh token's.
	a.clock.Advance(a.cfg.RefreshReuseGrace + time.Second)
	if r := a.kecakRefresh(token, "pixel-7", "fcm:second"); r.status != http.StatusUnauthorized {
		t.Fatalf("retired token = %d %s, want 401", r.status, r.body)
	}
	r = a.do(request{method: "GET", path: kecakCheck, header: map[string]string{"Authorization": updated}})
	if r.status != http.StatusUnauthorized || r.json(t)["valid"] != false {
		t.Errorf("successor after reuse = %d %s, want 401 valid false", r.status, r.body)
	}

	// RFC 7009 revocation takes Kecak tokens too.
	fresh := a.kecakSignIn("lina", "lina-password", "pixel-7", "fcm:second")
	a.must(http.StatusOK, request{method: "POST", path: "/v1/auth/revoke", body: url.Values{"token": {fresh}}})
	if r := a.do(request{method: "GET", path: kecakCheck, header: map[string]string{"Authorization": fresh}}); r.status != http.StatusUnauthorized {
		t.Errorf("a revoked Kecak token = %d, want 401", r.status)
	}
}

func TestKecakRefreshErrors(t *testing.T) {
	t.Parallel()
	a := newAPI(t, map[string]string{"PUSHREG_ALLOWED_REFERERS": "https://app.example.com"})
	a.createUser(map[string]any{"username": "mo", "password": "mo-password"})
	token := a.kecakSignIn("mo", "mo-password", "dev-1", "fcm:mo")
	a.fcm.SetTokenError("fcm:rejected", fcmtest.Unregistered)
	own := "http://" + a.host + "/some/page"

	tests := []struct {
		name        string
		auth        string
		referer     string
		contentType string
		body        string
		status      int
		wantMessage string
	}{
		{"no authorization", "", own, "application/json", `{"device_id":"d","fcm_token":"t"}`, 401, "Authorization"},
		{"malformed token", "Bearer abc", own, "application/json", `{"device_id":"d","fcm_token":"t"}`, 401, ""},
		{"no referer", token, "", "application/json", `{"device_id":"d","fcm_token":"t"}`, 403, "Referer"},
		{"foreign referer", token, "https://evil.example.com/x", "application/json", `{"device_id":"d","fcm_token":"t"}`, 403, "Referer"},
		{"wrong content type", token, own, "text/plain", `{"device_id":"d","fcm_token":"t"}`, 415, "application/json"},
		{"malformed JSON", token, own, "application/json", `{"device_id":`, 400, "JSON"},
		{"missing fcm_token", token, own, "application/json", `{"device_id":"d"}`, 400, "fcm_token"},
		{"missing device_id", token, own, "application/json", `{"fcm_token":"t"}`, 400, "device_id"},
		{"operator injection", token, own, "application/json", `{"device_id":{"$gt":""},"fcm_token":"t"}`, 400, "device_id"},
		{"device_id too long", token, own, "application/json", `{"device_id":"` + strings.Repeat("x", 129) + `","fcm_token":"t"}`, 400, "device_id"},
		{"device_id with NUL", token, own, "application/json", `{"device_id":"a\u0000b","fcm_token":"t"}`, 400, "device_id"},
		{"fcm_token bad characters", token, own, "application/json", `{"device_id":"d","fcm_token":"a b"}`, 400, "fcm_token"},
		{"fcm_token too long", token, own, "application/json", `{"device_id":"d","fcm_token":"` + strings.Repeat("a", 4097) + `"}`, 400, "fcm_token"},
		{"Firebase rejects the token", token, own, "application/json", `{"device_id":"dev-1","fcm_token":"fcm:rejected"}`, 422, "fcm_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do(request{method: "PUT", path: kecakRefresh, body: tt.body,
				header: map[string]string{"Authorization": tt.auth, "Referer": tt.referer, "Content-Type": tt.contentType}})
			msg, _ := r.json(t)["message"].(string)
			if r.status != tt.status || msg == "" || !strings.Contains(msg, tt.wantMessage) {
				t.Errorf("= %d %s, want %d with a message mentioning %q", r.status, r.body, tt.status, tt.wantMessage)
			}
		})
	}
	t.Run("allowed referer from a proxy", func(t *testing.T) {
		r := a.do(request{method: "PUT", path: kecakRefresh, body: `{"device_id":"dev-1","fcm_token":"fcm:mo"}`,
			header: map[string]string{"Authorization": token, "Referer": "https://app.example.com/"}})
		if r.status != http.StatusOK {
			t.Errorf("= %d %s, want 200", r.status, r.body)
		}
	})
}

func TestKecakRejectedTokenChangesNothing(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "nia", "password": "nia-password"})
	token := a.kecakSignIn("nia", "nia-password", "dev-1", "fcm:good")
	before := snapshot(t, a)
	a.fcm.SetTokenError("fcm:bad", fcmtest.SenderIDMismatch)
	if r := a.kecakRefresh(token, "dev-2", "fcm:bad"); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("= %d %s, want 422", r.status, r.body)
	}
	if after := snapshot(t, a); after != before {
		t.Errorf("the store changed after a rejected token:\nbefore %s\nafter  %s", before, after)
	}
	// And the token presented still works: nothing was retired.
	if r := a.kecakRefresh(token, "dev-1", "fcm:good"); r.status != http.StatusOK {
		t.Errorf("refresh after the rejection = %d %s", r.status, r.body)
	}
	_ = id
}

// snapshot renders the sessions and devices collections for comparison.
func snapshot(t *testing.T, a *api) string {
	t.Helper()
	var b strings.Builder
	for _, coll := range []string{"sessions", "devices", "users"} {
		cur, err := a.db.Collection(coll).Find(context.Background(), bson.M{})
		if err != nil {
			t.Fatal(err)
		}
		var docs []bson.M
		if err := cur.All(context.Background(), &docs); err != nil {
			t.Fatal(err)
		}
		j, err := json.Marshal(docs) // sorts keys: field order is not data
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s: %s\n", coll, j)
	}
	return b.String()
}

func TestKecakFirebaseDown(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{"accept", "reject"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			a := newAPI(t, map[string]string{"PUSHREG_FCM_VALIDATE_ON_ERROR": policy, "PUSHREG_FCM_VALIDATE_TIMEOUT": "300ms"})
			id := a.createUser(map[string]any{"username": "oz", "password": "oz-password"})
			token := a.kecakSignIn("oz", "oz-password", "dev-1", "fcm:one")
			a.fcm.SetLatency(30 * time.Second) // slower than any timeout: Firebase hangs
			start := time.Now()
			r := a.kecakRefresh(token, "dev-1", "fcm:two")
			elapsed := time.Since(start)
			// The bound is generous for -race on two cores; what matters is
			// that the request does not wait for Firebase's 30 s.
			if elapsed > 5*time.Second {
				t.Errorf("refresh took %v with Firebase hanging, want about the 300ms timeout", elapsed)
			}
			switch policy {
			case "accept":
				if r.status != http.StatusOK {
					t.Fatalf("= %d %s, want 200", r.status, r.body)
				}
				if d := a.device(id, "dev-1"); d["token_status"] != "unverified" || d["fcm_token"] != "fcm:two" {
					t.Errorf("device = %v, want fcm:two unverified", d)
				}
			case "reject":
				if r.status != http.StatusServiceUnavailable {
					t.Fatalf("= %d %s, want 503", r.status, r.body)
				}
				if d := a.device(id, "dev-1"); d["fcm_token"] != "fcm:one" {
					t.Errorf("device = %v, want the old token kept", d)
				}
			}
		})
	}
}

// A Kecak refresh with the token already bound and validated asks Firebase
// nothing: the session's rotation and the device's touch, each one
// conditional write on MongoDB, a read and a write by _id on the embedded
// store.
func TestKecakValidationCacheAndRoundTrips(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		options []func(*config)
		want    int64
	}{
		{"embedded", nil, 4},
		{"shared", []func(*config){shared}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a := newAPI(t, nil, c.options...)
			a.createUser(map[string]any{"username": "pia", "password": "pia-password"})
			token := a.kecakSignIn("pia", "pia-password", "dev-1", "fcm:steady")
			if n := len(a.fcm.RequestsFor("fcm:steady")); n != 1 {
				t.Fatalf("login validated the token %d times, want 1", n)
			}
			before := a.svc.commands.Started()
			r := a.kecakRefresh(token, "dev-1", "fcm:steady")
			if r.status != http.StatusOK {
				t.Fatal(r.status, string(r.body))
			}
			if got := a.svc.commands.Started() - before; got > c.want {
				t.Errorf("a Kecak refresh with an already-bound token sent %d MongoDB commands, want at most %d", got, c.want)
			}
			if n := len(a.fcm.RequestsFor("fcm:steady")); n != 1 {
				t.Errorf("Firebase was asked %d times about a cached token, want once", n)
			}
		})
	}
}

func TestKecakTokenMovesBetweenUsers(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	alice := a.createUser(map[string]any{"username": "alice", "password": "alice-password"})
	bob := a.createUser(map[string]any{"username": "bob", "password": "bob-password"})
	a.kecakSignIn("alice", "alice-password", "shared-tablet", "fcm:tablet")
	bobToken := a.kecakSignIn("bob", "bob-password", "bob-phone", "fcm:bob")
	// The tablet is handed to Bob: the app reports the same FCM token for his session.
	if r := a.kecakRefresh(bobToken, "shared-tablet", "fcm:tablet"); r.status != http.StatusOK {
		t.Fatalf("= %d %s", r.status, r.body)
	}
	if d := a.device(alice, "shared-tablet"); d["token_status"] != "unbound" {
		t.Errorf("alice's tablet = %v, want its token unbound", d)
	}
	if d := a.device(bob, "shared-tablet"); d["fcm_token"] != "fcm:tablet" {
		t.Errorf("bob's tablet = %v, want fcm:tablet", d)
	}
	events := a.must(http.StatusOK, request{method: "GET", path: "/v1/admin/users/" + alice + "/events", header: bearer(a.admin())}).json(t)
	if first := events["events"].([]any)[0].(map[string]any); first["type"] != "token_moved" {
		t.Errorf("alice's newest event = %v, want token_moved", first)
	}
	if strings.Contains(string(a.must(http.StatusOK, request{method: "GET", path: "/v1/admin/users/" + alice + "/events", header: bearer(a.admin())}).body), "fcm:tablet") {
		t.Error("the audit trail holds a raw FCM token")
	}
}

func TestKecakDeviceLimitEvicts(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "quinn", "password": "quinn-password", "plan": map[string]any{"name": "small", "device_count": 2}})
	for i := range 3 {
		a.kecakSignIn("quinn", "quinn-password", fmt.Sprintf("dev-%d", i), fmt.Sprintf("fcm:%d", i))
		a.clock.Advance(time.Minute)
	}
	if a.device(id, "dev-0") != nil {
		t.Error("dev-0, the least recently seen, was not evicted")
	}
	if a.device(id, "dev-1") == nil || a.device(id, "dev-2") == nil {
		t.Error("the two newest devices should remain")
	}
}

func TestKecakConcurrentBindsOfOneDevice(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "ray", "password": "ray-password"})
	token := a.kecakSignIn("ray", "ray-password", "dev-1", "fcm:old")
	const n = 20
	var wg sync.WaitGroup
	statuses := make([]int, n)
	tokens := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := a.kecakRefresh(token, "dev-1", "fcm:new")
			statuses[i] = r.status
			if r.status == http.StatusOK {
				tokens[i] = r.json(t)["token"].(string)
			}
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Fatalf("refresh %d = %d, want 200 (duplicates inside the grace window)", i, s)
		}
	}
	_, c0 := jwtParts(t, tokens[0])
	for _, tok := range tokens[1:] {
		if _, c := jwtParts(t, tok); c["jti"] != c0["jti"] {
			t.Fatal("concurrent refreshes produced different successors")
		}
	}
	if n := len(a.storedDevices(id)); n != 1 {
		t.Errorf("%d device records, want 1", n)
	}
}

func TestMyDevices(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "sam", "password": "sam-password"})
	tok := a.login("sam", "sam-password", map[string]string{"device_id": "watch", "fcm_token": "fcm:watch", "platform": "android"})
	at := tok["access_token"].(string)
	list := a.must(http.StatusOK, request{method: "GET", path: "/v1/me/devices", header: bearer(at)}).json(t)
	devs := list["devices"].([]any)
	if len(devs) != 1 || devs[0].(map[string]any)["platform"] != "android" {
		t.Fatalf("my devices = %v", list)
	}
	a.must(http.StatusNoContent, request{method: "DELETE", path: "/v1/me/devices/watch", header: bearer(at)})
	a.must(http.StatusNotFound, request{method: "DELETE", path: "/v1/me/devices/watch", header: bearer(at)})
	if r := a.refresh(tok["refresh_token"].(string), nil); r.status != http.StatusBadRequest {
		t.Errorf("refresh after deleting the device = %d, want 400 (its session revoked)", r.status)
	}
}
