package main

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRetentionSettings(t *testing.T) {
	cfg, err := loadConfig(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SessionRetention != 30*24*time.Hour || cfg.EventRetention != 90*24*time.Hour {
		t.Errorf("defaults: session retention %v, event retention %v; want 720h and 2160h", cfg.SessionRetention, cfg.EventRetention)
	}
	for _, env := range []string{"PUSHREG_SESSION_RETENTION", "PUSHREG_EVENT_RETENTION"} {
		for _, v := range []string{"0", "0d", "-1h", "-3d", "forever"} {
			_, err := loadConfig(nil, func(k string) string {
				if k == env {
					return v
				}
				return ""
			}, io.Discard)
			if err == nil || !strings.HasPrefix(err.Error(), env+": ") {
				t.Errorf("%s=%q: error %v, want one naming %s", env, v, err, env)
			}
		}
	}
	if _, err := loadConfig([]string{"--session-retention", "0s"}, func(string) string { return "" }, io.Discard); err == nil ||
		err.Error() != `PUSHREG_SESSION_RETENTION: "0s" must be positive` {
		t.Errorf("--session-retention 0s: error %v, want one saying it must be positive", err)
	}
}

// The running service's sweeper deletes a session 10 days (as configured)
// after it ended, which takes its login off the audit trail, and events
// after 20 days; the live session and newer events stay.
func TestSweeperDeletesEndedSessionsAndOldEvents(t *testing.T) {
	t.Parallel()
	a := newAPI(t, map[string]string{"PUSHREG_SWEEP_INTERVAL": "50ms",
		"PUSHREG_SESSION_RETENTION": "10d", "PUSHREG_EVENT_RETENTION": "20d"})
	// The admin's access token expires as the clock moves on; an app's
	// credentials do not.
	_, reader := a.admApp("devices:read")
	id := a.createUser(map[string]any{"username": "rita", "password": "rita-password"})
	ended := a.login("rita", "rita-password", map[string]string{"device_id": "phone", "fcm_token": "rita:phone"})
	a.must(http.StatusNoContent, request{method: "POST", path: "/v1/auth/logout", header: bearer(ended["access_token"].(string))})
	live := a.login("rita", "rita-password", nil)
	endedID, liveID := ended["session_id"].(string), live["session_id"].(string)

	trail := func() (logins, others []string) {
		t.Helper()
		r := a.must(http.StatusOK, request{method: "GET", path: "/v1/admin/users/" + id + "/events?limit=200", header: reader})
		var page admEventPage
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatalf("events: %v: %s", err, r.body)
		}
		for _, e := range page.Events {
			if e.Type == "login" {
				logins = append(logins, e.SessionID)
			} else {
				others = append(others, e.ID)
			}
		}
		return logins, others
	}
	logins, events := trail()
	if !slices.Equal(logins, []string{liveID, endedID}) || len(events) < 3 {
		t.Fatalf("trail before: logins %q and %d other events, want both sessions' logins and at least user created, bound, revoked",
			logins, len(events))
	}

	// The logged-out session ended 10 days and a minute ago.
	a.clock.Advance(10*24*time.Hour + time.Minute)
	faultWait(t, "the ended session's login leaves the trail", 30*time.Second, func() bool {
		logins, _ := trail()
		return !slices.Contains(logins, endedID)
	})
	gotLogins, gotEvents := trail()
	if !slices.Equal(gotLogins, []string{liveID}) {
		t.Errorf("logins after 10 days: %q, want only the live session's %q", gotLogins, liveID)
	}
	if !slices.Equal(gotEvents, events) {
		t.Errorf("events after 10 days: %q, want all of %q (younger than 20 days)", gotEvents, events)
	}
	if !strings.Contains(a.logs.String(), `"sessions_deleted":1,`) {
		t.Errorf("no sweep log line with sessions_deleted 1 in:\n%s", a.logs.String())
	}

	// Twenty days on, the events are past retention; the live session
	// (idle expiry 30 days after its login) is not.
	a.clock.Advance(10 * 24 * time.Hour)
	faultWait(t, "the old events leave the trail", 30*time.Second, func() bool {
		_, others := trail()
		return len(others) == 0
	})
	if gotLogins, _ := trail(); !slices.Equal(gotLogins, []string{liveID}) {
		t.Errorf("logins after 20 days: %q, want only the live session's %q", gotLogins, liveID)
	}
	if r := a.refresh(live["refresh_token"].(string), nil); r.status != http.StatusOK {
		t.Errorf("refresh of the live session after the sweeps = %d %s, want 200", r.status, r.body)
	}
}
