package handlers

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/pushreg/pushreg/auth"
)

// MediaTek MCS: a third-party app holding the mcs scope signs its users
// in at /oauth/login/thirdpart and refreshes their user token, rotating,
// at /oauth/login/thirdpart/refresh.
func (s *server) mcsRoutes(g *echo.Group) {
	// The renderer comes first so that a refused app is answered in MCS's
	// shape too.
	r := renderWith(renderMCS)
	g.POST("/oauth/login/thirdpart", s.mcsSignIn, r, s.mcsApp)
	g.POST("/oauth/login/thirdpart/refresh", s.mcsRefresh, r, s.mcsApp)
}

const mcsAPIVersion = "0.0.1"

// codeMCSClient is the problem of an app MCS does not let in.
const codeMCSClient = "mcs_invalid_client"

// codeMCSScope is the problem of an app whose credentials are right but
// which lacks the mcs scope: telling it its credentials are missing would
// send its developer looking in the wrong place.
const codeMCSScope = "mcs_scope_missing"

// mcsTokenMessages say why a user token was refused.
var mcsTokenMessages = map[string]string{
	"invalid_token":   "Invalid user token",
	"token_expired":   "Expired user token",
	"session_revoked": "Revoked user token",
	"token_reused":    "Reused user token; the session has been revoked",
}

// renderMCS writes MCS's {"apiVersion", "code", "message", "statusCode",
// "options"}.
func renderMCS(c echo.Context, p problem) error {
	msg := p.Detail
	if m, ok := mcsTokenMessages[p.Code]; ok {
		msg = m
	}
	switch {
	case p.Code == "invalid_credentials":
		msg = "Invalid email or password"
	case p.Code == "account_disabled":
		msg = "The account is disabled"
	case p.Status == http.StatusServiceUnavailable:
		msg = "Service unavailable; retry later"
	case p.Status >= http.StatusInternalServerError:
		msg = "Internal server error"
	}
	return c.JSON(p.Status, mcsError{APIVersion: mcsAPIVersion, Code: p.Status, Message: msg, StatusCode: p.Status,
		Options: struct{}{}})
}

type mcsError struct {
	APIVersion string   `json:"apiVersion"`
	Code       int      `json:"code"`
	Message    string   `json:"message"`
	StatusCode int      `json:"statusCode"`
	Options    struct{} `json:"options"`
}

// mcsApp lets through the apps holding the mcs scope, authenticated by
// authorization: base64(appId:appSecret), with or without "Basic ".
func (s *server) mcsApp(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		refused := errorf(http.StatusUnauthorized, codeMCSClient, "Invalid or missing client_id parameter")
		id, secret, ok := mcsAppCredentials(c.Request().Header.Get(echo.HeaderAuthorization))
		if !ok {
			return refused
		}
		app, err := s.auth.AuthenticateApp(c.Request().Context(), id, secret)
		if errors.Is(err, auth.ErrInvalidCredentials) {
			return refused
		}
		if err != nil {
			return err
		}
		if !app.HasScope(auth.ScopeMCS) {
			return errorf(http.StatusForbidden, codeMCSScope, "The app lacks the mcs scope; an admin can create an app with it")
		}
		return next(c)
	}
}

// mcsAppCredentials decodes the authorization header; MCS's own example
// sends the base64 without the Basic scheme.
func mcsAppCredentials(h string) (id, secret string, ok bool) {
	h = strings.TrimSpace(h)
	if scheme, rest, found := strings.Cut(h, " "); found && strings.EqualFold(scheme, "Basic") {
		h = strings.TrimSpace(rest)
	}
	b, err := base64.StdEncoding.DecodeString(h)
	if err != nil {
		if b, err = base64.RawStdEncoding.DecodeString(h); err != nil {
			return "", "", false
		}
	}
	id, secret, ok = strings.Cut(string(b), ":")
	return id, secret, ok && id != "" && secret != ""
}

type mcsPlan struct {
	Name           string `json:"name"`
	DeviceCount    int    `json:"deviceCount"`
	DataPointCount int    `json:"dataPointCount"`
	EmailCount     int    `json:"emailCount"`
}

type mcsResults struct {
	AccessToken  string  `json:"access_token"`
	UserImageURL string  `json:"userImageURL"`
	Timezone     string  `json:"timezone"`
	Email        string  `json:"email"`
	Nickname     string  `json:"nickname"`
	Language     string  `json:"language"`
	Plan         mcsPlan `json:"plan"`
	Token        string  `json:"token"`
}

type mcsResponse struct {
	APIVersion string     `json:"apiVersion"`
	Code       int        `json:"code"`
	Message    string     `json:"message"`
	Results    mcsResults `json:"results"`
}

// mcsAnswer is the answer of both routes: the tokens and the profile.
func mcsAnswer(c echo.Context, g *auth.Grant, u *auth.User) error {
	p := u.Profile
	noStore(c)
	return c.JSON(http.StatusOK, mcsResponse{APIVersion: mcsAPIVersion, Code: http.StatusOK, Message: "Request has succeeded",
		Results: mcsResults{AccessToken: g.AccessToken, Token: g.RefreshToken, UserImageURL: p.ImageURL,
			Timezone: p.Timezone, Email: u.Email, Nickname: p.Nickname, Language: p.Language,
			Plan: mcsPlan(p.Plan)}})
}

func (s *server) mcsSignIn(c echo.Context) error {
	var req signInRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	g, err := s.signIn(c, "mcs", req)
	if err != nil {
		return err
	}
	return mcsAnswer(c, g, g.User)
}

func (s *server) mcsRefresh(c echo.Context) error {
	var req struct {
		Token string `json:"token"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := required("token", req.Token); err != nil {
		return noCredential(err)
	}
	ctx := c.Request().Context()
	g, err := s.auth.Refresh(ctx, auth.RefreshRequest{RefreshToken: req.Token, Rotate: true})
	if err != nil {
		return err
	}
	u, err := s.auth.User(ctx, g.Session.UserID)
	if err != nil {
		return err
	}
	return mcsAnswer(c, g, u)
}
