package handlers

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/mail"

	"github.com/labstack/echo/v4"

	"github.com/pushreg/pushreg/auth"
)

// Duktig.Microservice: sign in with an email at /auth/token, refresh
// without rotation at /auth/refresh_token with a Refresh-Token header.
func (s *server) duktigRoutes(g *echo.Group) {
	r := renderWith(renderDuktig)
	g.POST("/auth/token", s.duktigSignIn, r, s.duktigAuthKey)
	g.POST("/auth/refresh_token", s.duktigRefresh, r)
}

// duktigTimeLayout is how Duktig writes lastLogin.
const duktigTimeLayout = "2006-01-02 15:04:05"

// codeDuktigAuthKey is the problem of a missing or wrong X-Auth-Key.
const codeDuktigAuthKey = "duktig_auth_key"

// renderDuktig writes Duktig's {"status": "error", "message"}, or its
// bare list for a body that is not JSON.
func renderDuktig(c echo.Context, p problem) error {
	msg := statusText(p)
	switch {
	case p.Code == codeMalformedJSON:
		return c.JSON(p.Status, []string{"Json Error 4: Syntax error. Required valid json string"})
	case p.Code == "invalid_credentials":
		msg = "Incorrect credentials"
	case p.Code == "account_disabled":
		msg = "Due to the status of your account, you are not able to access this resource"
	case isTokenCode(p.Code):
		msg = "Invalid token"
	case p.Code == "device_mismatch":
		msg = "Incorrect X-Device-Id"
	case p.Code == "rate_limited":
		msg = fmt.Sprintf("Too many failed sign-in attempts; retry in %d seconds", p.RetryAfter)
	case p.Code == codeDuktigAuthKey:
		msg = "Unauthorized"
	}
	return c.JSON(p.Status, duktigError{Status: "error", Message: msg})
}

type duktigError struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// duktigAuthKey requires one of the configured X-Auth-Key values, when
// any is configured.
func (s *server) duktigAuthKey(next echo.HandlerFunc) echo.HandlerFunc {
	keys := make([][32]byte, len(s.cfg.DuktigAuthKeys))
	for i, k := range s.cfg.DuktigAuthKeys {
		keys[i] = sha256.Sum256([]byte(k))
	}
	return func(c echo.Context) error {
		if len(keys) == 0 {
			return next(c)
		}
		// Hashing first makes every comparison the same length; every key
		// is compared so the time says nothing about which one matched.
		got := sha256.Sum256([]byte(c.Request().Header.Get("X-Auth-Key")))
		match := 0
		for _, k := range keys {
			match |= subtle.ConstantTimeCompare(got[:], k[:])
		}
		if match != 1 {
			return errorf(http.StatusUnauthorized, codeDuktigAuthKey, "X-Auth-Key is missing or wrong")
		}
		return next(c)
	}
}

// duktigBody reads a Duktig request body. Duktig takes JSON whatever the
// Content-Type says, and answers its Json Error to anything else, an
// empty body included unless the route allows none.
func duktigBody(c echo.Context, optional bool) (any, error) {
	b, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return nil, paramsError(err) // the body limit
	}
	if optional && len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, &apiError{p: problem{Status: http.StatusBadRequest, Title: "Bad Request",
			Code: codeMalformedJSON, Detail: "the body is not valid JSON"}}
	}
	return v, nil
}

// duktigCredentials validates a sign-in body the way Duktig's validator
// does: exactly email and password, the email well formed. fields holds
// the messages of a 422, nil when the body is valid.
func duktigCredentials(v any) (email, password string, fields map[string][]string) {
	fields = map[string][]string{}
	m, _ := v.(map[string]any)
	email, emailOK := m["email"].(string)
	password, passwordOK := m["password"].(string)
	switch raw := m["email"]; {
	case raw == nil || raw == "":
		fields["email"] = []string{"Required value", "Required valid email address"}
	case !emailOK || !validEmail(email):
		fields["email"] = []string{"Required valid email address"}
	}
	if !passwordOK || password == "" {
		fields["password"] = []string{"Required value"}
	}
	extra := m == nil
	for k := range m {
		if k != "email" && k != "password" {
			extra = true
		}
	}
	if extra {
		fields["account"] = []string{"Required exact values as: email, password"}
	}
	if len(fields) > 0 {
		return "", "", fields
	}
	return email, password, nil
}

func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && len(s) <= 254
}

type duktigSignInResponse struct {
	Status       string `json:"status"`
	Message      string `json:"message"`
	LastLogin    string `json:"lastLogin"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

func (s *server) duktigSignIn(c echo.Context) error {
	body, err := duktigBody(c, false)
	if err != nil {
		return err
	}
	email, password, fields := duktigCredentials(body)
	if fields != nil {
		return c.JSON(http.StatusUnprocessableEntity, fields)
	}
	// lastLogin is the login before this one; a first login shows itself.
	g, err := s.auth.Login(c.Request().Context(), auth.LoginRequest{Login: email, Password: password,
		ClientIP: c.RealIP(), Style: "duktig", FixedRefresh: true,
		ClientDeviceID: c.Request().Header.Get("X-Device-Id")})
	if err != nil {
		return err
	}
	last := g.User.LastLoginAt
	if last.IsZero() {
		last = g.Session.CreatedAt
	}
	noStore(c)
	return c.JSON(http.StatusOK, duktigSignInResponse{Status: "OK", Message: "Signed in successfully",
		LastLogin: last.UTC().Format(duktigTimeLayout), AccessToken: g.AccessToken,
		ExpiresIn: g.AccessExpiresAt.Unix(), RefreshToken: g.RefreshToken})
}

type duktigRefreshResponse struct {
	Status      string `json:"status"`
	Message     string `json:"message"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

func (s *server) duktigRefresh(c echo.Context) error {
	if _, err := duktigBody(c, true); err != nil {
		return err
	}
	rt := c.Request().Header.Get("Refresh-Token")
	if rt == "" {
		return noCredential(errorf(http.StatusUnauthorized, "invalid_token", "Refresh-Token is required"))
	}
	g, err := s.auth.Refresh(c.Request().Context(), auth.RefreshRequest{RefreshToken: rt,
		RequireDeviceID: c.Request().Header.Get("X-Device-Id")})
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(http.StatusOK, duktigRefreshResponse{Status: "OK", Message: "Access token regenerated successfully",
		AccessToken: g.AccessToken, ExpiresIn: g.AccessExpiresAt.Unix()})
}
