package main

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// jwtParts decodes a JWT's header and claims without verifying it.
func jwtParts(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%q is not a JWT", tok)
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}

func TestLoginRefreshRotation(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "Alice", "password": "alice-password"})
	tok := a.login("alice", "alice-password", nil) // usernames compare case-insensitively
	for _, field := range []string{"access_token", "refresh_token", "session_id"} {
		if s, _ := tok[field].(string); s == "" {
			t.Fatalf("login response %v lacks %s", tok, field)
		}
	}
	if tok["token_type"] != "Bearer" || tok["expires_in"].(float64) != 900 {
		t.Errorf("login token_type %v expires_in %v, want Bearer 900", tok["token_type"], tok["expires_in"])
	}

	r := a.refresh(tok["refresh_token"].(string), nil)
	if r.status != http.StatusOK {
		t.Fatalf("refresh = %d %s", r.status, r.body)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("token response Cache-Control = %q, want no-store", got)
	}
	next := r.json(t)
	if next["refresh_token"] == tok["refresh_token"] || next["token_type"] != "Bearer" {
		t.Fatalf("refresh answered %v, want a new refresh token", next)
	}
	a.clock.Advance(a.cfg.RefreshReuseGrace + time.Second)
	r = a.refresh(next["refresh_token"].(string), nil)
	if r.status != http.StatusOK {
		t.Fatalf("refresh with the rotated token = %d %s", r.status, r.body)
	}
}

func TestReuseAfterGraceRevokesSession(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "bob", "password": "bob-password"})
	first := a.login("bob", "bob-password", nil)["refresh_token"].(string)
	second := a.refresh(first, nil).json(t)["refresh_token"].(string)

	a.clock.Advance(a.cfg.RefreshReuseGrace + time.Second)
	r := a.refresh(first, nil) // the thief (or the victim) replays the retired token
	if r.status != http.StatusBadRequest || r.json(t)["error"] != "invalid_grant" {
		t.Fatalf("reuse after grace = %d %s, want 400 invalid_grant", r.status, r.body)
	}
	// The whole session is gone: the live successor no longer works either.
	r = a.refresh(second, nil)
	if r.status != http.StatusBadRequest {
		t.Fatalf("successor after reuse detection = %d %s, want 400", r.status, r.body)
	}
	events := a.must(http.StatusOK, request{method: "GET", path: "/v1/admin/users/" + id + "/events", header: bearer(a.admin())}).json(t)
	found := false
	for _, e := range events["events"].([]any) {
		found = found || e.(map[string]any)["type"] == "reuse_detected"
	}
	if !found {
		t.Errorf("events %v lack reuse_detected", events)
	}
	if strings.Contains(a.logs.String(), first) || strings.Contains(a.logs.String(), second) {
		t.Error("a refresh token appears in the logs")
	}
}

func TestConcurrentRefreshesWithOneTokenInsideGrace(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "carol", "password": "carol-password"})
	rt := a.login("carol", "carol-password", nil)["refresh_token"].(string)

	const n = 50
	var wg sync.WaitGroup
	results := make([]response, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = a.refresh(rt, nil)
		}()
	}
	wg.Wait()
	successors := map[string]bool{}
	for i, r := range results {
		if r.status != http.StatusOK {
			t.Fatalf("refresh %d = %d %s, want 200", i, r.status, r.body)
		}
		successors[r.json(t)["refresh_token"].(string)] = true
	}
	if len(successors) != 1 {
		t.Fatalf("%d different successors, want one live successor", len(successors))
	}
	for s := range successors {
		if r := a.refresh(s, nil); r.status != http.StatusOK {
			t.Fatalf("the successor = %d %s, want 200 (no revocation)", r.status, r.body)
		}
	}
}

// A rotating refresh is one conditional findAndModify on MongoDB, and a
// read and a write by _id on the embedded store, where any other filter
// reads every session.
func TestRotatingRefreshRoundTrips(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		options []func(*config)
		want    int64
	}{
		{"embedded", nil, 2},
		{"shared", []func(*config){shared}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a := newAPI(t, nil, c.options...)
			a.createUser(map[string]any{"username": "dave", "password": "dave-password"})
			rt := a.login("dave", "dave-password", nil)["refresh_token"].(string)
			before := a.svc.commands.Started()
			r := a.refresh(rt, nil)
			if r.status != http.StatusOK {
				t.Fatal(r.status, string(r.body))
			}
			if got := a.svc.commands.Started() - before; got != c.want {
				t.Errorf("a rotating refresh sent %d MongoDB commands, want %d", got, c.want)
			}
		})
	}
}

// A login reads its username's key and the user by _id, writes the session
// and stamps the login on the user (whose answer tells whether a disable
// raced the login), nothing else: the session is the login's audit entry.
// A login by email reads the username's key first (a username that looks
// like an email wins), then the email's.
func TestLoginRoundTrips(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "dora", "password": "dora-password", "email": "dora@example.com"})
	if u := admGet[map[string]any](a, "/v1/admin/users/"+id); u["last_login_at"] != nil {
		t.Errorf("last_login_at before any login = %v, want none", u["last_login_at"])
	}
	before := a.svc.commands.Started()
	login := a.login("dora", "dora-password", nil)
	if got := a.svc.commands.Started() - before; got != 4 {
		t.Errorf("a login sent %d MongoDB commands, want 4", got)
	}
	wantAt := a.clock.Now().UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano)
	if u := admGet[map[string]any](a, "/v1/admin/users/"+id); u["last_login_at"] != wantAt {
		t.Errorf("last_login_at = %v, want the login's time %s", u["last_login_at"], wantAt)
	}
	list := admGet[map[string]any](a, "/v1/admin/users?prefix=dora")["users"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["last_login_at"] != wantAt {
		t.Errorf("users list = %v, want dora with last_login_at %s", list, wantAt)
	}
	events := admGet[admEventPage](a, "/v1/admin/users/"+id+"/events").Events
	if len(events) == 0 || events[0].Type != "login" || events[0].SessionID != login["session_id"] || events[0].Actor != "user:"+id {
		t.Errorf("newest audit entry = %+v, want dora's login of session %v", events, login["session_id"])
	}
	before = a.svc.commands.Started()
	a.login("Dora@example.com", "dora-password", nil)
	if got := a.svc.commands.Started() - before; got != 5 {
		t.Errorf("a login by email sent %d MongoDB commands, want 5", got)
	}
}

// A login names a user by username or by email; a username that looks
// like an email wins over another user's email.
func TestLoginByUsernameOrEmail(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	owner := a.createUser(map[string]any{"username": "kim@example.com", "password": "owner-password"})
	other := a.createUser(map[string]any{"username": "lee", "password": "other-password", "email": "KIM@example.com"})
	mail := a.createUser(map[string]any{"username": "max", "password": "max-password", "email": "max@example.com"})
	tests := []struct {
		login, password string
		want            int
		user            string
	}{
		{"kim@example.com", "owner-password", http.StatusOK, owner},
		{"KIM@example.com", "owner-password", http.StatusOK, owner},
		{"kim@example.com", "other-password", http.StatusUnauthorized, ""},
		{"lee", "other-password", http.StatusOK, other},
		{"Max@Example.com", "max-password", http.StatusOK, mail},
		{"max", "max-password", http.StatusOK, mail},
		{"nobody@example.com", "max-password", http.StatusUnauthorized, ""},
	}
	for _, tt := range tests {
		r := a.do(request{method: "POST", path: "/v1/auth/login", body: map[string]string{"username": tt.login, "password": tt.password}})
		if r.status != tt.want {
			t.Errorf("login %s with %s = %d, want %d", tt.login, tt.password, r.status, tt.want)
			continue
		}
		if tt.user != "" {
			_, claims := jwtParts(t, r.json(t)["access_token"].(string))
			if claims["sub"] != tt.user {
				t.Errorf("login %s signed in %v, want %s", tt.login, claims["sub"], tt.user)
			}
		}
	}
}

func TestAccessTokenVerifiesWithPublishedJWKS(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "erin", "password": "erin-password"})
	at := a.login("erin", "erin-password", map[string]string{"device_id": "phone-1", "fcm_token": "erin:APA91bToken"})["access_token"].(string)

	var set struct {
		Keys []struct{ Kty, Crv, Kid, X, Alg string }
	}
	if err := json.Unmarshal(a.must(http.StatusOK, request{method: "GET", path: "/.well-known/jwks.json"}).body, &set); err != nil {
		t.Fatal(err)
	}
	header, claims := jwtParts(t, at)
	if header["typ"] != "at+jwt" || header["alg"] != "EdDSA" {
		t.Errorf("header %v, want typ at+jwt alg EdDSA", header)
	}
	// An independent verifier: the standard library, not golang-jwt.
	verified := false
	for _, k := range set.Keys {
		if k.Kid != header["kid"] || k.Kty != "OKP" || k.Crv != "Ed25519" {
			continue
		}
		pub, _ := base64.RawURLEncoding.DecodeString(k.X)
		parts := strings.Split(at, ".")
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		verified = ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig)
	}
	if !verified {
		t.Fatalf("no JWKS key (%+v) verifies the access token", set.Keys)
	}
	for _, c := range []string{"iss", "aud", "sub", "sid", "jti", "iat", "nbf", "exp", "roles"} {
		if claims[c] == nil {
			t.Errorf("claims lack %s: %v", c, claims)
		}
	}
	if _, ok := claims["fcm_token"]; claims["device_id"] != "phone-1" || ok {
		t.Errorf("claims device_id %v fcm_token %v, want the bound device and no FCM token", claims["device_id"], claims["fcm_token"])
	}
}

// forge builds a JWT with the given header and claims, signed by sign.
func forge(header, claims map[string]any, sign func(input string) []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return input + "." + base64.RawURLEncoding.EncodeToString(sign(input))
}

func TestRefusedAccessTokens(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "frank", "password": "frank-password"})
	at := a.login("frank", "frank-password", nil)["access_token"].(string)
	header, claims := jwtParts(t, at)
	var jwks struct{ Keys []struct{ X string } }
	json.Unmarshal(a.must(http.StatusOK, request{method: "GET", path: "/.well-known/jwks.json"}).body, &jwks)
	pub, _ := base64.RawURLEncoding.DecodeString(jwks.Keys[0].X)

	with := func(m map[string]any, k string, v any) map[string]any {
		out := map[string]any{}
		for kk, vv := range m {
			out[kk] = vv
		}
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	none := func(string) []byte { return nil }
	hs256 := func(in string) []byte { m := hmac.New(sha256.New, pub); m.Write([]byte(in)); return m.Sum(nil) }
	junkSig := func(string) []byte { return make([]byte, 64) }
	now := a.clock.Now().Unix()
	tests := []struct {
		name  string
		token string
	}{
		{"alg none", forge(with(header, "alg", "none"), claims, none)},
		{"HS256 signed with the public key", forge(with(header, "alg", "HS256"), claims, hs256)},
		{"unknown kid", forge(with(header, "kid", "other"), claims, junkSig)},
		{"tampered claims", forge(header, with(claims, "sub", "someone-else"), junkSig)},
		{"wrong issuer", forge(header, with(claims, "iss", "https://evil.example"), junkSig)},
		{"kecak token type", forge(with(header, "typ", "kecak+jwt"), claims, junkSig)},
		{"garbage", "not.a.jwt"},
		{"empty bearer", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do(request{method: "GET", path: "/v1/me/devices", header: bearer(tt.token)})
			if r.status != http.StatusUnauthorized {
				t.Fatalf("= %d %s, want 401", r.status, r.body)
			}
		})
	}
	// Correctly signed tokens whose claims are wrong, as another service
	// holding pushreg's key (or a bug) could mint them.
	key := signingKey(t, a)
	signed := func(in string) []byte { return ed25519.Sign(key, []byte(in)) }
	for _, tt := range []struct {
		name   string
		claims map[string]any
	}{
		{"wrong audience", with(claims, "aud", []string{"another-service"})},
		{"wrong issuer, signed", with(claims, "iss", "https://evil.example")},
		{"expired", with(claims, "exp", now-60)},
		{"not yet valid", with(with(claims, "nbf", now+3600), "iat", now+3600)},
		{"no expiry", with(claims, "exp", nil)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := forge(header, tt.claims, signed)
			if r := a.do(request{method: "GET", path: "/v1/me/devices", header: bearer(tok)}); r.status != http.StatusUnauthorized {
				t.Fatalf("= %d %s, want 401", r.status, r.body)
			}
		})
	}
	t.Run("correctly signed control", func(t *testing.T) {
		// The forging helper itself is sound: unchanged claims pass.
		a.must(http.StatusOK, request{method: "GET", path: "/v1/me/devices", header: bearer(forge(header, claims, signed))})
	})
	t.Run("valid token accepted", func(t *testing.T) {
		fresh := a.login("frank", "frank-password", nil)["access_token"].(string)
		a.must(http.StatusOK, request{method: "GET", path: "/v1/me/devices", header: bearer(fresh)})
	})
}

// signingKey reads the key pushreg generated into its data directory.
func signingKey(t *testing.T, a *api) ed25519.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.cfg.DataDir, "jwt-signing-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(ed25519.PrivateKey)
}

func TestLoginDoesNotTellUnknownUsersFromWrongPasswords(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "gina", "password": "gina-password"})
	wrong := a.do(request{method: "POST", path: "/v1/auth/login", body: map[string]string{"username": "gina", "password": "nope-nope-nope"}})
	unknown := a.do(request{method: "POST", path: "/v1/auth/login", body: map[string]string{"username": "nobody", "password": "nope-nope-nope"}})
	if wrong.status != http.StatusUnauthorized || unknown.status != wrong.status || string(unknown.body) != string(wrong.body) {
		t.Errorf("wrong password = %d %s; unknown user = %d %s; want the same 401", wrong.status, wrong.body, unknown.status, unknown.body)
	}
}

func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	a := newAPI(t, map[string]string{"PUSHREG_LOGIN_RATE_LIMIT": "3"})
	a.createUser(map[string]any{"username": "hank", "password": "hank-password"})
	bad := request{method: "POST", path: "/v1/auth/login", body: map[string]string{"username": "hank", "password": "wrong-password"}}
	for range 3 {
		a.must(http.StatusUnauthorized, bad)
	}
	r := a.must(http.StatusTooManyRequests, bad)
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// Even the right password waits: the limit is on the username.
	a.must(http.StatusTooManyRequests, request{method: "POST", path: "/v1/auth/login", body: map[string]string{"username": "hank", "password": "hank-password"}})
	a.clock.Advance(time.Minute)
	a.must(http.StatusOK, request{method: "POST", path: "/v1/auth/login", body: map[string]string{"username": "hank", "password": "hank-password"}})
}

func TestDisabledUserIsLockedOut(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "ivan", "password": "ivan-password"})
	rt := a.login("ivan", "ivan-password", nil)["refresh_token"].(string)
	a.must(http.StatusOK, request{method: "PATCH", path: "/v1/admin/users/" + id, header: bearer(a.admin()), body: map[string]any{"disabled": true}})
	a.must(http.StatusForbidden, request{method: "POST", path: "/v1/auth/login", body: map[string]string{"username": "ivan", "password": "ivan-password"}})
	if r := a.refresh(rt, nil); r.status != http.StatusBadRequest {
		t.Errorf("refresh after disabling = %d %s, want 400 invalid_grant", r.status, r.body)
	}
}

func TestAdminUsersAuthorization(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "judy", "password": "judy-password", "email": "judy@example.com"})
	user := a.login("judy", "judy-password", nil)["access_token"].(string)
	body := map[string]any{"username": "JUDY", "password": "another-password"}
	a.must(http.StatusUnauthorized, request{method: "POST", path: "/v1/admin/users", body: body})
	a.must(http.StatusForbidden, request{method: "POST", path: "/v1/admin/users", header: bearer(user), body: body})
	r := a.must(http.StatusConflict, request{method: "POST", path: "/v1/admin/users", header: bearer(a.admin()), body: body})
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("error Content-Type = %q, want application/problem+json", ct)
	}
	found := a.must(http.StatusOK, request{method: "GET", path: "/v1/admin/users?username=Judy", header: bearer(a.admin())}).json(t)
	users := found["users"].([]any)
	if len(users) != 1 || users[0].(map[string]any)["email"] != "judy@example.com" {
		t.Errorf("find by username = %v", found)
	}
	if strings.Contains(string(a.do(request{method: "GET", path: "/v1/admin/users?username=judy", header: bearer(a.admin())}).body), "password") {
		t.Error("the user resource exposes a password field")
	}
}

func TestRevokeAndLogout(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "kim", "password": "kim-password"})

	rt := a.login("kim", "kim-password", nil)["refresh_token"].(string)
	a.must(http.StatusOK, request{method: "POST", path: "/v1/auth/revoke", body: url.Values{"token": {rt}}})
	if r := a.refresh(rt, nil); r.status != http.StatusBadRequest {
		t.Errorf("refresh after RFC 7009 revoke = %d, want 400", r.status)
	}
	// Revoking an unknown token is not an error (RFC 7009 §2.2).
	a.must(http.StatusOK, request{method: "POST", path: "/v1/auth/revoke", body: url.Values{"token": {"whatever"}}})

	tok := a.login("kim", "kim-password", map[string]string{"device_id": "tablet", "fcm_token": "kim:tok1"})
	a.must(http.StatusNoContent, request{method: "POST", path: "/v1/auth/logout", header: bearer(tok["access_token"].(string))})
	if r := a.refresh(tok["refresh_token"].(string), nil); r.status != http.StatusBadRequest {
		t.Errorf("refresh after logout = %d, want 400", r.status)
	}
	devs := a.must(http.StatusOK, request{method: "GET", path: "/v1/admin/users/" + id + "/devices", header: bearer(a.admin())}).json(t)
	d := devs["devices"].([]any)[0].(map[string]any)
	if d["token_status"] != "unbound" || d["fcm_token"] != nil {
		t.Errorf("device after logout = %v, want its token unbound", d)
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	tests := []struct {
		form       url.Values
		status     int
		errCode    string
		wantInDesc string
	}{
		{url.Values{}, 400, "invalid_request", "grant_type"},
		{url.Values{"grant_type": {"password"}}, 400, "unsupported_grant_type", ""},
		{url.Values{"grant_type": {"refresh_token"}}, 400, "invalid_request", "refresh_token"},
		{url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"prt_garbage"}}, 400, "invalid_grant", ""},
		{url.Values{"grant_type": {"client_credentials"}}, 401, "invalid_client", ""},
		{url.Values{"grant_type": {"client_credentials"}, "client_id": {"app_x"}, "client_secret": {"y"}}, 401, "invalid_client", ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.form), func(t *testing.T) {
			r := a.do(request{method: "POST", path: "/v1/auth/token", body: tt.form})
			body := r.json(t)
			if r.status != tt.status || body["error"] != tt.errCode || !strings.Contains(fmt.Sprint(body["error_description"]), tt.wantInDesc) {
				t.Errorf("= %d %v, want %d %s mentioning %q", r.status, body, tt.status, tt.errCode, tt.wantInDesc)
			}
		})
	}
}
