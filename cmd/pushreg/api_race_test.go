package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The races mobile apps cause. Each checks invariants, not an order.

func TestRevocationRacingRefresh(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "rita", "password": "rita-password"})
	for i := range 10 {
		rt := a.login("rita", "rita-password", nil)["refresh_token"].(string)
		var wg sync.WaitGroup
		var refreshed, revoked response
		wg.Add(2)
		go func() { defer wg.Done(); refreshed = a.refresh(rt, nil) }()
		go func() {
			defer wg.Done()
			revoked = a.do(request{method: "POST", path: "/v1/auth/revoke", body: url.Values{"token": {rt}}})
		}()
		wg.Wait()
		if refreshed.status >= 500 || revoked.status != http.StatusOK {
			t.Fatalf("round %d: refresh %d %s, revoke %d %s", i, refreshed.status, refreshed.body, revoked.status, revoked.body)
		}
		// Whichever came first, the session ends: a successor the refresh
		// may have handed out is dead too.
		if refreshed.status == http.StatusOK {
			if r := a.refresh(refreshed.json(t)["refresh_token"].(string), nil); r.status != http.StatusBadRequest {
				t.Fatalf("round %d: the successor after revocation = %d %s, want 400", i, r.status, r.body)
			}
		}
		if r := a.refresh(rt, nil); r.status != http.StatusBadRequest {
			t.Fatalf("round %d: the revoked token = %d, want 400", i, r.status)
		}
	}
}

func TestConcurrentKecakBindsOfOneDeviceFromTwoSessions(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "sid", "password": "sid-password"})
	// The same phone, two app installs (or a reinstall): two sessions.
	first := a.kecakSignIn("sid", "sid-password", "phone", "fcm:install-1")
	second := a.kecakSignIn("sid", "sid-password", "phone", "fcm:install-2")

	const rounds = 10
	var wg sync.WaitGroup
	statuses := make(chan int, 2*rounds)
	for i := range rounds {
		wg.Add(2)
		tokA, tokB := "fcm:a"+string(rune('a'+i)), "fcm:b"+string(rune('a'+i))
		go func() { defer wg.Done(); statuses <- a.kecakRefresh(first, "phone", tokA).status }()
		go func() { defer wg.Done(); statuses <- a.kecakRefresh(second, "phone", tokB).status }()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		// A retired token outside the window would be 401; inside the
		// window everything is a duplicate. Never a 5xx.
		if s >= 500 {
			t.Fatalf("a concurrent bind answered %d", s)
		}
	}
	devices := a.storedDevices(id)
	if len(devices) != 1 {
		t.Fatalf("%d device records for one phone, want 1", len(devices))
	}
	// The record names a session, and that session names this device.
	sid := devices[0].SessionID
	var sess bson.M
	if err := a.db.Collection("sessions").FindOne(context.Background(), bson.M{"_id": sid}).Decode(&sess); err != nil {
		t.Fatalf("the device's session %s: %v", sid, err)
	}
	if sess["device_id"] != "phone" || sess["fcm_token"] != devices[0].FCMToken {
		t.Errorf("session %s names device %v token %v; the device holds %v: they disagree",
			sid, sess["device_id"], sess["fcm_token"], devices[0].FCMToken)
	}
}

func TestTokenMovedWhileAPushIsInFlight(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	alice := a.createUser(map[string]any{"username": "alice", "password": "alice-password"})
	a.createUser(map[string]any{"username": "bob", "password": "bob-password"})
	tablet := fcmToken("tablet")
	a.login("alice", "alice-password", map[string]string{"device_id": "tablet", "fcm_token": tablet})
	appID, secret := a.createApp("push:send")

	a.fcm.SetLatency(300 * time.Millisecond) // FCM is slow: the push is in flight
	inFlight := make(chan response, 1)
	go func() {
		inFlight <- a.do(request{method: "POST", path: messagesPath(alice), header: basicAuth(appID, secret), body: hello})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.fcm.WaitRequests(ctx, 2); err != nil { // the login's validation, then the send
		t.Fatal(err)
	}
	// Meanwhile the tablet changes hands: Bob signs in on it.
	a.fcm.SetLatency(0)
	a.login("bob", "bob-password", map[string]string{"device_id": "tablet", "fcm_token": tablet})

	if r := <-inFlight; r.status != http.StatusOK {
		t.Fatalf("the in-flight push = %d %s", r.status, r.body)
	}
	// After the move completed, a push to Alice reaches none of her devices.
	sendsBefore := len(a.sends())
	r := a.must(http.StatusOK, request{method: "POST", path: messagesPath(alice), header: basicAuth(appID, secret), body: hello}).json(t)
	if r["devices"] != float64(0) || len(a.sends()) != sendsBefore {
		t.Errorf("push to alice after the move = %v; the double saw %d new sends; want none", r, len(a.sends())-sendsBefore)
	}
}

// Retries racing with one credential but different FCM tokens (an app
// whose token changed between two attempts) leave the session and the
// device agreeing on one token.
func TestConcurrentRefreshesWithDifferentTokensAgree(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	id := a.createUser(map[string]any{"username": "una", "password": "una-password"})
	for _, style := range []string{"kecak", "native"} {
		t.Run(style, func(t *testing.T) {
			device := "phone-" + style
			var send func(i int) int
			switch style {
			case "kecak":
				token := a.kecakSignIn("una", "una-password", device, "fcm:"+style+"-0")
				send = func(i int) int { return a.kecakRefresh(token, device, fmt.Sprintf("fcm:%s-%d", style, i)).status }
			case "native":
				rt := a.login("una", "una-password", map[string]string{"device_id": device, "fcm_token": "fcm:" + style + "-0"})["refresh_token"].(string)
				send = func(i int) int {
					return a.refresh(rt, url.Values{"device_id": {device}, "fcm_token": {fmt.Sprintf("fcm:%s-%d", style, i)}}).status
				}
			}
			var wg sync.WaitGroup
			for i := 1; i <= 20; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if s := send(i); s != http.StatusOK {
						t.Errorf("refresh %d = %d", i, s)
					}
				}()
			}
			wg.Wait()
			d := a.device(id, device)
			var sess bson.M
			if err := a.db.Collection("sessions").FindOne(context.Background(), bson.M{"_id": d["session_id"]}).Decode(&sess); err != nil {
				t.Fatal(err)
			}
			if sess["fcm_token"] != d["fcm_token"] {
				t.Errorf("session names %v, the device holds %v", sess["fcm_token"], d["fcm_token"])
			}
		})
	}
}
