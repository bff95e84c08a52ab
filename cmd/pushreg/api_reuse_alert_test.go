package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pushreg/pushreg/push/fcmtest"
)

// "Was this you?" (issue 16): reuse detection pushes one alert per user
// per 10 minutes to the user's devices, in the background.

// alertsFor returns the alert messages FCM was sent, by token.
func alertsFor(a *api) map[string]fcmtest.Request {
	out := map[string]fcmtest.Request{}
	for _, r := range a.fcm.Requests() {
		if !r.ValidateOnly && r.Data["pushreg_event"] == "session_reuse_detected" {
			out[r.Token] = r
		}
	}
	return out
}

// events returns the user's audit events of type typ, newest first.
func (a *api) events(userID, typ string) []map[string]any {
	a.t.Helper()
	r := a.must(http.StatusOK, request{method: "GET", path: "/v1/admin/users/" + userID + "/events", header: bearer(a.admin())})
	var out []map[string]any
	for _, e := range r.json(a.t)["events"].([]any) {
		if m := e.(map[string]any); m["type"] == typ {
			out = append(out, m)
		}
	}
	return out
}

// reuse signs in on device, rotates once, and presents the retired refresh
// token after the grace window through the RFC 7009 revocation, which
// also unbinds the session's device at once. It returns the session's ID.
func (a *api) reuse(user, device string) string {
	a.t.Helper()
	tok := a.login(user, user+"-password", map[string]string{"device_id": device, "fcm_token": "fcm:" + device})
	old := tok["refresh_token"].(string)
	a.must(http.StatusOK, a.refreshRequest(old))
	a.clock.Advance(a.cfg.RefreshReuseGrace + time.Second)
	a.must(http.StatusOK, request{method: "POST", path: "/v1/auth/revoke", body: url.Values{"token": {old}}})
	return tok["session_id"].(string)
}

func (a *api) refreshRequest(rt string) request {
	return request{method: "POST", path: "/v1/auth/token", body: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}}
}

func TestReuseAlertData(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "ria", "password": "ria-password"})
	a.login("ria", "ria-password", map[string]string{"device_id": "tablet", "fcm_token": "fcm:tablet"})

	at := a.clock.Now().Add(a.cfg.RefreshReuseGrace + time.Second).UTC().Format(time.RFC3339)
	sid := a.reuse("ria", "phone")
	a.svc.alerts.wait()
	got := alertsFor(a)
	// The phone's session was revoked and its device unbound, yet it is
	// told too: its token was captured when the reuse was detected.
	for _, token := range []string{"fcm:tablet", "fcm:phone"} {
		r, ok := got[token]
		if !ok {
			t.Errorf("no alert for %s; alerts: %v", token, got)
			continue
		}
		if r.Data["session_id"] != sid || r.Data["at"] != at {
			t.Errorf("alert data = %v, want session_id %s and at %s", r.Data, sid, at)
		}
		if strings.Contains(string(r.Message), `"notification"`) {
			t.Errorf("alert %s has a notification; the default is data only", r.Message)
		}
	}
	if len(got) != 2 {
		t.Errorf("%d alerts, want 2", len(got))
	}
	ev := a.events(id, "reuse_alert_sent")
	if len(ev) != 1 || ev[0]["outcome"] != "sent 2, failed 0, pruned 0" || ev[0]["session_id"] != sid {
		t.Errorf("reuse_alert_sent events = %v, want one, sent 2", ev)
	}

	// A second reuse within 10 minutes alerts nobody; after them, it does.
	a.fcm.Reset()
	a.reuse("ria", "laptop")
	a.svc.alerts.wait()
	if got := alertsFor(a); len(got) != 0 {
		t.Errorf("a second reuse within the window sent %d alerts, want none", len(got))
	}
	a.clock.Advance(10 * time.Minute)
	a.reuse("ria", "watch")
	a.svc.alerts.wait()
	if got := alertsFor(a); len(got) != 2 { // the tablet and the watch
		t.Errorf("a reuse after the window sent %d alerts (%v), want 2", len(got), got)
	}
	if ev := a.events(id, "reuse_alert_sent"); len(ev) != 2 {
		t.Errorf("%d reuse_alert_sent events, want 2", len(ev))
	}
}

func TestReuseAlertNotification(t *testing.T) {
	t.Parallel()
	a := newAPI(t, map[string]string{"PUSHREG_REUSE_ALERT": "notification",
		"PUSHREG_REUSE_ALERT_TITLE": "Was this you?", "PUSHREG_REUSE_ALERT_BODY": "Someone else signed in"})
	a.createUser(map[string]any{"username": "nora", "password": "nora-password"})
	a.reuse("nora", "phone")
	a.svc.alerts.wait()
	r, ok := alertsFor(a)["fcm:phone"]
	if !ok {
		t.Fatal("no alert")
	}
	var m struct {
		Notification struct{ Title, Body string }
	}
	if err := json.Unmarshal(r.Message, &m); err != nil {
		t.Fatal(err)
	}
	if m.Notification.Title != "Was this you?" || m.Notification.Body != "Someone else signed in" {
		t.Errorf("notification = %+v", m.Notification)
	}
}

func TestReuseAlertOff(t *testing.T) {
	t.Parallel()
	a := newAPI(t, map[string]string{"PUSHREG_REUSE_ALERT": "off"})
	id := a.createUser(map[string]any{"username": "otto", "password": "otto-password"})
	a.reuse("otto", "phone")
	a.svc.alerts.wait()
	if got := alertsFor(a); len(got) != 0 {
		t.Errorf("%d alerts with PUSHREG_REUSE_ALERT=off, want none", len(got))
	}
	if ev := a.events(id, "reuse_alert_sent"); len(ev) != 0 {
		t.Errorf("reuse_alert_sent events = %v, want none", ev)
	}
}

// The answer that detects a reuse does not wait for FCM, nor fail with it;
// the alert gives up after its time, and the event records that.
func TestReuseAlertDoesNotWaitForFCM(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.svc.alerts.timeout = time.Second // before any alert starts
	id := a.createUser(map[string]any{"username": "sly", "password": "sly-password"})
	a.login("sly", "sly-password", map[string]string{"device_id": "old-phone", "fcm_token": "fcm:old-phone"})
	tok := a.login("sly", "sly-password", map[string]string{"device_id": "phone", "fcm_token": "fcm:phone"})
	old := tok["refresh_token"].(string)
	a.must(http.StatusOK, a.refreshRequest(old))
	a.clock.Advance(a.cfg.RefreshReuseGrace + time.Second)

	a.fcm.SetLatency(30 * time.Second) // FCM hangs
	start := time.Now()
	r := a.do(a.refreshRequest(old))
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("the refresh that detected the reuse took %v with FCM hanging", elapsed)
	}
	if r.status != http.StatusBadRequest || r.header.Get("Pushreg-Refresh-Failure") != "reused" {
		t.Fatalf("= %d %s, want the reuse refused", r.status, r.body)
	}
	a.svc.alerts.wait()
	ev := a.events(id, "reuse_alert_sent")
	if len(ev) != 1 || ev[0]["outcome"] != "sent 0, failed 2, pruned 0" {
		t.Errorf("reuse_alert_sent events = %v, want one that sent nothing", ev)
	}
}

// A token FCM rejects on the alert is pruned, as for any push.
func TestReuseAlertPrunesRejectedTokens(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "pru", "password": "pru-password"})
	a.login("pru", "pru-password", map[string]string{"device_id": "gone", "fcm_token": "fcm:gone"})
	a.fcm.SetTokenError("fcm:gone", fcmtest.Unregistered)
	a.reuse("pru", "phone")
	a.svc.alerts.wait()
	if d := a.device(id, "gone"); d["token_status"] != "invalid" {
		t.Errorf("device whose token FCM rejected = %v, want invalid", d)
	}
	ev := a.events(id, "reuse_alert_sent")
	if len(ev) != 1 || ev[0]["outcome"] != "sent 1, failed 0, pruned 1" {
		t.Errorf("reuse_alert_sent events = %v, want sent 1, pruned 1", ev)
	}
}
