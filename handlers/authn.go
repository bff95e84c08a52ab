package handlers

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/pushreg/pushreg/auth"
)

// principal is who made a request: a user (through a session's access
// token) or an app (Basic credentials or a client-credentials token).
type principal struct {
	claims *auth.Claims // user or app token
	app    *auth.App    // Basic-authenticated app
}

func (p *principal) isAdmin() bool { return p.claims != nil && p.claims.HasRole(auth.RoleAdmin) }

func (p *principal) userID() string {
	if p.claims != nil && p.claims.SessionID != "" {
		return p.claims.Subject
	}
	return ""
}

func (p *principal) actor() string {
	switch {
	case p.app != nil:
		return "app:" + p.app.ID
	case p.claims != nil && p.claims.ClientID != "":
		return "app:" + p.claims.ClientID
	case p.claims != nil:
		return "user:" + p.claims.Subject
	}
	return "anonymous"
}

func (p *principal) hasScope(scope string) bool {
	if p.app != nil {
		return p.app.HasScope(scope)
	}
	return p.claims != nil && p.claims.ClientID != "" && p.claims.HasScope(scope)
}

func currentPrincipal(c echo.Context) *principal {
	p, _ := c.Get("principal").(*principal)
	return p
}

var errNoCredentials = &apiError{p: problem{Status: http.StatusUnauthorized, Title: "Unauthorized",
	Code: "missing_token", Detail: "an Authorization: Bearer access token is required"}}

// authenticate accepts a bearer access token, or, when apps are allowed,
// HTTP Basic app credentials.
func (s *server) authenticate(allowApps bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Request().Header.Get(echo.HeaderAuthorization)
			scheme, value, _ := strings.Cut(h, " ")
			var p principal
			switch {
			case strings.EqualFold(scheme, "Bearer") && value != "":
				claims, err := s.auth.Authorize(c.Request().Context(), value)
				if err != nil {
					c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer error="invalid_token"`)
					return err
				}
				if claims.ClientID != "" {
					if !allowApps {
						return errorf(http.StatusForbidden, "forbidden", "app tokens cannot use this route")
					}
					if _, err := s.auth.ActiveApp(c.Request().Context(), claims.ClientID); err != nil {
						return err
					}
				}
				p.claims = claims
			case strings.EqualFold(scheme, "Basic") && allowApps:
				id, secret, ok := c.Request().BasicAuth()
				if !ok {
					return errorf(http.StatusUnauthorized, "invalid_client", "malformed Basic credentials")
				}
				app, err := s.auth.AuthenticateApp(c.Request().Context(), id, secret)
				if errors.Is(err, auth.ErrInvalidCredentials) {
					return errorf(http.StatusUnauthorized, "invalid_client", "unknown app or wrong secret")
				}
				if err != nil {
					return err
				}
				p.app = app
			default:
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="pushreg"`)
				return errNoCredentials
			}
			c.Set("principal", &p)
			return next(c)
		}
	}
}

// requireAdmin lets admins through, and apps holding scope (if not empty).
func requireAdmin(scope string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p := currentPrincipal(c)
			if p == nil || !(p.isAdmin() || (scope != "" && p.hasScope(scope))) {
				return errorf(http.StatusForbidden, "forbidden", "this route needs the admin role")
			}
			return next(c)
		}
	}
}
