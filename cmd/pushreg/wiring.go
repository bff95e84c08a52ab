package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pushreg/pushreg/auth"
	"github.com/pushreg/pushreg/push"
	"github.com/pushreg/pushreg/registry"
	"github.com/pushreg/pushreg/registry/mongodb"
)

// The adapters below connect auth's small interfaces to the registry and
// push packages, so the three domain packages never import each other.

type deviceRegistry struct {
	store *registry.Store
	log   *slog.Logger
}

func toBinding(b auth.DeviceBinding) registry.Binding {
	return registry.Binding{UserID: b.UserID, DeviceID: b.DeviceID, Platform: b.Platform, FCMToken: b.FCMToken,
		SessionID: b.SessionID, Verified: b.Verified, MaxDevices: b.MaxDevices, Actor: b.Actor}
}

func (d deviceRegistry) TouchDevice(ctx context.Context, b auth.DeviceBinding) (bool, error) {
	return d.store.Touch(ctx, toBinding(b))
}

func (d deviceRegistry) BindDevice(ctx context.Context, b auth.DeviceBinding) ([]auth.Evicted, error) {
	res, err := d.store.Bind(ctx, toBinding(b))
	return evictedOf(res), err
}

func evictedOf(res registry.BindResult) []auth.Evicted {
	var out []auth.Evicted
	for _, dev := range res.Evicted {
		out = append(out, auth.Evicted{DeviceID: dev.DeviceID, SessionID: dev.SessionID})
	}
	return out
}

func (d deviceRegistry) BindDevices(ctx context.Context, bs []auth.DeviceBinding) ([]auth.Evicted, error) {
	rb := make([]registry.Binding, len(bs))
	for i, b := range bs {
		rb[i] = toBinding(b)
	}
	res, err := d.store.BindMany(ctx, rb)
	var evicted []auth.Evicted
	for _, r := range res {
		evicted = append(evicted, evictedOf(r)...)
	}
	return evicted, err
}

func (d deviceRegistry) UnbindSession(ctx context.Context, userID, sessionID, actor string) error {
	return d.store.UnbindSession(ctx, userID, sessionID, actor)
}

func (d deviceRegistry) DeviceSession(ctx context.Context, userID, deviceID string) (string, error) {
	dev, err := d.store.Get(ctx, userID, deviceID)
	return dev.SessionID, err
}

func (d deviceRegistry) DeleteDevice(ctx context.Context, userID, deviceID, actor string) (string, error) {
	gone, err := d.store.Delete(ctx, userID, deviceID, actor)
	return gone.SessionID, err
}

func (d deviceRegistry) Audit(ctx context.Context, e auth.AuditEvent) {
	// An audit entry lost to a store failure must not fail the request
	// whose change already happened; it is logged instead.
	err := d.store.Record(ctx, registry.Event{UserID: e.UserID, Type: registry.EventType(e.Type), Actor: e.Actor,
		DeviceID: e.DeviceID, SessionID: e.SessionID, Outcome: e.Outcome})
	if err != nil {
		d.log.Warn("audit entry lost", "user_id", e.UserID, "type", e.Type, "error", err)
	}
}

func (d deviceRegistry) AuditedBefore(ctx context.Context, userID string, at time.Time, id string, limit int) ([]auth.AuditEvent, error) {
	events, err := d.store.EventsBefore(ctx, userID, at, id, limit)
	if err != nil {
		return nil, err
	}
	out := make([]auth.AuditEvent, len(events))
	for i, e := range events {
		out[i] = auth.AuditEvent{ID: e.ID, UserID: e.UserID, Type: string(e.Type), Actor: e.Actor,
			DeviceID: e.DeviceID, SessionID: e.SessionID, Outcome: e.Outcome, At: e.At}
	}
	return out, nil
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
	case errors.Is(err, push.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return false, fmt.Errorf("%w: %w", auth.ErrFCMUnavailable, err)
	}
	return false, err
}

func (v tokenValidator) CachedToken(token string) (verified, ok bool) {
	res, ok := v.client.Cached(token)
	return res.Verified, ok
}

func (v tokenValidator) CheckToken(token string) error {
	if err := push.CheckTokenShape(token); err != nil {
		return fmt.Errorf("%w: %s", auth.ErrFCMTokenMalformed, reason(err, push.ErrTokenMalformed))
	}
	return nil
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

// pushDirectory lets push find a user's devices and prune dead tokens.
type pushDirectory struct {
	users   *auth.Service
	devices *registry.Store
}

// Pushable asks the registry first and the users only about those without
// a pushable device (devices are bound through a login, so their users
// exist): one read by _id per user named, and one query more for the
// users without a pushable device.
func (d pushDirectory) Pushable(ctx context.Context, userIDs []string) (map[string][]push.Target, error) {
	devs, err := d.devices.PushableOf(ctx, userIDs)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]push.Target, len(userIDs))
	var unseen []string
	for _, id := range userIDs {
		ds, ok := devs[id]
		if !ok {
			unseen = append(unseen, id)
			continue
		}
		targets := make([]push.Target, len(ds))
		for i, dev := range ds {
			targets[i] = push.Target{DeviceID: dev.DeviceID, Token: dev.FCMToken}
		}
		out[id] = targets
	}
	if len(unseen) > 0 {
		exist, err := d.users.ExistingUsers(ctx, unseen)
		if err != nil {
			return nil, err
		}
		for id := range exist {
			out[id] = nil
		}
	}
	return out, nil
}

func (d pushDirectory) Prune(ctx context.Context, userID, deviceID, token, reason string) (bool, error) {
	return d.devices.MarkInvalid(ctx, userID, deviceID, token, reason)
}

// pushMetrics is push's Observer in Prometheus terms.
type pushMetrics struct {
	pushes *prometheus.CounterVec
	prunes *prometheus.CounterVec
	fcm    prometheus.Histogram
}

func newPushMetrics(reg prometheus.Registerer) (*pushMetrics, error) {
	m := &pushMetrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushreg_pushes_total",
			Help: "Messages sent to devices (dry runs excluded), by outcome: sent, failed (token kept) or pruned (token dead).",
		}, []string{"outcome"}),
		prunes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushreg_tokens_pruned_total",
			Help: "Tokens unbound from their device because FCM said they are dead, by FCM error code.",
		}, []string{"code"}),
		fcm: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pushreg_fcm_send_duration_seconds",
			Help:    "Time of one fan-out to FCM (one SendToTokens call: chunked, concurrent, retries included).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
	}
	for _, outcome := range []string{"sent", "failed", "pruned"} {
		m.pushes.WithLabelValues(outcome) // present at zero from the start
	}
	for _, c := range []prometheus.Collector{m.pushes, m.prunes, m.fcm} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("push metrics: %w", err)
		}
	}
	return m, nil
}

func (m *pushMetrics) FCMSend(d time.Duration, _ int) { m.fcm.Observe(d.Seconds()) }

func (m *pushMetrics) Delivered(sent, failed, pruned int) {
	m.pushes.WithLabelValues("sent").Add(float64(sent))
	m.pushes.WithLabelValues("failed").Add(float64(failed))
	m.pushes.WithLabelValues("pruned").Add(float64(pruned))
}

func (m *pushMetrics) Pruned(code string) { m.prunes.WithLabelValues(code).Inc() }

// registerStoreMetrics exposes the MongoDB command counter, so that round
// trips per operation can be computed from two scrapes.
func registerStoreMetrics(reg prometheus.Registerer, c *mongodb.CommandCounter) error {
	for _, m := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "pushreg_mongodb_commands_total",
			Help: "Commands (round trips) sent to MongoDB.",
		}, func() float64 { return float64(c.Started()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "pushreg_mongodb_command_failures_total",
			Help: "MongoDB commands that failed.",
		}, func() float64 { return float64(c.Failed()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "pushreg_mongodb_command_duration_seconds_total",
			Help: "Time spent waiting for MongoDB command replies, summed.",
		}, func() float64 { return c.Duration().Seconds() }),
	} {
		if err := reg.Register(m); err != nil {
			return fmt.Errorf("store metrics: %w", err)
		}
	}
	return nil
}

// newPusher assembles the deliveries of messages and the metrics about
// them, on reg.
func newPusher(reg *prometheus.Registry, log *slog.Logger, fcm *push.Client, users *auth.Service,
	devices *registry.Store, commands *mongodb.CommandCounter) (*push.Deliverer, error) {
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	if err := registerStoreMetrics(reg, commands); err != nil {
		return nil, err
	}
	obs, err := newPushMetrics(reg)
	if err != nil {
		return nil, err
	}
	return push.NewDeliverer(push.DelivererConfig{
		Client:    fcm,
		Directory: pushDirectory{users: users, devices: devices},
		Observer:  obs,
		Logger:    log.With("component", "push"),
	})
}
