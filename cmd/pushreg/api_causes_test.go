package main

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Every refused refresh or token check names its cause (issue 16): the
// Pushreg-Refresh-Failure header on every style, and "reason" in the
// bodies whose shape has room (native OAuth errors, Kecak's).

// causeStyle is one refresh route (or Kecak's token check) as a client
// drives it.
type causeStyle struct {
	name string
	// rotating: the credential rotates, so reuse can be detected.
	rotating bool
	// jwt: the credential is a JWT with its own expiry.
	jwt bool
	// reasonInBody: the error body carries "reason".
	reasonInBody bool
	signIn       func(a *api, user string) string
	use          func(a *api, cred string) request
	// renew refreshes successfully and returns the credential to present
	// next (the same one for a fixed refresh token).
	renew func(t *testing.T, a *api, cred string) string
	// foreign is a credential of this pushreg that the route must not
	// take: the other refresh mode's token, or an access token for Kecak.
	foreign func(a *api) string
}

func causeStyles(mcsApp string) []causeStyle {
	password := func(user string) string { return user + "-password" }
	field := func(key string) func(t *testing.T, r response) string {
		return func(t *testing.T, r response) string { return styleStr(t, r.json(t), key) }
	}
	mcsToken := func(t *testing.T, r response) string {
		res, _ := r.json(t)["results"].(map[string]any)
		return styleStr(t, res, "token")
	}
	// renewWith does use and returns the credential the answer names,
	// or cred again when next is nil (a fixed refresh token).
	renewWith := func(use func(a *api, cred string) request, next func(t *testing.T, r response) string) func(*testing.T, *api, string) string {
		return func(t *testing.T, a *api, cred string) string {
			t.Helper()
			r := styleDo(t, a, http.StatusOK, use(a, cred))
			if next == nil {
				return cred
			}
			return next(t, r)
		}
	}
	kalselToken := func(a *api) string {
		return styleStr(a.t, a.must(http.StatusOK, request{method: "POST", path: "/api/v1/login",
			body: map[string]string{"username": "foreign", "password": password("foreign")}}).json(a.t), "refresh_token")
	}
	nativeLogin := func(a *api) map[string]any { return a.login("foreign", password("foreign"), nil) }
	nativeToken := func(a *api) string { return nativeLogin(a)["refresh_token"].(string) }
	accessToken := func(a *api) string { return nativeLogin(a)["access_token"].(string) }
	kecakSignIn := func(a *api, user string) string {
		return a.kecakSignIn(user, password(user), user+"-device", "fcm:"+user)
	}
	kecakUse := func(a *api, cred string) request {
		return request{method: "PUT", path: kecakRefresh,
			header: map[string]string{"Authorization": cred, "Referer": "http://" + a.host},
			body:   map[string]string{"device_id": "kecak-device", "fcm_token": "fcm:kecak"}}
	}
	kecakRenew := renewWith(kecakUse, field("token"))

	native := func(a *api, cred string) request {
		return request{method: "POST", path: "/v1/auth/token", body: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {cred}}}
	}
	duktig := func(a *api, cred string) request {
		return request{method: "POST", path: "/auth/refresh_token", header: map[string]string{"Refresh-Token": cred}}
	}
	abitmedia := func(a *api, cred string) request {
		return request{method: "POST", path: "/v1/refreshToken", body: url.Values{"refreshToken": {cred}}}
	}
	kalsel := func(a *api, cred string) request {
		return request{method: "POST", path: "/api/v1/refresh", body: map[string]string{"refresh_token": cred}}
	}
	mcs := func(a *api, cred string) request {
		return request{method: "POST", path: "/oauth/login/thirdpart/refresh", header: map[string]string{"authorization": mcsApp},
			body: map[string]string{"token": cred}}
	}
	return []causeStyle{
		{
			name: "native", rotating: true, reasonInBody: true,
			signIn:  func(a *api, user string) string { return a.login(user, password(user), nil)["refresh_token"].(string) },
			use:     native,
			renew:   renewWith(native, field("refresh_token")),
			foreign: kalselToken,
		},
		{
			name: "kecak refresh", rotating: true, jwt: true, reasonInBody: true,
			signIn: func(a *api, user string) string {
				return a.kecakSignIn(user, password(user), "kecak-device", "fcm:kecak")
			},
			use:     kecakUse,
			renew:   kecakRenew,
			foreign: accessToken,
		},
		{
			name: "kecak check", rotating: true, jwt: true, reasonInBody: true,
			signIn: kecakSignIn,
			use: func(a *api, cred string) request {
				return request{method: "GET", path: kecakCheck, header: map[string]string{"Authorization": cred}}
			},
			// The check changes nothing; the refresh rotates the token.
			renew: func(t *testing.T, a *api, cred string) string {
				t.Helper()
				r := styleDo(t, a, http.StatusOK, request{method: "PUT", path: kecakRefresh,
					header: map[string]string{"Authorization": cred, "Referer": "http://" + a.host},
					body:   map[string]string{"device_id": "kecak-check-device", "fcm_token": "fcm:kecak-check"}})
				return styleStr(t, r.json(t), "token")
			},
			foreign: accessToken,
		},
		{
			name: "duktig",
			signIn: func(a *api, user string) string {
				return styleStr(a.t, a.must(http.StatusOK, request{method: "POST", path: "/auth/token",
					body: map[string]string{"email": user + "@example.com", "password": password(user)}}).json(a.t), "refresh_token")
			},
			use:     duktig,
			renew:   renewWith(duktig, nil),
			foreign: nativeToken,
		},
		{
			name: "abitmedia", rotating: true,
			signIn: func(a *api, user string) string {
				return styleStr(a.t, a.must(http.StatusOK, request{method: "POST", path: "/v1/auth",
					body: url.Values{"email": {user + "@example.com"}, "password": {password(user)}}}).json(a.t), "refreshToken")
			},
			use:     abitmedia,
			renew:   renewWith(abitmedia, field("refreshToken")),
			foreign: kalselToken,
		},
		{
			name: "kalsel",
			signIn: func(a *api, user string) string {
				return styleStr(a.t, a.must(http.StatusOK, request{method: "POST", path: "/api/v1/login",
					body: map[string]string{"username": user, "password": password(user)}}).json(a.t), "refresh_token")
			},
			use:     kalsel,
			renew:   renewWith(kalsel, nil),
			foreign: nativeToken,
		},
		{
			name: "mcs", rotating: true,
			signIn: func(a *api, user string) string {
				r := a.must(http.StatusOK, request{method: "POST", path: "/oauth/login/thirdpart", header: map[string]string{"authorization": mcsApp},
					body: map[string]string{"username": user, "password": password(user)}})
				res, _ := r.json(a.t)["results"].(map[string]any)
				return styleStr(a.t, res, "token")
			},
			use:     mcs,
			renew:   renewWith(mcs, mcsToken),
			foreign: kalselToken,
		},
	}
}

// causeUser is the user a style signs in as: one per style, so that no
// style's sessions or devices touch another's.
func causeUser(style string) string { return strings.ReplaceAll(style, " ", "-") }

// tamperRefresh changes a refresh token's MAC: well formed, not minted here.
func tamperRefresh(t *testing.T, rt string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(rt, "prt_"))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	return "prt_" + base64.RawURLEncoding.EncodeToString(b)
}

// tamperJWT changes the first character of a JWT's signature.
func tamperJWT(tok string) string {
	i := strings.LastIndexByte(tok, '.') + 1
	c := "A"
	if tok[i] == 'A' {
		c = "B"
	}
	return tok[:i] + c + tok[i+1:]
}

func TestRefreshFailureCauses(t *testing.T) {
	t.Parallel()
	// The session lives 3h, idles out after 2h without a refresh; a Kecak
	// token lives 30m where a case asks for it.
	lifetimes := map[string]string{"PUSHREG_SESSION_MAX_AGE": "3h", "PUSHREG_REFRESH_TTL": "2h"}
	with := func(extra map[string]string) map[string]string {
		env := map[string]string{}
		for k, v := range lifetimes {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		return env
	}
	scenarios := []struct {
		cause string
		label string
		env   map[string]string
		// applies reports whether the cause can exist on the style.
		applies func(causeStyle) bool
		// credential brings the style's session to the state and returns
		// the credential to present.
		credential func(t *testing.T, a *api, s causeStyle) string
	}{
		{
			cause: "malformed", label: "not a token",
			credential: func(t *testing.T, a *api, s causeStyle) string { return "garbage" },
		},
		{
			cause: "malformed", label: "none sent",
			credential: func(t *testing.T, a *api, s causeStyle) string { return "" },
		},
		{
			cause: "unknown", label: "not minted here",
			credential: func(t *testing.T, a *api, s causeStyle) string {
				cred := s.signIn(a, causeUser(s.name))
				if s.jwt {
					return tamperJWT(cred)
				}
				return tamperRefresh(t, cred)
			},
		},
		{
			cause: "unknown", label: "the other refresh mode's token, or an access token",
			credential: func(t *testing.T, a *api, s causeStyle) string { return s.foreign(a) },
		},
		{
			cause: "unknown", label: "its session deleted",
			credential: func(t *testing.T, a *api, s causeStyle) string {
				cred := s.signIn(a, causeUser(s.name))
				if _, err := a.db.Collection("sessions").DeleteMany(context.Background(), bson.M{"username": causeUser(s.name)}); err != nil {
					t.Fatal(err)
				}
				return cred
			},
		},
		{
			cause: "revoked", label: "its device evicted by another sign-in over the device limit",
			env: with(map[string]string{"PUSHREG_MAX_DEVICES_PER_USER": "1"}),
			// Only Kecak sessions always bind a device.
			applies: func(s causeStyle) bool { return strings.HasPrefix(s.name, "kecak") },
			credential: func(t *testing.T, a *api, s causeStyle) string {
				u := causeUser(s.name)
				cred := s.signIn(a, u)
				a.kecakSignIn(u, u+"-password", "another-device", "fcm:another-"+u)
				return cred
			},
		},
		{
			cause: "revoked", label: "RFC 7009",
			credential: func(t *testing.T, a *api, s causeStyle) string {
				cred := s.signIn(a, causeUser(s.name))
				styleDo(t, a, http.StatusOK, request{method: "POST", path: "/v1/auth/revoke", body: url.Values{"token": {cred}}})
				return cred
			},
		},
		{
			cause: "revoked", label: "account disabled",
			credential: func(t *testing.T, a *api, s causeStyle) string {
				cred := s.signIn(a, causeUser(s.name))
				r := styleDo(t, a, http.StatusOK, request{method: "GET", path: "/v1/admin/users?username=" + causeUser(s.name), header: bearer(a.admin())})
				id := r.json(t)["users"].([]any)[0].(map[string]any)["id"].(string)
				a.styleDisableUser(id)
				return cred
			},
		},
		{
			cause: "reused", label: "a retired credential after the grace window",
			applies: func(s causeStyle) bool { return s.rotating },
			credential: func(t *testing.T, a *api, s causeStyle) string {
				old := s.signIn(a, causeUser(s.name))
				s.renew(t, a, old)
				a.clock.Advance(a.cfg.RefreshReuseGrace + time.Second)
				return old
			},
		},
		{
			cause: "reused", label: "the current credential of a session revoked for reuse",
			applies: func(s causeStyle) bool { return s.rotating },
			credential: func(t *testing.T, a *api, s causeStyle) string {
				old := s.signIn(a, causeUser(s.name))
				current := s.renew(t, a, old)
				a.clock.Advance(a.cfg.RefreshReuseGrace + time.Second)
				if r := a.do(s.use(a, old)); r.header.Get("Pushreg-Refresh-Failure") != "reused" {
					t.Fatalf("the retired credential = %d %s, want a reuse", r.status, r.body)
				}
				return current
			},
		},
		{
			cause: "idle_expired", label: "no refresh for 2h",
			credential: func(t *testing.T, a *api, s causeStyle) string {
				cred := s.signIn(a, causeUser(s.name))
				a.clock.Advance(2*time.Hour + time.Second)
				return cred
			},
		},
		{
			cause: "expired", label: "3h after sign-in, refreshed at 1h30",
			credential: func(t *testing.T, a *api, s causeStyle) string {
				cred := s.signIn(a, causeUser(s.name))
				a.clock.Advance(90 * time.Minute)
				cred = s.renew(t, a, cred) // the idle expiry moves to 3h30
				a.clock.Advance(91 * time.Minute)
				return cred
			},
		},
		{
			cause: "token_expired", label: "the JWT's 30m are over, its session lives",
			env:     with(map[string]string{"PUSHREG_KECAK_TOKEN_TTL": "30m"}),
			applies: func(s causeStyle) bool { return s.jwt },
			credential: func(t *testing.T, a *api, s causeStyle) string {
				cred := s.signIn(a, causeUser(s.name))
				a.clock.Advance(31 * time.Minute)
				return cred
			},
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.cause+": "+sc.label, func(t *testing.T) {
			t.Parallel()
			env := sc.env
			if env == nil {
				env = with(nil)
			}
			// One pushreg per scenario, since its clock moves; the styles
			// take turns on it.
			a := newAPI(t, env)
			styles := causeStyles(a.styleMCSApp("mcs"))
			for _, s := range append(styles, causeStyle{name: "foreign"}) {
				u := causeUser(s.name)
				a.createUser(map[string]any{"username": u, "password": u + "-password", "email": u + "@example.com"})
			}
			for _, s := range styles {
				if sc.applies != nil && !sc.applies(s) {
					continue
				}
				t.Run(s.name, func(t *testing.T) {
					r := a.do(s.use(a, sc.credential(t, a, s)))
					if r.status < 400 || r.status >= 500 {
						t.Fatalf("= %d %s, want a refusal", r.status, r.body)
					}
					if got := r.header.Get("Pushreg-Refresh-Failure"); got != sc.cause {
						t.Errorf("Pushreg-Refresh-Failure = %q (%d %s), want %q", got, r.status, r.body, sc.cause)
					}
					reason, has := r.json(t)["reason"]
					switch {
					case s.reasonInBody && reason != sc.cause:
						t.Errorf("body reason = %v (%s), want %q", reason, r.body, sc.cause)
					case !s.reasonInBody && has:
						t.Errorf("body %s has a reason; the style's shape has none", r.body)
					}
				})
			}
		})
	}
}

// A store outage is no refusal: 503 with Retry-After and no cause, so the
// client keeps its credential and retries.
func TestRefreshFailureUnavailableHasNoCause(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	styles := causeStyles(a.styleMCSApp("mcs"))
	creds := map[string]string{}
	for _, s := range styles {
		u := causeUser(s.name)
		a.createUser(map[string]any{"username": u, "password": u + "-password", "email": u + "@example.com"})
		creds[s.name] = s.signIn(a, u)
	}
	a.svc.close() // every store call is unavailable from here on
	for _, s := range styles {
		t.Run(s.name, func(t *testing.T) {
			r := a.do(s.use(a, creds[s.name]))
			if r.status != http.StatusServiceUnavailable {
				t.Fatalf("= %d %s, want 503", r.status, r.body)
			}
			if r.header.Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
			if got := r.header.Get("Pushreg-Refresh-Failure"); got != "" {
				t.Errorf("Pushreg-Refresh-Failure = %q on a 503, want none", got)
			}
			if _, has := r.json(t)["reason"]; has {
				t.Errorf("body %s has a reason on a 503", r.body)
			}
		})
	}
}

// Firebase unreachable under the reject policy is a 503 of its own: no
// cause either.
func TestRefreshFailureFirebaseDownHasNoCause(t *testing.T) {
	t.Parallel()
	a := newAPI(t, map[string]string{"PUSHREG_FCM_VALIDATE_ON_ERROR": "reject", "PUSHREG_FCM_VALIDATE_TIMEOUT": "300ms"})
	a.createUser(map[string]any{"username": "oz", "password": "oz-password"})
	token := a.kecakSignIn("oz", "oz-password", "dev-1", "fcm:one")
	a.fcm.SetLatency(30 * time.Second)
	r := a.kecakRefresh(token, "dev-1", "fcm:two")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("= %d %v %s, want 503 with Retry-After", r.status, r.header, r.body)
	}
	if got := r.header.Get("Pushreg-Refresh-Failure"); got != "" {
		t.Errorf("Pushreg-Refresh-Failure = %q on a 503, want none", got)
	}
	if _, has := r.json(t)["reason"]; has {
		t.Errorf("body %s has a reason on a 503", r.body)
	}
}

// A bearer access token refused on a /v1 route names its cause too, in
// the header and the problem+json body.
func TestBearerRefusalCause(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "bea", "password": "bea-password"})
	at := a.login("bea", "bea-password", nil)["access_token"].(string)
	for _, tt := range []struct {
		name, token, cause string
	}{
		{"malformed", "garbage", "malformed"},
		{"not minted here", tamperJWT(at), "unknown"},
		{"expired", at, "token_expired"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cause == "token_expired" {
				a.clock.Advance(a.cfg.AccessTTL + time.Minute)
			}
			r := a.do(request{method: "GET", path: "/v1/me/devices", header: bearer(tt.token)})
			if r.status != http.StatusUnauthorized || r.header.Get("Pushreg-Refresh-Failure") != tt.cause || r.json(t)["reason"] != tt.cause {
				t.Errorf("= %d %v %s, want 401 with cause %s", r.status, r.header, r.body, tt.cause)
			}
		})
	}
}
