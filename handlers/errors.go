package handlers

import (
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/pushreg/pushreg/auth"
	"github.com/pushreg/pushreg/push"
	"github.com/pushreg/pushreg/registry"
	"github.com/pushreg/pushreg/registry/mongodb"
)

// problem is an error as the client sees it: a status, a short title, and
// a detail safe to show (never a secret, never a driver message).
type problem struct {
	Status     int
	Title      string
	Detail     string
	Code       string // machine-readable reason, e.g. "invalid_grant"
	RetryAfter int    // seconds; 0 means no Retry-After header
	// Expected marks a 5xx that is a configured state rather than a
	// failure (format-only mode refusing a push): logged at info, not as
	// an error.
	Expected bool
	// Cause is why a credential was refused (auth.Cause), sent in the
	// Pushreg-Refresh-Failure header and, where the shape has room, as
	// "reason"; empty when the answer is no refusal of a credential.
	Cause string
}

// apiError is an error a handler raises itself with an exact answer.
type apiError struct{ p problem }

func (e *apiError) Error() string { return e.p.Title + ": " + e.p.Detail }

func errorf(status int, code, detail string) error {
	return &apiError{p: problem{Status: status, Title: http.StatusText(status), Detail: detail, Code: code}}
}

// classification maps domain errors to answers, most specific first.
type classification struct {
	target error
	p      problem
}

var classifications = []classification{
	{auth.ErrInvalidCredentials, problem{Status: http.StatusUnauthorized, Title: "Unauthorized", Code: "invalid_credentials", Detail: "wrong username or password"}},
	{auth.ErrAccountDisabled, problem{Status: http.StatusForbidden, Title: "Forbidden", Code: "account_disabled", Detail: "the account is disabled"}},
	{auth.ErrTokenReused, problem{Status: http.StatusUnauthorized, Title: "Unauthorized", Code: "token_reused", Detail: "the token was already used; the session has been revoked"}},
	{auth.ErrTokenExpired, problem{Status: http.StatusUnauthorized, Title: "Unauthorized", Code: "token_expired", Detail: "the token has expired"}},
	{auth.ErrSessionRevoked, problem{Status: http.StatusUnauthorized, Title: "Unauthorized", Code: "session_revoked", Detail: "the session has been revoked"}},
	{auth.ErrNotSessionToken, problem{Status: http.StatusUnauthorized, Title: "Unauthorized", Code: "invalid_token", Detail: "an access token cannot refresh; present the session token LoginApi answered"}},
	{auth.ErrInvalidToken, problem{Status: http.StatusUnauthorized, Title: "Unauthorized", Code: "invalid_token", Detail: "the token is not valid"}},
	{auth.ErrDeviceMismatch, problem{Status: http.StatusUnauthorized, Title: "Unauthorized", Code: "device_mismatch", Detail: "the device does not match the session"}},
	{auth.ErrUsernameTaken, problem{Status: http.StatusConflict, Title: "Conflict", Code: "username_taken", Detail: "the username is taken"}},
	{auth.ErrNotFound, problem{Status: http.StatusNotFound, Title: "Not Found", Code: "not_found"}},
	{auth.ErrFCMTokenMalformed, problem{Status: http.StatusBadRequest, Title: "Bad Request", Code: "invalid_request"}},
	{auth.ErrFCMTokenRejected, problem{Status: http.StatusUnprocessableEntity, Title: "Unprocessable Entity", Code: "fcm_token_rejected", Detail: "fcm_token: Firebase rejected the token"}},
	{auth.ErrFCMUnavailable, problem{Status: http.StatusServiceUnavailable, Title: "Service Unavailable", Code: "fcm_unavailable", Detail: "Firebase could not validate the token; retry later", RetryAfter: 5}},
	{registry.ErrNotFound, problem{Status: http.StatusNotFound, Title: "Not Found", Code: "not_found"}},
	{registry.ErrBadCursor, problem{Status: http.StatusBadRequest, Title: "Bad Request", Code: "invalid_cursor", Detail: "the cursor is not one this server handed out"}},
	{auth.ErrBadCursor, problem{Status: http.StatusBadRequest, Title: "Bad Request", Code: "invalid_cursor", Detail: "the cursor is not one this server handed out"}},
	{push.ErrPayloadInvalid, problem{Status: http.StatusBadRequest, Title: "Bad Request", Code: "invalid_payload"}},
	{push.ErrNotConfigured, problem{Status: http.StatusServiceUnavailable, Title: "Service Unavailable", Code: "push_not_configured", Detail: "FCM is not configured (format-only mode), so nothing can be sent; set PUSHREG_FCM_CREDENTIALS_FILE or PUSHREG_FCM_ENDPOINT", Expected: true}},
	{push.ErrUnknownUser, problem{Status: http.StatusNotFound, Title: "Not Found", Code: "not_found", Detail: "no such user"}},
	{registry.ErrIdempotencyMismatch, problem{Status: http.StatusUnprocessableEntity, Title: "Unprocessable Entity", Code: "idempotency_key_reused", Detail: "the Idempotency-Key was already used for a different request"}},
	{registry.ErrIdempotencyInProgress, problem{Status: http.StatusConflict, Title: "Conflict", Code: "idempotency_in_progress", Detail: "a request with this Idempotency-Key is still in progress; retry when it is done", RetryAfter: 1}},
	{mongodb.ErrUnavailable, problem{Status: http.StatusServiceUnavailable, Title: "Service Unavailable", Code: "store_unavailable", Detail: "the store is unavailable; retry later", RetryAfter: 1}},
}

// toProblem turns any error a handler returns into the answer to give.
func toProblem(err error) problem {
	p := classify(err)
	if p.Cause == "" && p.Status < http.StatusInternalServerError {
		// A 5xx never has a cause: the client keeps its credential and
		// retries.
		p.Cause = string(auth.CauseOf(err))
	}
	return p
}

// classify finds the answer to err, without its cause.
func classify(err error) problem {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.p
	}
	for _, c := range classifications {
		if errors.Is(err, c.target) {
			p := c.p
			if p.Detail == "" {
				p.Detail = err.Error()
			}
			return p
		}
	}
	var ie *auth.InvalidInputError
	if errors.As(err, &ie) {
		return problem{Status: http.StatusBadRequest, Title: "Bad Request", Code: "invalid_request", Detail: ie.Error()}
	}
	var rl *auth.RateLimitedError
	if errors.As(err, &rl) {
		return problem{Status: http.StatusTooManyRequests, Title: "Too Many Requests", Code: "rate_limited",
			Detail: rl.Error(), RetryAfter: max(1, int(math.Ceil(rl.RetryAfter.Seconds())))}
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		detail := http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok {
			detail = m
		}
		if he.Code == http.StatusRequestEntityTooLarge {
			detail = "the request body is larger than 1 MiB"
		}
		return problem{Status: he.Code, Title: http.StatusText(he.Code), Detail: detail}
	}
	return problem{Status: http.StatusInternalServerError, Title: "Internal Server Error", Detail: "internal error"}
}

// markExpected tells the access log that this answer's 5xx status is an
// expected state, not a failure.
func markExpected(c echo.Context) { c.Set("expected_status", true) }

func isExpected(c echo.Context) bool { b, _ := c.Get("expected_status").(bool); return b }

// noCredential is err, the answer to a request that sent no credential,
// with the cause malformed: a client that sends none has a bug.
func noCredential(err error) error {
	p := toProblem(err)
	p.Cause = string(auth.CauseMalformed)
	return &apiError{p: p}
}

// refreshFailureHeader names the cause of a refused credential on every
// style's answer, whatever room its body has.
const refreshFailureHeader = "Pushreg-Refresh-Failure"

// setCause sends p's cause in the header, if it has one.
func setCause(c echo.Context, p problem) {
	if p.Cause != "" {
		c.Response().Header().Set(refreshFailureHeader, p.Cause)
	}
}

// renderer writes a problem in the shape a route family uses.
type renderer func(c echo.Context, p problem) error

// renderWith makes a group's errors use its own shape.
func renderWith(r renderer) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.Set("renderer", r)
			return next(c)
		}
	}
}

// renderProblemJSON writes RFC 9457 application/problem+json.
func renderProblemJSON(c echo.Context, p problem) error {
	body := map[string]any{"type": "about:blank", "title": p.Title, "status": p.Status, "detail": p.Detail}
	if p.Code != "" {
		body["code"] = p.Code
	}
	if p.Cause != "" {
		body["reason"] = p.Cause
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
	return c.JSON(p.Status, body)
}

func errorHandler(base *slog.Logger) func(error, echo.Context) {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		p := toProblem(err)
		if p.Expected {
			markExpected(c)
		}
		if p.Status >= 500 && !p.Expected {
			// Domain errors never carry secrets; they say what failed.
			logger(c, base).Error("request failed", "route", c.Path(), "status", p.Status, "error", err.Error())
		}
		if p.RetryAfter > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(p.RetryAfter))
		}
		setCause(c, p)
		render, ok := c.Get("renderer").(renderer)
		if !ok {
			render = renderProblemJSON
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(p.Status)
			return
		}
		_ = render(c, p)
	}
}
