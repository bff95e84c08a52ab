// Package auth holds pushreg's accounts and sessions: users, apps,
// passwords, sessions with rotating or fixed refresh credentials, JWT
// signing and verification, and the login rate limit.
package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// Errors a caller acts on; each is wrapped with context.
var (
	ErrInvalidCredentials = errors.New("invalid username or password")
	ErrAccountDisabled    = errors.New("account disabled")
	ErrInvalidToken       = errors.New("invalid token")
	ErrTokenExpired       = errors.New("token expired")
	// ErrTokenReused means a retired credential came back after the grace
	// window: the session was revoked as a theft signal.
	ErrTokenReused    = errors.New("token reused; session revoked")
	ErrSessionRevoked = errors.New("session revoked")
	ErrUsernameTaken  = errors.New("username taken")
	ErrNotFound       = errors.New("not found")
	ErrUnavailable    = mongodb.ErrUnavailable
	ErrDeviceMismatch = errors.New("device does not match the session")
	// ErrNotSessionToken is an access token presented where only a session
	// token (a Kecak token) refreshes; it is an ErrInvalidToken.
	ErrNotSessionToken = fmt.Errorf("%w: an access token cannot refresh a session", ErrInvalidToken)

	// The FCM token validator's verdicts, as the adapter reports them.
	ErrFCMTokenMalformed = errors.New("malformed FCM token")
	ErrFCMTokenRejected  = errors.New("FCM token rejected by Firebase")
	ErrFCMUnavailable    = errors.New("cannot reach Firebase")
)

// Cause is why a credential (a refresh token, a Kecak token, an access
// token) was refused, in the stable words clients act on: the README's
// client table says what each asks of the app.
type Cause string

const (
	// CauseExpired: the session's absolute lifetime is over.
	CauseExpired Cause = "expired"
	// CauseIdleExpired: the session went unrefreshed for its idle lifetime.
	CauseIdleExpired Cause = "idle_expired"
	// CauseTokenExpired: the JWT presented is past its exp, but it is
	// genuine and its session lives.
	CauseTokenExpired Cause = "token_expired"
	// CauseRevoked: the session was ended (logout, an admin, a disabled
	// account, an evicted or removed device).
	CauseRevoked Cause = "revoked"
	// CauseReused: a retired credential came back and the session was
	// revoked for it.
	CauseReused Cause = "reused"
	// CauseUnknown: not a credential of a live session this pushreg
	// issued (not minted here, its session gone, or the wrong kind).
	CauseUnknown Cause = "unknown"
	// CauseMalformed: not a credential at all, or none was sent.
	CauseMalformed Cause = "malformed"
)

// RefusedError is a credential refused for Cause. It wraps the sentinel
// (ErrInvalidToken, ErrTokenExpired, ErrSessionRevoked, ErrTokenReused)
// that callers already branch on.
type RefusedError struct {
	Cause Cause
	Err   error
}

func (e *RefusedError) Error() string { return e.Err.Error() + " [" + string(e.Cause) + "]" }

func (e *RefusedError) Unwrap() error { return e.Err }

// refused marks err, which wraps one of the token sentinels, with cause.
func refused(cause Cause, err error) error { return &RefusedError{Cause: cause, Err: err} }

// CauseOf returns why err refused a credential; empty when err is no
// refusal (a store outage, a bad request).
func CauseOf(err error) Cause {
	var re *RefusedError
	if errors.As(err, &re) {
		return re.Cause
	}
	return ""
}

// InvalidInputError names the field a request got wrong.
type InvalidInputError struct {
	Field  string
	Reason string
}

func (e *InvalidInputError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

func invalid(field, reason string) error { return &InvalidInputError{Field: field, Reason: reason} }

// RateLimitedError means too many failed logins; retry after RetryAfter.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("too many failed logins; retry in %s", e.RetryAfter.Round(time.Second))
}
