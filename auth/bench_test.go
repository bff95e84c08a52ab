package auth

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// The benchmarks below measure the CPU a refresh spends outside the store:
// signing and verifying JWTs, and decoding and checking refresh tokens.
// Run them with: go test ./auth -run XXX -bench . -benchmem

func benchSigner(b *testing.B) *signer {
	b.Helper()
	now := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	return &signer{keys: testKeys(b), issuer: "http://127.0.0.1:8080", audience: "pushreg", now: func() time.Time { return now }}
}

// benchClaims are the claims of a bound session's token, as a refresh
// issues them.
func benchClaims(s *signer) *Claims {
	return &Claims{RegisteredClaims: s.claimsFor("0123456789abcdef01234567", 15*time.Minute),
		SessionID: strings.Repeat("ab", sidLen), Roles: []string{"user"}, DeviceID: "pixel-7",
		FCMToken: "dev-1:APA91b" + strings.Repeat("Xy-_9", 24)}
}

func BenchmarkSignAccess(b *testing.B) {
	s := benchSigner(b)
	c := benchClaims(s)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.sign(typAccess, c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssueClaimsAndSign includes what issueAccess does besides
// signing: the registered claims with a fresh random jti.
func BenchmarkIssueClaimsAndSign(b *testing.B) {
	s := benchSigner(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.sign(typAccess, benchClaims(s)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyAccess(b *testing.B) {
	s := benchSigner(b)
	tok, err := s.sign(typAccess, benchClaims(s))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.verify(typAccess, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyKecak is the Kecak refresh's first step: one verify.
func BenchmarkVerifyKecak(b *testing.B) {
	s := benchSigner(b)
	svc := &Service{signer: s}
	c := benchClaims(s)
	c.ID, c.Gen = encodeSecret(newSecret()), 7
	tok, err := s.sign(typKecak, c)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := svc.verifyKecak(context.Background(), "Bearer "+tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeRefresh(b *testing.B) {
	ks := testKeys(b)
	rt := refreshToken{sessionID: strings.Repeat("ab", sidLen), gen: 7, secret: newSecret()}
	b.ReportAllocs()
	for b.Loop() {
		ks.encodeRefresh(rt)
	}
}

// BenchmarkDecodeRefresh is the refresh-token check before the store is
// asked: base64, layout and the MAC.
func BenchmarkDecodeRefresh(b *testing.B) {
	ks := testKeys(b)
	tok := ks.encodeRefresh(refreshToken{sessionID: strings.Repeat("ab", sidLen), gen: 7, secret: bytes.Repeat([]byte{1}, secretLen)})
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ks.decodeRefresh(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRotateSecret is the CPU of a rotation besides the store: a new
// secret, its hash, the successor sealed under the previous secret, and
// the presented secret's hash for the filter.
func BenchmarkRotateSecret(b *testing.B) {
	prev := newSecret()
	b.ReportAllocs()
	for b.Loop() {
		next := newSecret()
		hashSecret(prev)
		hashSecret(next)
		if _, err := seal(prev, next); err != nil {
			b.Fatal(err)
		}
	}
}
