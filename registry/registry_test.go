package registry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pushreg/pushreg/registry"
	"github.com/pushreg/pushreg/registry/mongotest"
)

func TestMain(m *testing.M) { mongotest.Main(m) }

// clock is a settable time source for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newStore(t *testing.T, cfg registry.Config) (*registry.Store, *mongotest.DB) {
	t.Helper()
	db := mongotest.New(t)
	s := registry.New(db.Database, cfg)
	ctx := context.Background()
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	// Indexes are created at every start: a second run must succeed too.
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatalf("second EnsureIndexes: %v", err)
	}
	// As pushreg does at start-up on the embedded SQLite store.
	if err := db.EnsureIDIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	return s, db
}

func TestBindCreatesThenTouches(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s, db := newStore(t, registry.Config{Now: clk.Now})
	ctx := context.Background()
	b := registry.Binding{UserID: "u1", DeviceID: "phone", FCMToken: "tok:A", SessionID: "s1", Verified: true}
	res, err := s.Bind(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || !res.TokenChanged {
		t.Errorf("first bind = %+v, want created and changed", res)
	}
	clk.Advance(time.Minute)
	before := db.Commands.Started()
	res, err = s.Bind(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if got := db.Commands.Started() - before; got != 1 {
		t.Errorf("re-binding the same token took %d round trips, want 1", got)
	}
	if res.Created || res.TokenChanged {
		t.Errorf("second bind = %+v, want nothing changed", res)
	}
	d, err := s.Get(ctx, "u1", "phone")
	if err != nil {
		t.Fatal(err)
	}
	if d.FCMToken != "tok:A" || d.TokenStatus != registry.TokenValid || !d.LastSeenAt.Equal(clk.Now()) {
		t.Errorf("device = %+v, want token tok:A valid, last seen now", d)
	}
}

func TestTokenMovesBetweenUsers(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, registry.Config{})
	ctx := context.Background()
	if _, err := s.Bind(ctx, registry.Binding{UserID: "alice", DeviceID: "d1", FCMToken: "shared", SessionID: "sa", Verified: true}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Bind(ctx, registry.Binding{UserID: "bob", DeviceID: "d1", FCMToken: "shared", SessionID: "sb", Verified: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.MovedFrom) != 1 || res.MovedFrom[0].UserID != "alice" {
		t.Errorf("MovedFrom = %+v, want alice's device", res.MovedFrom)
	}
	alice, err := s.Pushable(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(alice) != 0 {
		t.Errorf("alice still has pushable devices %+v after her token moved to bob", alice)
	}
	bob, _ := s.Pushable(ctx, "bob")
	if len(bob) != 1 || bob[0].FCMToken != "shared" {
		t.Errorf("bob's pushable devices = %+v, want the shared token", bob)
	}
	events, err := s.EventsBefore(ctx, "alice", time.Time{}, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) == 0 || events[0].Type != registry.EventTokenMoved {
		t.Errorf("alice's newest event = %+v, want token_moved", events)
	}
}

func TestDeviceLimitEvictsLeastRecentlySeen(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s, _ := newStore(t, registry.Config{Now: clk.Now, MaxDevicesPerUser: 3})
	ctx := context.Background()
	for i := range 4 {
		clk.Advance(time.Minute)
		res, err := s.Bind(ctx, registry.Binding{UserID: "u", DeviceID: fmt.Sprintf("d%d", i), FCMToken: fmt.Sprintf("t%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 && (len(res.Evicted) != 1 || res.Evicted[0].DeviceID != "d0") {
			t.Errorf("fourth bind evicted %+v, want d0", res.Evicted)
		}
	}
	if _, err := s.Get(ctx, "u", "d0"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Get(d0) error = %v, want ErrNotFound", err)
	}
}

func TestConcurrentBindsOfOneDeviceMakeOneRecord(t *testing.T) {
	t.Parallel()
	s, db := newStore(t, registry.Config{})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Bind(ctx, registry.Binding{UserID: "u", DeviceID: "same", FCMToken: fmt.Sprintf("tok%d", i%3), SessionID: "s"})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("bind: %v", err)
		}
	}
	n, err := db.Collection("devices").CountDocuments(ctx, map[string]any{"user_id": "u"})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d device records after 20 concurrent binds, want 1", n)
	}
}

// verdicts is a Revalidator answering from a table.
type verdicts map[string]registry.Verdict

func (v verdicts) Revalidate(_ context.Context, token string) (registry.Verdict, error) {
	return v[token], nil
}

func TestSweepMarksStaleDeletesExpiredAndRevalidates(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s, _ := newStore(t, registry.Config{Now: clk.Now, StaleAfter: 60 * 24 * time.Hour, ExpireAfter: 270 * 24 * time.Hour})
	ctx := context.Background()
	bind := func(device, token string, verified bool) {
		t.Helper()
		if _, err := s.Bind(ctx, registry.Binding{UserID: "u", DeviceID: device, FCMToken: token, Verified: verified}); err != nil {
			t.Fatal(err)
		}
	}
	bind("ancient", "tok-ancient", true)
	clk.Advance(220 * 24 * time.Hour)
	bind("old", "tok-old", true)
	clk.Advance(61 * 24 * time.Hour)
	bind("fresh", "tok-fresh", true)
	bind("unsure-good", "tok-good", false)
	bind("unsure-bad", "tok-bad", false)

	res, err := s.Sweep(ctx, verdicts{"tok-good": registry.VerdictValid, "tok-bad": registry.VerdictInvalid}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The ancient device's bind event is 281 days old, past the default
	// 90-day event retention; the events this sweep records are new.
	want := registry.SweepResult{Staled: 2, Expired: 1, Verified: 1, Invalidated: 1, EventsDeleted: 1}
	if res != want {
		t.Errorf("Sweep = %+v, want %+v", res, want)
	}
	status := func(device string) registry.TokenStatus {
		d, err := s.Get(ctx, "u", device)
		if err != nil {
			return "gone"
		}
		return d.TokenStatus
	}
	for device, want := range map[string]registry.TokenStatus{
		"ancient": "gone", "old": registry.TokenStale, "fresh": registry.TokenValid,
		"unsure-good": registry.TokenValid, "unsure-bad": registry.TokenInvalid,
	} {
		if got := status(device); got != want {
			t.Errorf("%s: status %s, want %s", device, got, want)
		}
	}
	pushable, _ := s.Pushable(ctx, "u")
	if len(pushable) != 2 {
		t.Errorf("%d pushable devices, want 2 (fresh, unsure-good)", len(pushable))
	}
	// A stale token the app confirms again is pushable again: valid with
	// Firebase's word, unverified without it (an outage, format-only mode).
	bind("old", "tok-old", false)
	if got := status("old"); got != registry.TokenUnverified {
		t.Errorf("stale token re-confirmed without Firebase: status %s, want unverified", got)
	}
	bind("old", "tok-old", true)
	if got := status("old"); got != registry.TokenValid {
		t.Errorf("re-confirmed stale token: status %s, want valid", got)
	}
}

// A prune racing the app's touch of the same device must not be undone
// (on FerretDB every update is a read then a write of the whole document).
func TestPruneIsNotLostToAConcurrentTouch(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, registry.Config{})
	ctx := context.Background()
	for round := range 50 {
		dev, tok := fmt.Sprintf("d%d", round), fmt.Sprintf("tok-%d", round)
		b := registry.Binding{UserID: "u", DeviceID: dev, FCMToken: tok, Verified: true, SessionID: "s"}
		if _, err := s.Bind(ctx, b); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var pruned bool
		wg.Add(2)
		go func() { defer wg.Done(); s.Touch(ctx, b) }()
		go func() { defer wg.Done(); pruned, _ = s.MarkInvalid(ctx, "u", dev, tok, "UNREGISTERED") }()
		wg.Wait()
		if d, _ := s.Get(ctx, "u", dev); pruned && d.TokenStatus.Pushable() {
			t.Fatalf("round %d: the prune was undone by the concurrent touch (status %s)", round, d.TokenStatus)
		}
	}
}

// unreachable is a Revalidator for a Firebase that does not answer.
type unreachable struct{ asked int }

func (u *unreachable) Revalidate(context.Context, string) (registry.Verdict, error) {
	u.asked++
	return registry.VerdictUnknown, errors.New("FCM unavailable")
}

func TestSweepStopsAskingAnUnreachableFirebase(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, registry.Config{})
	ctx := context.Background()
	for i := range 5 {
		if _, err := s.Bind(ctx, registry.Binding{UserID: "u", DeviceID: fmt.Sprintf("d%d", i), FCMToken: fmt.Sprintf("t%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	v := &unreachable{}
	if _, err := s.Sweep(ctx, v, nil); err != nil {
		t.Fatal(err)
	}
	if v.asked != 1 {
		t.Errorf("asked an unreachable Firebase %d times in one sweep, want 1", v.asked)
	}
}
