package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Explicit JWT types (RFC 8725 §3.11): an access token cannot be passed
// off as a Kecak session token, or the other way round.
const (
	typAccess = "at+jwt"
	typKecak  = "kecak+jwt"
)

// Claims are what an access token or a Kecak token says.
type Claims struct {
	jwt.RegisteredClaims
	SessionID string   `json:"sid"`
	Roles     []string `json:"roles,omitempty"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	DeviceID  string   `json:"device_id,omitempty"`
	FCMToken  string   `json:"fcm_token,omitempty"`
	// Gen is a Kecak token's place in its session's chain.
	Gen int64 `json:"gen,omitempty"`
}

// HasRole reports whether the claims grant role.
func (c *Claims) HasRole(role string) bool {
	for _, r := range c.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// HasScope reports whether an app token grants scope.
func (c *Claims) HasScope(scope string) bool {
	for _, s := range strings.Fields(c.Scope) {
		if s == scope {
			return true
		}
	}
	return false
}

// signer issues and verifies pushreg's JWTs.
type signer struct {
	keys     *KeySet
	issuer   string
	audience string
	now      func() time.Time
}

func (s *signer) sign(typ string, c *Claims) (string, error) {
	k := s.keys.signer
	t := jwt.NewWithClaims(k.method, c)
	t.Header["kid"] = k.ID
	t.Header["typ"] = typ
	out, err := t.SignedString(k.Private)
	if err != nil {
		return "", fmt.Errorf("auth: sign token: %w", err)
	}
	return out, nil
}

// claimsFor fills the registered claims of a token issued now.
func (s *signer) claimsFor(subject string, ttl time.Duration) jwt.RegisteredClaims {
	now := s.now().Truncate(time.Second)
	return jwt.RegisteredClaims{
		Issuer:    s.issuer,
		Audience:  jwt.ClaimStrings{s.audience},
		Subject:   subject,
		ID:        randomID(16),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
}

// verify checks a JWT of the given type: the algorithm is pinned to the
// key named by kid, and issuer, audience and expiry are required. A
// refusal carries its cause; when expiry is the token's only fault (its
// signature and every other claim hold), the claims come back with the
// error, so that a caller can look at the token's session.
func (s *signer) verify(typ, raw string) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		if got, _ := t.Header["typ"].(string); !strings.EqualFold(got, typ) {
			return nil, fmt.Errorf("token type %q", got)
		}
		kid, _ := t.Header["kid"].(string)
		k, ok := s.keys.byID[kid]
		if !ok {
			return nil, errors.New("unknown key id")
		}
		if t.Method.Alg() != k.method.Alg() {
			return nil, fmt.Errorf("algorithm %s does not match the key", t.Method.Alg())
		}
		return k.Public, nil
	}, s.options(s.now)...)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, refused(CauseMalformed, fmt.Errorf("%w: %w", ErrInvalidToken, err))
	case errors.Is(err, jwt.ErrTokenExpired) && s.onlyExpired(&c):
		return &c, refused(CauseTokenExpired, fmt.Errorf("%w: %w", ErrTokenExpired, err))
	case errors.Is(err, jwt.ErrTokenExpired):
		// Expired, and not ours in some other way too.
		return nil, refused(CauseUnknown, fmt.Errorf("%w: %w", ErrTokenExpired, err))
	default:
		return nil, refused(CauseUnknown, fmt.Errorf("%w: %w", ErrInvalidToken, err))
	}
	if c.SessionID == "" && c.ClientID == "" {
		return nil, refused(CauseUnknown, fmt.Errorf("%w: no session", ErrInvalidToken))
	}
	return &c, nil
}

// options are the claim checks of verify, at the time now gives.
func (s *signer) options(now func() time.Time) []jwt.ParserOption {
	return []jwt.ParserOption{
		jwt.WithValidMethods([]string{"EdDSA", "ES256", "RS256"}),
		jwt.WithIssuer(s.issuer),
		jwt.WithAudience(s.audience),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(now),
		jwt.WithLeeway(5 * time.Second),
	}
}

// onlyExpired reports whether the claims of a token whose signature
// verified pass every check at a moment before their expiry: the token
// is genuine, and merely old.
func (s *signer) onlyExpired(c *Claims) bool {
	if c.ExpiresAt == nil || (c.SessionID == "" && c.ClientID == "") {
		return false
	}
	before := c.ExpiresAt.Add(-time.Second)
	return jwt.NewValidator(s.options(func() time.Time { return before })...).Validate(c) == nil
}

// Refresh tokens are opaque: "prt_" and the base64url of
// version | session ID | generation | secret | MAC. The secret is 256 random
// bits; the store keeps only its SHA-256. The MAC proves the token was
// minted here, so only a genuine old token counts as reuse.
const (
	refreshPrefix  = "prt_"
	refreshVersion = 1
	sidLen         = 16
	secretLen      = 32
	macLen         = 16
	refreshLen     = 1 + sidLen + 8 + secretLen + macLen
)

type refreshToken struct {
	sessionID string // hex of sidLen bytes
	gen       int64
	secret    []byte
}

func mac(key, sid []byte, gen int64, secret []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(sid)
	binary.Write(m, binary.BigEndian, gen)
	m.Write(secret)
	return m.Sum(nil)[:macLen]
}

func (ks *KeySet) encodeRefresh(t refreshToken) string {
	sid, _ := hex.DecodeString(t.sessionID)
	b := make([]byte, 0, refreshLen)
	b = append(b, refreshVersion)
	b = append(b, sid...)
	b = binary.BigEndian.AppendUint64(b, uint64(t.gen))
	b = append(b, t.secret...)
	b = append(b, mac(ks.macKeys[0], sid, t.gen, t.secret)...)
	return refreshPrefix + base64.RawURLEncoding.EncodeToString(b)
}

func (ks *KeySet) decodeRefresh(s string) (refreshToken, error) {
	body, ok := strings.CutPrefix(s, refreshPrefix)
	if !ok || len(body) != base64.RawURLEncoding.EncodedLen(refreshLen) {
		return refreshToken{}, refused(CauseMalformed, fmt.Errorf("%w: not a refresh token", ErrInvalidToken))
	}
	b, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || b[0] != refreshVersion {
		return refreshToken{}, refused(CauseMalformed, fmt.Errorf("%w: not a refresh token", ErrInvalidToken))
	}
	sid := b[1 : 1+sidLen]
	gen := int64(binary.BigEndian.Uint64(b[1+sidLen:]))
	secret := b[1+sidLen+8 : 1+sidLen+8+secretLen]
	minted := false
	for _, k := range ks.macKeys {
		minted = minted || hmac.Equal(b[refreshLen-macLen:], mac(k, sid, gen, secret))
	}
	if !minted || gen < 0 {
		return refreshToken{}, refused(CauseUnknown, fmt.Errorf("%w: refresh token not minted here", ErrInvalidToken))
	}
	return refreshToken{sessionID: hex.EncodeToString(sid), gen: gen, secret: secret}, nil
}

// Kecak tokens carry their secret in the jti claim.
func encodeSecret(secret []byte) string { return base64.RawURLEncoding.EncodeToString(secret) }

func decodeSecret(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != secretLen {
		// The token's signature verified, so it is ours, yet no session
		// credential.
		return nil, refused(CauseUnknown, fmt.Errorf("%w: bad token id", ErrInvalidToken))
	}
	return b, nil
}

func newSecret() []byte {
	b := make([]byte, secretLen)
	rand.Read(b)
	return b
}

func hashSecret(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hex.EncodeToString(sum[:])
}

func randomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func splitScope(s string) []string { return strings.Fields(s) }

func joinScope(s []string) string { return strings.Join(s, " ") }
