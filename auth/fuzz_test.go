package auth

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func testKeys(t testing.TB) *KeySet {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := NewKeySet(k)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// FuzzDecodeRefresh: no input panics, and only tokens this key set minted
// decode (any other input would let a forger trigger reuse detection).
func FuzzDecodeRefresh(f *testing.F) {
	ks := testKeys(f)
	good := ks.encodeRefresh(refreshToken{sessionID: strings.Repeat("ab", sidLen), gen: 7, secret: bytes.Repeat([]byte{1}, secretLen)})
	f.Add(good)
	f.Add("prt_")
	f.Add("")
	f.Add(good[:len(good)-1] + "A")
	f.Add("prt_" + strings.Repeat("A", base64.RawURLEncoding.EncodedLen(refreshLen)))
	f.Fuzz(func(t *testing.T, s string) {
		rt, err := ks.decodeRefresh(s)
		if err != nil {
			return
		}
		if again := ks.encodeRefresh(rt); again != s {
			t.Fatalf("decoded a token (%q) that does not re-encode to itself", s)
		}
		if s != good {
			t.Fatalf("accepted a token this key set did not mint: %q", s)
		}
	})
}

// FuzzVerify: no input panics, and nothing but the genuine token verifies.
func FuzzVerify(f *testing.F) {
	ks := testKeys(f)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sg := &signer{keys: ks, issuer: "https://pushreg.test", audience: "pushreg", now: func() time.Time { return now }}
	good, err := sg.sign(typAccess, &Claims{RegisteredClaims: sg.claimsFor("user-1", time.Minute), SessionID: "s1"})
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(good, ".")
	f.Add(good)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0." + parts[1] + ".")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := sg.verify(typAccess, s)
		if err != nil {
			return
		}
		if s != good || c.Subject != "user-1" {
			t.Fatalf("verified a token that was not issued: %q", s)
		}
	})
}

// FuzzCheckPassword: a corrupt stored hash is an error, never a panic or a match.
func FuzzCheckPassword(f *testing.F) {
	params := PasswordParams{MemoryKiB: 8, Iterations: 1, Parallelism: 1}
	f.Add(hashPassword("secret-password", params))
	f.Add("$argon2id$v=19$m=8,t=1,p=1$$")
	f.Add("$argon2id$v=19$m=0,t=0,p=0$AAAA$AAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, phc string) {
		if strings.Contains(phc, "m=") && !strings.Contains(phc, "m=8,") {
			return // memory cost from the input: keep the fuzzer fast and bounded
		}
		ok, err := checkPassword("secret-password", phc)
		if ok && err != nil {
			t.Fatal("match with an error")
		}
	})
}
