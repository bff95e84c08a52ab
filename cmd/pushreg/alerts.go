package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"firebase.google.com/go/v4/messaging"

	"github.com/pushreg/pushreg/auth"
	"github.com/pushreg/pushreg/push"
)

// The reuse alert's bounds: one per user per reuseAlertWindow, and each
// given reuseAlertTimeout for FCM and the event that records it.
const (
	reuseAlertWindow  = 10 * time.Minute
	reuseAlertTimeout = 30 * time.Second
	// reuseAlertUsers is how many users' last alerts are remembered
	// before those older than the window are forgotten.
	reuseAlertUsers = 10_000
)

// reuseAlerts is "Was this you?": when reuse detection revokes a session,
// the user's devices that can receive, and the device the session had
// bound, get one FCM message saying so. It is sent in the background, so
// the answer that detected the reuse neither waits for FCM nor fails
// because of it.
type reuseAlerts struct {
	// deliver is set once the Deliverer exists, before serving (the
	// Deliverer needs the auth service, which needs this).
	deliver *push.Deliverer
	audit   auth.Auditor
	log     *slog.Logger
	notify  *messaging.Notification // nil: data only
	// timeout bounds each alert's send (reuseAlertTimeout).
	timeout time.Duration

	mu   sync.Mutex
	last map[string]time.Time // user ID → the last alert's time
	sent sync.WaitGroup
}

func newReuseAlerts(cfg *config, audit auth.Auditor, log *slog.Logger) *reuseAlerts {
	r := &reuseAlerts{audit: audit, log: log, timeout: reuseAlertTimeout, last: map[string]time.Time{}}
	if cfg.ReuseAlert == "notification" {
		r.notify = &messaging.Notification{Title: cfg.ReuseAlertTitle, Body: cfg.ReuseAlertBody}
	}
	return r
}

// ReuseDetected implements auth.ReuseAlerter.
func (r *reuseAlerts) ReuseDetected(a auth.ReuseAlert) {
	if !r.due(a.UserID, a.At) {
		return
	}
	r.sent.Go(func() { r.send(a) })
}

// due reports whether the user may be alerted at now, and if so counts
// the alert. The count is this process's: instances of a shared store
// each keep their own.
func (r *reuseAlerts) due(userID string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if last, ok := r.last[userID]; ok && now.Sub(last) < reuseAlertWindow {
		return false
	}
	if len(r.last) >= reuseAlertUsers {
		for id, t := range r.last {
			if now.Sub(t) >= reuseAlertWindow {
				delete(r.last, id)
			}
		}
	}
	r.last[userID] = now
	return true
}

func (r *reuseAlerts) send(a auth.ReuseAlert) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	msg := &push.Message{Notification: r.notify, Data: map[string]string{
		"pushreg_event": "session_reuse_detected",
		"session_id":    a.SessionID,
		"at":            a.At.UTC().Format(time.RFC3339),
	}}
	var also []push.Target
	if a.FCMToken != "" {
		also = []push.Target{{DeviceID: a.DeviceID, Token: a.FCMToken}}
	}
	rep, err := r.deliver.DeliverIncluding(ctx, a.UserID, msg, false, also)
	outcome := fmt.Sprintf("sent %d, failed %d, pruned %d", rep.Sent, rep.Failed, rep.Pruned)
	if err != nil {
		// push's errors name no token.
		outcome = "not sent: " + err.Error()
		r.log.Warn("reuse alert not sent", "user_id", a.UserID, "session_id", a.SessionID, "error", err)
	}
	// Recorded even when the send used up its time.
	actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer acancel()
	r.audit.Audit(actx, auth.AuditEvent{UserID: a.UserID, Type: "reuse_alert_sent", Actor: "system",
		DeviceID: a.DeviceID, SessionID: a.SessionID, Outcome: outcome})
}

// wait returns once every alert started has been sent and recorded.
func (r *reuseAlerts) wait() { r.sent.Wait() }
