package registry_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry"
	"github.com/pushreg/pushreg/registry/mongodb"
	"github.com/pushreg/pushreg/registry/mongotest"
)

func TestListIsStableUnderInserts(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, w mongodb.Writes) {
		clk := newClock() // never advanced: every device ties on last_seen_at
		s, _ := newStoreWriting(t, registry.Config{Now: clk.Now, Writes: w})
		ctx := context.Background()
		bind := func(user, device string) {
			t.Helper()
			if _, err := s.Bind(ctx, registry.Binding{UserID: user, DeviceID: device, FCMToken: user + ":" + device}); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 7 {
			bind("u", fmt.Sprintf("d%d", i))
			bind("other", fmt.Sprintf("d%d", i))
		}
		seen := map[string]int{}
		cursor := ""
		for page := 0; ; page++ {
			devs, next, err := s.List(ctx, registry.DeviceQuery{UserID: "u", Cursor: cursor, Limit: 3})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range devs {
				if d.UserID != "u" {
					t.Errorf("listed %s's device %s", d.UserID, d.DeviceID)
				}
				seen[d.DeviceID]++
			}
			if next == "" {
				break
			}
			cursor = next
			bind("u", fmt.Sprintf("a%d", page)) // sorts after every d*: listed later
			bind("u", fmt.Sprintf("z%d", page)) // sorts before the cursor: never listed
		}
		for i := range 7 {
			if d := fmt.Sprintf("d%d", i); seen[d] != 1 {
				t.Errorf("%s listed %d times, want once", d, seen[d])
			}
		}
		for d, n := range seen {
			if n != 1 || strings.HasPrefix(d, "z") {
				t.Errorf("%s listed %d times", d, n)
			}
		}
		if _, _, err := s.List(ctx, registry.DeviceQuery{UserID: "u", Cursor: "!!", Limit: 3}); err == nil {
			t.Error("a malformed cursor was accepted")
		}
	})
}

// Pages follow the order most recently seen first, with filters, across
// devices seen at different times and devices added between pages.
func TestListPagesInSeenOrder(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, w mongodb.Writes) {
		clk := newClock()
		s, _ := newStoreWriting(t, registry.Config{Now: clk.Now, Writes: w})
		ctx := context.Background()
		platforms := []string{"android", "ios"}
		for n, tc := range []struct {
			q    registry.DeviceQuery
			want string
		}{
			{registry.DeviceQuery{Limit: 4}, "d8 d7 d6 d5 | d4 d3 d2 d1 | d0"},
			{registry.DeviceQuery{Limit: 2, Platform: "ios"}, "d7 d5 | d3 d1"},
			{registry.DeviceQuery{Limit: 2, Status: registry.TokenUnverified}, "d6 d3 | d0"},
			{registry.DeviceQuery{Limit: 9}, "d8 d7 d6 d5 d4 d3 d2 d1 d0"},
		} {
			user := fmt.Sprintf("u%d", n)
			for i := range 9 {
				clk.Advance(time.Second)
				if _, err := s.Bind(ctx, registry.Binding{UserID: user, DeviceID: fmt.Sprintf("d%d", i), FCMToken: fmt.Sprintf("%s:t%d", user, i),
					Platform: platforms[i%2], Verified: i%3 != 0}); err != nil {
					t.Fatal(err)
				}
			}
			tc.q.UserID = user
			var pages []string
			for page := 0; ; page++ {
				devs, next, err := s.List(ctx, tc.q)
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, d := range devs {
					ids = append(ids, d.DeviceID)
				}
				pages = append(pages, strings.Join(ids, " "))
				if next == "" {
					break
				}
				tc.q.Cursor = next
				// A device added between pages is seen last: it sorts
				// before the cursor, and no later page lists it.
				clk.Advance(time.Second)
				if _, err := s.Bind(ctx, registry.Binding{UserID: user, DeviceID: fmt.Sprintf("n%d", page), FCMToken: fmt.Sprintf("%s:n%d", user, page),
					Platform: "ios"}); err != nil {
					t.Fatal(err)
				}
			}
			if got := strings.Join(pages, " | "); got != tc.want {
				t.Errorf("pages of %+v = %q, want %q", tc.q, got, tc.want)
			}
		}
	})
}

// shapeLog records the filters of the commands a client sends to the
// registry's collections.
type shapeLog struct {
	mu       sync.Mutex
	commands []string // name, then each filter, as extended JSON
	filters  []bson.Raw
}

func (l *shapeLog) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		l.mu.Lock()
		defer l.mu.Unlock()
		cmd := e.Command
		var filters []bson.Raw
		switch e.CommandName {
		case "find", "count":
			filters = append(filters, field(cmd, "filter", "query"))
		case "findAndModify":
			filters = append(filters, field(cmd, "query"))
		case "update", "delete":
			list := "updates"
			if e.CommandName == "delete" {
				list = "deletes"
			}
			arr, _ := cmd.Lookup(list).ArrayOK()
			vals, _ := arr.Values()
			for _, v := range vals {
				if doc, ok := v.DocumentOK(); ok {
					filters = append(filters, field(doc, "q"))
				}
			}
		case "aggregate", "distinct", "getMore":
			filters = append(filters, nil) // never expected on a hot path
		}
		l.commands = append(l.commands, e.CommandName)
		for _, f := range filters {
			l.filters = append(l.filters, append(bson.Raw(nil), f...))
		}
	}}
}

func field(doc bson.Raw, names ...string) bson.Raw {
	for _, n := range names {
		if d, ok := doc.Lookup(n).DocumentOK(); ok {
			return d
		}
	}
	return bson.Raw{}
}

// take returns and forgets what was recorded.
func (l *shapeLog) take() (commands []string, filters []bson.Raw) {
	l.mu.Lock()
	defer l.mu.Unlock()
	commands, filters = l.commands, l.filters
	l.commands, l.filters = nil, nil
	return commands, filters
}

// TestHotPathsFilterByIDAlone checks, with the driver's command monitor,
// that every command a request's registry call sends on the exclusive
// store filters by exactly {_id: <string>}: the one filter FerretDB v1's
// SQLite backend pushes down to an index, so each costs the same however
// many users and devices the store holds. It also counts the commands.
func TestHotPathsFilterByIDAlone(t *testing.T) {
	t.Parallel()
	fresh := mongotest.New(t) // a fresh database, dropped at the end
	log := &shapeLog{}
	client, err := mongo.Connect(options.Client().ApplyURI(mongotest.URI(t)).SetMonitor(log.monitor()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Disconnect(context.Background()) })
	db := client.Database(fresh.Name())
	clk := newClock()
	s := registry.New(db, registry.Config{Now: clk.Now, Writes: mongodb.Writes{Exclusive: true}, MaxDevicesPerUser: 3})
	ctx := context.Background()
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	populate(t, s, 20, 3, clk.Now())
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	bind := func(user, device, token, session string) func() {
		return func() {
			_, err := s.Bind(ctx, registry.Binding{UserID: user, DeviceID: device, FCMToken: token, SessionID: session, Verified: true})
			must(err)
		}
	}
	for _, op := range []struct {
		name     string
		call     func()
		commands int
	}{
		// A find and an update of the user's document.
		{"touch", func() {
			ok, err := s.Touch(ctx, registry.Binding{UserID: "user-0003", DeviceID: "device-001", FCMToken: "tok:user-0003:device-001", Verified: true})
			must(err)
			if !ok {
				t.Error("touch of a held token reported false")
			}
		}, 2},
		// The touch's find; the token's holder found, replaced; the
		// user's document read and written (with an eviction); the
		// evicted device's token released (its holder read and deleted);
		// the bound and evicted events.
		{"bind a new token to a new device", bind("user-0004", "new", "tok:new", "s"), 9},
		// The touch's find; the holder read; the token taken from the
		// holder's document (read, write); the holder replaced; this
		// user's document read and written; the moved and bound events.
		{"bind a known token", bind("user-0005", "device-000", "tok:user-0006:device-002", "s"), 9},
		{"pushable", func() { _, err := s.Pushable(ctx, "user-0007"); must(err) }, 1},
		{"pushable of three users", func() {
			_, err := s.PushableOf(ctx, []string{"user-0007", "user-0008", "nobody"})
			must(err)
		}, 3},
		// Read, write, and for each of the three devices the holder read
		// and deleted, and an event.
		{"unbind session", func() { must(s.UnbindSession(ctx, "user-0009", "s-user-0009", "user:x")) }, 11},
		{"mark invalid", func() {
			ok, err := s.MarkInvalid(ctx, "user-0010", "device-001", "tok:user-0010:device-001", "UNREGISTERED")
			must(err)
			if !ok {
				t.Error("MarkInvalid of a held token reported false")
			}
		}, 5},
		{"mark invalid, token not held", func() {
			_, err := s.MarkInvalid(ctx, "user-0010", "device-002", "tok:other", "UNREGISTERED")
			must(err)
		}, 1},
		{"get", func() { _, err := s.Get(ctx, "user-0011", "device-001"); must(err) }, 1},
		{"list", func() {
			_, next, err := s.List(ctx, registry.DeviceQuery{UserID: "user-0012", Limit: 2})
			must(err)
			_, _, err = s.List(ctx, registry.DeviceQuery{UserID: "user-0012", Limit: 2, Cursor: next, Status: registry.TokenValid})
			must(err)
		}, 2},
		{"delete", func() { _, err := s.Delete(ctx, "user-0013", "device-000", "admin:x"); must(err) }, 5},
	} {
		log.take()
		op.call()
		commands, filters := log.take()
		if len(commands) != op.commands {
			t.Errorf("%s sent %d commands %v, want %d", op.name, len(commands), commands, op.commands)
		}
		for _, f := range filters {
			elems, err := f.Elements()
			if f == nil || err != nil || len(elems) != 1 || elems[0].Key() != "_id" || elems[0].Value().Type != bson.TypeString {
				t.Errorf("%s: a command filtered by %v, want {_id: <string>} alone (commands %v)", op.name, f, commands)
			}
		}
	}
}

// populate stores users×perUser valid devices straight into the store:
// binding each one would take minutes at 100,000.
func populate(tb testing.TB, s *registry.Store, users, perUser int, now time.Time) {
	populateRange(tb, s, 0, users, perUser, now)
}

func populateRange(tb testing.TB, s *registry.Store, fromUser, toUser, perUser int, now time.Time) {
	tb.Helper()
	platforms := []string{"android", "ios", "web"}
	var devices []registry.Device
	for u := fromUser; u < toUser; u++ {
		user := fmt.Sprintf("user-%04d", u)
		for d := range perUser {
			device := fmt.Sprintf("device-%03d", d)
			seen := now.Add(-time.Duration(d) * time.Minute)
			devices = append(devices, registry.Device{UserID: user, DeviceID: device, Platform: platforms[d%len(platforms)],
				FCMToken: fmt.Sprintf("tok:%s:%s", user, device), TokenStatus: registry.TokenValid,
				TokenValidatedAt: seen, TokenUpdatedAt: seen, LastSeenAt: seen, CreatedAt: seen, SessionID: "s-" + user})
		}
	}
	if err := s.Seed(context.Background(), devices); err != nil {
		tb.Fatal(err)
	}
}

// populateEvents records perUser events for each user straight into the
// events collection.
func populateEvents(tb testing.TB, db *mongo.Database, fromUser, toUser, perUser int, now time.Time) {
	tb.Helper()
	var events []any
	for u := fromUser; u < toUser; u++ {
		user := fmt.Sprintf("user-%04d", u)
		for d := range perUser {
			events = append(events, bson.D{
				{Key: "_id", Value: bson.NewObjectID()}, {Key: "user_id", Value: user}, {Key: "type", Value: registry.EventTokenBound},
				{Key: "actor", Value: "user:" + user}, {Key: "device_id", Value: fmt.Sprintf("device-%03d", d)},
				{Key: "at", Value: now.Add(-time.Duration(d) * time.Minute)},
			})
		}
	}
	for len(events) > 0 {
		n := min(2000, len(events))
		if _, err := db.Collection("events").InsertMany(context.Background(), events[:n]); err != nil {
			tb.Fatal(err)
		}
		events = events[n:]
	}
}

// BenchmarkListDevices times one user's first page of devices (and of
// events) as the total grows from 1,000 to 100,000 devices, 20 per user.
// The devices page is one read of the user's document by _id; the events
// page is an indexed query on MongoDB and a scan on FerretDB.
func BenchmarkListDevices(b *testing.B) {
	fresh := mongotest.New(b)
	s := registry.New(fresh.Database, registry.Config{Writes: mongotest.Writes()})
	ctx := context.Background()
	if err := s.EnsureIndexes(ctx); err != nil {
		b.Fatal(err)
	}
	const perUser = 20
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	done := 0
	for _, users := range []int{50, 5000} {
		populateRange(b, s, done, users, perUser, now)
		populateEvents(b, fresh.Database, done, users, perUser, now)
		done = users
		target := fmt.Sprintf("user-%04d", users/2)
		b.Run(fmt.Sprintf("devices=%d/first_page", users*perUser), func(b *testing.B) {
			for b.Loop() {
				devs, _, err := s.List(ctx, registry.DeviceQuery{UserID: target, Limit: 50})
				if err != nil || len(devs) != perUser {
					b.Fatalf("List = %d devices, %v", len(devs), err)
				}
			}
		})
		b.Run(fmt.Sprintf("devices=%d/events_first_page", users*perUser), func(b *testing.B) {
			for b.Loop() {
				evs, err := s.EventsBefore(ctx, target, time.Time{}, "", 50)
				if err != nil || len(evs) != perUser {
					b.Fatalf("Events = %d events, %v", len(evs), err)
				}
			}
		})
	}
}

// BenchmarkHotPaths times a touch (a refresh confirming its device's
// token) and a one-user push's device read with 1,000 and then 20,000
// users of 2 devices each in the store, in one run: reached by _id, they
// should cost about the same at both sizes. Compare the two sizes, never
// times across runs.
func BenchmarkHotPaths(b *testing.B) {
	fresh := mongotest.New(b)
	s := registry.New(fresh.Database, registry.Config{Writes: mongotest.Writes()})
	ctx := context.Background()
	if err := s.EnsureIndexes(ctx); err != nil {
		b.Fatal(err)
	}
	const perUser = 2
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	done := 0
	for _, users := range []int{1000, 20000} {
		populateRange(b, s, done, users, perUser, now)
		done = users
		user := fmt.Sprintf("user-%04d", users/2)
		touch := registry.Binding{UserID: user, DeviceID: "device-001", FCMToken: fmt.Sprintf("tok:%s:device-001", user), SessionID: "s"}
		b.Run(fmt.Sprintf("users=%d/touch", users), func(b *testing.B) {
			for b.Loop() {
				if ok, err := s.Touch(ctx, touch); err != nil || !ok {
					b.Fatalf("Touch = %v, %v", ok, err)
				}
			}
		})
		b.Run(fmt.Sprintf("users=%d/pushable", users), func(b *testing.B) {
			for b.Loop() {
				if devs, err := s.Pushable(ctx, user); err != nil || len(devs) != perUser {
					b.Fatalf("Pushable = %d devices, %v", len(devs), err)
				}
			}
		})
	}
}
