package main

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/pushreg/pushreg/push/fcmtest"
	"github.com/pushreg/pushreg/registry/mongotest"
)

// The tests in this file reproduce what a failure leaves half done, and
// check that a retry of the same request, or the sweeper, finishes it.

// interruptedRevocation leaves the state a revocation interrupted by a
// store failure leaves: the session revoked, its device still bound (and
// so still pushed to). It returns the user, the session's refresh token
// and the device ID.
func interruptedRevocation(t *testing.T, a *api, name string) (userID, refreshToken, deviceID string) {
	t.Helper()
	userID = a.createUser(map[string]any{"username": name, "password": name + "-password"})
	deviceID = name + "-phone"
	tok := a.login(name, name+"-password", map[string]string{"device_id": deviceID, "fcm_token": fcmToken(deviceID)})
	res, err := a.db.Collection("sessions").UpdateOne(context.Background(), bson.M{"_id": tok["session_id"]},
		bson.M{"$set": bson.M{"revoked": true, "revoked_at": a.clock.Now(), "revoke_reason": "revoked by admin"}})
	if err != nil || res.MatchedCount != 1 {
		t.Fatalf("revoking the session in the store: %v, %v", res, err)
	}
	if d := a.device(userID, deviceID); d["token_status"] == "unbound" {
		t.Fatalf("device %v unbound before the retry", d)
	}
	return userID, tok["refresh_token"].(string), deviceID
}

// A client that saw 503 retries; the retry must finish the revocation,
// whichever route it used.
func TestRetriedRevocationUnbindsTheDevice(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	cases := []struct {
		name  string
		retry func(userID, refreshToken string) request
	}{
		{"admin revokes every session", func(userID, _ string) request {
			return request{method: "DELETE", path: "/v1/admin/users/" + userID + "/sessions", header: bearer(a.admin())}
		}},
		{"RFC 7009 revocation", func(_, rt string) request {
			return request{method: "POST", path: "/v1/auth/revoke", body: url.Values{"token": {rt}}}
		}},
		{"admin disables the user", func(userID, _ string) request {
			return request{method: "PATCH", path: "/v1/admin/users/" + userID, header: bearer(a.admin()),
				body: map[string]any{"disabled": true}}
		}},
	}
	for i, c := range cases {
		userID, rt, deviceID := interruptedRevocation(t, a, []string{"ria", "rob", "rue"}[i])
		a.must(http.StatusOK, c.retry(userID, rt))
		if d := a.device(userID, deviceID); d["token_status"] != "unbound" {
			t.Errorf("%s: after the retry the device is %v, want unbound", c.name, d["token_status"])
		}
	}
}

// A revocation nobody retries is finished by the sweeper, which runs once
// as soon as pushreg starts (a process restarted more often than the sweep
// interval still sweeps), then on the interval.
func TestSweeperFinishesInterruptedRevocations(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	userID, _, deviceID := interruptedRevocation(t, a, "sam")
	b := startAPI(t, mongotest.URI(t), a.db, nil) // the interval is 1000h
	faultWait(t, "the device of a revoked session unbound by the start-up sweep", 10*time.Second, func() bool {
		return b.device(userID, deviceID)["token_status"] == "unbound"
	})
}

// Evicting a device for the device limit revokes the session that bound
// it: its next refresh is refused instead of recreating the device and
// evicting another, which would make a user over the limit cycle through
// devices that each miss pushes.
func TestEvictionRevokesTheEvictedDevicesSession(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "eve", "password": "eve-password", "plan": map[string]any{"name": "one", "device_count": 1}})
	first := a.kecakSignIn("eve", "eve-password", "old-phone", fcmToken("old-phone"))
	a.clock.Advance(time.Minute)
	a.kecakSignIn("eve", "eve-password", "new-phone", fcmToken("new-phone"))
	if a.device(id, "old-phone") != nil {
		t.Fatal("old-phone was not evicted")
	}
	if r := a.kecakRefresh(first, "old-phone", fcmToken("old-phone")); r.status != http.StatusUnauthorized {
		t.Errorf("refresh of the evicted device's session = %d %s, want 401", r.status, r.body)
	}
	if a.device(id, "old-phone") != nil || a.device(id, "new-phone") == nil {
		t.Errorf("devices after the refused refresh: old %v, new %v; want only new-phone", a.device(id, "old-phone"), a.device(id, "new-phone"))
	}
	var revoked int
	for _, e := range admGet[admEventPage](a, "/v1/admin/users/"+id+"/events").Events {
		if e.Type == "session_revoked" && e.Outcome == "device evicted" {
			revoked++
		}
	}
	if revoked != 1 {
		t.Errorf("session_revoked events for the eviction = %d, want 1", revoked)
	}
}

// FCM may deliver a message twice (a send that timed out is retried,
// though FCM may have delivered it), so every message carries its push's
// ID in its data, the same for every device and every retry of the push,
// and the answer names it: an app drops a push ID it has seen.
func TestEveryMessageCarriesItsPushID(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	uid := a.createUser(map[string]any{"username": "pim", "password": "pim-password"})
	a.deviceLogin("pim", "pim-password", "phone")
	a.deviceLogin("pim", "pim-password", "tablet")
	app, secret := a.createApp("push:send")
	ids := map[string]bool{}
	for range 2 {
		a.fcm.Reset()
		// The first attempt at the phone's token fails as retryable: FCM
		// may still have delivered it, and the retry must carry the same ID.
		a.fcm.SetTokenSequence(fcmToken("phone"), fcmtest.Internal)
		rep := a.must(http.StatusOK, request{method: "POST", path: messagesPath(uid), header: basicAuth(app, secret),
			body: map[string]any{"data": map[string]string{"kind": "hello"}}}).json(t)
		id, _ := rep["push_id"].(string)
		if len(id) != 32 || ids[id] {
			t.Fatalf("push_id = %q, want a new 32-character ID per push (seen %v)", id, ids)
		}
		ids[id] = true
		var sends int
		for _, r := range a.fcm.Requests() {
			if r.ValidateOnly {
				continue
			}
			sends++
			if r.Data["pushreg_push_id"] != id || r.Data["kind"] != "hello" {
				t.Errorf("FCM received data %v, want kind and pushreg_push_id %s", r.Data, id)
			}
		}
		if sends != 3 {
			t.Errorf("FCM received %d sends, want 3: the tablet, and the phone twice", sends)
		}
	}
}

// Reuse detection revokes the session and unbinds its devices at once: a
// thief who bound a device with the stolen token stops getting pushes
// now, not at the next sweep.
func TestReuseUnbindsTheSessionsDevicesAtOnce(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "uma", "password": "uma-password"})
	rt := a.login("uma", "uma-password", map[string]string{"device_id": "phone", "fcm_token": fcmToken("uma-phone")})["refresh_token"].(string)
	a.must(http.StatusOK, a.refreshRequest(rt))
	a.clock.Advance(a.cfg.RefreshReuseGrace + time.Second)
	a.must(http.StatusBadRequest, a.refreshRequest(rt))
	if d := a.device(id, "phone"); d["token_status"] != "unbound" {
		t.Errorf("the reused session's device is %v, want unbound at once", d["token_status"])
	}
}

// Evicting a device revokes the session that bound it only while that
// session is still on it: a session that moved to a new device ID since
// (the app reinstalled) lives on there.
func TestEvictingADeviceASessionLeftKeepsTheSession(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "ivo", "password": "ivo-password", "plan": map[string]any{"name": "two", "device_count": 2}})
	rt := a.login("ivo", "ivo-password", map[string]string{"device_id": "old-id", "fcm_token": fcmToken("ivo-1")})["refresh_token"].(string)
	a.clock.Advance(time.Minute)
	r := a.refresh(rt, url.Values{"device_id": {"new-id"}, "fcm_token": {fcmToken("ivo-2")}})
	if r.status != http.StatusOK {
		t.Fatalf("refresh moving to new-id = %d %s", r.status, r.body)
	}
	rt = r.json(t)["refresh_token"].(string)
	a.clock.Advance(time.Minute)
	a.login("ivo", "ivo-password", map[string]string{"device_id": "tablet", "fcm_token": fcmToken("ivo-3")}) // evicts old-id
	if r := a.refresh(rt, nil); r.status != http.StatusOK {
		t.Errorf("refresh of the session now on new-id after old-id's eviction = %d %s, want 200", r.status, r.body)
	}
}
