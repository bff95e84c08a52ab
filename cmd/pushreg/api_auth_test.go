package main

import (
	"net/http"
	"net/url"
	"testing"
)

func TestLoginRefreshRotation(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "Alice", "password": "alice-password"})
	tok := a.login("alice", "alice-password", nil) // usernames compare case-insensitively
	for _, field := range []string{"access_token", "refresh_token", "session_id"} {
		if s, _ := tok[field].(string); s == "" {
			t.Fatalf("login response %v lacks %s", tok, field)
		}
	}
	if tok["token_type"] != "Bearer" || tok["expires_in"].(float64) != 900 {
		t.Errorf("login token_type %v expires_in %v, want Bearer 900", tok["token_type"], tok["expires_in"])
	}

	r := a.refresh(tok["refresh_token"].(string), nil)
	if r.status != http.StatusOK {
		t.Fatalf("refresh = %d %s", r.status, r.body)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("token response Cache-Control = %q, want no-store", got)
	}
	next := r.json(t)
	if next["refresh_token"] == tok["refresh_token"] {
		t.Fatal("refresh did not rotate the refresh token")
	}
	// The new refresh token works; the old one is dead after the grace window.
	a.clock.Advance(a.cfg.RefreshReuseGrace + 1)
	r = a.refresh(next["refresh_token"].(string), nil)
	if r.status != http.StatusOK {
		t.Fatalf("refresh with the rotated token = %d %s", r.status, r.body)
	}
	_ = url.Values{}
}
