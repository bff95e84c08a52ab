package registry_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/pushreg/pushreg/registry"
)

// outcomes lists the outcomes of the user's events, oldest first.
func outcomes(t *testing.T, s *registry.Store, userID string) []string {
	t.Helper()
	events, err := s.EventsBefore(context.Background(), userID, time.Time{}, "", 10_000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range events {
		out = append(out, e.Outcome)
	}
	slices.Reverse(out)
	return out
}

func TestSweepDeletesEventsPastRetention(t *testing.T) {
	t.Parallel()
	clk := newClock()
	const retention = 90 * 24 * time.Hour
	s, _ := newStore(t, registry.Config{Now: clk.Now, EventRetention: retention})
	ctx := context.Background()
	cutoff := clk.Now().Add(-retention)
	for _, e := range []struct {
		outcome string
		at      time.Time
	}{
		{"a year old", clk.Now().Add(-365 * 24 * time.Hour)},
		{"just past retention", cutoff.Add(-time.Millisecond)},
		{"exactly retention old", cutoff},
		{"just inside retention", cutoff.Add(time.Second)},
		{"today", clk.Now()},
	} {
		if err := s.Record(ctx, registry.Event{UserID: "u", Type: registry.EventRefresh, Outcome: e.outcome, At: e.at}); err != nil {
			t.Fatal(err)
		}
	}

	res, err := s.Sweep(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.EventsDeleted != 2 {
		t.Errorf("EventsDeleted = %d, want 2", res.EventsDeleted)
	}
	want := []string{"exactly retention old", "just inside retention", "today"}
	if got := outcomes(t, s, "u"); !slices.Equal(got, want) {
		t.Errorf("events left %q, want %q", got, want)
	}

	// A day later the two at the edge have aged out too.
	clk.Advance(24 * time.Hour)
	if res, err = s.Sweep(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	if res.EventsDeleted != 2 {
		t.Errorf("a day later: EventsDeleted = %d, want 2", res.EventsDeleted)
	}
	if got, want := outcomes(t, s, "u"), []string{"today"}; !slices.Equal(got, want) {
		t.Errorf("a day later: events left %q, want %q", got, want)
	}
}

// One sweep deletes at most 1,000 events; the next continues.
func TestSweepDeletesOldEventsInBoundedBatches(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s, db := newStore(t, registry.Config{Now: clk.Now, EventRetention: 24 * time.Hour})
	ctx := context.Background()
	const old = 1003
	docs := make([]any, old)
	for i := range docs {
		docs[i] = bson.M{"_id": bson.NewObjectID(), "user_id": "u", "type": string(registry.EventRefresh),
			"outcome": "old", "at": clk.Now().Add(-48 * time.Hour)}
	}
	if _, err := db.Collection("events").InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, registry.Event{UserID: "u", Type: registry.EventRefresh, Outcome: "new"}); err != nil {
		t.Fatal(err)
	}
	count := func(outcome string) int64 {
		t.Helper()
		n, err := db.Collection("events").CountDocuments(ctx, bson.M{"outcome": outcome})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	for i, want := range []int{1000, 3, 0} {
		res, err := s.Sweep(ctx, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.EventsDeleted != want {
			t.Errorf("sweep %d: EventsDeleted = %d, want %d", i+1, res.EventsDeleted, want)
		}
	}
	if n := count("old"); n != 0 {
		t.Errorf("%d old events left after three sweeps, want 0", n)
	}
	if n := count("new"); n != 1 {
		t.Errorf("%d new events left, want 1", n)
	}
}

// endedSessions records what the sweeper asks of auth's sessions.
type endedSessions struct {
	before []time.Time
	limits []int
	n      int
}

func (e *endedSessions) DeleteEndedSessions(_ context.Context, endedBefore time.Time, limit int) (int, error) {
	e.before = append(e.before, endedBefore)
	e.limits = append(e.limits, limit)
	return e.n, nil
}

func TestSweepAsksForSessionsEndedBeforeRetention(t *testing.T) {
	t.Parallel()
	clk := newClock()
	const retention = 30 * 24 * time.Hour
	s, _ := newStore(t, registry.Config{Now: clk.Now, SessionRetention: retention})
	ended := &endedSessions{n: 7}
	res, err := s.Sweep(context.Background(), nil, ended)
	if err != nil {
		t.Fatal(err)
	}
	if res.SessionsDeleted != 7 {
		t.Errorf("SessionsDeleted = %d, want 7 (what auth deleted)", res.SessionsDeleted)
	}
	want := clk.Now().Add(-retention)
	if len(ended.before) != 1 || !ended.before[0].Equal(want) || ended.limits[0] != 1000 {
		t.Errorf("asked to delete sessions ended before %v, at most %v; want once, before %v, at most 1000",
			ended.before, ended.limits, want)
	}
}

// counting is a Revalidator that cannot judge any token (format-only
// mode) and counts what it was asked.
type counting struct{ asked int }

func (c *counting) Revalidate(context.Context, string) (registry.Verdict, error) {
	c.asked++
	return registry.VerdictUnknown, nil
}

// One sweep handles at most a batch of users' devices of each kind (1,000;
// 10 here, as each user is a read and a write); the next continues. Re-validation resumes after the last user it reached, so
// tokens Firebase cannot judge do not hold up the others.
func TestSweepDevicesInBoundedBatches(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s, _ := newStore(t, registry.Config{Now: clk.Now, StaleAfter: 24 * time.Hour, ExpireAfter: 48 * time.Hour})
	s.SetSweepBatch(10)
	ctx := context.Background()
	const users = 13
	var devices []registry.Device
	for u := range users {
		user := fmt.Sprintf("user-%04d", u)
		devices = append(devices,
			registry.Device{UserID: user, DeviceID: "old", FCMToken: "tok-old-" + user, TokenStatus: registry.TokenValid,
				LastSeenAt: clk.Now().Add(-36 * time.Hour)},
			registry.Device{UserID: user, DeviceID: "unsure", FCMToken: "tok-unsure-" + user, TokenStatus: registry.TokenUnverified,
				LastSeenAt: clk.Now()})
	}
	if err := s.Seed(ctx, devices); err != nil {
		t.Fatal(err)
	}
	v := &counting{}
	for i, want := range []struct{ staled, asked int }{{10, 10}, {3, 3}, {0, 10}} {
		v.asked = 0
		res, err := s.Sweep(ctx, v, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Staled != want.staled || v.asked != want.asked {
			t.Errorf("sweep %d: staled %d, asked about %d tokens; want %d and %d", i+1, res.Staled, v.asked, want.staled, want.asked)
		}
	}
	clk.Advance(24 * time.Hour)
	for i, want := range []int{10, 3, 0} {
		res, err := s.Sweep(ctx, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Expired != want {
			t.Errorf("expiry sweep %d: expired %d, want %d", i+1, res.Expired, want)
		}
	}
	if d, err := s.Get(ctx, "user-0012", "unsure"); err != nil || d.TokenStatus != registry.TokenUnverified {
		t.Errorf("the unexpired device = %+v, %v; want it kept, unverified", d, err)
	}
	if _, err := s.Get(ctx, "user-0012", "old"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Get(expired device) error = %v, want ErrNotFound", err)
	}
}
