package auth

import (
	"bytes"
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
