package registry_test

import (
	"context"
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
