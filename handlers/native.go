package handlers

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/pushreg/pushreg/auth"
)

func (s *server) nativeRoutes(g *echo.Group) {
	g.POST("/auth/login", s.login)
	g.POST("/auth/token", s.token, renderWith(renderOAuth))
	g.POST("/auth/revoke", s.revoke, renderWith(renderOAuth))
	g.POST("/auth/logout", s.logout, s.authenticate(false))

	me := g.Group("/me", s.authenticate(false))
	me.GET("/devices", s.myDevices)
	me.DELETE("/devices/:device_id", s.deleteMyDevice)

	s.adminRoutes(g.Group("/admin", s.authenticate(true)))
	s.messageRoutes(g)
}

func (s *server) jwks(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.JSONBlob(http.StatusOK, s.auth.JWKS())
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	DeviceID string `json:"device_id"`
	FCMToken string `json:"fcm_token"`
	Platform string `json:"platform"`
}

// deviceRequest returns the device to bind, nil when none was sent, or an
// error when only half of it was.
func deviceRequest(deviceID, fcmToken, platform string) (*auth.DeviceRequest, error) {
	switch {
	case deviceID == "" && fcmToken == "":
		return nil, nil
	case deviceID == "":
		return nil, &auth.InvalidInputError{Field: "device_id", Reason: "is required with fcm_token"}
	case fcmToken == "":
		return nil, &auth.InvalidInputError{Field: "fcm_token", Reason: "is required with device_id"}
	}
	return &auth.DeviceRequest{DeviceID: deviceID, FCMToken: fcmToken, Platform: platform}, nil
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	SessionID    string `json:"session_id,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

func (s *server) login(c echo.Context) error {
	var req loginRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	dev, err := deviceRequest(req.DeviceID, req.FCMToken, req.Platform)
	if err != nil {
		return err
	}
	g, err := s.auth.Login(c.Request().Context(), auth.LoginRequest{Login: req.Username, Password: req.Password,
		ClientIP: c.RealIP(), Style: "native", Device: dev})
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(http.StatusOK, tokenResponse{AccessToken: g.AccessToken, TokenType: "Bearer",
		ExpiresIn: int64(g.AccessTTL.Seconds()), RefreshToken: g.RefreshToken, SessionID: g.Session.ID})
}

// token is the RFC 6749 token endpoint: refresh_token and
// client_credentials grants.
func (s *server) token(c echo.Context) error {
	noStore(c)
	params, err := decodeParams(c)
	if err != nil {
		return oauthFrom(err)
	}
	switch gt := params.Get("grant_type"); gt {
	case "refresh_token":
		rt := params.Get("refresh_token")
		if rt == "" {
			return noCredential(oauthError(http.StatusBadRequest, "invalid_request", "refresh_token is required"))
		}
		dev, err := deviceRequest(params.Get("device_id"), params.Get("fcm_token"), params.Get("platform"))
		if err != nil {
			return oauthFrom(err)
		}
		g, err := s.auth.Refresh(c.Request().Context(), auth.RefreshRequest{RefreshToken: rt, Rotate: true, Device: dev})
		if err != nil {
			return oauthFrom(err)
		}
		return c.JSON(http.StatusOK, tokenResponse{AccessToken: g.AccessToken, TokenType: "Bearer",
			ExpiresIn: int64(g.AccessTTL.Seconds()), RefreshToken: g.RefreshToken})
	case "client_credentials":
		app, err := s.clientAuth(c, params.Get("client_id"), params.Get("client_secret"))
		if err != nil {
			return err
		}
		tok, scopes, err := s.auth.AppToken(app, params.Get("scope"))
		if err != nil {
			var ie *auth.InvalidInputError
			if errors.As(err, &ie) {
				return oauthError(http.StatusBadRequest, "invalid_scope", ie.Reason)
			}
			return err
		}
		return c.JSON(http.StatusOK, tokenResponse{AccessToken: tok, TokenType: "Bearer",
			ExpiresIn: int64(s.auth.AccessTTL().Seconds()), Scope: strings.Join(scopes, " ")})
	case "":
		return oauthError(http.StatusBadRequest, "invalid_request", "grant_type is required")
	default:
		return oauthError(http.StatusBadRequest, "unsupported_grant_type", "supported: refresh_token, client_credentials")
	}
}

// clientAuth authenticates an app by HTTP Basic or by body parameters
// (RFC 6749 §2.3.1).
func (s *server) clientAuth(c echo.Context, bodyID, bodySecret string) (*auth.App, error) {
	id, secret, basic := c.Request().BasicAuth()
	if !basic {
		id, secret = bodyID, bodySecret
	}
	if id == "" {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Basic realm="pushreg"`)
		return nil, oauthError(http.StatusUnauthorized, "invalid_client", "client authentication is required")
	}
	app, err := s.auth.AuthenticateApp(c.Request().Context(), id, secret)
	if errors.Is(err, auth.ErrInvalidCredentials) {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Basic realm="pushreg"`)
		return nil, oauthError(http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
	}
	return app, err
}

// revoke is RFC 7009: 200 whether or not the token was valid.
func (s *server) revoke(c echo.Context) error {
	params, err := decodeParams(c)
	if err != nil {
		return oauthFrom(err)
	}
	tok := params.Get("token")
	if tok == "" {
		return oauthError(http.StatusBadRequest, "invalid_request", "token is required")
	}
	if err := s.auth.Revoke(c.Request().Context(), tok); err != nil {
		return oauthFrom(err)
	}
	return c.NoContent(http.StatusOK)
}

func (s *server) logout(c echo.Context) error {
	if err := s.auth.Logout(c.Request().Context(), currentPrincipal(c).claims); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// oauthError is an RFC 6749 §5.2 error.
func oauthError(status int, code, description string) error {
	return &apiError{p: problem{Status: status, Title: http.StatusText(status), Code: code, Detail: description}}
}

// oauthRefusal is an RFC 6749 §5.2 error carrying the cause of the
// domain error it stands for.
func oauthRefusal(status int, code, description, cause string) error {
	return &apiError{p: problem{Status: status, Title: http.StatusText(status), Code: code, Detail: description, Cause: cause}}
}

// oauthFrom maps domain errors to RFC 6749 §5.2 codes.
func oauthFrom(err error) error {
	var ae *apiError
	if errors.As(err, &ae) {
		if ae.p.Status == http.StatusUnsupportedMediaType || ae.p.Status == http.StatusBadRequest {
			return oauthRefusal(http.StatusBadRequest, "invalid_request", ae.p.Detail, ae.p.Cause)
		}
		return err
	}
	p := toProblem(err)
	switch {
	case p.Status == http.StatusUnauthorized:
		// An unusable refresh token is invalid_grant (400), whatever the
		// reason; the cause tells the reasons apart.
		return oauthRefusal(http.StatusBadRequest, "invalid_grant", p.Detail, p.Cause)
	case p.Status == http.StatusBadRequest || p.Status == http.StatusUnprocessableEntity:
		return oauthRefusal(http.StatusBadRequest, "invalid_request", p.Detail, p.Cause)
	case p.Status == http.StatusServiceUnavailable:
		return &apiError{p: problem{Status: p.Status, Code: "temporarily_unavailable", Detail: p.Detail, RetryAfter: p.RetryAfter}}
	}
	return err
}

// renderOAuth writes {"error", "error_description"}.
func renderOAuth(c echo.Context, p problem) error {
	code := p.Code
	if code == "" || p.Status >= 500 {
		code = map[bool]string{true: "temporarily_unavailable", false: "server_error"}[p.Status == http.StatusServiceUnavailable]
	}
	if p.Status == http.StatusRequestEntityTooLarge || p.Status == http.StatusUnsupportedMediaType {
		code = "invalid_request"
	}
	noStore(c)
	body := map[string]string{"error": code, "error_description": p.Detail}
	if p.Cause != "" {
		body["reason"] = p.Cause
	}
	return c.JSON(p.Status, body)
}
