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
