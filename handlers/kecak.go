package handlers

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/pushreg/pushreg/auth"
)

// kecakPrefix is where Kecak's mobile API plugins live.
const kecakPrefix = "/web/json/plugin/com.kinnara.kecakplugins.mobileapi."

func (s *server) kecakRoutes(g *echo.Group) {
	g.POST("LoginApi/service", s.kecakLogin, s.requireReferer)
	g.GET("CheckTokenApi/service", s.kecakCheck)
	g.PUT("RefreshTokenApi/service", s.kecakRefresh, requireKecakToken, s.requireReferer)
}

// renderKecak writes Kecak's error shape: {"message": "..."}, with the
// "reason" of a refused token.
func renderKecak(c echo.Context, p problem) error {
	body := map[string]string{"message": p.Detail}
	if p.Cause != "" {
		body["reason"] = p.Cause
	}
	return c.JSON(p.Status, body)
}

// requireKecakToken answers a refresh without its token before
// requireReferer answers it as a login without credentials: the refresh
// is a refused credential, with a cause.
func requireKecakToken(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Request().Header.Get(echo.HeaderAuthorization) == "" {
			return noCredential(errorf(http.StatusUnauthorized, "missing_token", "Authorization is required"))
		}
		return next(c)
	}
}

type kecakDeviceBody struct {
	FCMToken string `json:"fcm_token"`
	DeviceID string `json:"device_id"`
}

// decodeKecakDevice reads the device of a Kecak body; both fields are
// required.
func decodeKecakDevice(c echo.Context) (auth.DeviceRequest, error) {
	var b kecakDeviceBody
	if err := decodeJSON(c, &b); err != nil {
		return auth.DeviceRequest{}, err
	}
	switch {
	case b.FCMToken == "":
		return auth.DeviceRequest{}, &auth.InvalidInputError{Field: "fcm_token", Reason: "is required"}
	case b.DeviceID == "":
		return auth.DeviceRequest{}, &auth.InvalidInputError{Field: "device_id", Reason: "is required"}
	}
	return auth.DeviceRequest{DeviceID: b.DeviceID, FCMToken: b.FCMToken}, nil
}

// requireReferer enforces Kecak's Referer rule against cross-site use: the
// Referer's origin must be the request's own host or an allowed origin.
// It runs after the Authorization check of each route, so a request with
// no credentials still learns it needs them first.
func (s *server) requireReferer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Request().Header.Get(echo.HeaderAuthorization) == "" {
			return errorf(http.StatusUnauthorized, "missing_token", "Authorization is required")
		}
		ref := c.Request().Header.Get("Referer")
		if ref == "" {
			return errorf(http.StatusForbidden, "referer_required", "Referer is required")
		}
		u, err := url.Parse(ref)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return errorf(http.StatusForbidden, "referer_forbidden", "Referer is not a URL")
		}
		if strings.EqualFold(u.Host, c.Request().Host) {
			return next(c)
		}
		origin := strings.ToLower(u.Scheme + "://" + u.Host)
		for _, allowed := range s.cfg.AllowedReferers {
			if strings.EqualFold(allowed, origin) {
				return next(c)
			}
		}
		return errorf(http.StatusForbidden, "referer_forbidden", "Referer is not an allowed origin")
	}
}

func (s *server) kecakLogin(c echo.Context) error {
	username, password, ok := c.Request().BasicAuth()
	if !ok {
		return errorf(http.StatusUnauthorized, "invalid_credentials", "Authorization: Basic username:password is required")
	}
	dev, err := decodeKecakDevice(c)
	if err != nil {
		return err
	}
	g, err := s.auth.Login(c.Request().Context(), auth.LoginRequest{Login: username, Password: password,
		ClientIP: c.RealIP(), Style: "kecak", Kecak: true, Device: &dev})
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(http.StatusOK, map[string]string{"full_name": g.User.FullName(), "email": g.User.Email,
		"username": g.User.Username, "token": g.KecakToken})
}

func (s *server) kecakCheck(c echo.Context) error {
	sess, u, err := s.auth.CheckKecak(c.Request().Context(), c.Request().Header.Get(echo.HeaderAuthorization))
	if err != nil {
		p := toProblem(err)
		if p.Status != http.StatusUnauthorized {
			return err
		}
		setCause(c, p)
		body := map[string]any{"valid": false, "message": p.Detail}
		if p.Cause != "" {
			body["reason"] = p.Cause
		}
		return c.JSON(http.StatusUnauthorized, body)
	}
	noStore(c)
	return c.JSON(http.StatusOK, map[string]any{"valid": true, "full_name": u.FullName(),
		"fcm_token": sess.FCMToken, "email": u.Email, "username": u.Username})
}

// kecakRefresh is the centre of pushreg: validate the new FCM token, bind
// the session to the device and token, answer the updated token.
func (s *server) kecakRefresh(c echo.Context) error {
	dev, err := decodeKecakDevice(c)
	if err != nil {
		return err
	}
	g, err := s.auth.RefreshKecak(c.Request().Context(), c.Request().Header.Get(echo.HeaderAuthorization), dev)
	if err != nil {
		return err
	}
	noStore(c)
	token := g.KecakToken
	if token == "" {
		token = g.AccessToken // a pushreg access token was presented
	}
	return c.JSON(http.StatusOK, map[string]string{"token": token})
}
