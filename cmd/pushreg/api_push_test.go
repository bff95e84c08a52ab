package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/pushreg/pushreg/push/fcmtest"
	"github.com/pushreg/pushreg/registry"
)

// pushReport is a delivery report as the API sends it.
type pushReport struct {
	UserID  string         `json:"user_id"`
	DryRun  bool           `json:"dry_run"`
	Error   *pushErrorJSON `json:"error"`
	Devices int            `json:"devices"`
	Sent    int            `json:"sent"`
	Failed  int            `json:"failed"`
	Pruned  int            `json:"pruned"`
	Results []struct {
		DeviceID  string         `json:"device_id"`
		MessageID string         `json:"message_id"`
		Error     *pushErrorJSON `json:"error"`
		Attempts  int            `json:"attempts"`
		Pruned    bool           `json:"pruned"`
	} `json:"results"`
}

type pushErrorJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type bulkReport struct {
	Devices int          `json:"devices"`
	Sent    int          `json:"sent"`
	Failed  int          `json:"failed"`
	Pruned  int          `json:"pruned"`
	Results []pushReport `json:"results"`
}

func decodeAs[T any](t testing.TB, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("response %d: %v: %s", r.status, err, r.body)
	}
	return v
}

// fcmToken returns a registration token of the real shape, distinct per name.
func fcmToken(name string) string {
	return name + ":APA91b" + strings.Repeat("Xy-_9", 24)
}

// deviceLogin signs a user in on a device holding its token and returns the
// access token.
func (a *api) deviceLogin(username, password, deviceID string) string {
	a.t.Helper()
	tok := a.login(username, password, map[string]string{"device_id": deviceID, "fcm_token": fcmToken(deviceID)})
	return tok["access_token"].(string)
}

// setTokenStatus changes a device's token status in the store, as the
// sweeper or a prune would: in its user's document, where the device is
// found by its device_id.
func (a *api) setTokenStatus(userID, deviceID string, status registry.TokenStatus) {
	a.t.Helper()
	ctx := context.Background()
	var doc struct {
		Devices map[string]struct {
			DeviceID string `bson:"device_id"`
		} `bson:"devices"`
	}
	if err := a.db.Collection("user_devices").FindOne(ctx, bson.M{"_id": userID}).Decode(&doc); err != nil {
		a.t.Fatalf("set token status of %s: %v", deviceID, err)
	}
	for field, d := range doc.Devices {
		if d.DeviceID != deviceID {
			continue
		}
		// unverified: the sweeper finds users by this flag.
		set := bson.M{"devices." + field + ".token_status": status, "unverified": status == registry.TokenUnverified}
		res, err := a.db.Collection("user_devices").UpdateOne(ctx, bson.M{"_id": userID},
			bson.M{"$set": set, "$inc": bson.M{"v": 1}})
		if err != nil || res.MatchedCount != 1 {
			a.t.Fatalf("set token status of %s: matched %v, %v", deviceID, res, err)
		}
		return
	}
	a.t.Fatalf("set token status: %s has no device %s", userID, deviceID)
}

// storedDevices returns the user's devices as the store holds them.
func (a *api) storedDevices(userID string) []registry.Device {
	a.t.Helper()
	devs, _, err := registry.New(a.db.Database, registry.Config{}).List(context.Background(), registry.DeviceQuery{UserID: userID, Limit: 10_000})
	if err != nil {
		a.t.Fatal(err)
	}
	return devs
}

// sends returns the tokens the double received real (not dry-run) sends
// for, sorted.
func (a *api) sends() []string {
	var out []string
	for _, r := range a.fcm.Requests() {
		if !r.ValidateOnly {
			out = append(out, r.Token)
		}
	}
	sort.Strings(out)
	return out
}

// createApp registers an app and returns its ID and secret.
func (a *api) createApp(scopes ...string) (string, string) {
	a.t.Helper()
	r := a.must(http.StatusCreated, request{method: "POST", path: "/v1/admin/apps", header: bearer(a.admin()),
		body: map[string]any{"name": "job-" + strings.Join(scopes, "-"), "scopes": scopes}}).json(a.t)
	return r["app_id"].(string), r["app_secret"].(string)
}

func basicAuth(id, secret string) map[string]string {
	hr, _ := http.NewRequest("GET", "/", nil)
	hr.SetBasicAuth(id, secret)
	return map[string]string{"Authorization": hr.Header.Get("Authorization")}
}

// appToken gets a client-credentials access token.
func (a *api) appToken(id, secret string) string {
	a.t.Helper()
	r := a.must(http.StatusOK, request{method: "POST", path: "/v1/auth/token", header: basicAuth(id, secret),
		body: url.Values{"grant_type": {"client_credentials"}}})
	return r.json(a.t)["access_token"].(string)
}

func messagesPath(userID string) string { return "/v1/users/" + url.PathEscape(userID) + "/messages" }

var hello = map[string]any{
	"notification": map[string]string{"title": "Hello", "body": "from a job"},
	"data":         map[string]string{"kind": "greeting"},
}

func TestPushFanOutToPushableDevicesOnly(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	uid := a.createUser(map[string]any{"username": "alice", "password": "alice-password"})
	access := map[string]string{}
	for _, dev := range []string{"phone", "tablet", "fresh", "old", "dead", "gone"} {
		access[dev] = a.deviceLogin("alice", "alice-password", dev)
	}
	a.setTokenStatus(uid, "fresh", registry.TokenUnverified)
	a.setTokenStatus(uid, "old", registry.TokenStale)
	a.setTokenStatus(uid, "dead", registry.TokenInvalid)
	a.must(http.StatusNoContent, request{method: "POST", path: "/v1/auth/logout", header: bearer(access["gone"])}) // unbound

	r := a.must(http.StatusOK, request{method: "POST", path: messagesPath(uid), header: bearer(a.admin()), body: hello})
	rep := decodeAs[pushReport](t, r)
	if rep.UserID != uid || rep.Devices != 3 || rep.Sent != 3 || rep.Failed != 0 || rep.Pruned != 0 || len(rep.Results) != 3 {
		t.Errorf("report = %+v, want 3 devices, 3 sent", rep)
	}
	for _, res := range rep.Results {
		if res.MessageID == "" || res.Error != nil {
			t.Errorf("result %+v, want a message_id and no error", res)
		}
	}
	want := []string{fcmToken("fresh"), fcmToken("phone"), fcmToken("tablet")}
	if got := a.sends(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("FCM got sends for %v, want %v", got, want)
	}
	for _, req := range a.fcm.Requests() {
		if !req.ValidateOnly && (req.Data["kind"] != "greeting" || !strings.Contains(string(req.Message), `"title":"Hello"`)) {
			t.Errorf("FCM got message %s, want the notification and data sent", req.Message)
		}
	}

	// A user without a pushable device is no error; an unknown user is.
	bob := a.createUser(map[string]any{"username": "bob", "password": "bob-password"})
	r = a.must(http.StatusOK, request{method: "POST", path: messagesPath(bob), header: bearer(a.admin()), body: hello})
	if rep := decodeAs[pushReport](t, r); rep.Devices != 0 || rep.Sent != 0 || rep.Results == nil {
		t.Errorf("report for a user without devices = %s, want devices 0 and empty results", r.body)
	}
	r = a.must(http.StatusNotFound, request{method: "POST", path: messagesPath("no-such-user"), header: bearer(a.admin()), body: hello})
	if got := r.header.Get("Content-Type"); got != "application/problem+json" {
		t.Errorf("404 Content-Type = %q, want application/problem+json", got)
	}
}

// TestPushErrorClasses sends one message to a user whose devices FCM
// answers in every way, and checks each device's outcome end to end: the
// push package's own tests cover the timing of retries.
func TestPushErrorClasses(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	uid := a.createUser(map[string]any{"username": "carol", "password": "carol-password"})
	tests := []struct {
		device   string
		program  []fcmtest.Code // the answers after login, then success
		always   fcmtest.Code   // the answer for good, if set
		code     string         // in the result; empty for sent
		pruned   bool
		attempts int
		requests int // what FCM saw for the token, the SDK's own retries included
		status   registry.TokenStatus
	}{
		{device: "ok", requests: 1, status: registry.TokenValid},
		{device: "unregistered", always: fcmtest.Unregistered, code: "UNREGISTERED", pruned: true, attempts: 1, requests: 1, status: registry.TokenInvalid},
		{device: "badtoken", always: fcmtest.InvalidArgument, code: "INVALID_ARGUMENT", pruned: true, attempts: 1, requests: 1, status: registry.TokenInvalid},
		{device: "mismatch", always: fcmtest.SenderIDMismatch, code: "SENDER_ID_MISMATCH", pruned: true, attempts: 1, requests: 1, status: registry.TokenInvalid},
		// Retried by push, then sent.
		{device: "flaky", program: []fcmtest.Code{fcmtest.Internal}, requests: 2, status: registry.TokenValid},
		// Retried by the SDK itself (a 503), then sent.
		{device: "blip", program: []fcmtest.Code{fcmtest.Unavailable}, requests: 2, status: registry.TokenValid},
		// Retried after FCM's Retry-After, then sent.
		{device: "quota", program: []fcmtest.Code{fcmtest.QuotaExceeded}, requests: 2, status: registry.TokenValid},
		// Retried until MaxAttempts, then failed; the token is kept.
		{device: "down", always: fcmtest.Internal, code: "INTERNAL", attempts: 3, requests: 3, status: registry.TokenValid},
		// Not the token's fault: reported, not retried, kept.
		{device: "apns", always: fcmtest.ThirdPartyAuthError, code: "THIRD_PARTY_AUTH_ERROR", attempts: 1, requests: 1, status: registry.TokenValid},
	}
	for _, tt := range tests {
		a.deviceLogin("carol", "carol-password", tt.device)
	}
	a.fcm.SetRetryAfter(time.Second)
	for _, tt := range tests {
		if tt.always != "" {
			a.fcm.SetTokenError(fcmToken(tt.device), tt.always)
		}
		if len(tt.program) > 0 {
			a.fcm.SetTokenSequence(fcmToken(tt.device), tt.program...)
		}
	}

	r := a.must(http.StatusOK, request{method: "POST", path: messagesPath(uid), header: bearer(a.admin()), body: hello})
	rep := decodeAs[pushReport](t, r)
	if rep.Devices != 9 || rep.Sent != 4 || rep.Failed != 2 || rep.Pruned != 3 {
		t.Errorf("report counts devices %d sent %d failed %d pruned %d, want 9, 4, 2, 3", rep.Devices, rep.Sent, rep.Failed, rep.Pruned)
	}
	byDevice := map[string]int{}
	for i, res := range rep.Results {
		byDevice[res.DeviceID] = i
	}
	devices := a.must(http.StatusOK, request{method: "GET", path: "/v1/admin/users/" + uid + "/devices", header: bearer(a.admin())})
	status := map[string]string{}
	for _, d := range decodeAs[struct {
		Devices []struct {
			DeviceID    string `json:"device_id"`
			TokenStatus string `json:"token_status"`
			FCMToken    string `json:"fcm_token"`
		} `json:"devices"`
	}](t, devices).Devices {
		status[d.DeviceID] = d.TokenStatus
	}

	for _, tt := range tests {
		t.Run(tt.device, func(t *testing.T) {
			i, ok := byDevice[tt.device]
			if !ok {
				t.Fatalf("no result for %s in %s", tt.device, r.body)
			}
			res := rep.Results[i]
			switch {
			case tt.code == "" && (res.MessageID == "" || res.Error != nil):
				t.Errorf("result %+v, want sent", res)
			case tt.code != "" && (res.Error == nil || res.Error.Code != tt.code || res.Error.Message == ""):
				t.Errorf("result %+v, want error %s with a message", res, tt.code)
			case res.Pruned != tt.pruned || res.Attempts != tt.attempts:
				t.Errorf("result %+v, want pruned %v after %d attempts", res, tt.pruned, tt.attempts)
			}
			if got := len(a.fcm.RequestsFor(fcmToken(tt.device))) - 1; got != tt.requests { // -1: login's dry run
				t.Errorf("FCM saw %d sends for the token, want %d", got, tt.requests)
			}
			if got := status[tt.device]; got != string(tt.status) {
				t.Errorf("token_status = %q, want %q", got, tt.status)
			}
		})
	}

	// FCM's Retry-After held the retry back.
	q := a.fcm.RequestsFor(fcmToken("quota"))
	if gap := q[len(q)-1].Time.Sub(q[len(q)-2].Time); gap < time.Second {
		t.Errorf("retry of a QUOTA_EXCEEDED token came %v after, want at least the 1s Retry-After", gap)
	}

	// The prunes are in the audit trail.
	ev := a.must(http.StatusOK, request{method: "GET", path: "/v1/admin/users/" + uid + "/events", header: bearer(a.admin())})
	pruned := map[string]string{}
	for _, e := range decodeAs[struct {
		Events []struct {
			Type     string `json:"type"`
			DeviceID string `json:"device_id"`
			Actor    string `json:"actor"`
			Outcome  string `json:"outcome"`
		} `json:"events"`
	}](t, ev).Events {
		if e.Type == "token_pruned" {
			pruned[e.DeviceID] = e.Actor + " " + e.Outcome
		}
	}
	want := map[string]string{"unregistered": "fcm FCM: UNREGISTERED", "badtoken": "fcm FCM: INVALID_ARGUMENT", "mismatch": "fcm FCM: SENDER_ID_MISMATCH"}
	if fmt.Sprint(pruned) != fmt.Sprint(want) {
		t.Errorf("token_pruned events %v, want %v", pruned, want)
	}

	// Pruned devices are not pushed to again.
	r = a.must(http.StatusOK, request{method: "POST", path: messagesPath(uid), header: bearer(a.admin()), body: hello})
	if rep := decodeAs[pushReport](t, r); rep.Devices != 6 {
		t.Errorf("second push went to %d devices, want 6", rep.Devices)
	}
}

func TestPushDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	uid := a.createUser(map[string]any{"username": "dora", "password": "dora-password"})
	a.deviceLogin("dora", "dora-password", "good")
	a.deviceLogin("dora", "dora-password", "gone")
	a.fcm.SetTokenError(fcmToken("gone"), fcmtest.Unregistered)

	body := map[string]any{"data": map[string]string{"k": "v"}, "dry_run": true}
	r := a.must(http.StatusOK, request{method: "POST", path: messagesPath(uid), header: bearer(a.admin()), body: body})
	rep := decodeAs[pushReport](t, r)
	if !rep.DryRun || rep.Devices != 2 || rep.Sent != 1 || rep.Failed != 1 || rep.Pruned != 0 {
		t.Errorf("dry run report = %s, want dry_run, 1 validated, 1 failed, none pruned", r.body)
	}
	if got := a.sends(); len(got) != 0 {
		t.Errorf("a dry run sent to %v", got)
	}
	// The dead token is still bound: a dry run validates, it does not prune.
	r = a.must(http.StatusOK, request{method: "POST", path: messagesPath(uid), header: bearer(a.admin()), body: body})
	if rep := decodeAs[pushReport](t, r); rep.Devices != 2 {
		t.Errorf("after a dry run, %d devices are pushable, want 2", rep.Devices)
	}
}

// TestPushChunksOf500 pushes to 1,200 devices of one user. The SDK refuses
// more than 500 tokens per SendEachForMulticast, so the push succeeding at
// all shows the chunking; the double shows each token went once, with no
// more requests in flight than the configured concurrency allows (the SDK
// sends 50 of a chunk at a time).
//
// Not parallel: 1,200 sends through the SDK and the embedded store are
// CPU-bound under -race (5-7s for the request on two busy cores), and
// sharing the CPU with the other API tests could push the one request past
// its 15s bound.
func TestPushChunksOf500(t *testing.T) {
	a := newAPI(t, map[string]string{"PUSHREG_PUSH_CONCURRENCY": "2"})
	uid := a.createUser(map[string]any{"username": "erin", "password": "erin-password"})
	// 1,200 logins would be slow; the devices go in as Bind stores them.
	const n = 1200
	a.insertDevices(uid, n)
	a.fcm.SetLatency(5 * time.Millisecond) // keeps requests in flight long enough to count

	admin := a.admin()
	before := a.svc.commands.Started()
	r := a.must(http.StatusOK, request{method: "POST", path: messagesPath(uid), header: bearer(admin), body: hello})
	rep := decodeAs[pushReport](t, r)
	if rep.Devices != n || rep.Sent != n || len(rep.Results) != n {
		t.Fatalf("report devices %d sent %d results %d, want %d each", rep.Devices, rep.Sent, len(rep.Results), n)
	}
	// The 1,200 devices are one document, read by _id.
	if got := a.svc.commands.Started() - before; got != 1 {
		t.Errorf("the push took %d MongoDB commands, want 1 (its user's devices)", got)
	}
	seen := map[string]int{}
	for _, tok := range a.sends() {
		seen[tok]++
	}
	if len(seen) != n {
		t.Errorf("FCM got sends for %d distinct tokens, want %d", len(seen), n)
	}
	for tok, c := range seen {
		if c != 1 {
			t.Errorf("token %.12s… sent %d times, want once", tok, c)
		}
	}
	if got := a.fcm.Stats().MaxInFlight; got > 2*50 {
		t.Errorf("%d requests in flight at once, want at most 100 (2 chunks × 50)", got)
	}
}

func TestIdempotentPushReplays(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	uid := a.createUser(map[string]any{"username": "fred", "password": "fred-password"})
	a.deviceLogin("fred", "fred-password", "phone")
	a.deviceLogin("fred", "fred-password", "watch")
	id, secret := a.createApp("push:send")
	app := basicAuth(id, secret)
	withKey := func(h map[string]string, key string) map[string]string {
		out := map[string]string{"Idempotency-Key": key}
		for k, v := range h {
			out[k] = v
		}
		return out
	}

	first := a.must(http.StatusOK, request{method: "POST", path: messagesPath(uid), header: withKey(app, "job-1"), body: hello})
	if first.header.Get("Idempotent-Replayed") != "" {
		t.Error("the first request is marked replayed")
	}
	if got := len(a.sends()); got != 2 {
		t.Fatalf("first request: %d sends, want 2", got)
	}

	tests := []struct {
		name   string
		header map[string]string
		path   string
		body   any
		status int
		sends  int // total after the request
	}{
		{"same key, same body: replayed", withKey(app, "job-1"), messagesPath(uid), hello, http.StatusOK, 2},
		{"the same app by client credentials: replayed", withKey(bearer(a.appToken(id, secret)), "job-1"), messagesPath(uid), hello, http.StatusOK, 2},
		{"another body under the key", withKey(app, "job-1"), messagesPath(uid), map[string]any{"data": map[string]string{"kind": "other"}}, http.StatusUnprocessableEntity, 2},
		{"another route under the key", withKey(app, "job-1"), "/v1/messages", map[string]any{"user_ids": []string{uid}, "data": map[string]string{"kind": "greeting"}}, http.StatusUnprocessableEntity, 2},
		{"another principal's key is its own", withKey(bearer(a.admin()), "job-1"), messagesPath(uid), hello, http.StatusOK, 4},
		{"a key too long", withKey(app, strings.Repeat("k", 256)), messagesPath(uid), hello, http.StatusBadRequest, 4},
		{"a key with a space", withKey(app, "job 2"), messagesPath(uid), hello, http.StatusBadRequest, 4},
	}
	for _, tt := range tests {
		r := a.do(request{method: "POST", path: tt.path, header: tt.header, body: tt.body})
		if r.status != tt.status {
			t.Errorf("%s: status %d %s, want %d", tt.name, r.status, r.body, tt.status)
		}
		if got := len(a.sends()); got != tt.sends {
			t.Errorf("%s: %d sends in all, want %d", tt.name, got, tt.sends)
		}
		if tt.status == http.StatusOK && tt.sends == 2 {
			if string(r.body) != string(first.body) || r.header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("%s: got %s (replayed %q), want the first answer replayed: %s", tt.name, r.body, r.header.Get("Idempotent-Replayed"), first.body)
			}
		}
		if tt.status == http.StatusUnprocessableEntity && !strings.Contains(string(r.body), "idempotency_key_reused") {
			t.Errorf("%s: body %s, want code idempotency_key_reused", tt.name, r.body)
		}
	}

	// A failed request does not use its key up.
	a.must(http.StatusNotFound, request{method: "POST", path: messagesPath("nobody"), header: withKey(app, "job-2"), body: hello})
	a.must(http.StatusOK, request{method: "POST", path: messagesPath(uid), header: withKey(app, "job-2"), body: hello})
	if got := len(a.sends()); got != 6 {
		t.Errorf("after reusing a failed request's key: %d sends, want 6", got)
	}
}

// TestIdempotentConcurrentRequests sends a second request with a key while
// the first one still waits for FCM: it is refused with 409, and the first
// one sends once.
func TestIdempotentConcurrentRequests(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	uid := a.createUser(map[string]any{"username": "gina", "password": "gina-password"})
	a.deviceLogin("gina", "gina-password", "phone")
	h := map[string]string{"Authorization": "Bearer " + a.admin(), "Idempotency-Key": "once"}
	arrived := a.fcm.Stats().Requests
	a.fcm.SetLatency(2 * time.Second) // holds the first request at FCM while the second comes

	done := make(chan response, 1)
	go func() { done <- a.do(request{method: "POST", path: messagesPath(uid), header: h, body: hello}) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.fcm.WaitRequests(ctx, arrived+1); err != nil {
		t.Fatal(err)
	}
	r := a.do(request{method: "POST", path: messagesPath(uid), header: h, body: hello})
	if r.status != http.StatusConflict || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "idempotency_in_progress") {
		t.Errorf("concurrent request = %d (Retry-After %q) %s, want 409 idempotency_in_progress with Retry-After",
			r.status, r.header.Get("Retry-After"), r.body)
	}
	first := <-done
	if first.status != http.StatusOK {
		t.Fatalf("first request = %d %s", first.status, first.body)
	}
	again := a.must(http.StatusOK, request{method: "POST", path: messagesPath(uid), header: h, body: hello})
	if string(again.body) != string(first.body) {
		t.Errorf("replay %s, want %s", again.body, first.body)
	}
	if got := len(a.sends()); got != 1 {
		t.Errorf("%d sends, want 1", got)
	}
}

func TestPushPayloadRefusals(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	uid := a.createUser(map[string]any{"username": "hank", "password": "hank-password"})
	a.deviceLogin("hank", "hank-password", "phone")
	before := a.fcm.Stats().Requests
	tests := []struct {
		name   string
		path   string
		body   any
		status int
		detail string
	}{
		{"data over 4096 bytes with the push ID", "", map[string]any{"data": map[string]string{"big": strings.Repeat("x", 4094-47)}}, 400, "4097 bytes with the push ID, more than 4096"},
		{"the push ID's key", "", map[string]any{"data": map[string]string{"pushreg_push_id": "mine"}}, 400, "reserved"},
		{"a number in data", "", `{"data": {"count": 3}}`, 400, "data.count: must be a string"},
		{"an object in data", "", `{"data": {"obj": {"a": "b"}}}`, 400, "data.obj: must be a string"},
		{"null in data", "", `{"data": {"nil": null}}`, 400, "data.nil: must be a string"},
		{"data not an object", "", `{"data": "x"}`, 400, "data"},
		{"reserved key from", "", map[string]any{"data": map[string]string{"from": "x"}}, 400, `"from" is reserved`},
		{"reserved key message_type", "", map[string]any{"data": map[string]string{"message_type": "x"}}, 400, "reserved"},
		{"reserved prefix google.", "", map[string]any{"data": map[string]string{"google.x": "x"}}, 400, "reserved prefix"},
		{"reserved prefix gcm.", "", map[string]any{"data": map[string]string{"gcm.x": "x"}}, 400, "reserved prefix"},
		{"empty message", "", `{}`, 400, "empty message"},
		{"only dry_run", "", `{"dry_run": true}`, 400, "empty message"},
		{"unknown field", "", `{"notifcation": {"title": "typo"}}`, 400, `unknown field "notifcation"`},
		{"the SDK's own check", "", `{"android": {"priority": "urgent"}}`, 400, "priority"},
		{"not JSON", "", `{"data":`, 400, "not valid JSON"},
		{"a form", "", url.Values{"data": {"x"}}, 415, "application/json"},
		{"no user_ids", "/v1/messages", hello, 400, "user_ids: must list 1 to 1000"},
		{"1,001 user_ids", "/v1/messages", map[string]any{"user_ids": make([]string, 1001), "data": map[string]string{"k": "v"}}, 400, "user_ids: must list 1 to 1000"},
		{"an empty user ID", "/v1/messages", map[string]any{"user_ids": []string{uid, ""}, "data": map[string]string{"k": "v"}}, 400, "empty ID"},
		{"bulk: a number in data", "/v1/messages", `{"user_ids": ["x"], "data": {"n": 1}}`, 400, "data.n: must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = messagesPath(uid)
			}
			r := a.do(request{method: "POST", path: path, header: bearer(a.admin()), body: tt.body})
			if r.status != tt.status {
				t.Fatalf("status %d %s, want %d", r.status, r.body, tt.status)
			}
			if d, _ := r.json(t)["detail"].(string); !strings.Contains(d, tt.detail) {
				t.Errorf("detail %q, want it to say %q", d, tt.detail)
			}
		})
	}
	if got := a.fcm.Stats().Requests; got != before {
		t.Errorf("FCM saw %d requests for refused payloads, want none", got-before)
	}
}

func TestPushAuthorization(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	uid := a.createUser(map[string]any{"username": "ivy", "password": "ivy-password"})
	user := a.deviceLogin("ivy", "ivy-password", "phone")
	sender, senderSecret := a.createApp("push:send")
	reader, readerSecret := a.createApp("devices:read")
	revoked, revokedSecret := a.createApp("push:send")
	revokedToken := a.appToken(revoked, revokedSecret) // issued before the revocation
	a.must(http.StatusNoContent, request{method: "DELETE", path: "/v1/admin/apps/" + revoked, header: bearer(a.admin())})

	tests := []struct {
		name   string
		header map[string]string
		status int
	}{
		{"no credentials", nil, http.StatusUnauthorized},
		{"a garbage bearer token", bearer("not-a-token"), http.StatusUnauthorized},
		{"a user's own access token", bearer(user), http.StatusForbidden},
		{"an app without push:send", basicAuth(reader, readerSecret), http.StatusForbidden},
		{"an app token without push:send", bearer(a.appToken(reader, readerSecret)), http.StatusForbidden},
		{"an app's wrong secret", basicAuth(sender, "wrong"), http.StatusUnauthorized},
		{"a revoked app", basicAuth(revoked, revokedSecret), http.StatusUnauthorized},
		{"a revoked app's earlier token", bearer(revokedToken), http.StatusUnauthorized},
		{"an app with push:send, Basic", basicAuth(sender, senderSecret), http.StatusOK},
		{"an app with push:send, client credentials", bearer(a.appToken(sender, senderSecret)), http.StatusOK},
		{"an admin", bearer(a.admin()), http.StatusOK},
	}
	for _, tt := range tests {
		for _, route := range []struct{ path, body string }{
			{messagesPath(uid), `{"data": {"k": "v"}}`},
			{"/v1/messages", `{"user_ids": ["` + uid + `"], "data": {"k": "v"}}`},
		} {
			r := a.do(request{method: "POST", path: route.path, header: tt.header, body: route.body})
			if r.status != tt.status {
				t.Errorf("%s on %s: %d %s, want %d", tt.name, route.path, r.status, r.body, tt.status)
			}
		}
	}
	// Three allowed principals, two routes, one device.
	if got := len(a.sends()); got != 6 {
		t.Errorf("%d sends, want 6", got)
	}
}

func TestPushFormatOnlyMode(t *testing.T) {
	t.Parallel()
	a := newAPI(t, map[string]string{"PUSHREG_FCM_ENDPOINT": ""})
	uid := a.createUser(map[string]any{"username": "jack", "password": "jack-password"})
	a.deviceLogin("jack", "jack-password", "phone")
	for path, body := range map[string]string{
		messagesPath(uid): `{"data": {"k": "v"}}`,
		"/v1/messages":    `{"user_ids": ["` + uid + `"], "data": {"k": "v"}}`,
	} {
		r := a.must(http.StatusServiceUnavailable, request{method: "POST", path: path, header: bearer(a.admin()), body: body})
		if code, _ := r.json(t)["code"].(string); code != "push_not_configured" {
			t.Errorf("%s: 503 %s, want code push_not_configured", path, r.body)
		}
	}
	// A bad payload is still a bad payload.
	a.must(http.StatusBadRequest, request{method: "POST", path: messagesPath(uid), header: bearer(a.admin()),
		body: map[string]any{"data": map[string]string{"from": "x"}}})
	// The 503s are the configured state, not failures.
	for _, line := range strings.Split(a.logs.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
			t.Errorf("format-only mode refusing a push logged %s", line)
		}
	}
}

func TestMessagesToManyUsers(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	kim := a.createUser(map[string]any{"username": "kim", "password": "kim-password"})
	lee := a.createUser(map[string]any{"username": "lee", "password": "lee-password"})
	a.deviceLogin("kim", "kim-password", "kim-phone")
	a.deviceLogin("kim", "kim-password", "kim-tablet")
	a.fcm.SetTokenError(fcmToken("kim-tablet"), fcmtest.Unregistered)

	body := map[string]any{"user_ids": []string{kim, "ghost", lee, kim}, "data": map[string]string{"k": "v"}}
	r := a.must(http.StatusOK, request{method: "POST", path: "/v1/messages", header: bearer(a.admin()), body: body})
	rep := decodeAs[bulkReport](t, r)
	if rep.Devices != 2 || rep.Sent != 1 || rep.Pruned != 1 || rep.Failed != 0 {
		t.Errorf("totals devices %d sent %d failed %d pruned %d, want 2, 1, 0, 1", rep.Devices, rep.Sent, rep.Failed, rep.Pruned)
	}
	if len(rep.Results) != 3 {
		t.Fatalf("%d results, want 3 (one per distinct user): %s", len(rep.Results), r.body)
	}
	if k := rep.Results[0]; k.UserID != kim || k.Devices != 2 || k.Sent != 1 || k.Pruned != 1 || k.Error != nil {
		t.Errorf("kim's report = %+v, want 2 devices, 1 sent, 1 pruned", k)
	}
	if g := rep.Results[1]; g.UserID != "ghost" || g.Error == nil || g.Error.Code != "not_found" || g.Devices != 0 {
		t.Errorf("unknown user's report = %+v, want error not_found", g)
	}
	if l := rep.Results[2]; l.UserID != lee || l.Devices != 0 || l.Error != nil || l.Results == nil {
		t.Errorf("lee's report = %+v, want 0 devices and no error", l)
	}
	if got, want := a.sends(), []string{fcmToken("kim-phone"), fcmToken("kim-tablet")}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("FCM got sends for %v, want %v", got, want)
	}

	// Dry run, to the one token left.
	body["dry_run"] = true
	r = a.must(http.StatusOK, request{method: "POST", path: "/v1/messages", header: bearer(a.admin()), body: body})
	if rep := decodeAs[bulkReport](t, r); rep.Devices != 1 || rep.Sent != 1 || !rep.Results[0].DryRun {
		t.Errorf("dry run = %s, want 1 device validated", r.body)
	}
	if got := len(a.sends()); got != 2 {
		t.Errorf("the dry run sent: %d sends, want 2", got)
	}

	// As many distinct IDs as one request takes, most of them unknown: one
	// read by _id of each user's devices (FerretDB pushes no $in down), then
	// one query for the users without a pushable device.
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("ghost-%d", i)
	}
	ids[0], ids[500] = kim, lee
	before := a.svc.commands.Started()
	r = a.must(http.StatusOK, request{method: "POST", path: "/v1/messages", header: bearer(a.admin()),
		body: map[string]any{"user_ids": ids, "data": map[string]string{"k": "v"}}})
	if rep := decodeAs[bulkReport](t, r); len(rep.Results) != 1000 || rep.Sent != 1 {
		t.Errorf("1,000 users: %d results, %d sent, want 1000 results and 1 sent", len(rep.Results), rep.Sent)
	}
	if got := a.svc.commands.Started() - before; got > int64(len(ids))+4 {
		t.Errorf("a push to 1,000 users took %d MongoDB commands, want at most %d", got, len(ids)+4)
	}
	if got := len(a.sends()); got != 3 {
		t.Errorf("%d sends in all, want 3", got)
	}
}

func TestMetricsExposed(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	uid := a.createUser(map[string]any{"username": "mia", "password": "mia-password"})
	a.deviceLogin("mia", "mia-password", "phone")
	a.deviceLogin("mia", "mia-password", "old")
	a.fcm.SetTokenError(fcmToken("old"), fcmtest.Unregistered)
	a.must(http.StatusOK, request{method: "POST", path: messagesPath(uid), header: bearer(a.admin()), body: hello})
	a.must(http.StatusNotFound, request{method: "GET", path: "/no/such/route"})

	r := a.must(http.StatusOK, request{method: "GET", path: "/metrics"})
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the Prometheus text format", ct)
	}
	page := string(r.body)
	for _, want := range []string{
		`pushreg_pushes_total{outcome="sent"} 1`,
		`pushreg_pushes_total{outcome="failed"} 0`,
		`pushreg_pushes_total{outcome="pruned"} 1`,
		`pushreg_tokens_pruned_total{code="UNREGISTERED"} 1`,
		`pushreg_fcm_send_duration_seconds_count 1`,
		`pushreg_http_requests_total{method="POST",route="/v1/users/:user_id/messages",status="200"} 1`,
		`pushreg_http_request_duration_seconds_count{method="POST",route="/v1/users/:user_id/messages"} 1`,
		`pushreg_http_requests_total{method="POST",route="/v1/auth/login",status="200"} 3`,
		`pushreg_mongodb_commands_total `,
		`pushreg_mongodb_command_failures_total `,
		`pushreg_mongodb_command_duration_seconds_total `,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// An unknown path is counted under the pattern that caught it (echo's
	// catch-all, or "unmatched"), never under the raw path.
	if strings.Contains(page, "/no/such/route") {
		t.Error("/metrics names a raw path; routes must be patterns")
	}
	if !strings.Contains(page, `status="404"} 1`) {
		t.Error("/metrics lacks the 404")
	}
	var commands float64
	for _, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(line, "pushreg_mongodb_commands_total ") {
			fmt.Sscan(strings.TrimPrefix(line, "pushreg_mongodb_commands_total "), &commands)
		}
	}
	if commands < 1 {
		t.Errorf("pushreg_mongodb_commands_total = %v, want the commands counted", commands)
	}
}

// insertDevices stores n valid devices for the user as Bind stores them,
// faster than n logins, and returns their tokens.
func (a *api) insertDevices(userID string, n int) []string {
	a.t.Helper()
	now := a.clock.Now()
	devices := make([]registry.Device, n)
	toks := make([]string, n)
	for i := range devices {
		dev := fmt.Sprintf("dev%04d", i)
		toks[i] = fcmToken(dev)
		devices[i] = registry.Device{UserID: userID, DeviceID: dev, Platform: "android", FCMToken: toks[i],
			TokenStatus: registry.TokenValid, TokenValidatedAt: now, TokenUpdatedAt: now, LastSeenAt: now, CreatedAt: now}
	}
	if err := registry.New(a.db.Database, registry.Config{}).Seed(context.Background(), devices); err != nil {
		a.t.Fatal(err)
	}
	return toks
}

// BenchmarkPushAPI pushes one message to a user with 1,000 devices through
// the whole service (HTTP, authentication, store, SDK) against the double
// answering each request after 20ms, and reports messages per second and
// MongoDB round trips per push.
func BenchmarkPushAPI(b *testing.B) {
	a := newAPI(b, nil)
	uid := a.createUser(map[string]any{"username": "bench", "password": "bench-password"})
	a.insertDevices(uid, 1000)
	a.fcm.SetLatency(20 * time.Millisecond)
	a.fcm.SetRecord(false)
	req := request{method: "POST", path: messagesPath(uid), header: bearer(a.admin()), body: hello}

	sent, pushes := 0, 0
	commands := a.svc.commands.Started()
	start := time.Now()
	for b.Loop() {
		rep := decodeAs[pushReport](b, a.must(http.StatusOK, req))
		if rep.Sent != 1000 {
			b.Fatalf("sent %d of 1000", rep.Sent)
		}
		sent += rep.Sent
		pushes++
	}
	b.ReportMetric(float64(sent)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64(a.svc.commands.Started()-commands)/float64(pushes), "roundtrips/push")
}

// A token FCM declared dead is asked about again when an app binds it,
// not waved through from the validation cache.
func TestPrunedTokenIsNotValidatedFromTheCache(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	uid := a.createUser(map[string]any{"username": "noa", "password": "noa-password"})
	tok := fcmToken("noa-phone")
	a.login("noa", "noa-password", map[string]string{"device_id": "phone", "fcm_token": tok}) // validated, cached
	a.fcm.SetTokenError(tok, fcmtest.Unregistered)
	r := a.must(http.StatusOK, request{method: "POST", path: messagesPath(uid), header: bearer(a.admin()), body: hello}).json(t)
	if r["pruned"] != float64(1) {
		t.Fatalf("push = %v, want the token pruned", r)
	}
	// The app retries with its old token: Firebase is asked, and says no.
	rr := a.do(request{method: "POST", path: "/v1/auth/login",
		body: map[string]string{"username": "noa", "password": "noa-password", "device_id": "phone", "fcm_token": tok}})
	if rr.status != http.StatusUnprocessableEntity {
		t.Errorf("binding the pruned token again = %d %s, want 422", rr.status, rr.body)
	}
}
