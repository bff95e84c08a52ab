package main

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

func TestSecurityHeadersAndCORS(t *testing.T) {
	t.Parallel()
	off := newAPI(t, nil)
	r := off.do(request{method: "GET", path: "/healthz", header: map[string]string{"Origin": "https://app.example.com"}})
	if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
	}
	if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("CORS answered %q with CORS not configured", got)
	}

	on := newAPI(t, map[string]string{"PUSHREG_CORS_ALLOWED_ORIGINS": "https://app.example.com"})
	r = on.do(request{method: "GET", path: "/healthz", header: map[string]string{"Origin": "https://app.example.com"}})
	if got := r.header.Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
		t.Errorf("Access-Control-Allow-Origin = %q for an allowed origin", got)
	}
	r = on.do(request{method: "GET", path: "/healthz", header: map[string]string{"Origin": "https://evil.example.com"}})
	if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("Access-Control-Allow-Origin = %q for a foreign origin", got)
	}
}

func TestForwardedForDoesNotEvadeTheLoginLimit(t *testing.T) {
	t.Parallel()
	a := newAPI(t, map[string]string{"PUSHREG_LOGIN_RATE_LIMIT": "2"})
	// Different usernames, so only the per-IP limit can stop the spray.
	for i, name := range []string{"u1", "u2", "u3"} {
		r := a.do(request{method: "POST", path: "/v1/auth/login",
			header: map[string]string{"X-Forwarded-For": "203.0.113." + string(rune('1'+i))},
			body:   map[string]string{"username": name, "password": "wrong-password"}})
		want := http.StatusUnauthorized
		if i == 2 {
			want = http.StatusTooManyRequests
		}
		if r.status != want {
			t.Fatalf("attempt %d = %d, want %d", i+1, r.status, want)
		}
	}
}

// One account has one login bucket, whether its username or its email is
// typed. The attempts come from different loopback addresses, so the
// per-IP limit cannot be what stops them.
func TestLoginLimitIsPerAccountNotPerName(t *testing.T) {
	t.Parallel()
	a := newAPI(t, map[string]string{"PUSHREG_LOGIN_RATE_LIMIT": "2"})
	a.createUser(map[string]any{"username": "rita", "password": "rita-password", "email": "rita@example.com"})
	attempts := []struct {
		from, login, password string
		want                  int
	}{
		{"127.0.0.2", "rita", "wrong-password", http.StatusUnauthorized},
		{"127.0.0.3", "RITA@example.com", "wrong-password", http.StatusUnauthorized},
		{"127.0.0.4", "rita", "rita-password", http.StatusTooManyRequests},
		{"127.0.0.5", "rita@example.com", "rita-password", http.StatusTooManyRequests},
	}
	for i, at := range attempts {
		body := `{"username":"` + at.login + `","password":"` + at.password + `"}`
		if got := postFrom(t, at.from, a.url+"/v1/auth/login", body); got != at.want {
			t.Errorf("attempt %d (%s from %s) = %d, want %d", i+1, at.login, at.from, got, at.want)
		}
	}
}

// postFrom posts a JSON body from the local address ip (any of 127/8 on
// Linux) and returns the status.
func postFrom(t *testing.T, ip, url, body string) int {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST from %s: %v", ip, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestTokenEndpointBindsADevice(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "tess", "password": "tess-password"})
	rt := a.login("tess", "tess-password", nil)["refresh_token"].(string)
	r := a.refresh(rt, url.Values{"device_id": {"laptop"}, "fcm_token": {"fcm:laptop"}, "platform": {"web"}})
	if r.status != http.StatusOK {
		t.Fatalf("= %d %s", r.status, r.body)
	}
	_, claims := jwtParts(t, r.json(t)["access_token"].(string))
	if _, ok := claims["fcm_token"]; claims["device_id"] != "laptop" || ok {
		t.Errorf("claims = %v, want the bound device and no FCM token", claims)
	}
	if d := a.device(id, "laptop"); d == nil || d["fcm_token"] != "fcm:laptop" || d["platform"] != "web" {
		t.Errorf("device = %v", d)
	}
	// Half a device is a clear error.
	r = a.refresh(r.json(t)["refresh_token"].(string), url.Values{"device_id": {"laptop"}})
	if r.status != http.StatusBadRequest || r.json(t)["error"] != "invalid_request" {
		t.Errorf("device_id without fcm_token = %d %s, want 400 invalid_request", r.status, r.body)
	}
}

// kalsel's limit gives access tokens up to 7 days; revoking the session
// must still end them, not leave them valid for a week.
func TestLongLivedAccessTokensEndWithTheirSession(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "lars", "password": "lars-password"})
	rt := a.must(http.StatusOK, request{method: "POST", path: "/api/v1/login",
		body: map[string]string{"username": "lars", "password": "lars-password"}}).json(t)["refresh_token"].(string)
	week := a.must(http.StatusOK, request{method: "POST", path: "/api/v1/refresh",
		body: map[string]any{"refresh_token": rt, "limit": 10080}}).json(t)["access_token"].(string)
	a.must(http.StatusOK, request{method: "GET", path: "/v1/me/devices", header: bearer(week)})
	a.must(http.StatusOK, request{method: "POST", path: "/v1/auth/revoke", body: url.Values{"token": {rt}}})
	if r := a.do(request{method: "GET", path: "/v1/me/devices", header: bearer(week)}); r.status != http.StatusUnauthorized {
		t.Errorf("a 7-day access token after its session was revoked = %d, want 401", r.status)
	}
}

// A burst of concurrent guesses gets no more tries than the limit.
func TestLoginLimitHoldsUnderABurst(t *testing.T) {
	t.Parallel()
	a := newAPI(t, map[string]string{"PUSHREG_LOGIN_RATE_LIMIT": "5"})
	a.createUser(map[string]any{"username": "bea", "password": "bea-password"})
	const n = 30
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- a.do(request{method: "POST", path: "/v1/auth/login",
				body: map[string]string{"username": "bea", "password": "guess-guess"}}).status
		}()
	}
	wg.Wait()
	close(statuses)
	tried := 0
	for s := range statuses {
		switch s {
		case http.StatusUnauthorized:
			tried++
		case http.StatusTooManyRequests:
		default:
			t.Errorf("a guess answered %d", s)
		}
	}
	if tried > 5 {
		t.Errorf("%d guesses were checked in a burst, want at most the limit of 5", tried)
	}
}

// Every line about a request carries its ID: the client's, echoed back,
// or one pushreg makes.
func TestRequestIDEchoedAndLogged(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	r := a.do(request{method: "GET", path: "/healthz", header: map[string]string{"X-Request-ID": "trace-abc-123"}})
	if got := r.header.Get("X-Request-ID"); got != "trace-abc-123" {
		t.Errorf("X-Request-ID = %q, want the client's echoed", got)
	}
	if !strings.Contains(a.logs.String(), `"request_id":"trace-abc-123"`) {
		t.Error("the request's log line lacks its request ID")
	}
	long := strings.Repeat("x", 200)
	r = a.do(request{method: "GET", path: "/healthz", header: map[string]string{"X-Request-ID": long}})
	if got := r.header.Get("X-Request-ID"); got == "" || got == long {
		t.Errorf("X-Request-ID = %q, want a generated one replacing the oversized one", got)
	}
}
