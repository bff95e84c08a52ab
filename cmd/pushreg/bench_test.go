package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The benchmarks below run the hot routes through the whole service (echo,
// middleware, auth, the store on the test MongoDB server, the Firebase SDK
// against the double), calling its handler directly so that a CPU profile
// shows the service and its store, not an HTTP client. Each reports MongoDB
// round trips per operation. The embedded FerretDB runs in the test binary,
// so -cpuprofile shows its share too:
//
//	go test ./cmd/pushreg -run XXX -bench Refresh -benchmem -cpuprofile cpu.out
//
// BenchmarkPushAPI (api_push_test.go) covers the push fan-out.

// benchHost is the Host of the requests, which Kecak's Referer must match.
const benchHost = "pushreg.test"

// benchCall serves one request and fails b unless it answers 200. It
// returns the body.
func benchCall(b *testing.B, a *api, method, path string, header map[string]string, ctype, body string) []byte {
	req := httptest.NewRequest(method, "http://"+benchHost+path, strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	a.svc.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("%s %s = %d %s", method, path, rec.Code, rec.Body)
	}
	return rec.Body.Bytes()
}

// benchField returns a string field of a JSON object.
func benchField(b *testing.B, body []byte, name string) string {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		b.Fatalf("%v: %s", err, body)
	}
	s, _ := m[name].(string)
	if s == "" {
		b.Fatalf("no %s in %s", name, body)
	}
	return s
}

// roundTrips reports the MongoDB commands sent per operation since start.
func roundTrips(b *testing.B, a *api, start int64, ops int) {
	b.ReportMetric(float64(a.svc.commands.Started()-start)/float64(ops), "roundtrips/op")
}

func benchKecakRefresh(b *testing.B, token, deviceID, fcmToken string, a *api) string {
	body := fmt.Sprintf(`{"device_id":%q,"fcm_token":%q}`, deviceID, fcmToken)
	out := benchCall(b, a, http.MethodPut, kecakRefresh,
		map[string]string{"Authorization": token, "Referer": "http://" + benchHost + "/"}, "application/json", body)
	return benchField(b, out, "token")
}

// BenchmarkKecakRefresh chains Kecak refreshes of one session: each
// answer's token is presented next. same-token sends the device and FCM
// token the session is bound to (validated once, at login: the common
// case); new-fcm-token sends a new FCM token every time, which Firebase
// (the double, without latency) validates and the registry binds.
func BenchmarkKecakRefresh(b *testing.B) {
	for _, tc := range []struct {
		name     string
		newToken bool
	}{{"same-token", false}, {"new-fcm-token", true}} {
		b.Run(tc.name, func(b *testing.B) {
			a := newAPI(b, nil)
			a.fcm.SetRecord(false)
			a.createUser(map[string]any{"username": "kecak", "password": "kecak-password"})
			fcm := fcmToken("bench-0")
			token := a.kecakSignIn("kecak", "kecak-password", "bench-device", fcm)
			start, ops := a.svc.commands.Started(), 0
			b.ReportAllocs()
			for b.Loop() {
				if tc.newToken {
					fcm = fcmToken(fmt.Sprintf("bench-%d", ops+1))
				}
				token = benchKecakRefresh(b, token, "bench-device", fcm, a)
				ops++
			}
			roundTrips(b, a, start, ops)
		})
	}
}

// BenchmarkNativeRefresh chains rotating refreshes on POST /v1/auth/token.
func BenchmarkNativeRefresh(b *testing.B) {
	a := newAPI(b, nil)
	a.createUser(map[string]any{"username": "native", "password": "native-password"})
	rt := a.login("native", "native-password", nil)["refresh_token"].(string)
	start, ops := a.svc.commands.Started(), 0
	b.ReportAllocs()
	for b.Loop() {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode()
		out := benchCall(b, a, http.MethodPost, "/v1/auth/token", nil, "application/x-www-form-urlencoded", form)
		rt = benchField(b, out, "refresh_token")
		ops++
	}
	roundTrips(b, a, start, ops)
}

// BenchmarkLogin signs in natively, without and with a device. The API
// harness lowers argon2id's cost to almost nothing, so this measures
// everything a login does but the password hash (about 19 MiB and two
// passes at the operators' cost; scripts/bench measures that).
func BenchmarkLogin(b *testing.B) {
	for _, withDevice := range []bool{false, true} {
		name := "no-device"
		if withDevice {
			name = "with-device"
		}
		b.Run(name, func(b *testing.B) {
			a := newAPI(b, nil)
			a.fcm.SetRecord(false)
			a.createUser(map[string]any{"username": "login", "password": "login-password"})
			body := `{"username":"login","password":"login-password"}`
			if withDevice {
				// The same device and token each time: re-binding what is
				// bound is the steady state of an app that logs in again.
				body = fmt.Sprintf(`{"username":"login","password":"login-password","device_id":"d1","fcm_token":%q}`, fcmToken("login"))
			}
			start, ops := a.svc.commands.Started(), 0
			b.ReportAllocs()
			for b.Loop() {
				benchCall(b, a, http.MethodPost, "/v1/auth/login", nil, "application/json", body)
				ops++
			}
			roundTrips(b, a, start, ops)
		})
	}
}

// BenchmarkImport imports users through POST /v1/admin/import, with no
// device and with one device each, into a fresh database per case and
// size: PUSHREG_BENCH_IMPORT_USERS lists the sizes (default 2000), each
// imported once per iteration. The README's measurements:
//
//	PUSHREG_BENCH_IMPORT_USERS=10000,100000 go test ./cmd/pushreg -run XXX -bench 'Import//devices=0' -benchtime 1x
//	PUSHREG_BENCH_IMPORT_USERS=500,1000 go test ./cmd/pushreg -run XXX -bench 'Import//devices=1' -benchtime 1x
func BenchmarkImport(b *testing.B) {
	sizes := []int{2000}
	if v := os.Getenv("PUSHREG_BENCH_IMPORT_USERS"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				b.Fatalf("PUSHREG_BENCH_IMPORT_USERS=%q is not a list of positive numbers", v)
			}
			sizes = append(sizes, n)
		}
	}
	hash := argon2PHC("bench-password")
	for _, size := range sizes {
		for _, devices := range []int{0, 1} {
			b.Run(fmt.Sprintf("users=%d/devices=%d", size, devices), func(b *testing.B) {
				benchImport(b, size, devices, hash)
			})
		}
	}
}

func benchImport(b *testing.B, size, devices int, hash string) {
	a := newAPI(b, nil)
	h := bearer(a.admin())
	for i := 0; b.Loop(); i++ {
		var body strings.Builder
		for j := range size {
			name := fmt.Sprintf("u%d-%d", i, j)
			fmt.Fprintf(&body, `{"username":%q,"email":"%s@example.com","password_hash":%q`, name, name, hash)
			if devices > 0 {
				fmt.Fprintf(&body, `,"devices":[{"device_id":"phone","fcm_token":%q,"platform":"android"}]`, fcmToken(name))
			}
			body.WriteString("}\n")
		}
		start := a.svc.commands.Started()
		out := benchCall(b, a, "POST", "/v1/admin/import", h, "application/x-ndjson", body.String())
		var res importAnswer
		if err := json.Unmarshal(out, &res); err != nil || res.UsersCreated != size || res.DevicesBound != size*devices {
			b.Fatalf("import = %+v, %v; want %d users and %d devices", res, err, size, size*devices)
		}
		roundTrips(b, a, start, size)
	}
	b.ReportMetric(float64(size*b.N)/b.Elapsed().Seconds(), "users/s")
}
