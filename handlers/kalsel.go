package handlers

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pushreg/pushreg/auth"
)

// kalsel.dev: sign in at /api/v1/login, refresh without rotation at
// /api/v1/refresh, choosing the new access token's lifetime (limit).
func (s *server) kalselRoutes(g *echo.Group) {
	r := renderWith(renderKalsel)
	g.POST("/api/v1/login", s.kalselLogin, r)
	g.POST("/api/v1/refresh", s.kalselRefresh, r)
}

// The bounds and default of kalsel's limit, in minutes.
const (
	kalselMinLimit     = 10
	kalselMaxLimit     = 7 * 24 * 60
	kalselDefaultLimit = kalselMaxLimit
)

// kalselError is kalsel's error body.
type kalselError struct {
	Status  int      `json:"status"`
	Message string   `json:"message"`
	Error   string   `json:"error"`
	Causes  []string `json:"causes"`
}

// kalselTokenErrors are the jwt_error answers; an expired token is 421.
var kalselTokenErrors = map[string]kalselError{
	"token_expired":   {Status: 421, Message: "Token expired", Causes: []string{"token has expired"}},
	"invalid_token":   {Status: http.StatusUnauthorized, Message: "Invalid token", Causes: []string{"token is invalid"}},
	"session_revoked": {Status: http.StatusUnauthorized, Message: "Token revoked", Causes: []string{"token has been revoked"}},
	"token_reused":    {Status: http.StatusUnauthorized, Message: "Token reused", Causes: []string{"token was already used; the session has been revoked"}},
}

// renderKalsel writes {"status", "message", "error", "causes"}.
func renderKalsel(c echo.Context, p problem) error {
	if e, ok := kalselTokenErrors[p.Code]; ok {
		e.Error = "jwt_error"
		return c.JSON(e.Status, e)
	}
	e := kalselError{Status: p.Status, Message: statusText(p), Error: "request_error", Causes: []string{p.Detail}}
	switch {
	case p.Code == "invalid_credentials":
		e.Message, e.Error = "Invalid credentials", "auth_error"
	case p.Code == "account_disabled":
		e.Message, e.Error = "Account disabled", "auth_error"
	case p.Code == "rate_limited":
		e.Message, e.Error = "Too many requests", "rate_limit_error"
	case p.Status == http.StatusBadRequest || p.Status == http.StatusUnsupportedMediaType ||
		p.Status == http.StatusRequestEntityTooLarge:
		e.Message, e.Error = "Invalid request", "validation_error"
	case p.Status >= http.StatusInternalServerError:
		e.Error = "server_error"
	}
	return c.JSON(p.Status, e)
}

type kalselTokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Expired      int64  `json:"expired"`
}

func (s *server) kalselLogin(c echo.Context) error {
	var req signInRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	g, err := s.signIn(c, "kalsel", req)
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(http.StatusOK, kalselTokenResponse{AccessToken: g.AccessToken, RefreshToken: g.RefreshToken,
		Expired: g.AccessExpiresAt.Unix()})
}

type kalselRefreshRequest struct {
	RefreshToken string          `json:"refresh_token"`
	Limit        json.RawMessage `json:"limit"`
}

// kalselLimit reads limit: whole minutes from 10 to 10080, 10080 when
// absent or null.
func kalselLimit(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return kalselDefaultLimit * time.Minute, nil
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil || v != math.Trunc(v) {
		return 0, &auth.InvalidInputError{Field: "limit", Reason: "must be a whole number of minutes"}
	}
	if v < kalselMinLimit || v > kalselMaxLimit {
		return 0, &auth.InvalidInputError{Field: "limit", Reason: "must be from 10 to 10080 minutes"}
	}
	return time.Duration(v) * time.Minute, nil
}

func (s *server) kalselRefresh(c echo.Context) error {
	var req kalselRefreshRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := required("refresh_token", req.RefreshToken); err != nil {
		return noCredential(err)
	}
	ttl, err := kalselLimit(req.Limit)
	if err != nil {
		return err
	}
	g, err := s.auth.Refresh(c.Request().Context(), auth.RefreshRequest{RefreshToken: req.RefreshToken, AccessTTL: ttl})
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(http.StatusOK, kalselTokenResponse{AccessToken: g.AccessToken, Expired: g.AccessExpiresAt.Unix()})
}
