package push_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pushreg/pushreg/push"
	"github.com/pushreg/pushreg/push/fcmtest"
)

func TestValidateAccepted(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	c := newClient(t, srv, nil)

	got, err := c.Validate(context.Background(), token(1))
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if want := (push.Validation{Verified: true}); got != want {
		t.Errorf("Validate = %+v, want %+v", got, want)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("double got %d requests, want 1", len(reqs))
	}
	if r := reqs[0]; r.Token != token(1) || !r.ValidateOnly || r.Project != srv.ProjectID() {
		t.Errorf("request = token %q validate_only %v project %q, want the token, a dry run, project %q",
			r.Token, r.ValidateOnly, r.Project, srv.ProjectID())
	}
}

func TestValidateRejected(t *testing.T) {
	t.Parallel()
	for _, code := range []fcmtest.Code{fcmtest.Unregistered, fcmtest.InvalidArgument, fcmtest.SenderIDMismatch} {
		t.Run(string(code), func(t *testing.T) {
			t.Parallel()
			srv := fcmtest.New(t)
			c := newClient(t, srv, nil)
			srv.SetTokenError(token(1), code)

			for range 2 { // a rejection is not cached: both calls ask FCM
				_, err := c.Validate(context.Background(), token(1))
				if !errors.Is(err, push.ErrTokenInvalid) {
					t.Fatalf("Validate error = %v, want ErrTokenInvalid", err)
				}
				var fe *push.FCMError
				if !errors.As(err, &fe) || fe.Code != string(code) {
					t.Fatalf("Validate error = %v, want an *FCMError with code %s", err, code)
				}
				if got := push.Classify(err); got != push.ClassPrune {
					t.Errorf("Classify = %v, want prune", got)
				}
				if strings.Contains(err.Error(), token(1)) {
					t.Errorf("error %q quotes the token", err)
				}
			}
			if n := len(srv.Requests()); n != 2 {
				t.Errorf("double got %d requests, want 2", n)
			}
		})
	}
}

func TestValidateUnavailable(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name     string
		program  func(*fcmtest.Server)
		project  string
		wantCode string // "" when no answer is expected within the timeout
	}{
		// The SDK retries 503 by itself, waiting 1s after its second try, so
		// the timeout ends it with no answer to report.
		{name: "503", program: func(s *fcmtest.Server) { s.SetTokenError(token(1), fcmtest.Unavailable) }},
		{name: "down", program: func(s *fcmtest.Server) { s.SetDown(true) }},
		{name: "500", program: func(s *fcmtest.Server) { s.SetTokenError(token(1), fcmtest.Internal) }, wantCode: "INTERNAL"},
		{name: "429", program: func(s *fcmtest.Server) { s.SetTokenError(token(1), fcmtest.QuotaExceeded) }, wantCode: "QUOTA_EXCEEDED"},
		{name: "slow", program: func(s *fcmtest.Server) { s.SetLatency(10 * time.Second) }},
		// Not the token's fault, and not something a retry mends, but the
		// token could not be checked all the same.
		{name: "third party auth", program: func(s *fcmtest.Server) { s.SetTokenError(token(1), fcmtest.ThirdPartyAuthError) }, wantCode: "THIRD_PARTY_AUTH_ERROR"},
		{name: "wrong project", program: func(*fcmtest.Server) {}, project: "someone-else", wantCode: "PERMISSION_DENIED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := fcmtest.New(t)
			tt.program(srv)
			c := newClient(t, srv, func(cfg *push.Config) {
				cfg.ValidateTimeout = timeout
				if tt.project != "" {
					cfg.ProjectID = tt.project
				}
			})

			start := time.Now()
			_, err := c.Validate(context.Background(), token(1))
			elapsed := time.Since(start)

			if !errors.Is(err, push.ErrUnavailable) {
				t.Fatalf("Validate error = %v, want ErrUnavailable", err)
			}
			if errors.Is(err, push.ErrTokenInvalid) {
				t.Errorf("Validate error = %v, also ErrTokenInvalid", err)
			}
			if elapsed > 2*time.Second {
				t.Errorf("Validate took %v with a %v timeout", elapsed, timeout)
			}
			var fe *push.FCMError
			if !errors.As(err, &fe) || fe.Code != tt.wantCode {
				t.Errorf("Validate error = %v, want an *FCMError with code %q", err, tt.wantCode)
			}
			// A failure is not cached either.
			if _, err := c.Validate(context.Background(), token(1)); err == nil {
				t.Errorf("second Validate succeeded, want the failure again")
			}
		})
	}
}

func TestValidateCache(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	clk := newClock()
	c := newClient(t, srv, func(cfg *push.Config) {
		cfg.Now = clk.Now
		cfg.ValidateCacheTTL = time.Hour
	})
	ctx := context.Background()

	steps := []struct {
		advance      time.Duration
		want         push.Validation
		wantRequests int
	}{
		{0, push.Validation{Verified: true}, 1},
		{0, push.Validation{Verified: true, Cached: true}, 1},
		{time.Hour - time.Nanosecond, push.Validation{Verified: true, Cached: true}, 1},
		{time.Nanosecond, push.Validation{Verified: true}, 2}, // expired: FCM is asked again
		{time.Minute, push.Validation{Verified: true, Cached: true}, 2},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		got, err := c.Validate(ctx, token(1))
		if err != nil {
			t.Fatalf("step %d: Validate: %v", i, err)
		}
		if got != s.want {
			t.Errorf("step %d: Validate = %+v, want %+v", i, got, s.want)
		}
		if n := srv.Stats().DryRuns; n != s.wantRequests {
			t.Errorf("step %d: double got %d dry runs, want %d", i, n, s.wantRequests)
		}
	}
}

func TestValidateCacheDisabled(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	c := newClient(t, srv, func(cfg *push.Config) { cfg.ValidateCacheSize = -1 })
	for range 3 {
		if got, err := c.Validate(context.Background(), token(1)); err != nil || got.Cached {
			t.Fatalf("Validate = %+v, %v; want verified, not cached", got, err)
		}
	}
	if n := len(srv.Requests()); n != 3 {
		t.Errorf("double got %d requests, want 3", n)
	}
}

func TestValidateMalformed(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	c := newClient(t, srv, nil)
	for _, tok := range []string{"", "abc def", "tok\x00en", "tök", strings.Repeat("a", push.MaxTokenLength+1), "a/b", "a+b="} {
		_, err := c.Validate(context.Background(), tok)
		if !errors.Is(err, push.ErrTokenMalformed) {
			t.Errorf("Validate(%q) error = %v, want ErrTokenMalformed", tok, err)
		}
	}
	if n := srv.Stats().Requests; n != 0 {
		t.Errorf("double got %d requests, want none", n)
	}
}

func TestValidateCallerCancels(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	srv.SetLatency(10 * time.Second)
	c := newClient(t, srv, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()

	_, err := c.Validate(ctx, token(1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Validate error = %v, want the caller's context.DeadlineExceeded", err)
	}
	if errors.Is(err, push.ErrUnavailable) {
		t.Errorf("Validate error = %v: the caller gave up, FCM is not unavailable", err)
	}
}

func TestValidateFormatOnly(t *testing.T) {
	t.Parallel()
	c, err := push.New(context.Background(), push.Config{})
	if err != nil {
		t.Fatalf("push.New: %v", err)
	}
	got, err := c.Validate(context.Background(), token(1))
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if want := (push.Validation{FormatOnly: true}); got != want {
		t.Errorf("Validate = %+v, want %+v", got, want)
	}
	if _, err := c.Validate(context.Background(), "not a token"); !errors.Is(err, push.ErrTokenMalformed) {
		t.Errorf("Validate(malformed) error = %v, want ErrTokenMalformed", err)
	}
}
