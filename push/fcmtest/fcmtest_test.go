package fcmtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"

	"github.com/pushreg/pushreg/push/fcmtest"
)

// sdk returns the real Admin SDK's messaging client pointed at srv.
func sdk(t *testing.T, srv *fcmtest.Server, project string) *messaging.Client {
	t.Helper()
	ctx := context.Background()
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: project},
		option.WithEndpoint(srv.Endpoint()), option.WithoutAuthentication())
	if err != nil {
		t.Fatalf("firebase.NewApp: %v", err)
	}
	mc, err := app.Messaging(ctx)
	if err != nil {
		t.Fatalf("Messaging: %v", err)
	}
	return mc
}

// TestSDKRecognisesAnswers is the double's contract: the SDK must parse its
// answers as it parses FCM's.
func TestSDKRecognisesAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code       fcmtest.Code
		status     int
		is         func(error) bool
		platform   func(error) bool
		retryAfter string
	}{
		{fcmtest.Unregistered, 404, messaging.IsUnregistered, errorutils.IsNotFound, ""},
		{fcmtest.InvalidArgument, 400, messaging.IsInvalidArgument, errorutils.IsInvalidArgument, ""},
		{fcmtest.SenderIDMismatch, 403, messaging.IsSenderIDMismatch, errorutils.IsPermissionDenied, ""},
		{fcmtest.QuotaExceeded, 429, messaging.IsQuotaExceeded, errorutils.IsResourceExhausted, "7"},
		{fcmtest.Internal, 500, messaging.IsInternal, errorutils.IsInternal, ""},
		{fcmtest.ThirdPartyAuthError, 401, messaging.IsThirdPartyAuthError, errorutils.IsUnauthenticated, ""},
	}
	srv := fcmtest.New(t)
	srv.SetRetryAfter(6500 * time.Millisecond) // rounded up to whole seconds
	mc := sdk(t, srv, srv.ProjectID())
	for _, tt := range tests {
		t.Run(string(tt.code), func(t *testing.T) {
			tok := "tok:" + string(tt.code)
			srv.SetTokenError(tok, tt.code)
			_, err := mc.Send(context.Background(), &messaging.Message{Token: tok})
			if !tt.is(err) || !tt.platform(err) {
				t.Fatalf("Send error %v not recognised as %s", err, tt.code)
			}
			resp := errorutils.HTTPResponse(err)
			if resp == nil || resp.StatusCode != tt.status {
				t.Fatalf("HTTPResponse = %v, want status %d", resp, tt.status)
			}
			if got := resp.Header.Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
		})
	}
	t.Run("invalid token message", func(t *testing.T) {
		_, err := mc.Send(context.Background(), &messaging.Message{Token: "tok:" + string(fcmtest.InvalidArgument)})
		if !strings.Contains(err.Error(), "not a valid FCM registration token") {
			t.Errorf("error = %q, want FCM's message about the token", err)
		}
	})
}

func TestSDKRecognisesUnavailable(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	mc := sdk(t, srv, srv.ProjectID())

	// The SDK retries a 503 by itself, at once and then after 1s; a deadline
	// ends it while it waits, with two requests made.
	srv.SetTokenSequence("a:1", fcmtest.Unavailable, fcmtest.Unavailable)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := mc.Send(ctx, &messaging.Message{Token: "a:1"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send error = %v, want the deadline (the SDK was waiting to retry)", err)
	}
	if n := len(srv.RequestsFor("a:1")); n != 2 {
		t.Errorf("double got %d requests, want 2", n)
	}

	// Asked to wait more than 2 minutes, the SDK does not retry and returns
	// the 503 as it came.
	srv.SetDown(true)
	srv.SetUnavailableRetryAfter(3 * time.Minute)
	_, err := mc.Send(context.Background(), &messaging.Message{Token: "a:2"})
	if !messaging.IsUnavailable(err) || !errorutils.IsUnavailable(err) {
		t.Fatalf("Send error %v not recognised as UNAVAILABLE", err)
	}
	resp := errorutils.HTTPResponse(err)
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "180" {
		t.Errorf("HTTPResponse = %+v, want 503 with Retry-After 180", resp)
	}
	if n := len(srv.RequestsFor("a:2")); n != 1 {
		t.Errorf("double got %d requests, want 1", n)
	}
}

func TestSuccessAndRecord(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	mc := sdk(t, srv, srv.ProjectID())
	ctx := context.Background()

	name, err := mc.Send(ctx, &messaging.Message{Token: "a:1", Data: map[string]string{"k": "v"}})
	if err != nil || !strings.HasPrefix(name, "projects/"+srv.ProjectID()+"/messages/") {
		t.Fatalf("Send = %q, %v; want a message name", name, err)
	}
	name, err = mc.SendDryRun(ctx, &messaging.Message{Token: "a:2"})
	if want := "projects/" + srv.ProjectID() + "/messages/fake_message_id"; err != nil || name != want {
		t.Fatalf("SendDryRun = %q, %v; want %q", name, err, want)
	}

	reqs := srv.Requests()
	if len(reqs) != 2 {
		t.Fatalf("Requests() has %d entries, want 2", len(reqs))
	}
	if r := reqs[0]; r.Token != "a:1" || r.ValidateOnly || r.Data["k"] != "v" || r.Answer != fcmtest.OK || r.Status != 200 || r.Time.IsZero() {
		t.Errorf("first request = %+v", r)
	}
	if r := reqs[1]; r.Token != "a:2" || !r.ValidateOnly {
		t.Errorf("second request = %+v, want a dry run for a:2", r)
	}
	// Requests returns copies.
	reqs[0].Data["k"] = "changed"
	reqs[0].Message[0] = 'X'
	if again := srv.Requests(); again[0].Data["k"] != "v" || again[0].Message[0] != '{' {
		t.Errorf("changing a returned Request changed the record")
	}
	if s := srv.Stats(); s.Requests != 2 || s.Sent != 1 || s.DryRuns != 1 || s.Failed != 0 {
		t.Errorf("Stats = %+v", s)
	}

	srv.Reset()
	if s := srv.Stats(); s != (fcmtest.Stats{}) || len(srv.Requests()) != 0 {
		t.Errorf("after Reset: Stats %+v, %d requests", s, len(srv.Requests()))
	}

	srv.SetRecord(false)
	if _, err := mc.Send(ctx, &messaging.Message{Token: "a:3"}); err != nil {
		t.Fatal(err)
	}
	if n, s := len(srv.Requests()), srv.Stats(); n != 0 || s.Sent != 1 {
		t.Errorf("with recording off: %d recorded, Stats %+v; want none recorded, 1 sent", n, s)
	}
}

func TestSequence(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	mc := sdk(t, srv, srv.ProjectID())
	srv.SetTokenError("t:1", fcmtest.Unregistered)
	srv.SetTokenSequence("t:1", fcmtest.Internal, fcmtest.OK, fcmtest.QuotaExceeded)

	want := []fcmtest.Code{fcmtest.Internal, fcmtest.OK, fcmtest.QuotaExceeded, fcmtest.Unregistered, fcmtest.Unregistered}
	for range want {
		mc.Send(context.Background(), &messaging.Message{Token: "t:1"})
	}
	var got []fcmtest.Code
	for _, r := range srv.RequestsFor("t:1") {
		got = append(got, r.Answer)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("answers = %v, want %v", got, want)
	}
	srv.SetTokenError("t:1", fcmtest.OK)
	if _, err := mc.Send(context.Background(), &messaging.Message{Token: "t:1"}); err != nil {
		t.Errorf("after SetTokenError(OK): %v", err)
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	ctx := context.Background()

	_, err := sdk(t, srv, "another-project").Send(ctx, &messaging.Message{Token: "a:1"})
	if !errorutils.IsPermissionDenied(err) || messaging.IsSenderIDMismatch(err) {
		t.Errorf("wrong project: %v, want PERMISSION_DENIED without an FCM code", err)
	}

	mc := sdk(t, srv, srv.ProjectID())
	_, err = mc.Send(ctx, &messaging.Message{Token: "a:1", Data: map[string]string{"google.x": "1"}})
	if !messaging.IsInvalidArgument(err) || strings.Contains(err.Error(), "registration token") {
		t.Errorf("reserved key: %v, want INVALID_ARGUMENT about the message", err)
	}
	_, err = mc.Send(ctx, &messaging.Message{Token: "a:1", Data: map[string]string{"k": strings.Repeat("v", 4096)}})
	if !messaging.IsInvalidArgument(err) {
		t.Errorf("too big: %v, want INVALID_ARGUMENT", err)
	}
	answers := []fcmtest.Code{}
	for _, r := range srv.Requests() {
		answers = append(answers, r.Answer)
	}
	if want := []fcmtest.Code{fcmtest.WrongProject, fcmtest.InvalidMessage, fcmtest.InvalidMessage}; fmt.Sprint(answers) != fmt.Sprint(want) {
		t.Errorf("recorded answers %v, want %v", answers, want)
	}

	resp, err := http.Post(srv.Endpoint()+"/projects/p/messages:nope", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown method: status %d, want 404", resp.StatusCode)
	}
}

func TestProgrammingAnUnknownCodePanics(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	defer func() {
		if recover() == nil {
			t.Error("SetTokenError with an unknown code did not panic")
		}
	}()
	srv.SetTokenError("t", fcmtest.Code("UNREGISTRED"))
}

// TestLatency checks that a slow answer gives way to the client's deadline
// and to Close.
func TestLatency(t *testing.T) {
	t.Parallel()
	srv, err := fcmtest.NewServer("")
	if err != nil {
		t.Fatal(err)
	}
	srv.SetLatency(time.Minute)
	mc := sdk(t, srv, srv.ProjectID())

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := mc.Send(ctx, &messaging.Message{Token: "a:1"}); err == nil {
		t.Error("Send succeeded before the latency was up")
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Send took %v with a 100ms deadline", elapsed)
	}

	// A request whose client waits forever must not hold Close up.
	before := srv.Stats().Requests
	var wg sync.WaitGroup
	wg.Go(func() {
		resp, err := http.Post(srv.Endpoint()+"/projects/"+srv.ProjectID()+"/messages:send", "application/json",
			strings.NewReader(`{"message":{"token":"a:2"}}`))
		if err == nil {
			resp.Body.Close()
		}
	})
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := srv.WaitRequests(wctx, before+1); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	srv.Close()
	srv.Close() // a second Close is harmless
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Close took %v with a request waiting out a minute's latency", elapsed)
	}
	wg.Wait()
}

func TestNewServerLoopbackOnly(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "example.com:80", "nonsense"} {
		if srv, err := fcmtest.NewServer(addr); err == nil {
			srv.Close()
			t.Errorf("NewServer(%q) succeeded, want a refusal", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		srv, err := fcmtest.NewServer(addr)
		if err != nil {
			t.Errorf("NewServer(%q): %v", addr, err)
			continue
		}
		if !strings.HasSuffix(srv.Endpoint(), "/v1") || !strings.HasPrefix(srv.URL(), "http://127.0.0.1:") {
			t.Errorf("NewServer(%q): URL %q, Endpoint %q", addr, srv.URL(), srv.Endpoint())
		}
		srv.Close()
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	mc := sdk(t, srv, srv.ProjectID())
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			tok := fmt.Sprintf("c:%d", i)
			srv.SetTokenSequence(tok, fcmtest.Internal)
			mc.Send(context.Background(), &messaging.Message{Token: tok})
			mc.Send(context.Background(), &messaging.Message{Token: tok})
			_ = srv.Requests()
			_ = srv.Stats()
		})
	}
	wg.Wait()
	if s := srv.Stats(); s.Requests != 40 || s.Failed != 20 || s.Sent != 20 {
		t.Errorf("Stats = %+v, want 40 requests, 20 failed, 20 sent", s)
	}
}

// GET /messages lists what arrived, newest first, with tokens cut to a
// prefix; Observe sees each request as it is answered.
func TestMessagesListAndObserve(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	var mu sync.Mutex
	var seen []string
	srv.Observe(func(r fcmtest.Request) { mu.Lock(); seen = append(seen, r.Token); mu.Unlock() })
	mc := sdk(t, srv, srv.ProjectID())
	ctx := context.Background()
	const first, second = "first-device-token:APA91bAAAAAAAAAAAA", "second-device-token:APA91bBBBBBBBBBBBB"
	for _, tok := range []string{first, second} {
		if _, err := mc.Send(ctx, &messaging.Message{Token: tok, Notification: &messaging.Notification{Title: "hi " + tok[:5]}}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Get(srv.URL() + "/messages")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Messages []struct {
			Token   string `json:"token"`
			Answer  string `json:"answer"`
			Message struct {
				Token        string            `json:"token"`
				Notification map[string]string `json:"notification"`
			} `json:"message"`
		} `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /messages = %d, %v", resp.StatusCode, err)
	}
	if len(body.Messages) != 2 {
		t.Fatalf("%d messages, want 2", len(body.Messages))
	}
	newest := body.Messages[0]
	if newest.Token != fcmtest.TokenPrefix(second) || newest.Message.Token != newest.Token || newest.Message.Notification["title"] != "hi secon" || newest.Answer != "OK" {
		t.Errorf("newest message = %+v, want the second, its token cut to %q", newest, fcmtest.TokenPrefix(second))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != first || seen[1] != second {
		t.Errorf("Observe saw %q, want both tokens in order", seen)
	}
	if strings.HasSuffix(fcmtest.TokenPrefix(second), "BBBB") {
		t.Error("TokenPrefix keeps the whole token")
	}
}
