package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/zitadel/oidc/v3/pkg/client"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// toTestServer sends every request to the API under test, whatever host
// its URL names: the metadata names the configured public URL, and the
// stock clients below use what it says verbatim.
type toTestServer struct{ url *url.URL }

func (t toTestServer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host = t.url.Scheme, t.url.Host
	return http.DefaultTransport.RoundTrip(r)
}

// RFC 8414 metadata, read by stock clients: zitadel/oidc's discovery
// (which checks the issuer, RFC 8414 §3.3), then golang.org/x/oauth2 on
// the endpoints it found.
func TestAuthorizationServerMetadata(t *testing.T) {
	t.Parallel()
	a := newAPI(t, map[string]string{"PUSHREG_PUBLIC_URL": "https://push.example.com"})
	u, err := url.Parse(a.url)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: toTestServer{u}}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)

	// A client knows the issuer and derives the metadata's URL from it.
	issuer := "https://push.example.com"
	meta, err := client.Discover(ctx, issuer, hc, issuer+"/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	want := &oidc.DiscoveryConfiguration{
		Issuer:                                 issuer,
		TokenEndpoint:                          issuer + "/v1/auth/token",
		RevocationEndpoint:                     issuer + "/v1/auth/revoke",
		JwksURI:                                issuer + "/.well-known/jwks.json",
		ScopesSupported:                        []string{"push:send", "devices:read", "mcs"},
		ResponseTypesSupported:                 []string{},
		GrantTypesSupported:                    []oidc.GrantType{oidc.GrantTypeRefreshToken, oidc.GrantTypeClientCredentials},
		TokenEndpointAuthMethodsSupported:      []oidc.AuthMethod{oidc.AuthMethodNone, oidc.AuthMethodBasic, oidc.AuthMethodPost},
		RevocationEndpointAuthMethodsSupported: []oidc.AuthMethod{oidc.AuthMethodNone},
	}
	if diff := cmp.Diff(want, meta); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
	// RFC 8414 requires response_types_supported (empty: there is no
	// authorization endpoint); check the document itself has it.
	raw := a.must(http.StatusOK, request{method: "GET", path: "/.well-known/oauth-authorization-server"})
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw.body, &fields); err != nil {
		t.Fatal(err)
	}
	if got := string(fields["response_types_supported"]); got != "[]" {
		t.Errorf("response_types_supported = %s, want []", got)
	}
	if _, ok := fields["authorization_endpoint"]; ok {
		t.Error("an authorization_endpoint is advertised; pushreg has none")
	}

	// The advertised endpoints work with golang.org/x/oauth2.
	a.createUser(map[string]any{"username": "disco", "password": "disco-password"})
	rt := a.login("disco", "disco-password", nil)["refresh_token"].(string)
	conf := oauth2.Config{Endpoint: oauth2.Endpoint{TokenURL: meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams}}
	tok, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil {
		t.Fatalf("refresh at the advertised token endpoint: %v", err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.RefreshToken == rt {
		t.Errorf("refresh = %+v, want an access token and a rotated refresh token", tok)
	}
	// A refused refresh names its cause to the stock client too.
	_, err = conf.TokenSource(ctx, &oauth2.Token{RefreshToken: "garbage"}).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || re.Response.Header.Get("Pushreg-Refresh-Failure") != "malformed" {
		t.Errorf("refresh with garbage = %v, want invalid_grant with cause malformed", err)
	}

	r := a.must(http.StatusCreated, request{method: "POST", path: "/v1/admin/apps", header: bearer(a.admin()),
		body: map[string]any{"name": "disco-app", "scopes": []string{"push:send"}}}).json(t)
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cc := clientcredentials.Config{ClientID: r["app_id"].(string), ClientSecret: r["app_secret"].(string),
			TokenURL: meta.TokenEndpoint, Scopes: []string{"push:send"}, AuthStyle: style}
		if tok, err := cc.Token(ctx); err != nil || tok.AccessToken == "" {
			t.Errorf("client_credentials (auth style %d) = %v, %v", style, tok, err)
		}
	}

	resp, err := hc.PostForm(meta.RevocationEndpoint, url.Values{"token": {tok.RefreshToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("revocation endpoint = %d, want 200", resp.StatusCode)
	}
	resp, err = hc.Get(meta.JwksURI)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jwks struct{ Keys []map[string]any }
	if err := json.NewDecoder(resp.Body).Decode(&jwks); err != nil || len(jwks.Keys) == 0 {
		t.Errorf("jwks_uri = %v %v, want a key set", jwks, err)
	}
	if !strings.HasPrefix(raw.header.Get("Content-Type"), "application/json") {
		t.Errorf("Content-Type = %q, want application/json", raw.header.Get("Content-Type"))
	}
}
