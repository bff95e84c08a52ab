package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The secondary refresh styles (issue 5): Duktig, abitmedia, kalsel and
// MediaTek MCS, each over the one session core. Their wire formats are
// kept as golden transcripts under testdata/styles; run with -update to
// rewrite them after an intended change.

func init() {
	// Registered only if no other test file of the package has: the flag
	// is shared by every golden file.
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files")
	}
}

func styleUpdatingGoldens() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

var (
	styleJWTPattern     = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)
	styleRefreshPattern = regexp.MustCompile(`prt_[A-Za-z0-9_-]+`)
)

// styleTranscript records a style's exchanges, tokens masked, and
// compares them with testdata/styles/NAME.golden.
type styleTranscript struct {
	t    *testing.T
	a    *api
	name string
	buf  bytes.Buffer
}

func newStyleTranscript(t *testing.T, a *api, name string) *styleTranscript {
	return &styleTranscript{t: t, a: a, name: name}
}

// must does req, fails the test unless it answers want, and records it.
func (tr *styleTranscript) must(label string, want int, req request) response {
	tr.t.Helper()
	r := tr.a.do(req)
	if r.status != want {
		tr.t.Fatalf("%s: %s %s = %d %s, want %d", label, req.method, req.path, r.status, r.body, want)
	}
	fmt.Fprintf(&tr.buf, "### %s\n%s %s\n%d %s\n", label, req.method, req.path, r.status, r.header.Get("Content-Type"))
	for _, h := range []string{"Cache-Control", "Retry-After", "Pushreg-Refresh-Failure"} {
		if v := r.header.Get(h); v != "" {
			fmt.Fprintf(&tr.buf, "%s: %s\n", h, v)
		}
	}
	body := styleJWTPattern.ReplaceAll(r.body, []byte("<jwt>"))
	body = styleRefreshPattern.ReplaceAll(body, []byte("<refresh token>"))
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		out.Reset()
		out.Write(body)
	}
	tr.buf.Write(bytes.TrimSpace(out.Bytes()))
	tr.buf.WriteString("\n\n")
	return r
}

// check compares the transcript with its golden file.
func (tr *styleTranscript) check() {
	tr.t.Helper()
	path := filepath.Join("testdata", "styles", tr.name+".golden")
	if styleUpdatingGoldens() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tr.t.Fatal(err)
		}
		if err := os.WriteFile(path, tr.buf.Bytes(), 0o644); err != nil {
			tr.t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tr.t.Fatalf("%v (run with -update to create it)", err)
	}
	if got := tr.buf.String(); got != string(want) {
		tr.t.Errorf("%s differs from the golden file (run with -update if intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// styleWantBody fails unless r is status with a body equal, as JSON, to want.
func styleWantBody(t *testing.T, r response, status int, want string) {
	t.Helper()
	var got, w any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("status %d body %q is not JSON: %v", r.status, r.body, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	if r.status != status || !reflect.DeepEqual(got, w) {
		t.Errorf("got %d %s, want %d %s", r.status, r.body, status, want)
	}
}

func styleWantNoStore(t *testing.T, r response) {
	t.Helper()
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("token response Cache-Control = %q, want no-store", got)
	}
}

// styleStr returns a string field of a JSON object, failing when it is not one.
func styleStr(t testing.TB, m map[string]any, key string) string {
	t.Helper()
	s, ok := m[key].(string)
	if !ok || s == "" {
		t.Fatalf("%s missing from %v", key, m)
	}
	return s
}

// styleUnixAt is the unix time d after the API's clock.
func (a *api) styleUnixAt(d time.Duration) float64 { return float64(a.clock.Now().Add(d).Unix()) }

// styleDisableUser disables an account through the admin API.
func (a *api) styleDisableUser(id string) {
	a.t.Helper()
	a.must(http.StatusOK, request{method: "PATCH", path: "/v1/admin/users/" + id, header: bearer(a.admin()),
		body: map[string]any{"disabled": true}})
}

// styleMCSApp creates an app with scopes and returns base64(id:secret).
func (a *api) styleMCSApp(scopes ...string) string {
	a.t.Helper()
	r := a.must(http.StatusCreated, request{method: "POST", path: "/v1/admin/apps", header: bearer(a.admin()),
		body: map[string]any{"name": "mcs-" + strings.Join(scopes, "-"), "scopes": scopes}})
	app := r.json(a.t)
	return base64.StdEncoding.EncodeToString([]byte(styleStr(a.t, app, "app_id") + ":" + styleStr(a.t, app, "app_secret")))
}

// styleAppID is the app ID in base64(appId:appSecret).
func styleAppID(t *testing.T, credentials string) string {
	b, err := base64.StdEncoding.DecodeString(credentials)
	if err != nil {
		t.Fatal(err)
	}
	id, _, _ := strings.Cut(string(b), ":")
	return id
}

// styleAccessWorks reports whether an access token is accepted by the native API.
func (a *api) styleAccessWorks(tok string) bool {
	return a.do(request{method: "GET", path: "/v1/me/devices", header: bearer(tok)}).status == http.StatusOK
}

func styleMultipart(t *testing.T, fields map[string]string) (string, string) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, v := range fields {
		if err := w.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String(), w.FormDataContentType()
}

func TestDuktigStyle(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "dora", "password": "dora-password", "email": "dora@example.com"})
	a.createUser(map[string]any{"username": "dev", "password": "dev-password", "email": "dev@example.com"})
	a.createUser(map[string]any{"username": "dan", "password": "dan-password", "email": "dan@example.com"})
	a.styleDisableUser(a.createUser(map[string]any{"username": "dis", "password": "dis-password", "email": "dis@example.com"}))
	tr := newStyleTranscript(t, a, "duktig")
	signIn := func(body any) request { return request{method: "POST", path: "/auth/token", body: body} }
	refresh := func(rt string, body any) request {
		return request{method: "POST", path: "/auth/refresh_token", header: map[string]string{"Refresh-Token": rt}, body: body}
	}
	creds := map[string]string{"email": "dora@example.com", "password": "dora-password"}

	// A first login shows its own time as lastLogin; the next shows the first.
	r := tr.must("sign in (first login)", http.StatusOK, signIn(creds))
	styleWantNoStore(t, r)
	first := r.json(t)
	if first["status"] != "OK" || first["message"] != "Signed in successfully" || first["lastLogin"] != "2026-11-23 08:00:00" ||
		first["expires_in"] != a.styleUnixAt(a.cfg.AccessTTL) {
		t.Errorf("first sign-in = %v, want OK, lastLogin 2026-11-23 08:00:00, expires_in %v", first, a.styleUnixAt(a.cfg.AccessTTL))
	}
	a.clock.Advance(time.Hour)
	r = tr.must("sign in (a later login shows the previous one)", http.StatusOK, signIn(creds))
	if got := r.json(t)["lastLogin"]; got != "2026-11-23 08:00:00" {
		t.Errorf("second sign-in lastLogin = %v, want the first login's time", got)
	}
	rt := styleStr(t, first, "refresh_token")

	r = tr.must("refresh", http.StatusOK, refresh(rt, nil))
	styleWantNoStore(t, r)
	got := r.json(t)
	if got["status"] != "OK" || got["message"] != "Access token regenerated successfully" ||
		got["expires_in"] != a.styleUnixAt(a.cfg.AccessTTL) || got["refresh_token"] != nil {
		t.Errorf("refresh = %v", got)
	}
	if !a.styleAccessWorks(styleStr(t, got, "access_token")) {
		t.Error("the refreshed access token is refused by the native API")
	}
	// Not rotating: the same refresh token keeps working, past the grace window too.
	a.clock.Advance(a.cfg.RefreshReuseGrace + time.Second)
	tr.must("refresh again with the same token (not rotating)", http.StatusOK, refresh(rt, "{}"))

	// X-Device-Id must be the device the session was signed in on.
	devSignIn := signIn(map[string]string{"email": "dev@example.com", "password": "dev-password"})
	devSignIn.header = map[string]string{"X-Device-Id": "phone-1"}
	devRT := a.must(http.StatusOK, devSignIn).json(t)["refresh_token"].(string)
	withDevice := refresh(devRT, nil)
	withDevice.header["X-Device-Id"] = "phone-1"
	a.must(http.StatusOK, withDevice)

	refusals := []struct {
		label  string
		req    request
		status int
		body   string
	}{
		{"sign in: empty body", signIn(nil), 400, `["Json Error 4: Syntax error. Required valid json string"]`},
		{"sign in: malformed JSON", signIn(`{"email": `), 400, `["Json Error 4: Syntax error. Required valid json string"]`},
		{"sign in: missing fields", signIn(`{}`), 422,
			`{"email": ["Required value", "Required valid email address"], "password": ["Required value"]}`},
		{"sign in: malformed fields and an extra one", signIn(map[string]any{"email": "dora", "password": 12, "device": "x"}), 422,
			`{"email": ["Required valid email address"], "password": ["Required value"], "account": ["Required exact values as: email, password"]}`},
		{"sign in: wrong password", signIn(map[string]string{"email": "dan@example.com", "password": "wrong-password"}), 401,
			`{"status": "error", "message": "Incorrect credentials"}`},
		{"sign in: disabled account", signIn(map[string]string{"email": "dis@example.com", "password": "dis-password"}), 403,
			`{"status": "error", "message": "Due to the status of your account, you are not able to access this resource"}`},
		{"refresh: malformed JSON body", refresh(rt, `{nope`), 400, `["Json Error 4: Syntax error. Required valid json string"]`},
		{"refresh: no Refresh-Token", refresh("", nil), 401, `{"status": "error", "message": "Invalid token"}`},
		{"refresh: invalid token", refresh("prt_forged", nil), 401, `{"status": "error", "message": "Invalid token"}`},
		{"refresh: X-Device-Id of another device", func() request {
			r := refresh(devRT, nil)
			r.header["X-Device-Id"] = "phone-2"
			return r
		}(), 401, `{"status": "error", "message": "Incorrect X-Device-Id"}`},
		{"refresh: X-Device-Id on a session without a device", func() request {
			r := refresh(rt, nil)
			r.header["X-Device-Id"] = "phone-1"
			return r
		}(), 401, `{"status": "error", "message": "Incorrect X-Device-Id"}`},
	}
	for _, e := range refusals {
		styleWantBody(t, tr.must(e.label, e.status, e.req), e.status, e.body)
	}

	// An expired session (idle past the refresh TTL) is an invalid token too.
	a.clock.Advance(a.cfg.RefreshTTL + time.Second)
	styleWantBody(t, tr.must("refresh: expired", http.StatusUnauthorized, refresh(rt, nil)), 401,
		`{"status": "error", "message": "Invalid token"}`)
	tr.check()
}

func TestDuktigAuthKeys(t *testing.T) {
	t.Parallel()
	a := newAPI(t, map[string]string{"PUSHREG_DUKTIG_AUTH_KEYS": "key-one,key-two"})
	a.createUser(map[string]any{"username": "kay", "password": "kay-password", "email": "kay@example.com"})
	creds := map[string]string{"email": "kay@example.com", "password": "kay-password"}
	for _, tt := range []struct {
		key    string
		status int
	}{{"", 401}, {"key-three", 401}, {"key-one-", 401}, {"key-two", 200}, {"key-one", 200}} {
		r := a.do(request{method: "POST", path: "/auth/token", header: map[string]string{"X-Auth-Key": tt.key}, body: creds})
		if tt.status == http.StatusOK {
			if r.status != http.StatusOK {
				t.Errorf("X-Auth-Key %q: %d %s, want 200", tt.key, r.status, r.body)
			}
			continue
		}
		styleWantBody(t, r, tt.status, `{"status": "error", "message": "Unauthorized"}`)
	}
	// The refresh needs no key: the refresh token is the credential.
	rt := a.must(http.StatusOK, request{method: "POST", path: "/auth/token",
		header: map[string]string{"X-Auth-Key": "key-one"}, body: creds}).json(t)["refresh_token"].(string)
	a.must(http.StatusOK, request{method: "POST", path: "/auth/refresh_token", header: map[string]string{"Refresh-Token": rt}})
}

func TestAbitmediaStyle(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "abi", "password": "abi-password", "email": "abi@example.com"})
	tr := newStyleTranscript(t, a, "abitmedia")
	post := func(path string, body any, header map[string]string) request {
		return request{method: "POST", path: path, body: body, header: header}
	}
	ttl := a.cfg.AccessTTL.Seconds()

	// Sign in with JSON, an urlencoded form or a multipart form.
	r := tr.must("sign in (JSON, email)", http.StatusOK, post("/v1/auth", map[string]string{"email": "abi@example.com", "password": "abi-password"}, nil))
	styleWantNoStore(t, r)
	tok := r.json(t)
	if tok["success"] != true || tok["status"] != 200.0 || tok["expiresIn"] != ttl {
		t.Errorf("sign-in = %v, want success, status 200, expiresIn %v", tok, ttl)
	}
	tr.must("sign in (form, username)", http.StatusOK, post("/v1/auth", url.Values{"username": {"abi"}, "password": {"abi-password"}}, nil))
	mp, ctype := styleMultipart(t, map[string]string{"email": "abi@example.com", "password": "abi-password"})
	tr.must("sign in (multipart)", http.StatusOK, post("/v1/auth", mp, map[string]string{"Content-Type": ctype}))

	// Refresh rotates, in each encoding.
	rt0 := styleStr(t, tok, "refreshToken")
	r = tr.must("refresh (form)", http.StatusOK, post("/v1/refreshToken", url.Values{"refreshToken": {rt0}}, nil))
	styleWantNoStore(t, r)
	next := r.json(t)
	if next["success"] != true || next["status"] != 200.0 || next["message"] != "Token de refresco exitoso" || next["expiresIn"] != ttl {
		t.Errorf("refresh = %v", next)
	}
	rt1 := styleStr(t, next, "refreshToken")
	if rt1 == rt0 {
		t.Fatal("abitmedia refresh did not rotate the refresh token")
	}
	if !a.styleAccessWorks(styleStr(t, next, "accessToken")) {
		t.Error("the refreshed access token is refused by the native API")
	}
	rt2 := styleStr(t, tr.must("refresh (JSON)", http.StatusOK, post("/v1/refreshToken", map[string]string{"refreshToken": rt1}, nil)).json(t), "refreshToken")
	mp, ctype = styleMultipart(t, map[string]string{"refreshToken": rt2})
	rt3 := styleStr(t, tr.must("refresh (multipart)", http.StatusOK, post("/v1/refreshToken", mp, map[string]string{"Content-Type": ctype})).json(t), "refreshToken")

	// Past the grace window the newest token works and a retired one is
	// refused; presenting it revokes the session, by design.
	a.clock.Advance(a.cfg.RefreshReuseGrace + time.Second)
	rt4 := styleStr(t, tr.must("refresh with the newest token after the grace window", http.StatusOK,
		post("/v1/refreshToken", url.Values{"refreshToken": {rt3}}, nil)).json(t), "refreshToken")
	invalid := `{"success": false, "status": 400, "message": "Token de refresco inválido o expirado"}`
	styleWantBody(t, tr.must("refresh with a retired token", 400, post("/v1/refreshToken", url.Values{"refreshToken": {rt1}}, nil)), 400, invalid)
	styleWantBody(t, tr.must("refresh after reuse revoked the session", 400, post("/v1/refreshToken", url.Values{"refreshToken": {rt4}}, nil)), 400, invalid)

	a.createUser(map[string]any{"username": "ana", "password": "ana-password"})
	a.styleDisableUser(a.createUser(map[string]any{"username": "dis", "password": "dis-password"}))
	expiring := styleStr(t, a.must(http.StatusOK, post("/v1/auth", url.Values{"username": {"ana"}, "password": {"ana-password"}}, nil)).json(t), "refreshToken")

	refusals := []struct {
		label  string
		req    request
		status int
		body   string
	}{
		{"refresh: invalid token", post("/v1/refreshToken", url.Values{"refreshToken": {"prt_forged"}}, nil), 400, invalid},
		{"refresh: no refreshToken", post("/v1/refreshToken", url.Values{}, nil), 400,
			`{"success": false, "status": 400, "message": "El parámetro refreshToken es requerido"}`},
		{"refresh: malformed JSON", post("/v1/refreshToken", `{"refreshToken": `, nil), 400,
			`{"success": false, "status": 400, "message": "El cuerpo no es JSON válido"}`},
		{"refresh: unsupported Content-Type", post("/v1/refreshToken", "refreshToken", map[string]string{"Content-Type": "text/plain"}), 415,
			`{"success": false, "status": 415, "message": "Content-Type debe ser application/x-www-form-urlencoded, multipart/form-data o application/json"}`},
		{"sign in: no password", post("/v1/auth", url.Values{"username": {"ana"}}, nil), 400,
			`{"success": false, "status": 400, "message": "El parámetro password es requerido"}`},
		{"sign in: wrong password", post("/v1/auth", url.Values{"username": {"ana"}, "password": {"wrong-password"}}, nil), 401,
			`{"success": false, "status": 401, "message": "Usuario o contraseña incorrectos"}`},
		{"sign in: disabled account", post("/v1/auth", url.Values{"username": {"dis"}, "password": {"dis-password"}}, nil), 403,
			`{"success": false, "status": 403, "message": "La cuenta está deshabilitada"}`},
	}
	for _, e := range refusals {
		r := tr.must(e.label, e.status, e.req)
		styleWantBody(t, r, e.status, e.body)
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: Content-Type %q, want abitmedia's application/json", e.label, ct)
		}
	}
	a.clock.Advance(a.cfg.RefreshTTL + time.Second)
	styleWantBody(t, tr.must("refresh: expired", 400, post("/v1/refreshToken", url.Values{"refreshToken": {expiring}}, nil)), 400, invalid)

	// The native API under /v1 keeps its own error shape.
	r = a.do(request{method: "POST", path: "/v1/auth/token", body: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"prt_forged"}}})
	if r.status != http.StatusBadRequest || r.json(t)["error"] != "invalid_grant" {
		t.Errorf("native token endpoint = %d %s, want its OAuth invalid_grant", r.status, r.body)
	}
	r = a.do(request{method: "POST", path: "/v1/nowhere"})
	if r.status != http.StatusNotFound || r.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("unknown /v1 path = %d %s %s, want a 404 problem+json", r.status, r.header.Get("Content-Type"), r.body)
	}
	tr.check()
}

func TestKalselStyle(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "kal", "password": "kal-password", "email": "kal@example.com"})
	tr := newStyleTranscript(t, a, "kalsel")
	login := func(body any) request { return request{method: "POST", path: "/api/v1/login", body: body} }
	refresh := func(body any) request { return request{method: "POST", path: "/api/v1/refresh", body: body} }

	r := tr.must("sign in (username)", http.StatusOK, login(map[string]string{"username": "kal", "password": "kal-password"}))
	styleWantNoStore(t, r)
	tok := r.json(t)
	if tok["expired"] != a.styleUnixAt(a.cfg.AccessTTL) {
		t.Errorf("sign-in expired = %v, want %v", tok["expired"], a.styleUnixAt(a.cfg.AccessTTL))
	}
	tr.must("sign in (email)", http.StatusOK, login(map[string]string{"email": "kal@example.com", "password": "kal-password"}))
	rt := styleStr(t, tok, "refresh_token")

	for _, tt := range []struct {
		label string
		limit any
		ttl   time.Duration
	}{
		{"refresh (no limit: 7 days)", nil, 7 * 24 * time.Hour},
		{"refresh (limit 10)", 10, 10 * time.Minute},
		{"refresh (limit 10080)", 10080, 7 * 24 * time.Hour},
		{"refresh (limit 60.0)", json.RawMessage("60.0"), time.Hour},
	} {
		body := map[string]any{"refresh_token": rt}
		if tt.limit != nil {
			body["limit"] = tt.limit
		}
		r := tr.must(tt.label, http.StatusOK, refresh(body))
		styleWantNoStore(t, r)
		got := r.json(t)
		if got["expired"] != a.styleUnixAt(tt.ttl) || got["refresh_token"] != nil {
			t.Errorf("%s = %v, want expired %v and no refresh_token", tt.label, got, a.styleUnixAt(tt.ttl))
		}
		if !a.styleAccessWorks(styleStr(t, got, "access_token")) {
			t.Errorf("%s: the access token is refused by the native API", tt.label)
		}
	}
	// Not rotating: the same refresh token works past the grace window.
	a.clock.Advance(a.cfg.RefreshReuseGrace + time.Second)
	tr.must("refresh again with the same token (not rotating)", http.StatusOK, refresh(map[string]any{"refresh_token": rt, "limit": 30}))

	a.createUser(map[string]any{"username": "kit", "password": "kit-password"})
	a.styleDisableUser(a.createUser(map[string]any{"username": "dis", "password": "dis-password"}))
	revoked := styleStr(t, a.must(http.StatusOK, login(map[string]string{"username": "kit", "password": "kit-password"})).json(t), "refresh_token")
	a.must(http.StatusOK, request{method: "POST", path: "/v1/auth/revoke", body: url.Values{"token": {revoked}}})

	refusals := []struct {
		label  string
		req    request
		status int
		body   string
	}{
		{"refresh: limit below 10", refresh(map[string]any{"refresh_token": rt, "limit": 9}), 400,
			`{"status": 400, "message": "Invalid request", "error": "validation_error", "causes": ["limit: must be from 10 to 10080 minutes"]}`},
		{"refresh: limit above 10080", refresh(map[string]any{"refresh_token": rt, "limit": 10081}), 400,
			`{"status": 400, "message": "Invalid request", "error": "validation_error", "causes": ["limit: must be from 10 to 10080 minutes"]}`},
		{"refresh: limit not whole", refresh(map[string]any{"refresh_token": rt, "limit": 10.5}), 400,
			`{"status": 400, "message": "Invalid request", "error": "validation_error", "causes": ["limit: must be a whole number of minutes"]}`},
		{"refresh: limit a string", refresh(map[string]any{"refresh_token": rt, "limit": "10"}), 400,
			`{"status": 400, "message": "Invalid request", "error": "validation_error", "causes": ["limit: must be a whole number of minutes"]}`},
		{"refresh: no refresh_token", refresh(map[string]any{"limit": 10}), 400,
			`{"status": 400, "message": "Invalid request", "error": "validation_error", "causes": ["refresh_token: is required"]}`},
		{"refresh: invalid token", refresh(map[string]any{"refresh_token": "prt_forged"}), 401,
			`{"status": 401, "message": "Invalid token", "error": "jwt_error", "causes": ["token is invalid"]}`},
		{"refresh: revoked token", refresh(map[string]any{"refresh_token": revoked}), 401,
			`{"status": 401, "message": "Token revoked", "error": "jwt_error", "causes": ["token has been revoked"]}`},
		{"sign in: wrong password", login(map[string]string{"username": "kit", "password": "wrong-password"}), 401,
			`{"status": 401, "message": "Invalid credentials", "error": "auth_error", "causes": ["wrong username or password"]}`},
		{"sign in: disabled account", login(map[string]string{"username": "dis", "password": "dis-password"}), 403,
			`{"status": 403, "message": "Account disabled", "error": "auth_error", "causes": ["the account is disabled"]}`},
		{"sign in: no password", login(map[string]string{"email": "kal@example.com"}), 400,
			`{"status": 400, "message": "Invalid request", "error": "validation_error", "causes": ["password: is required"]}`},
	}
	for _, e := range refusals {
		styleWantBody(t, tr.must(e.label, e.status, e.req), e.status, e.body)
	}

	a.clock.Advance(a.cfg.RefreshTTL + time.Second)
	styleWantBody(t, tr.must("refresh: expired", 421, refresh(map[string]any{"refresh_token": rt})), 421,
		`{"status": 421, "message": "Token expired", "error": "jwt_error", "causes": ["token has expired"]}`)
	tr.check()
}

func TestMCSStyle(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "mcsuser", "password": "mcs-password", "email": "mcsuser@mediatek.com",
		"nickname": "MCS User", "timezone": "Asia/Taipei", "language": "zh-TW", "image_url": "profile/1234567890.jpg",
		"plan": map[string]any{"name": "Free plan", "device_count": 10, "data_point_count": 100000, "email_count": 100}})
	app := a.styleMCSApp("mcs")
	tr := newStyleTranscript(t, a, "mcs")
	call := func(path, authorization string, body any) request {
		return request{method: "POST", path: path, header: map[string]string{"authorization": authorization}, body: body}
	}
	signIn := func(authorization string, body any) request {
		return call("/oauth/login/thirdpart", authorization, body)
	}
	refresh := func(authorization, token string) request {
		return call("/oauth/login/thirdpart/refresh", authorization, map[string]string{"token": token})
	}
	profile := map[string]any{"userImageURL": "profile/1234567890.jpg", "timezone": "Asia/Taipei", "email": "mcsuser@mediatek.com",
		"nickname": "MCS User", "language": "zh-TW",
		"plan": map[string]any{"name": "Free plan", "deviceCount": 10.0, "dataPointCount": 100000.0, "emailCount": 100.0}}
	checkAnswer := func(label string, r response) (string, string) {
		t.Helper()
		styleWantNoStore(t, r)
		m := r.json(t)
		res, _ := m["results"].(map[string]any)
		if m["apiVersion"] != "0.0.1" || m["code"] != 200.0 || m["message"] != "Request has succeeded" || res == nil {
			t.Fatalf("%s = %v", label, m)
		}
		for k, v := range profile {
			if !reflect.DeepEqual(res[k], v) {
				t.Errorf("%s: results.%s = %v, want %v", label, k, res[k], v)
			}
		}
		return styleStr(t, res, "access_token"), styleStr(t, res, "token")
	}

	at, tok0 := checkAnswer("sign in", tr.must("sign in (Basic, email)", http.StatusOK,
		signIn("Basic "+app, map[string]string{"email": "mcsuser@mediatek.com", "password": "mcs-password"})))
	if !a.styleAccessWorks(at) {
		t.Error("the access token is refused by the native API")
	}
	tr.must("sign in (no Basic prefix, username)", http.StatusOK, signIn(app, map[string]string{"username": "mcsuser", "password": "mcs-password"}))

	at, tok1 := checkAnswer("refresh", tr.must("refresh (no Basic prefix, as MCS's example)", http.StatusOK, refresh(app, tok0)))
	if tok1 == tok0 {
		t.Fatal("MCS refresh did not rotate the user token")
	}
	if !a.styleAccessWorks(at) {
		t.Error("the refreshed access token is refused by the native API")
	}
	_, tok2 := checkAnswer("refresh", tr.must("refresh (Basic)", http.StatusOK, refresh("Basic "+app, tok1)))

	a.clock.Advance(a.cfg.RefreshReuseGrace + time.Second)
	_, tok3 := checkAnswer("refresh", tr.must("refresh with the newest token after the grace window", http.StatusOK, refresh(app, tok2)))
	styleWantBody(t, tr.must("refresh with a retired token", 401, refresh(app, tok1)), 401,
		`{"apiVersion": "0.0.1", "code": 401, "message": "Reused user token; the session has been revoked", "statusCode": 401, "options": {}}`)
	styleWantBody(t, tr.must("refresh after reuse revoked the session", 401, refresh(app, tok3)), 401,
		`{"apiVersion": "0.0.1", "code": 401, "message": "Revoked user token", "statusCode": 401, "options": {}}`)

	noScope := a.styleMCSApp("push:send")
	revokedApp := a.styleMCSApp("mcs")
	a.must(http.StatusNoContent, request{method: "DELETE", path: "/v1/admin/apps/" + styleAppID(t, revokedApp), header: bearer(a.admin())})
	wrongSecret := base64.StdEncoding.EncodeToString([]byte(styleAppID(t, app) + ":wrong-secret"))
	a.createUser(map[string]any{"username": "mia", "password": "mia-password"})
	a.styleDisableUser(a.createUser(map[string]any{"username": "dis", "password": "dis-password"}))
	live := styleStr(t, a.must(http.StatusOK, signIn(app, map[string]string{"username": "mia", "password": "mia-password"})).json(t)["results"].(map[string]any), "token")

	clientErr := `{"apiVersion": "0.0.1", "code": 401, "message": "Invalid or missing client_id parameter", "statusCode": 401, "options": {}}`
	scopeErr := `{"apiVersion": "0.0.1", "code": 403, "message": "The app lacks the mcs scope; an admin can create an app with it", "statusCode": 403, "options": {}}`
	mia := map[string]string{"username": "mia", "password": "mia-password"}
	refusals := []struct {
		label  string
		req    request
		status int
		body   string
	}{
		{"sign in: no authorization", signIn("", mia), 401, clientErr},
		{"sign in: not base64", signIn("Basic !!!", mia), 401, clientErr},
		{"sign in: wrong app secret", signIn(wrongSecret, mia), 401, clientErr},
		{"sign in: app without the mcs scope", signIn(noScope, mia), 403, scopeErr},
		{"sign in: revoked app", signIn(revokedApp, mia), 401, clientErr},
		{"refresh: no authorization", refresh("", live), 401, clientErr},
		{"refresh: app without the mcs scope", refresh("Basic "+noScope, live), 403, scopeErr},
		{"refresh: invalid user token", refresh(app, "prt_forged"), 401,
			`{"apiVersion": "0.0.1", "code": 401, "message": "Invalid user token", "statusCode": 401, "options": {}}`},
		{"refresh: no token", call("/oauth/login/thirdpart/refresh", app, map[string]string{}), 400,
			`{"apiVersion": "0.0.1", "code": 400, "message": "token: is required", "statusCode": 400, "options": {}}`},
		{"sign in: wrong password", signIn(app, map[string]string{"username": "mia", "password": "wrong-password"}), 401,
			`{"apiVersion": "0.0.1", "code": 401, "message": "Invalid email or password", "statusCode": 401, "options": {}}`},
		{"sign in: disabled account", signIn(app, map[string]string{"username": "dis", "password": "dis-password"}), 403,
			`{"apiVersion": "0.0.1", "code": 403, "message": "The account is disabled", "statusCode": 403, "options": {}}`},
	}
	for _, e := range refusals {
		styleWantBody(t, tr.must(e.label, e.status, e.req), e.status, e.body)
	}
	a.clock.Advance(a.cfg.RefreshTTL + time.Second)
	styleWantBody(t, tr.must("refresh: expired", 401, refresh(app, live)), 401,
		`{"apiVersion": "0.0.1", "code": 401, "message": "Expired user token", "statusCode": 401, "options": {}}`)
	tr.check()
}

// styleCase drives one style generically: sign in, and refresh with the
// refresh token it handed out.
type styleCase struct {
	name    string
	signIn  func(a *api, user string) request
	token   func(t *testing.T, r response) string // the refresh token of a sign-in answer
	refresh func(a *api, rt string) request
	refused int // the status of a refused refresh
}

// styleCases returns the four styles; mcsApp is base64(appId:appSecret).
func styleCases(mcsApp string) []styleCase {
	password := func(user string) string { return user + "-password" }
	field := func(key string) func(t *testing.T, r response) string {
		return func(t *testing.T, r response) string { return styleStr(t, r.json(t), key) }
	}
	return []styleCase{
		{
			name: "duktig",
			signIn: func(a *api, user string) request {
				return request{method: "POST", path: "/auth/token", body: map[string]string{"email": user + "@example.com", "password": password(user)}}
			},
			token: field("refresh_token"),
			refresh: func(a *api, rt string) request {
				return request{method: "POST", path: "/auth/refresh_token", header: map[string]string{"Refresh-Token": rt}}
			},
			refused: http.StatusUnauthorized,
		},
		{
			name: "abitmedia",
			signIn: func(a *api, user string) request {
				return request{method: "POST", path: "/v1/auth", body: url.Values{"email": {user + "@example.com"}, "password": {password(user)}}}
			},
			token: field("refreshToken"),
			refresh: func(a *api, rt string) request {
				return request{method: "POST", path: "/v1/refreshToken", body: url.Values{"refreshToken": {rt}}}
			},
			refused: http.StatusBadRequest,
		},
		{
			name: "kalsel",
			signIn: func(a *api, user string) request {
				return request{method: "POST", path: "/api/v1/login", body: map[string]string{"username": user, "password": password(user)}}
			},
			token: field("refresh_token"),
			refresh: func(a *api, rt string) request {
				return request{method: "POST", path: "/api/v1/refresh", body: map[string]string{"refresh_token": rt}}
			},
			refused: http.StatusUnauthorized,
		},
		{
			name: "mcs",
			signIn: func(a *api, user string) request {
				return request{method: "POST", path: "/oauth/login/thirdpart", header: map[string]string{"authorization": "Basic " + mcsApp},
					body: map[string]string{"username": user, "password": password(user)}}
			},
			token: func(t *testing.T, r response) string {
				res, _ := r.json(t)["results"].(map[string]any)
				return styleStr(t, res, "token")
			},
			refresh: func(a *api, rt string) request {
				return request{method: "POST", path: "/oauth/login/thirdpart/refresh", header: map[string]string{"authorization": "Basic " + mcsApp},
					body: map[string]string{"token": rt}}
			},
			refused: http.StatusUnauthorized,
		},
	}
}

// styleDo is a.do with failures reported on t, for subtests.
func styleDo(t *testing.T, a *api, want int, req request) response {
	t.Helper()
	r := a.do(req)
	if r.status != want {
		t.Fatalf("%s %s = %d %s, want %d", req.method, req.path, r.status, r.body, want)
	}
	return r
}

func TestStylesSessionsAreRevocable(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	cases := styleCases(a.styleMCSApp("mcs"))
	ids := map[string]string{}
	for _, c := range cases {
		ids[c.name] = a.createUser(map[string]any{"username": c.name, "password": c.name + "-password", "email": c.name + "@example.com"})
	}
	admin := a.admin()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			// The session records the style it was made through.
			rt := c.token(t, styleDo(t, a, http.StatusOK, c.signIn(a, c.name)))
			events := styleDo(t, a, http.StatusOK, request{method: "GET", path: "/v1/admin/users/" + ids[c.name] + "/events", header: bearer(admin)})
			if !strings.Contains(string(events.body), `"outcome":"style `+c.name+`"`) {
				t.Errorf("login events %s do not record style %s", events.body, c.name)
			}
			styleDo(t, a, http.StatusOK, c.refresh(a, rt))

			// RFC 7009 revocation of the refresh token ends the session.
			styleDo(t, a, http.StatusOK, request{method: "POST", path: "/v1/auth/revoke", body: url.Values{"token": {rt}}})
			styleDo(t, a, c.refused, c.refresh(a, rt))

			// So does the admin's revocation of every session of the user.
			rt = c.token(t, styleDo(t, a, http.StatusOK, c.signIn(a, c.name)))
			styleDo(t, a, http.StatusOK, c.refresh(a, rt))
			r := styleDo(t, a, http.StatusOK, request{method: "DELETE", path: "/v1/admin/users/" + ids[c.name] + "/sessions", header: bearer(admin)})
			if n := r.json(t)["revoked"]; n != 1.0 {
				t.Errorf("admin revoked %v sessions, want 1", n)
			}
			styleDo(t, a, c.refused, c.refresh(a, rt))
		})
	}
}

func TestStylesSwitchedOffAnswer404(t *testing.T) {
	t.Parallel()
	a := newAPI(t, map[string]string{"PUSHREG_STYLES": "kecak"})
	a.createUser(map[string]any{"username": "off", "password": "off-password", "email": "off@example.com"})
	cases := styleCases(a.styleMCSApp("mcs"))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			styleDo(t, a, http.StatusNotFound, c.signIn(a, "off"))
			styleDo(t, a, http.StatusNotFound, c.refresh(a, "prt_anything"))
		})
	}
	// The native API and Kecak still answer.
	a.login("off", "off-password", nil)
}

func TestStylesRateLimited(t *testing.T) {
	t.Parallel()
	a := newAPI(t, map[string]string{"PUSHREG_LOGIN_RATE_LIMIT": "1"})
	cases := styleCases(a.styleMCSApp("mcs"))
	// One failure from this client's IP uses up its allowance.
	a.must(http.StatusUnauthorized, request{method: "POST", path: "/v1/auth/login", body: map[string]string{"username": "nobody", "password": "wrong-password"}})
	want := map[string]string{
		"duktig":    `{"status": "error", "message": "Too many failed sign-in attempts; retry in 60 seconds"}`,
		"abitmedia": `{"success": false, "status": 429, "message": "Demasiados intentos fallidos; reintente en 60 segundos"}`,
		"kalsel":    `{"status": 429, "message": "Too many requests", "error": "rate_limit_error", "causes": ["too many failed logins; retry in 1m0s"]}`,
		"mcs":       `{"apiVersion": "0.0.1", "code": 429, "message": "too many failed logins; retry in 1m0s", "statusCode": 429, "options": {}}`,
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := a.do(c.signIn(a, "someone"))
			styleWantBody(t, r, http.StatusTooManyRequests, want[c.name])
			if got := r.header.Get("Retry-After"); got != "60" {
				t.Errorf("Retry-After = %q, want 60", got)
			}
		})
	}
}

func TestStylesStoreUnavailable(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	cases := styleCases(a.styleMCSApp("mcs"))
	a.createUser(map[string]any{"username": "una", "password": "una-password", "email": "una@example.com"})
	tokens := map[string]string{}
	for _, c := range cases {
		tokens[c.name] = c.token(t, a.must(http.StatusOK, c.signIn(a, "una")))
	}
	a.svc.close() // the store's client is gone: every store call is unavailable
	want := map[string]string{
		"duktig":    `{"status": "error", "message": "Service Unavailable"}`,
		"abitmedia": `{"success": false, "status": 503, "message": "Servicio no disponible temporalmente; reintente más tarde"}`,
		"kalsel":    `{"status": 503, "message": "Service Unavailable", "error": "server_error", "causes": ["the store is unavailable; retry later"]}`,
		"mcs":       `{"apiVersion": "0.0.1", "code": 503, "message": "Service unavailable; retry later", "statusCode": 503, "options": {}}`,
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, req := range []request{c.signIn(a, "una"), c.refresh(a, tokens[c.name])} {
				r := a.do(req)
				styleWantBody(t, r, http.StatusServiceUnavailable, want[c.name])
				if r.header.Get("Retry-After") == "" {
					t.Errorf("%s: no Retry-After", req.path)
				}
			}
		})
	}
	if logs := a.logs.String(); strings.Contains(logs, "prt_") || strings.Contains(logs, "una-password") {
		t.Error("the logs hold a refresh token or a password")
	}
}
