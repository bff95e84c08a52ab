package push_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"

	"github.com/pushreg/pushreg/push"
	"github.com/pushreg/pushreg/push/fcmtest"
)

// sdkError returns the error the real SDK gives for msg sent to srv.
func sdkError(t *testing.T, srv *fcmtest.Server, msg *messaging.Message) error {
	t.Helper()
	ctx := context.Background()
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: srv.ProjectID()},
		option.WithEndpoint(srv.Endpoint()), option.WithoutAuthentication())
	if err != nil {
		t.Fatalf("firebase.NewApp: %v", err)
	}
	mc, err := app.Messaging(ctx)
	if err != nil {
		t.Fatalf("Messaging: %v", err)
	}
	_, err = mc.Send(ctx, msg)
	if err == nil {
		t.Fatalf("Send succeeded, want an error")
	}
	return err
}

func TestClassifySDKErrors(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	srv.SetRetryAfter(0)
	tests := []struct {
		name string
		code fcmtest.Code
		data map[string]string
		want push.Class
	}{
		{name: "unregistered", code: fcmtest.Unregistered, want: push.ClassPrune},
		{name: "invalid token", code: fcmtest.InvalidArgument, want: push.ClassPrune},
		{name: "sender id mismatch", code: fcmtest.SenderIDMismatch, want: push.ClassPrune},
		{name: "quota", code: fcmtest.QuotaExceeded, want: push.ClassRetry},
		{name: "internal", code: fcmtest.Internal, want: push.ClassRetry},
		{name: "third party auth", code: fcmtest.ThirdPartyAuthError, want: push.ClassReport},
		// Same FcmError code as an invalid token, but about the message.
		{name: "invalid message", data: map[string]string{"from": "x"}, want: push.ClassReport},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := fmt.Sprintf("classify%d:APA91b", i)
			if tt.code != "" {
				srv.SetTokenError(tok, tt.code)
			}
			err := sdkError(t, srv, &messaging.Message{Token: tok, Data: tt.data})
			if got := push.Classify(err); got != tt.want {
				t.Errorf("Classify(%v) = %v, want %v", err, got, tt.want)
			}
			// Wrapping must not change the class.
			if got := push.Classify(fmt.Errorf("context: %w", err)); got != tt.want {
				t.Errorf("Classify(wrapped %v) = %v, want %v", err, got, tt.want)
			}
		})
	}
}

func TestClassifyOthers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want push.Class
	}{
		{"nil", nil, push.ClassNone},
		{"malformed", fmt.Errorf("x: %w", push.ErrTokenMalformed), push.ClassPrune},
		{"invalid", push.ErrTokenInvalid, push.ClassPrune},
		{"unavailable", push.ErrUnavailable, push.ClassRetry},
		{"payload", push.ErrPayloadInvalid, push.ClassReport},
		{"not configured", push.ErrNotConfigured, push.ClassReport},
		{"deadline", context.DeadlineExceeded, push.ClassRetry},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), push.ClassRetry},
		{"network", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, push.ClassRetry},
		{"fcm error", &push.FCMError{Class: push.ClassPrune, Err: errors.New("x")}, push.ClassPrune},
		{"unknown", errors.New("something else"), push.ClassReport},
	}
	for _, tt := range tests {
		if got := push.Classify(tt.err); got != tt.want {
			t.Errorf("%s: Classify(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestFCMErrorIs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		class                    push.Class
		wantInvalid, wantUnavail bool
	}{
		{push.ClassPrune, true, false},
		{push.ClassRetry, false, true},
		{push.ClassReport, false, false},
	}
	for _, tt := range tests {
		err := fmt.Errorf("wrapped: %w", &push.FCMError{Class: tt.class, Err: context.DeadlineExceeded})
		if got := errors.Is(err, push.ErrTokenInvalid); got != tt.wantInvalid {
			t.Errorf("%v: errors.Is(ErrTokenInvalid) = %v, want %v", tt.class, got, tt.wantInvalid)
		}
		if got := errors.Is(err, push.ErrUnavailable); got != tt.wantUnavail {
			t.Errorf("%v: errors.Is(ErrUnavailable) = %v, want %v", tt.class, got, tt.wantUnavail)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%v: does not unwrap to the SDK's error", tt.class)
		}
	}
}
