package handlers

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/pushreg/pushreg/auth"
)

// abitmedia: sign in at /v1/auth, refresh with rotation at
// /v1/refreshToken, parameters as a form or a JSON object. The paths sit
// under the native /v1 prefix, so the renderer is set on each route: the
// native group's problem+json stays on the native paths, and with the style
// switched off these paths fall to the native group's 404.
func (s *server) abitmediaRoutes(g *echo.Group) {
	r := renderWith(renderAbitmedia)
	g.POST("/v1/auth", s.abitmediaSignIn, r)
	g.POST("/v1/refreshToken", s.abitmediaRefresh, r)
}

// abitmediaInvalidRefresh is abitmedia's one answer to an unusable refresh
// token, whatever the reason.
const abitmediaInvalidRefresh = "Token de refresco inválido o expirado"

// renderAbitmedia writes {"success": false, "status", "message"}, in
// Spanish as abitmedia's documents are.
func renderAbitmedia(c echo.Context, p problem) error {
	status, msg := p.Status, p.Detail
	switch {
	case isTokenCode(p.Code):
		// Only the refresh route meets tokens; abitmedia answers them 400.
		status, msg = http.StatusBadRequest, abitmediaInvalidRefresh
	case p.Code == "invalid_credentials":
		msg = "Usuario o contraseña incorrectos"
	case p.Code == "account_disabled":
		msg = "La cuenta está deshabilitada"
	case p.Code == "rate_limited":
		msg = fmt.Sprintf("Demasiados intentos fallidos; reintente en %d segundos", p.RetryAfter)
	case p.Code == codeMalformedJSON:
		msg = "El cuerpo no es JSON válido"
	case p.Code == "unsupported_media_type":
		msg = "Content-Type debe ser application/x-www-form-urlencoded, multipart/form-data o application/json"
	case p.Status == http.StatusRequestEntityTooLarge:
		msg = "El cuerpo de la solicitud supera 1 MiB"
	case p.Status == http.StatusServiceUnavailable:
		msg = "Servicio no disponible temporalmente; reintente más tarde"
	case p.Status >= http.StatusInternalServerError:
		msg = "Error interno del servidor"
	}
	return c.JSON(status, abitmediaResponse{Success: false, Status: status, Message: msg})
}

// abitmediaResponse is every abitmedia answer; the token fields are only
// in successes.
type abitmediaResponse struct {
	Success      bool   `json:"success"`
	Status       int    `json:"status"`
	Message      string `json:"message"`
	AccessToken  string `json:"accessToken,omitempty"`
	RefreshToken string `json:"refreshToken,omitempty"`
	ExpiresIn    int64  `json:"expiresIn,omitempty"`
}

func abitmediaRequired(field, value string) error {
	if value == "" {
		return errorf(http.StatusBadRequest, "invalid_request", "El parámetro "+field+" es requerido")
	}
	return nil
}

func abitmediaTokens(c echo.Context, message string, g *auth.Grant) error {
	noStore(c)
	return c.JSON(http.StatusOK, abitmediaResponse{Success: true, Status: http.StatusOK, Message: message,
		AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, ExpiresIn: int64(g.AccessTTL.Seconds())})
}

func (s *server) abitmediaSignIn(c echo.Context) error {
	params, err := decodeParams(c)
	if err != nil {
		return err
	}
	login := loginName(params.Get("email"), params.Get("username"))
	if err := abitmediaRequired("email o username", login); err != nil {
		return err
	}
	if err := abitmediaRequired("password", params.Get("password")); err != nil {
		return err
	}
	g, err := s.styleLogin(c, "abitmedia", login, params.Get("password"))
	if err != nil {
		return err
	}
	return abitmediaTokens(c, "Autenticación exitosa", g)
}

func (s *server) abitmediaRefresh(c echo.Context) error {
	params, err := decodeParams(c)
	if err != nil {
		return err
	}
	rt := params.Get("refreshToken")
	if err := abitmediaRequired("refreshToken", rt); err != nil {
		return noCredential(err)
	}
	g, err := s.auth.Refresh(c.Request().Context(), auth.RefreshRequest{RefreshToken: rt, Rotate: true})
	if err != nil {
		return err
	}
	return abitmediaTokens(c, "Token de refresco exitoso", g)
}
