package registry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/pushreg/pushreg/registry"
	"github.com/pushreg/pushreg/registry/mongodb"
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

// newStore returns a store on a fresh database, writing as pushreg would
// to the test server (mongotest.Writes).
func newStore(t *testing.T, cfg registry.Config) (*registry.Store, *mongotest.DB) {
	t.Helper()
	cfg.Writes = mongotest.Writes()
	return newStoreWriting(t, cfg)
}

// writeModes are the two ways a store writes: alone under its locks (the
// embedded store), or conditionally on the version it read (MongoDB
// shared by instances). FerretDB executes both, so each test of the
// device registry runs both against the same server.
var writeModes = []struct {
	name   string
	writes mongodb.Writes
}{
	{"exclusive", mongodb.Writes{Exclusive: true}},
	{"shared", mongodb.Writes{Exclusive: false}},
}

// eachMode runs test once per write mode, in parallel subtests.
func eachMode(t *testing.T, test func(t *testing.T, w mongodb.Writes)) {
	for _, m := range writeModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			test(t, m.writes)
		})
	}
}

// newStoreWriting is newStore with cfg.Writes as given.
func newStoreWriting(t *testing.T, cfg registry.Config) (*registry.Store, *mongotest.DB) {
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
	eachMode(t, func(t *testing.T, w mongodb.Writes) {
		clk := newClock()
		s, db := newStoreWriting(t, registry.Config{Now: clk.Now, Writes: w})
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
		b.SessionID = "s2"
		res, err = s.Bind(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		// In place on a shared store; a read and a write by _id alone on
		// an exclusive one.
		want := int64(1)
		if w.Exclusive {
			want = 2
		}
		if got := db.Commands.Started() - before; got != want {
			t.Errorf("re-binding the same token took %d round trips, want %d", got, want)
		}
		if res.Created || res.TokenChanged {
			t.Errorf("second bind = %+v, want nothing changed", res)
		}
		d, err := s.Get(ctx, "u1", "phone")
		if err != nil {
			t.Fatal(err)
		}
		if d.FCMToken != "tok:A" || d.TokenStatus != registry.TokenValid || !d.LastSeenAt.Equal(clk.Now()) || d.SessionID != "s2" {
			t.Errorf("device = %+v, want token tok:A valid, last seen now, session s2", d)
		}
		if _, err := s.Get(ctx, "u1", "tablet"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("Get(unknown device) error = %v, want ErrNotFound", err)
		}
		if _, err := s.Get(ctx, "nobody", "phone"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("Get(unknown user) error = %v, want ErrNotFound", err)
		}
	})
}

// holders returns the devices, among the users', that hold the token.
func holders(t *testing.T, s *registry.Store, token string, users ...string) []string {
	t.Helper()
	var out []string
	for _, u := range users {
		devs, _, err := s.List(context.Background(), registry.DeviceQuery{UserID: u, Limit: 200})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range devs {
			if d.FCMToken == token {
				out = append(out, u+"/"+d.DeviceID)
			}
		}
	}
	return out
}

func TestTokenMoves(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		from, to [2]string // user, device
	}{
		{"between users", [2]string{"alice", "tablet"}, [2]string{"bob", "tablet"}},
		{"between devices of one user", [2]string{"alice", "old-phone"}, [2]string{"alice", "new-phone"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eachMode(t, func(t *testing.T, w mongodb.Writes) {
				s, _ := newStoreWriting(t, registry.Config{Writes: w})
				ctx := context.Background()
				bind := func(user, device, session string) registry.BindResult {
					t.Helper()
					res, err := s.Bind(ctx, registry.Binding{UserID: user, DeviceID: device, FCMToken: "shared",
						SessionID: session, Verified: true, Actor: "user:" + user})
					if err != nil {
						t.Fatal(err)
					}
					return res
				}
				bind(tc.from[0], tc.from[1], "s-from")
				res := bind(tc.to[0], tc.to[1], "s-to")
				if len(res.MovedFrom) != 1 || res.MovedFrom[0].UserID != tc.from[0] || res.MovedFrom[0].DeviceID != tc.from[1] {
					t.Errorf("MovedFrom = %+v, want %s's %s", res.MovedFrom, tc.from[0], tc.from[1])
				}
				if !res.TokenChanged {
					t.Errorf("bind = %+v, want the token changed", res)
				}
				if got, want := holders(t, s, "shared", "alice", "bob"), []string{tc.to[0] + "/" + tc.to[1]}; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("holders = %v, want %v", got, want)
				}
				earlier, err := s.Get(ctx, tc.from[0], tc.from[1])
				if err != nil {
					t.Fatal(err)
				}
				if earlier.TokenStatus != registry.TokenUnbound || earlier.FCMToken != "" {
					t.Errorf("earlier device = %+v, want unbound, no token", earlier)
				}
				pushable, err := s.PushableOf(ctx, []string{"alice", "bob"})
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, devs := range pushable {
					for _, d := range devs {
						n++
						if d.UserID != tc.to[0] || d.DeviceID != tc.to[1] {
							t.Errorf("pushable %s/%s, want only %s/%s", d.UserID, d.DeviceID, tc.to[0], tc.to[1])
						}
					}
				}
				if n != 1 {
					t.Errorf("%d pushable devices, want 1", n)
				}
				events, err := s.EventsBefore(ctx, tc.from[0], time.Time{}, "", 10)
				if err != nil {
					t.Fatal(err)
				}
				moved := 0
				for _, e := range events {
					if e.Type == registry.EventTokenMoved {
						moved++
						if e.DeviceID != tc.from[1] || e.SessionID != "s-from" {
							t.Errorf("token_moved = %+v, want device %s, session s-from", e, tc.from[1])
						}
					}
				}
				if moved != 1 {
					t.Errorf("%d token_moved events on %s's trail, want 1: %+v", moved, tc.from[0], events)
				}
				// And back: the holder record follows the token.
				res = bind(tc.from[0], tc.from[1], "s-back")
				if len(res.MovedFrom) != 1 || res.MovedFrom[0].DeviceID != tc.to[1] {
					t.Errorf("moving back: MovedFrom = %+v, want %s", res.MovedFrom, tc.to[1])
				}
				if got, want := holders(t, s, "shared", "alice", "bob"), []string{tc.from[0] + "/" + tc.from[1]}; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("holders after moving back = %v, want %v", got, want)
				}
			})
		})
	}
}

func TestDeviceLimitEvictsLeastRecentlySeen(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, w mongodb.Writes) {
		clk := newClock()
		s, _ := newStoreWriting(t, registry.Config{Now: clk.Now, MaxDevicesPerUser: 3, Writes: w})
		ctx := context.Background()
		bind := func(b registry.Binding) registry.BindResult {
			t.Helper()
			clk.Advance(time.Minute)
			res, err := s.Bind(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		for i := range 3 {
			bind(registry.Binding{UserID: "u", DeviceID: fmt.Sprintf("d%d", i), FCMToken: fmt.Sprintf("t%d", i)})
		}
		// d0 is seen again: d1 is now the least recently seen.
		bind(registry.Binding{UserID: "u", DeviceID: "d0", FCMToken: "t0"})
		res := bind(registry.Binding{UserID: "u", DeviceID: "d3", FCMToken: "t3"})
		if len(res.Evicted) != 1 || res.Evicted[0].DeviceID != "d1" {
			t.Errorf("fourth device evicted %+v, want d1", res.Evicted)
		}
		if _, err := s.Get(ctx, "u", "d1"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("Get(d1) error = %v, want ErrNotFound", err)
		}
		// A plan's own limit applies instead of the default.
		res = bind(registry.Binding{UserID: "u", DeviceID: "d4", FCMToken: "t4", MaxDevices: 5})
		if len(res.Evicted) != 0 {
			t.Errorf("under a plan of 5, evicted %+v, want none", res.Evicted)
		}
		devs, _, err := s.List(ctx, registry.DeviceQuery{UserID: "u", Limit: 10})
		if err != nil || len(devs) != 4 {
			t.Errorf("List = %d devices, %v; want 4", len(devs), err)
		}
		// The evicted device's token is free: binding it moves nothing.
		res = bind(registry.Binding{UserID: "v", DeviceID: "x", FCMToken: "t1"})
		if len(res.MovedFrom) != 0 {
			t.Errorf("binding an evicted device's token moved it from %+v", res.MovedFrom)
		}
		events, _ := s.EventsBefore(ctx, "u", time.Time{}, "", 50)
		evicted := 0
		for _, e := range events {
			if e.Type == registry.EventDeviceEvicted && e.DeviceID == "d1" {
				evicted++
			}
		}
		if evicted != 1 {
			t.Errorf("%d device_evicted events for d1, want 1", evicted)
		}
	})
}

func TestConcurrentBindsOfOneDeviceMakeOneRecord(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, w mongodb.Writes) {
		s, db := newStoreWriting(t, registry.Config{Writes: w})
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
		devs, _, err := s.List(ctx, registry.DeviceQuery{UserID: "u", Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) != 1 {
			t.Errorf("%d device records after 20 concurrent binds, want 1", len(devs))
		}
		n, err := db.Collection("user_devices").CountDocuments(ctx, bson.M{})
		if err != nil || n != 1 {
			t.Errorf("%d user documents (%v), want 1", n, err)
		}
	})
}

// Binds of one token from different devices at once, in one process and
// from two (two stores on one database, each with its own locks, as two
// pushreg instances on MongoDB): exactly one device holds it afterwards.
func TestConcurrentBindsOfOneTokenLeaveOneHolder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		instances int
		writes    mongodb.Writes
	}{
		{"one exclusive process", 1, mongodb.Writes{Exclusive: true}},
		{"one shared process", 1, mongodb.Writes{}},
		{"two instances", 2, mongodb.Writes{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.instances > 1 && mongotest.Writes().Exclusive {
				// FerretDB applies a conditional update as a read then a
				// write, so two processes' writes are not atomic there: only
				// MongoDB (PUSHREG_TEST_MONGODB_URI) can show this holds.
				t.Skip("two writers need a MongoDB server: set " + mongotest.EnvURI)
			}
			s0, db := newStoreWriting(t, registry.Config{Writes: tc.writes})
			stores := []*registry.Store{s0}
			for range tc.instances - 1 {
				stores = append(stores, registry.New(db.Database, registry.Config{Writes: tc.writes}))
			}
			ctx := context.Background()
			users := []string{"ann", "ben", "cat"}
			for round := range 5 {
				token := fmt.Sprintf("contested-%d", round)
				var wg sync.WaitGroup
				for i := range 12 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						b := registry.Binding{UserID: users[i%len(users)], DeviceID: fmt.Sprintf("dev%d", i%4), FCMToken: token, SessionID: "s"}
						if _, err := stores[i%len(stores)].Bind(ctx, b); err != nil {
							t.Errorf("bind: %v", err)
						}
					}()
				}
				wg.Wait()
				if got := holders(t, s0, token, users...); len(got) != 1 {
					t.Errorf("round %d: %s held by %v, want exactly one device", round, token, got)
				}
			}
		})
	}
}

func TestUnbindSessionLeavesADeviceReboundByAnother(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, w mongodb.Writes) {
		s, _ := newStoreWriting(t, registry.Config{Writes: w})
		ctx := context.Background()
		bind := func(device, token, session string) {
			t.Helper()
			if _, err := s.Bind(ctx, registry.Binding{UserID: "u", DeviceID: device, FCMToken: token, SessionID: session, Verified: true}); err != nil {
				t.Fatal(err)
			}
		}
		bind("phone", "tok-phone", "s1")
		bind("tablet", "tok-tablet", "s1")
		bind("laptop", "tok-laptop", "s1")
		bind("phone", "tok-phone-2", "s2") // a new login on the phone, new token
		bind("laptop", "tok-laptop", "s3") // a new login on the laptop, same token
		if err := s.UnbindSession(ctx, "u", "s1", "user:u"); err != nil {
			t.Fatal(err)
		}
		for device, want := range map[string]registry.TokenStatus{
			"phone": registry.TokenValid, "laptop": registry.TokenValid, "tablet": registry.TokenUnbound,
		} {
			d, err := s.Get(ctx, "u", device)
			if err != nil {
				t.Fatal(err)
			}
			if d.TokenStatus != want {
				t.Errorf("%s: status %s after s1 ended, want %s", device, d.TokenStatus, want)
			}
		}
		// Unbinding again changes nothing and records nothing more.
		if err := s.UnbindSession(ctx, "u", "s1", "user:u"); err != nil {
			t.Fatal(err)
		}
		events, _ := s.EventsBefore(ctx, "u", time.Time{}, "", 50)
		unbound := 0
		for _, e := range events {
			if e.Type == registry.EventTokenUnbound {
				unbound++
			}
		}
		if unbound != 1 {
			t.Errorf("%d token_unbound events, want 1 (the tablet)", unbound)
		}
		// The tablet's token is free again.
		res, err := s.Bind(ctx, registry.Binding{UserID: "v", DeviceID: "x", FCMToken: "tok-tablet"})
		if err != nil || len(res.MovedFrom) != 0 {
			t.Errorf("binding the unbound tablet's token: MovedFrom %+v, %v; want none", res.MovedFrom, err)
		}
	})
}

func TestDeleteAndMarkInvalid(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, w mongodb.Writes) {
		s, _ := newStoreWriting(t, registry.Config{Writes: w})
		ctx := context.Background()
		for _, d := range []string{"a", "b"} {
			if _, err := s.Bind(ctx, registry.Binding{UserID: "u", DeviceID: d, FCMToken: "tok-" + d, SessionID: "s-" + d, Verified: true}); err != nil {
				t.Fatal(err)
			}
		}
		if ok, err := s.MarkInvalid(ctx, "u", "a", "tok-other", "UNREGISTERED"); err != nil || ok {
			t.Errorf("MarkInvalid with a token the device does not hold = %v, %v; want false", ok, err)
		}
		if ok, err := s.MarkInvalid(ctx, "u", "a", "tok-a", "UNREGISTERED"); err != nil || !ok {
			t.Errorf("MarkInvalid = %v, %v; want true", ok, err)
		}
		if d, _ := s.Get(ctx, "u", "a"); d.TokenStatus != registry.TokenInvalid || d.FCMToken != "" {
			t.Errorf("pruned device = %+v, want invalid without token", d)
		}
		gone, err := s.Delete(ctx, "u", "b", "admin:x")
		if err != nil || gone.SessionID != "s-b" {
			t.Errorf("Delete = %+v, %v; want device b of session s-b", gone, err)
		}
		if _, err := s.Delete(ctx, "u", "b", "admin:x"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("second Delete error = %v, want ErrNotFound", err)
		}
		if p, _ := s.Pushable(ctx, "u"); len(p) != 0 {
			t.Errorf("pushable after prune and delete = %+v, want none", p)
		}
		for _, tok := range []string{"tok-a", "tok-b"} {
			res, err := s.Bind(ctx, registry.Binding{UserID: "v", DeviceID: tok, FCMToken: tok})
			if err != nil || len(res.MovedFrom) != 0 {
				t.Errorf("binding %s again: MovedFrom %+v, %v; want none", tok, res.MovedFrom, err)
			}
		}
	})
}

// verdicts is a Revalidator answering from a table.
type verdicts map[string]registry.Verdict

func (v verdicts) Revalidate(_ context.Context, token string) (registry.Verdict, error) {
	return v[token], nil
}

func TestSweepMarksStaleDeletesExpiredAndRevalidates(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, w mongodb.Writes) {
		clk := newClock()
		s, _ := newStoreWriting(t, registry.Config{Now: clk.Now, StaleAfter: 60 * 24 * time.Hour, ExpireAfter: 270 * 24 * time.Hour, Writes: w})
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
		// Nothing left to do: a second sweep changes nothing.
		if res, err := s.Sweep(ctx, verdicts{}, nil); err != nil || res != (registry.SweepResult{}) {
			t.Errorf("second Sweep = %+v, %v; want nothing done", res, err)
		}
		// A stale token the app confirms again is pushable again: valid with
		// Firebase's word, unverified without it (an outage, format-only mode).
		bind("old", "tok-old", false)
		if got := status("old"); got != registry.TokenUnverified {
			t.Errorf("stale token re-confirmed without Firebase: status %s, want unverified", got)
		}
		// ... and the sweeper finds it to ask about again.
		if res, err := s.Sweep(ctx, verdicts{"tok-old": registry.VerdictValid}, nil); err != nil || res.Verified != 1 {
			t.Errorf("Sweep after the stale token came back = %+v, %v; want it verified", res, err)
		}
		clk.Advance(61 * 24 * time.Hour)
		if res, err := s.Sweep(ctx, nil, nil); err != nil || res.Staled != 3 {
			t.Errorf("Sweep 61 days later = %+v, %v; want 3 staled", res, err)
		}
		bind("old", "tok-old", true)
		if got := status("old"); got != registry.TokenValid {
			t.Errorf("re-confirmed stale token: status %s, want valid", got)
		}
	})
}

// A prune racing the app's touch of the same device must not be undone
// (on FerretDB every update is a read then a write of the whole document).
func TestPruneIsNotLostToAConcurrentTouch(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, w mongodb.Writes) {
		s, _ := newStoreWriting(t, registry.Config{Writes: w})
		ctx := context.Background()
		for round := range 30 {
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
	})
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
		if _, err := s.Bind(ctx, registry.Binding{UserID: fmt.Sprintf("u%d", i%2), DeviceID: fmt.Sprintf("d%d", i), FCMToken: fmt.Sprintf("t%d", i)}); err != nil {
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

// BindMany writes new users' devices in bulk and sends the rest through
// Bind: a user with devices already, a token another device holds (it
// moves), a token named twice in one batch (the later binding wins).
func TestBindManyMatchesBind(t *testing.T) {
	eachMode(t, func(t *testing.T, w mongodb.Writes) {
		s, _ := newStoreWriting(t, registry.Config{Writes: w})
		ctx := context.Background()
		if _, err := s.Bind(ctx, registry.Binding{UserID: "old", DeviceID: "tablet", FCMToken: "held", SessionID: "s0"}); err != nil {
			t.Fatal(err)
		}
		res, err := s.BindMany(ctx, []registry.Binding{
			{UserID: "new1", DeviceID: "phone", FCMToken: "t1"},
			{UserID: "new2", DeviceID: "phone", FCMToken: "t2", Verified: true},
			{UserID: "old", DeviceID: "phone", FCMToken: "t3"},
			{UserID: "new3", DeviceID: "phone", FCMToken: "held"},
			{UserID: "new4", DeviceID: "a", FCMToken: "twice"},
			{UserID: "new5", DeviceID: "b", FCMToken: "twice"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 6 || !res[0].Created || len(res[3].MovedFrom) != 1 || res[3].MovedFrom[0].UserID != "old" {
			t.Errorf("results = %+v, want six, the fourth moving the token from old", res)
		}
		for token, want := range map[string]string{"t1": "new1/phone", "t2": "new2/phone", "t3": "old/phone", "held": "new3/phone", "twice": "new5/b"} {
			if got := holders(t, s, token, "new1", "new2", "new3", "new4", "new5", "old"); len(got) != 1 || got[0] != want {
				t.Errorf("%s held by %v, want %s only", token, got, want)
			}
		}
		if d, err := s.Get(ctx, "new2", "phone"); err != nil || d.TokenStatus != registry.TokenValid {
			t.Errorf("new2/phone = %+v, %v; want valid", d, err)
		}
		if d, err := s.Get(ctx, "old", "tablet"); err != nil || d.TokenStatus != registry.TokenUnbound {
			t.Errorf("old/tablet = %+v, %v; want unbound (its token moved)", d, err)
		}
	})
}
