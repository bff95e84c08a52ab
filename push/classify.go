package push

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
)

// Class says what to do about a failed send to one token.
type Class int

// The classes of Classify.
const (
	// ClassNone is the class of no error.
	ClassNone Class = iota
	// ClassPrune means the token will never work again: delete it.
	ClassPrune
	// ClassRetry means FCM could not take the message now: send again later,
	// after any Retry-After.
	ClassRetry
	// ClassReport means neither: the request or the project's setup is
	// wrong, so retrying cannot help and the token is not to blame. Log it.
	ClassReport
)

func (c Class) String() string {
	switch c {
	case ClassNone:
		return "none"
	case ClassPrune:
		return "prune"
	case ClassRetry:
		return "retry"
	case ClassReport:
		return "report"
	}
	return "Class(" + strconv.Itoa(int(c)) + ")"
}

// FCMError is a failure to send to one token, as FCM or the way to it
// reported it, already classified. It matches ErrTokenInvalid when its Class
// is ClassPrune and ErrUnavailable when it is ClassRetry, and unwraps to the
// SDK's error.
type FCMError struct {
	// Code is FCM's error code (UNREGISTERED, INVALID_ARGUMENT,
	// SENDER_ID_MISMATCH, QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL,
	// THIRD_PARTY_AUTH_ERROR), or the google.rpc status (PERMISSION_DENIED,
	// ...) when FCM's answer carried no FcmError detail, or empty when no
	// answer came at all.
	Code string
	// Status is the HTTP status of FCM's answer; 0 when none came.
	Status int
	// RetryAfter is how long FCM asked to wait before trying again; 0 when it
	// did not say.
	RetryAfter time.Duration
	// Class is what to do about it.
	Class Class
	// Err is the SDK's error.
	Err error
}

func (e *FCMError) Error() string {
	if e.Status == 0 {
		return "fcm: no answer: " + e.Err.Error()
	}
	return fmt.Sprintf("fcm: %s (HTTP %d): %s", e.Code, e.Status, e.Err.Error())
}

// Unwrap returns the SDK's error.
func (e *FCMError) Unwrap() error { return e.Err }

// Is makes the class of e testable with errors.Is against ErrTokenInvalid and
// ErrUnavailable.
func (e *FCMError) Is(target error) bool {
	switch target {
	case ErrTokenInvalid:
		return e.Class == ClassPrune
	case ErrUnavailable:
		return e.Class == ClassRetry
	}
	return false
}

// Classify says what to do about err, an error from this package or from the
// Firebase Admin SDK's messaging client. It is the only place FCM errors are
// interpreted:
//
//   - ClassPrune: UNREGISTERED; SENDER_ID_MISMATCH; INVALID_ARGUMENT about the
//     token; ErrTokenMalformed and ErrTokenInvalid.
//   - ClassRetry: UNAVAILABLE, INTERNAL and QUOTA_EXCEEDED (and the same
//     google.rpc statuses without an FcmError detail); no answer at all (a
//     timeout, a refused connection, a cancelled context); ErrUnavailable.
//   - ClassReport: everything else, for instance THIRD_PARTY_AUTH_ERROR (the
//     project's APNs or Web Push credentials), UNAUTHENTICATED or
//     PERMISSION_DENIED (ours), an INVALID_ARGUMENT about the message,
//     ErrPayloadInvalid and ErrNotConfigured.
//
// FCM answers INVALID_ARGUMENT both for a token it never issued and for a
// message it will not take (a reserved data key, too big a payload, a bad
// TTL), with the same FcmError code. Only the first may prune, so
// INVALID_ARGUMENT counts as about the token only when FCM's message names it
// ("The registration token is not a valid FCM registration token", or a field
// violation on message.token); otherwise it is reported, since pruning a good
// token loses a device for good while reporting loses one message. A 404
// without an FcmError detail (a wrong URL or project) is reported too: only
// FCM's explicit UNREGISTERED prunes.
//
// SENDER_ID_MISMATCH prunes as FCM's documentation says, which assumes the
// project is right; see Config.ProjectID.
func Classify(err error) Class {
	if err == nil {
		return ClassNone
	}
	var fe *FCMError
	if errors.As(err, &fe) {
		return fe.Class
	}
	return classify(err, false)
}

// classify is Classify for an error not yet wrapped in an FCMError.
// tokenOnly reports whether the request carried nothing but a token (the
// dry run of Validate), in which case an INVALID_ARGUMENT can only be about
// the token.
func classify(err error, tokenOnly bool) Class {
	switch {
	case errors.Is(err, ErrTokenMalformed), errors.Is(err, ErrTokenInvalid):
		return ClassPrune
	case errors.Is(err, ErrUnavailable):
		return ClassRetry
	case errors.Is(err, ErrPayloadInvalid), errors.Is(err, ErrNotConfigured):
		return ClassReport
	}
	if e := findSDKError(err); e != nil {
		return classifySDK(e, tokenOnly)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.As(err, &ne) {
		return ClassRetry
	}
	return ClassReport
}

// classifySDK classifies e, an error of the SDK's own type (the SDK's
// predicates look at its dynamic type, not through wrapping).
func classifySDK(e error, tokenOnly bool) Class {
	switch {
	case messaging.IsUnregistered(e), messaging.IsSenderIDMismatch(e):
		return ClassPrune
	case messaging.IsInvalidArgument(e):
		if tokenOnly || aboutToken(e.Error()) {
			return ClassPrune
		}
		return ClassReport
	case messaging.IsUnavailable(e), messaging.IsInternal(e), messaging.IsQuotaExceeded(e):
		return ClassRetry
	case messaging.IsThirdPartyAuthError(e):
		return ClassReport
	case errorutils.HTTPResponse(e) == nil:
		// The SDK got no answer: it wraps network failures and timeouts in its
		// error type too.
		return ClassRetry
	case errorutils.IsUnavailable(e), errorutils.IsInternal(e),
		errorutils.IsResourceExhausted(e), errorutils.IsDeadlineExceeded(e):
		return ClassRetry
	}
	return ClassReport
}

// aboutToken reports whether an INVALID_ARGUMENT message from FCM is about the
// registration token rather than the message.
func aboutToken(message string) bool {
	m := strings.ToLower(message)
	return strings.Contains(m, "registration token") || strings.Contains(m, "message.token")
}

// findSDKError returns the first error in err's tree that is of the SDK's
// error type, or nil.
func findSDKError(err error) error {
	for err != nil {
		if isSDKError(err) {
			return err
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if found := findSDKError(e); found != nil {
					return found
				}
			}
			return nil
		default:
			return nil
		}
	}
	return nil
}

// isSDKError reports whether err is the SDK's error type, which lives in an
// internal package and so cannot be named: every such error either carries an
// HTTP response or has one of the platform codes the SDK gives network
// failures.
func isSDKError(err error) bool {
	return errorutils.HTTPResponse(err) != nil || errorutils.IsUnavailable(err) ||
		errorutils.IsDeadlineExceeded(err) || errorutils.IsUnknown(err)
}

// newFCMError wraps err, as the SDK returned it for one token, with its class
// and what FCM said.
func newFCMError(err error, tokenOnly bool, now time.Time) *FCMError {
	fe := &FCMError{Class: classify(err, tokenOnly), Err: err}
	sdk := findSDKError(err)
	if sdk == nil {
		return fe
	}
	if resp := errorutils.HTTPResponse(sdk); resp != nil {
		fe.Code = errorCode(sdk)
		fe.Status = resp.StatusCode
		fe.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
	}
	return fe
}

// errorCode names the FCM error code of e, or its google.rpc status when FCM
// gave none.
func errorCode(e error) string {
	switch {
	case messaging.IsUnregistered(e):
		return "UNREGISTERED"
	case messaging.IsSenderIDMismatch(e):
		return "SENDER_ID_MISMATCH"
	case messaging.IsInvalidArgument(e):
		return "INVALID_ARGUMENT"
	case messaging.IsQuotaExceeded(e):
		return "QUOTA_EXCEEDED"
	case messaging.IsUnavailable(e):
		return "UNAVAILABLE"
	case messaging.IsInternal(e):
		return "INTERNAL"
	case messaging.IsThirdPartyAuthError(e):
		return "THIRD_PARTY_AUTH_ERROR"
	}
	for _, p := range []struct {
		code string
		is   func(error) bool
	}{
		{"INVALID_ARGUMENT", errorutils.IsInvalidArgument},
		{"FAILED_PRECONDITION", errorutils.IsFailedPrecondition},
		{"OUT_OF_RANGE", errorutils.IsOutOfRange},
		{"UNAUTHENTICATED", errorutils.IsUnauthenticated},
		{"PERMISSION_DENIED", errorutils.IsPermissionDenied},
		{"NOT_FOUND", errorutils.IsNotFound},
		{"CONFLICT", errorutils.IsConflict},
		{"ABORTED", errorutils.IsAborted},
		{"ALREADY_EXISTS", errorutils.IsAlreadyExists},
		{"RESOURCE_EXHAUSTED", errorutils.IsResourceExhausted},
		{"CANCELLED", errorutils.IsCancelled},
		{"DATA_LOSS", errorutils.IsDataLoss},
		{"INTERNAL", errorutils.IsInternal},
		{"UNAVAILABLE", errorutils.IsUnavailable},
		{"DEADLINE_EXCEEDED", errorutils.IsDeadlineExceeded},
	} {
		if p.is(e) {
			return p.code
		}
	}
	return "UNKNOWN"
}

// retryAfter parses a Retry-After header, in seconds or as an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.ParseInt(h, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
