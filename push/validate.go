package push

import (
	"context"
	"errors"
	"fmt"

	"firebase.google.com/go/v4/messaging"
)

// Validation is what Validate learned about a token.
type Validation struct {
	// Verified reports whether FCM accepted the token, now or within
	// Config.ValidateCacheTTL.
	Verified bool
	// FormatOnly reports whether only the token's shape was checked, because
	// the Client runs in ModeFormatOnly.
	FormatOnly bool
	// Cached reports whether the answer came from the cache, without asking
	// FCM.
	Cached bool
}

// Cached returns what Validate would answer for a well-shaped token without
// asking FCM: an acceptance within Config.ValidateCacheTTL, or the shape
// check in ModeFormatOnly. ok is false when Validate would have to ask FCM,
// or the token is not well shaped.
func (c *Client) Cached(token string) (v Validation, ok bool) {
	if CheckTokenShape(token) != nil {
		return Validation{}, false
	}
	if c.fcm == nil {
		return Validation{FormatOnly: true}, true
	}
	if c.cache.hit(keyOf(token), c.cfg.Now()) {
		return Validation{Verified: true, Cached: true}, true
	}
	return Validation{}, false
}

// Validate checks token: its shape first (an error wrapping
// ErrTokenMalformed), then, unless the Client runs in ModeFormatOnly, FCM's
// opinion through a dry-run send of a message carrying nothing but the token.
//
// The dry run is bounded by Config.ValidateTimeout. That bound matters: the
// SDK retries a 503 answer or a network failure by itself, up to 4 times over
// about 7 seconds, so without a deadline one Validate could take that long.
// With it, Validate returns within the timeout plus the time to cancel a
// request.
//
// Outcomes:
//   - FCM accepts: Validation{Verified: true}, nil. The acceptance is
//     cached for Config.ValidateCacheTTL, keyed by the token's SHA-256, and a
//     cached token is not asked about again (Validation.Cached).
//   - FCM rejects the token (UNREGISTERED, SENDER_ID_MISMATCH,
//     INVALID_ARGUMENT): an error wrapping ErrTokenInvalid and an *FCMError
//     with FCM's code. Unlike Classify in general, any INVALID_ARGUMENT with
//     an FcmError detail counts, since the dry run carries nothing but the
//     token. Rejections are not cached.
//   - FCM cannot answer (UNAVAILABLE, INTERNAL, QUOTA_EXCEEDED, the timeout,
//     the network) or refuses for a reason that is not the token's
//     (ClassReport, for instance wrong credentials, which is also logged): an
//     error wrapping ErrUnavailable, since the token could not be checked.
//   - ctx ends first: ctx's error.
//
// In ModeFormatOnly a well-shaped token gives Validation{FormatOnly: true}
// and a nil error.
func (c *Client) Validate(ctx context.Context, token string) (Validation, error) {
	if err := CheckTokenShape(token); err != nil {
		return Validation{}, fmt.Errorf("push: validate: %w", err)
	}
	if v, ok := c.Cached(token); ok {
		return v, nil
	}
	key := keyOf(token)

	vctx, cancel := context.WithTimeout(ctx, c.cfg.ValidateTimeout)
	defer cancel()
	_, err := c.fcm.SendDryRun(vctx, &messaging.Message{Token: token})
	if err == nil {
		c.cache.add(key, c.cfg.Now())
		return Validation{Verified: true}, nil
	}
	if ctx.Err() != nil {
		// The caller gave up; FCM is not to blame.
		return Validation{}, fmt.Errorf("push: validate: %w", ctx.Err())
	}

	fe := newFCMError(err, true, c.cfg.Now())
	switch {
	case fe.Status == 0 && errors.Is(vctx.Err(), context.DeadlineExceeded):
		// fe is ClassRetry, as every error without an answer is.
		return Validation{}, fmt.Errorf("push: validate: no answer from FCM within %s: %w", c.cfg.ValidateTimeout, fe)
	case fe.Class == ClassPrune, fe.Class == ClassRetry:
		// fe matches ErrTokenInvalid or ErrUnavailable by its class.
		return Validation{}, fmt.Errorf("push: validate: %w", fe)
	default:
		c.log.Error("push: FCM refused a dry run for a reason that is not the token's", "code", fe.Code, "status", fe.Status, "err", fe.Err)
		return Validation{}, fmt.Errorf("push: validate: %w: %w", ErrUnavailable, fe)
	}
}
