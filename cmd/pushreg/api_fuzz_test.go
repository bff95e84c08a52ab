package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
)

// The HTTP fuzzers run against one whole service; their seed corpus runs
// as ordinary tests. Invariants: no 5xx for any input, and nothing is
// accepted that should not be.

func FuzzKecakRefreshBody(f *testing.F) {
	a := newAPI(f, nil)
	a.createUser(map[string]any{"username": "fuzz", "password": "fuzz-password"})
	token := a.kecakSignIn("fuzz", "fuzz-password", "dev-1", "fcm:fuzz")
	for _, s := range []string{
		`{"device_id":"dev-1","fcm_token":"fcm:fuzz"}`, `{`, `[]`, `null`, `{"device_id":{"$gt":""},"fcm_token":"x"}`,
		`{"device_id":"a\u0000","fcm_token":"x"}`, "{\"device_id\":\"\xff\",\"fcm_token\":\"x\"}", `{"device_id":"d","fcm_token":"a b"}`,
		`{"device_id":"d","fcm_token":"t"} {}`, `{"device_id":1,"fcm_token":2}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := a.send(t, request{method: "PUT", path: kecakRefresh, body: body,
			header: map[string]string{"Authorization": token, "Referer": "http://" + a.host}})
		if r.status >= 500 {
			t.Fatalf("body %q: %d %s", body, r.status, r.body)
		}
		if r.status == http.StatusOK {
			var req struct{ DeviceID, FCMToken string }
			var raw map[string]any
			if json.Unmarshal([]byte(body), &raw) != nil {
				t.Fatalf("accepted a body that is not a JSON object: %q", body)
			}
			d, _ := raw["device_id"].(string)
			tok, _ := raw["fcm_token"].(string)
			req.DeviceID, req.FCMToken = d, tok
			if req.DeviceID == "" || req.FCMToken == "" {
				t.Fatalf("accepted a body without device_id and fcm_token strings: %q", body)
			}
		}
	})
}

func FuzzTokenEndpoint(f *testing.F) {
	a := newAPI(f, nil)
	a.createUser(map[string]any{"username": "fuzz", "password": "fuzz-password"})
	rt := a.login("fuzz", "fuzz-password", nil)["refresh_token"].(string)
	f.Add("refresh_token", rt[:len(rt)-2]+"AA", "", "")
	f.Add("refresh_token", "prt_", "d", "t")
	f.Add("client_credentials", "", "", "")
	f.Add("password", "x", "", "")
	f.Add("refresh_token", rt+"x", "dev\x00", "tok")
	f.Fuzz(func(t *testing.T, grant, token, deviceID, fcmToken string) {
		if token == rt {
			return // the genuine token rightly succeeds
		}
		form := url.Values{"grant_type": {grant}, "refresh_token": {token}, "device_id": {deviceID}, "fcm_token": {fcmToken}}
		r := a.send(t, request{method: "POST", path: "/v1/auth/token", body: form})
		if r.status >= 500 || r.status == http.StatusOK {
			t.Fatalf("%v: %d %s, want a 4xx", form, r.status, r.body)
		}
	})
}

func FuzzKecakLoginBasicAuth(f *testing.F) {
	a := newAPI(f, map[string]string{"PUSHREG_LOGIN_RATE_LIMIT": "1000000"})
	a.createUser(map[string]any{"username": "fuzz", "password": "fuzz-password"})
	for _, s := range []string{"Basic ZnV6ejpmdXp6LXBhc3N3b3Jk", "Basic", "Basic !!!", "Basic Og==", "basic ZnV6ejo=", "Bearer x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, authz string) {
		r := a.send(t, request{method: "POST", path: kecakLogin, body: `{"device_id":"d","fcm_token":"t"}`,
			header: map[string]string{"Authorization": authz, "Referer": "http://" + a.host}})
		if r.status >= 500 {
			t.Fatalf("Authorization %q: %d %s", authz, r.status, r.body)
		}
		if r.status == http.StatusOK && authz != "Basic ZnV6ejpmdXp6LXBhc3N3b3Jk" {
			req, _ := http.NewRequest("GET", "/", nil)
			req.Header.Set("Authorization", authz)
			if u, p, ok := req.BasicAuth(); !ok || p != "fuzz-password" || (u != "fuzz" && u != "FUZZ" && len(u) != 4) {
				t.Fatalf("Authorization %q logged in", authz)
			}
		}
	})
}
