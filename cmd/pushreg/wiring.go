package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pushreg/pushreg/auth"
	"github.com/pushreg/pushreg/push"
	"github.com/pushreg/pushreg/registry"
)

// The adapters below connect auth's small interfaces to the registry and
// push packages, so the three domain packages never import each other.

type deviceRegistry struct{ store *registry.Store }

func toBinding(b auth.DeviceBinding) registry.Binding {
	return registry.Binding{UserID: b.UserID, DeviceID: b.DeviceID, Platform: b.Platform, FCMToken: b.FCMToken,
		SessionID: b.SessionID, Verified: b.Verified, MaxDevices: b.MaxDevices, Actor: b.Actor}
}

func (d deviceRegistry) TouchDevice(ctx context.Context, b auth.DeviceBinding) (bool, error) {
	return d.store.Touch(ctx, toBinding(b))
}

func (d deviceRegistry) BindDevice(ctx context.Context, b auth.DeviceBinding) error {
	_, err := d.store.Bind(ctx, toBinding(b))
	return err
}

func (d deviceRegistry) UnbindDevice(ctx context.Context, userID, deviceID, actor string) error {
	return d.store.Unbind(ctx, userID, deviceID, actor)
}

func (d deviceRegistry) Audit(ctx context.Context, e auth.AuditEvent) {
	// An audit entry lost to a store failure must not fail the request
	// whose change already happened.
	_ = d.store.Record(ctx, registry.Event{UserID: e.UserID, Type: registry.EventType(e.Type), Actor: e.Actor,
		DeviceID: e.DeviceID, SessionID: e.SessionID, Outcome: e.Outcome})
}

// tokenValidator reports push's verdicts as auth's errors.
type tokenValidator struct{ client *push.Client }

func (v tokenValidator) ValidateToken(ctx context.Context, token string) (bool, error) {
	res, err := v.client.Validate(ctx, token)
	switch {
	case err == nil:
		return res.Verified, nil
	case errors.Is(err, push.ErrTokenMalformed):
		return false, fmt.Errorf("fcm_token: %w: %s", auth.ErrFCMTokenMalformed, reason(err, push.ErrTokenMalformed))
	case errors.Is(err, push.ErrTokenInvalid):
		return false, fmt.Errorf("%w: %w", auth.ErrFCMTokenRejected, err)
	case errors.Is(err, push.ErrUnavailable):
		return false, fmt.Errorf("%w: %w", auth.ErrFCMUnavailable, err)
	}
	return false, err
}

// sweepValidator lets the registry's sweeper re-validate tokens.
func (v tokenValidator) Revalidate(ctx context.Context, token string) (registry.Verdict, error) {
	res, err := v.client.Validate(ctx, token)
	switch {
	case err == nil && res.Verified:
		return registry.VerdictValid, nil
	case err == nil:
		return registry.VerdictUnknown, nil
	case errors.Is(err, push.ErrTokenMalformed), errors.Is(err, push.ErrTokenInvalid):
		return registry.VerdictInvalid, nil
	}
	return registry.VerdictUnknown, err
}

// reason is the text after the sentinel in err, without any token.
func reason(err, sentinel error) string {
	_, after, _ := strings.Cut(err.Error(), sentinel.Error()+": ")
	if after == "" {
		return "not an FCM registration token"
	}
	return after
}
