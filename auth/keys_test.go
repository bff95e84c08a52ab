package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// Rotating keys as the README says (new key first, old key after it) logs
// nobody out: refresh tokens and access tokens of the old key still work,
// new ones come from the new key, and dropping the old key ends them.
func TestKeyRotationKeepsSessions(t *testing.T) {
	oldKey, _ := GenerateKey()
	newKey, _ := GenerateKey()
	before, err := NewKeySet(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := NewKeySet(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	dropped, err := NewKeySet(newKey)
	if err != nil {
		t.Fatal(err)
	}
	rt := refreshToken{sessionID: "00112233445566778899aabbccddeeff", gen: 3, secret: bytes.Repeat([]byte{7}, secretLen)}
	token := before.encodeRefresh(rt)
	if _, err := rotated.decodeRefresh(token); err != nil {
		t.Errorf("refresh token of the old key after rotation: %v", err)
	}
	if _, err := dropped.decodeRefresh(token); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("refresh token of a dropped key: %v, want ErrInvalidToken", err)
	}
	if rotated.encodeRefresh(rt) == token {
		t.Error("the rotated set still mints with the old key")
	}

	now := func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
	oldSigner := &signer{keys: before, issuer: "i", audience: "a", now: now}
	access, err := oldSigner.sign(typAccess, &Claims{RegisteredClaims: oldSigner.claimsFor("u", time.Minute), SessionID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&signer{keys: rotated, issuer: "i", audience: "a", now: now}).verify(typAccess, access); err != nil {
		t.Errorf("access token of the old key after rotation: %v", err)
	}
}

// A P-256 key from a JWK Set signs, and the published JWKS round-trips.
func TestECKeysFromJWKS(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	gen, _ := NewKeySet(&Key{Private: priv})
	pub := publicJWK(gen.signer)
	raw, _ := priv.Bytes()
	pub.D = base64.RawURLEncoding.EncodeToString(raw)
	set, _ := json.Marshal(map[string]any{"keys": []jwk{pub}})
	keys, err := parseJWKS(set)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := NewKeySet(keys...)
	if err != nil {
		t.Fatal(err)
	}
	if ks.signer.ID != gen.signer.ID || ks.signer.method.Alg() != "ES256" {
		t.Errorf("key %s %s, want %s ES256", ks.signer.ID, ks.signer.method.Alg(), gen.signer.ID)
	}
	now := func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
	sg := &signer{keys: ks, issuer: "i", audience: "a", now: now}
	tok, err := sg.sign(typAccess, &Claims{RegisteredClaims: sg.claimsFor("u", time.Minute), SessionID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sg.verify(typAccess, tok); err != nil {
		t.Errorf("ES256 token: %v", err)
	}
	// A d that is not x, y's private key is refused.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rawOther, _ := other.Bytes()
	pub.D = base64.RawURLEncoding.EncodeToString(rawOther)
	set, _ = json.Marshal(map[string]any{"keys": []jwk{pub}})
	if _, err := parseJWKS(set); err == nil {
		t.Error("a mismatched EC private key was accepted")
	}
}
