package push_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"firebase.google.com/go/v4/messaging"

	"github.com/pushreg/pushreg/push"
	"github.com/pushreg/pushreg/push/fcmtest"
)

func TestSendClasses(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	c := newClient(t, srv, nil)
	toks := tokens(6)
	srv.SetTokenError(toks[1], fcmtest.Unregistered)
	srv.SetTokenError(toks[2], fcmtest.InvalidArgument)
	srv.SetTokenError(toks[3], fcmtest.SenderIDMismatch)
	srv.SetTokenError(toks[4], fcmtest.ThirdPartyAuthError)
	toks[5] = "not a token"

	got, err := c.SendToTokens(context.Background(), toks, dataMessage(), false)
	if err != nil {
		t.Fatalf("SendToTokens: %v", err)
	}
	want := []struct {
		class    push.Class
		code     string
		attempts int
	}{
		{push.ClassNone, "", 1},
		{push.ClassPrune, "UNREGISTERED", 1},
		{push.ClassPrune, "INVALID_ARGUMENT", 1},
		{push.ClassPrune, "SENDER_ID_MISMATCH", 1},
		{push.ClassReport, "THIRD_PARTY_AUTH_ERROR", 1},
		{push.ClassPrune, "", 0}, // never sent
	}
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d", len(got), len(want))
	}
	for i, w := range want {
		r := got[i]
		if r.Index != i || r.Class != w.class || r.Attempts != w.attempts {
			t.Errorf("result %d = index %d class %v attempts %d, want index %d class %v attempts %d",
				i, r.Index, r.Class, r.Attempts, i, w.class, w.attempts)
		}
		if got := push.Classify(r.Err); got != r.Class {
			t.Errorf("result %d: Classify(Err) = %v, Class = %v", i, got, r.Class)
		}
		var fe *push.FCMError
		if w.code != "" && (!errors.As(r.Err, &fe) || fe.Code != w.code) {
			t.Errorf("result %d: Err = %v, want an *FCMError with code %s", i, r.Err, w.code)
		}
		if (r.Err == nil) != (r.MessageID != "") {
			t.Errorf("result %d: MessageID %q with Err %v", i, r.MessageID, r.Err)
		}
	}
	if !strings.HasPrefix(got[0].MessageID, "projects/"+srv.ProjectID()+"/messages/") {
		t.Errorf("MessageID = %q, want a message name", got[0].MessageID)
	}
	if !errors.Is(got[1].Err, push.ErrTokenInvalid) || !errors.Is(got[5].Err, push.ErrTokenMalformed) {
		t.Errorf("pruned errors = %v and %v, want ErrTokenInvalid and ErrTokenMalformed", got[1].Err, got[5].Err)
	}
	if n := srv.Stats().Requests; n != 5 {
		t.Errorf("double got %d requests, want 5 (the malformed token is not sent)", n)
	}
}

func TestSendRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		program      func(srv *fcmtest.Server, tok string)
		maxAttempts  int
		wantClass    push.Class
		wantAttempts int
		wantRequests int
		wantWaits    int
	}{
		{
			name:         "internal twice then ok",
			program:      func(s *fcmtest.Server, tok string) { s.SetTokenSequence(tok, fcmtest.Internal, fcmtest.Internal) },
			maxAttempts:  3,
			wantClass:    push.ClassNone,
			wantAttempts: 3, wantRequests: 3, wantWaits: 2,
		},
		{
			name:         "quota then ok",
			program:      func(s *fcmtest.Server, tok string) { s.SetTokenSequence(tok, fcmtest.QuotaExceeded) },
			maxAttempts:  3,
			wantClass:    push.ClassNone,
			wantAttempts: 2, wantRequests: 2, wantWaits: 1,
		},
		{
			name:         "internal for good",
			program:      func(s *fcmtest.Server, tok string) { s.SetTokenError(tok, fcmtest.Internal) },
			maxAttempts:  3,
			wantClass:    push.ClassRetry,
			wantAttempts: 3, wantRequests: 3, wantWaits: 2,
		},
		{
			name:         "five attempts allowed",
			program:      func(s *fcmtest.Server, tok string) { s.SetTokenError(tok, fcmtest.QuotaExceeded) },
			maxAttempts:  5,
			wantClass:    push.ClassRetry,
			wantAttempts: 5, wantRequests: 5, wantWaits: 4,
		},
		{
			name:         "prune is not retried",
			program:      func(s *fcmtest.Server, tok string) { s.SetTokenSequence(tok, fcmtest.Unregistered) },
			maxAttempts:  3,
			wantClass:    push.ClassPrune,
			wantAttempts: 1, wantRequests: 1, wantWaits: 0,
		},
		{
			name:         "report is not retried",
			program:      func(s *fcmtest.Server, tok string) { s.SetTokenSequence(tok, fcmtest.ThirdPartyAuthError) },
			maxAttempts:  3,
			wantClass:    push.ClassReport,
			wantAttempts: 1, wantRequests: 1, wantWaits: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := fcmtest.New(t)
			srv.SetRetryAfter(0)
			sl := &sleeper{}
			c := newClient(t, srv, func(cfg *push.Config) {
				cfg.Sleep = sl.Sleep
				cfg.MaxAttempts = tt.maxAttempts
			})
			toks := tokens(20)
			tt.program(srv, toks[7])

			got, err := c.SendToTokens(context.Background(), toks, dataMessage(), false)
			if err != nil {
				t.Fatalf("SendToTokens: %v", err)
			}
			r := got[7]
			if r.Class != tt.wantClass || r.Attempts != tt.wantAttempts {
				t.Errorf("result = class %v attempts %d (err %v), want class %v attempts %d",
					r.Class, r.Attempts, r.Err, tt.wantClass, tt.wantAttempts)
			}
			if tt.wantClass == push.ClassRetry && !errors.Is(r.Err, push.ErrUnavailable) {
				t.Errorf("Err = %v, want ErrUnavailable", r.Err)
			}
			if n := len(srv.RequestsFor(toks[7])); n != tt.wantRequests {
				t.Errorf("double got %d requests for the token, want %d", n, tt.wantRequests)
			}
			// Only the failing token is retried.
			for i, tok := range toks {
				if i == 7 {
					continue
				}
				if n := len(srv.RequestsFor(tok)); n != 1 || got[i].Attempts != 1 || got[i].Err != nil {
					t.Errorf("token %d: %d requests, %d attempts, err %v; want 1, 1, nil", i, n, got[i].Attempts, got[i].Err)
				}
			}
			waits := sl.Waits()
			if len(waits) != tt.wantWaits {
				t.Errorf("slept %d times, want %d", len(waits), tt.wantWaits)
			}
			for i, w := range waits {
				// Full jitter: anywhere from zero to the doubling ceiling.
				if ceiling := push.DefaultRetryBase << i; w < 0 || w > ceiling {
					t.Errorf("wait %d = %v, want within [0, %v]", i, w, ceiling)
				}
			}
		})
	}
}

func TestSendHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		retryAfter   time.Duration
		wantAttempts int
		wantWaits    int
	}{
		{"short", 7 * time.Second, 3, 2},
		{"at the cap", push.DefaultRetryMaxWait, 3, 2},
		// Longer than RetryMaxWait: no point holding the caller, who gets the
		// Retry-After back to schedule with.
		{"past the cap", push.DefaultRetryMaxWait + time.Second, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := fcmtest.New(t)
			srv.SetRetryAfter(tt.retryAfter)
			srv.SetTokenError(token(0), fcmtest.QuotaExceeded)
			sl := &sleeper{}
			c := newClient(t, srv, func(cfg *push.Config) { cfg.Sleep = sl.Sleep })

			got, err := c.SendToTokens(context.Background(), []string{token(0)}, dataMessage(), false)
			if err != nil {
				t.Fatalf("SendToTokens: %v", err)
			}
			if got[0].Attempts != tt.wantAttempts || got[0].Class != push.ClassRetry {
				t.Errorf("result = attempts %d class %v, want %d, retry", got[0].Attempts, got[0].Class, tt.wantAttempts)
			}
			var fe *push.FCMError
			if !errors.As(got[0].Err, &fe) || fe.RetryAfter != tt.retryAfter || fe.Status != 429 {
				t.Errorf("Err = %#v, want an *FCMError with status 429 and RetryAfter %v", got[0].Err, tt.retryAfter)
			}
			waits := sl.Waits()
			if len(waits) != tt.wantWaits {
				t.Fatalf("slept %v, want %d waits", waits, tt.wantWaits)
			}
			for i, w := range waits {
				if w < tt.retryAfter {
					t.Errorf("wait %d = %v, shorter than Retry-After %v", i, w, tt.retryAfter)
				}
			}
		})
	}
}

// TestSendSDKRetriesUnavailable shows the SDK's own retry layer: it answers a
// 503 by trying again itself (at once, then after 1s on a timer no one can
// inject), so two UNAVAILABLE answers cost one attempt here and three
// requests on the wire. This test therefore takes about a second.
func TestSendSDKRetriesUnavailable(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	srv.SetTokenSequence(token(0), fcmtest.Unavailable, fcmtest.Unavailable)
	sl := &sleeper{}
	c := newClient(t, srv, func(cfg *push.Config) { cfg.Sleep = sl.Sleep })

	start := time.Now()
	got, err := c.SendToTokens(context.Background(), []string{token(0)}, dataMessage(), false)
	if err != nil {
		t.Fatalf("SendToTokens: %v", err)
	}
	if r := got[0]; r.Err != nil || r.Attempts != 1 {
		t.Errorf("result = attempts %d err %v, want 1 attempt, success", r.Attempts, r.Err)
	}
	if n := len(srv.RequestsFor(token(0))); n != 3 {
		t.Errorf("double got %d requests, want 3", n)
	}
	if w := sl.Waits(); len(w) != 0 {
		t.Errorf("this package slept %v, want no wait of its own", w)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("took %v", elapsed)
	}
}

// TestSendUnavailableLongRetryAfter shows the two retry layers agreeing: a
// 503 asking for more than 2 minutes is not retried by the SDK, and, being
// past RetryMaxWait, not by this package either; the caller gets the wait.
func TestSendUnavailableLongRetryAfter(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	srv.SetDown(true)
	srv.SetUnavailableRetryAfter(3 * time.Minute)
	sl := &sleeper{}
	c := newClient(t, srv, func(cfg *push.Config) { cfg.Sleep = sl.Sleep })

	got, err := c.SendToTokens(context.Background(), tokens(2), dataMessage(), false)
	if err != nil {
		t.Fatalf("SendToTokens: %v", err)
	}
	for i, r := range got {
		var fe *push.FCMError
		if !errors.As(r.Err, &fe) || fe.Code != "UNAVAILABLE" || fe.RetryAfter != 3*time.Minute || r.Attempts != 1 || r.Class != push.ClassRetry {
			t.Errorf("result %d = %+v (err %v), want one attempt, UNAVAILABLE, retry after 3m", i, r, r.Err)
		}
	}
	if n := srv.Stats().Requests; n != 2 {
		t.Errorf("double got %d requests, want 2", n)
	}
	if w := sl.Waits(); len(w) != 0 {
		t.Errorf("slept %v, want no wait", w)
	}
}

// TestSendBoundedByContext checks that a deadline bounds a send to a dead
// FCM, whose 503s the SDK would otherwise retry for about 7 seconds per
// attempt.
func TestSendBoundedByContext(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	srv.SetDown(true)
	c := newClient(t, srv, func(cfg *push.Config) { cfg.Sleep = nil }) // real sleeps
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()

	start := time.Now()
	got, err := c.SendToTokens(ctx, tokens(10), dataMessage(), false)
	if err != nil {
		t.Fatalf("SendToTokens: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("took %v with a 300ms deadline", elapsed)
	}
	for i, r := range got {
		if r.Class != push.ClassRetry || r.Attempts < 1 {
			t.Errorf("result %d = class %v attempts %d (err %v), want retry after at least one attempt", i, r.Class, r.Attempts, r.Err)
		}
	}
}

func TestSendDryRun(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	c := newClient(t, srv, nil)
	got, err := c.SendToTokens(context.Background(), tokens(3), dataMessage(), true)
	if err != nil {
		t.Fatalf("SendToTokens: %v", err)
	}
	for i, r := range got {
		if r.Err != nil || !strings.HasSuffix(r.MessageID, "/"+fcmtest.DryRunMessageID) {
			t.Errorf("result %d = %q, %v; want the dry-run message id", i, r.MessageID, r.Err)
		}
	}
	if s := srv.Stats(); s.DryRuns != 3 || s.Sent != 0 {
		t.Errorf("double counted %+v, want 3 dry runs and nothing sent", s)
	}
}

// TestSendWrongProject checks that a misconfigured project does not prune:
// FCM's 403 then carries no FcmError detail.
func TestSendWrongProject(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	c := newClient(t, srv, func(cfg *push.Config) { cfg.ProjectID = "not-ours" })
	got, err := c.SendToTokens(context.Background(), tokens(2), dataMessage(), false)
	if err != nil {
		t.Fatalf("SendToTokens: %v", err)
	}
	for i, r := range got {
		var fe *push.FCMError
		if r.Class != push.ClassReport || !errors.As(r.Err, &fe) || fe.Code != "PERMISSION_DENIED" {
			t.Errorf("result %d = class %v err %v, want report, PERMISSION_DENIED", i, r.Class, r.Err)
		}
	}
}

func TestSendRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		format  bool
		msg     *push.Message
		wantErr error
	}{
		{"format only", true, dataMessage(), push.ErrNotConfigured},
		{"format only and bad payload", true, &push.Message{}, push.ErrPayloadInvalid},
		{"empty message", false, &push.Message{}, push.ErrPayloadInvalid},
		{"nil message", false, nil, push.ErrPayloadInvalid},
		{"reserved key", false, &push.Message{Data: map[string]string{"gcm.notification.x": "y"}}, push.ErrPayloadInvalid},
		{"too big", false, &push.Message{Data: map[string]string{"k": strings.Repeat("v", push.MaxDataBytes)}}, push.ErrPayloadInvalid},
		// Caught by the SDK's own checks, before any request.
		{"bad image URL", false, &push.Message{Notification: &messaging.Notification{Title: "t", ImageURL: "not a url"}}, push.ErrPayloadInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := fcmtest.New(t)
			var c *push.Client
			if tt.format {
				var err error
				if c, err = push.New(context.Background(), push.Config{}); err != nil {
					t.Fatalf("push.New: %v", err)
				}
			} else {
				c = newClient(t, srv, nil)
			}
			got, err := c.SendToTokens(context.Background(), tokens(3), tt.msg, false)
			if !errors.Is(err, tt.wantErr) || got != nil {
				t.Errorf("SendToTokens = %v, %v; want nil, %v", got, err, tt.wantErr)
			}
			if n := srv.Stats().Requests; n != 0 {
				t.Errorf("double got %d requests, want none", n)
			}
		})
	}
}

func TestSendNoTokens(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	c := newClient(t, srv, nil)
	got, err := c.SendToTokens(context.Background(), nil, dataMessage(), false)
	if err != nil || len(got) != 0 {
		t.Errorf("SendToTokens(nil) = %v, %v; want no results, nil", got, err)
	}
}
