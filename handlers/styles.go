package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/pushreg/pushreg/auth"
)

// What the secondary refresh styles (Duktig, abitmedia, kalsel, MCS) share.
// Each is a thin adapter: its own paths, bodies and error shape over the one
// session core, with its errors classified once by toProblem and drawn by
// its own renderer, set per route so that no style's shape leaks onto
// another's paths (abitmedia shares /v1 with the native API).

// styleLogin signs a user in for a style: the IP feeds the rate limit and
// the style is recorded on the session, with the refresh mode its refresh
// route serves.
func (s *server) styleLogin(c echo.Context, style, login, password string) (*auth.Grant, error) {
	return s.auth.Login(c.Request().Context(), auth.LoginRequest{Login: login, Password: password,
		ClientIP: c.RealIP(), Style: style, FixedRefresh: style == "kalsel"})
}

// signInRequest is the JSON sign-in body of the styles that accept an
// email or a username (kalsel, MCS).
type signInRequest struct {
	Email    string `json:"email"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// signIn checks the body's fields and signs the user in for style.
func (s *server) signIn(c echo.Context, style string, r signInRequest) (*auth.Grant, error) {
	login := loginName(r.Email, r.Username)
	if err := required("email", login); err != nil {
		return nil, err
	}
	if err := required("password", r.Password); err != nil {
		return nil, err
	}
	return s.styleLogin(c, style, login, r.Password)
}

// loginName picks the login of styles that accept "email" or "username":
// the email when both are sent.
func loginName(email, username string) string {
	if email != "" {
		return email
	}
	return username
}

// required is the error of a parameter that is missing or empty.
func required(field, value string) error {
	if value == "" {
		return &auth.InvalidInputError{Field: field, Reason: "is required"}
	}
	return nil
}

// isTokenCode reports whether a problem is an unusable token: invalid,
// expired, revoked or reused.
func isTokenCode(code string) bool {
	switch code {
	case "invalid_token", "token_expired", "session_revoked", "token_reused":
		return true
	}
	return false
}

// statusText is the fallback message of styles that have none of their own.
func statusText(p problem) string {
	if p.Status >= http.StatusInternalServerError && p.Status != http.StatusServiceUnavailable {
		return http.StatusText(http.StatusInternalServerError)
	}
	return http.StatusText(p.Status)
}
