package handlers

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/pushreg/pushreg/auth"
)

// oauthMetadata is RFC 8414 authorization server metadata: what stock
// OAuth tooling needs to find the token and revocation endpoints.
type oauthMetadata struct {
	Issuer                                 string   `json:"issuer"`
	TokenEndpoint                          string   `json:"token_endpoint"`
	RevocationEndpoint                     string   `json:"revocation_endpoint"`
	JWKSURI                                string   `json:"jwks_uri"`
	ScopesSupported                        []string `json:"scopes_supported"`
	ResponseTypesSupported                 []string `json:"response_types_supported"`
	GrantTypesSupported                    []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported      []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported []string `json:"revocation_endpoint_auth_methods_supported"`
}

// metadata answers GET /.well-known/oauth-authorization-server. The
// endpoints are under the configured public URL, never the request's
// Host, which a client chooses.
func (s *server) metadata() echo.HandlerFunc {
	base := strings.TrimSuffix(s.cfg.PublicURL, "/")
	m := oauthMetadata{
		Issuer:             s.auth.Issuer(),
		TokenEndpoint:      base + "/v1/auth/token",
		RevocationEndpoint: base + "/v1/auth/revoke",
		JWKSURI:            base + "/.well-known/jwks.json",
		ScopesSupported:    []string{auth.ScopePushSend, auth.ScopeDevicesRead, auth.ScopeMCS},
		// Required by RFC 8414, though no grant pushreg serves uses an
		// authorization endpoint: there is none, so no response type.
		ResponseTypesSupported: []string{},
		GrantTypesSupported:    []string{"refresh_token", "client_credentials"},
		// A refresh grant needs no client authentication (the refresh
		// token is the credential); client_credentials takes the app's
		// secret by HTTP Basic or in the body.
		TokenEndpointAuthMethodsSupported:      []string{"none", "client_secret_basic", "client_secret_post"},
		RevocationEndpointAuthMethodsSupported: []string{"none"},
	}
	return func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "public, max-age=300")
		return c.JSON(http.StatusOK, m)
	}
}
