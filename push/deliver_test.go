package push_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/pushreg/pushreg/push"
	"github.com/pushreg/pushreg/push/fcmtest"
)

// directory is an in-memory push.Directory. The registry's own tests cover
// the real one; here it only has to say whom to push to and remember prunes.
type directory struct {
	mu      sync.Mutex
	targets map[string][]push.Target // by user; a missing user is unknown
	fail    map[string]error         // Pushable fails for these users
	pruned  []string                 // "user/device reason"
	lookups int
}

func (d *directory) Pushable(ctx context.Context, userIDs []string) (map[string][]push.Target, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lookups++
	out := map[string][]push.Target{}
	for _, id := range userIDs {
		if err := d.fail[id]; err != nil {
			return nil, err
		}
		if t, ok := d.targets[id]; ok {
			out[id] = append([]push.Target(nil), t...)
		}
	}
	return out, nil
}

func (d *directory) Prune(ctx context.Context, userID, deviceID, token, reason string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pruned = append(d.pruned, userID+"/"+deviceID+" "+reason)
	return true, nil
}

func (d *directory) Pruned() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := append([]string(nil), d.pruned...)
	sort.Strings(out)
	return out
}

// observer counts what a Deliverer reports.
type observer struct {
	mu                 sync.Mutex
	sends              int
	sent, failed, dead int
	prunedCodes        []string
	tokensPerSend      []int
}

func (o *observer) FCMSend(d time.Duration, tokens int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sends++
	o.tokensPerSend = append(o.tokensPerSend, tokens)
}

func (o *observer) Delivered(sent, failed, pruned int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sent, o.failed, o.dead = o.sent+sent, o.failed+failed, o.dead+pruned
}

func (o *observer) Pruned(code string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.prunedCodes = append(o.prunedCodes, code)
}

func targets(user string, first, n int) []push.Target {
	out := make([]push.Target, n)
	for i := range out {
		out[i] = push.Target{DeviceID: fmt.Sprintf("%s-dev%d", user, i), Token: token(first + i)}
	}
	return out
}

func newDeliverer(t testing.TB, c *push.Client, dir push.Directory, obs push.Observer) *push.Deliverer {
	t.Helper()
	d, err := push.NewDeliverer(push.DelivererConfig{Client: c, Directory: dir, Observer: obs})
	if err != nil {
		t.Fatalf("NewDeliverer: %v", err)
	}
	return d
}

func TestDeliverManyOneFanOut(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	dir := &directory{targets: map[string][]push.Target{
		"ann": targets("ann", 0, 3),
		"bob": targets("bob", 3, 2),
		"cy":  nil, // no pushable device
	}}
	srv.SetTokenError(token(1), fcmtest.Unregistered)
	srv.SetTokenError(token(4), fcmtest.ThirdPartyAuthError)
	obs := &observer{}
	d := newDeliverer(t, newClient(t, srv, nil), dir, obs)

	reps, err := d.DeliverMany(context.Background(), []string{"ann", "nobody", "bob", "ann", "cy"}, dataMessage(), false)
	if err != nil {
		t.Fatalf("DeliverMany: %v", err)
	}
	type counts struct {
		user                                   string
		unknown                                bool
		devices, sent, failed, pruned, results int
	}
	want := []counts{
		{user: "ann", devices: 3, sent: 2, pruned: 1, results: 3},
		{user: "nobody", unknown: true},
		{user: "bob", devices: 2, sent: 1, failed: 1, results: 2},
		{user: "cy"},
	}
	if len(reps) != len(want) {
		t.Fatalf("got %d reports, want %d (one per distinct user)", len(reps), len(want))
	}
	for i, w := range want {
		r := reps[i]
		got := counts{r.UserID, errors.Is(r.Err, push.ErrUnknownUser), r.Devices, r.Sent, r.Failed, r.Pruned, len(r.Results)}
		if got != w {
			t.Errorf("report %d = %+v, want %+v", i, got, w)
		}
	}
	for _, r := range reps[0].Results {
		switch r.DeviceID {
		case "ann-dev1":
			if r.Code != "UNREGISTERED" || !r.Pruned || r.Class != push.ClassPrune || r.Attempts != 1 {
				t.Errorf("ann-dev1 = %+v, want pruned UNREGISTERED after 1 attempt", r)
			}
		default:
			if r.MessageID == "" || r.Code != "" {
				t.Errorf("%s = %+v, want a message ID", r.DeviceID, r)
			}
		}
	}
	if got := reps[2].Results[1]; got.Code != "THIRD_PARTY_AUTH_ERROR" || got.Pruned || got.Class != push.ClassReport {
		t.Errorf("bob-dev1 = %+v, want a reported THIRD_PARTY_AUTH_ERROR, not pruned", got)
	}
	if got, want := dir.Pruned(), []string{"ann/ann-dev1 FCM: UNREGISTERED"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("pruned %v, want %v", got, want)
	}
	// One SendToTokens call for everyone: the users' tokens go to FCM together.
	if obs.sends != 1 || obs.tokensPerSend[0] != 5 || obs.sent != 3 || obs.failed != 1 || obs.dead != 1 ||
		fmt.Sprint(obs.prunedCodes) != "[UNREGISTERED]" {
		t.Errorf("observer = %+v, want 1 send of 5 tokens: 3 sent, 1 failed, 1 pruned (UNREGISTERED)", obs)
	}
	if st := srv.Stats(); st.Requests != 5 {
		t.Errorf("FCM saw %d requests, want 5", st.Requests)
	}
}

func TestDeliverRefusesBeforeLookingUp(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	formatOnly, err := push.New(context.Background(), push.Config{})
	if err != nil {
		t.Fatal(err)
	}
	storeDown := errors.New("store down")
	tests := []struct {
		name    string
		client  *push.Client
		users   []string
		msg     *push.Message
		want    error
		lookups bool // whether the directory may have been asked
	}{
		{"payload", newClient(t, srv, nil), []string{"ann"}, &push.Message{Data: map[string]string{"from": "x"}}, push.ErrPayloadInvalid, false},
		{"empty message", newClient(t, srv, nil), []string{"ann"}, &push.Message{}, push.ErrPayloadInvalid, false},
		{"format only", formatOnly, []string{"ann"}, dataMessage(), push.ErrNotConfigured, false},
		{"unknown user", newClient(t, srv, nil), []string{"nobody"}, dataMessage(), push.ErrUnknownUser, true},
		{"store down", newClient(t, srv, nil), []string{"ann", "down"}, dataMessage(), storeDown, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := &directory{targets: map[string][]push.Target{"ann": targets("ann", 0, 2), "down": nil},
				fail: map[string]error{"down": storeDown}}
			d := newDeliverer(t, tt.client, dir, nil)
			var err error
			if len(tt.users) == 1 {
				_, err = d.Deliver(context.Background(), tt.users[0], tt.msg, false)
			} else {
				_, err = d.DeliverMany(context.Background(), tt.users, tt.msg, false)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if !tt.lookups && dir.lookups != 0 {
				t.Errorf("the directory was asked %d times, want 0", dir.lookups)
			}
		})
	}
	if st := srv.Stats(); st.Requests != 0 {
		t.Errorf("FCM saw %d requests, want none", st.Requests)
	}
}

func TestDeliverDryRunPrunesNothing(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	dir := &directory{targets: map[string][]push.Target{"ann": targets("ann", 0, 2)}}
	srv.SetTokenError(token(0), fcmtest.Unregistered)
	obs := &observer{}
	d := newDeliverer(t, newClient(t, srv, nil), dir, obs)
	rep, err := d.Deliver(context.Background(), "ann", dataMessage(), true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Devices != 2 || rep.Sent != 1 || rep.Failed != 1 || rep.Pruned != 0 {
		t.Errorf("dry run = %+v, want 2 devices: 1 sent, 1 failed, 0 pruned", rep)
	}
	if p := dir.Pruned(); len(p) != 0 {
		t.Errorf("a dry run pruned %v", p)
	}
	if obs.sent+obs.failed+obs.dead != 0 || obs.sends != 1 {
		t.Errorf("observer = %+v, want the FCM call timed and no outcomes counted", obs)
	}
	if st := srv.Stats(); st.Sent != 0 || st.DryRuns != 1 {
		t.Errorf("FCM stats %+v, want 1 dry run and nothing sent", st)
	}
}

func TestDeliverManyLimits(t *testing.T) {
	t.Parallel()
	d := newDeliverer(t, newClient(t, fcmtest.New(t), nil), &directory{}, nil)
	for _, n := range []int{0, push.MaxUsers + 1} {
		if _, err := d.DeliverMany(context.Background(), make([]string, n), dataMessage(), false); err == nil {
			t.Errorf("DeliverMany of %d users succeeded, want an error", n)
		}
	}
}

// BenchmarkDeliver delivers one message to a user with 1,000 devices through
// the double answering each request after 20ms, and reports messages per
// second: what one POST /v1/users/{id}/messages can push, the registry
// aside.
func BenchmarkDeliver(b *testing.B) {
	srv := fcmtest.New(b)
	srv.SetLatency(20 * time.Millisecond)
	srv.SetRecord(false)
	dir := &directory{targets: map[string][]push.Target{"ann": targets("ann", 0, 1000)}}
	d := newDeliverer(b, newClient(b, srv, nil), dir, nil)
	ctx := context.Background()
	msg := dataMessage()

	sent := 0
	start := time.Now()
	for b.Loop() {
		rep, err := d.Deliver(ctx, "ann", msg, false)
		if err != nil {
			b.Fatal(err)
		}
		if rep.Sent != 1000 {
			b.Fatalf("sent %d of 1000", rep.Sent)
		}
		sent += rep.Sent
	}
	b.ReportMetric(float64(sent)/time.Since(start).Seconds(), "msgs/s")
}
