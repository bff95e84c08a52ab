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
	"github.com/pushreg/pushreg/registry/mongotest"
)

func TestListIsStableUnderInserts(t *testing.T) {
	t.Parallel()
	clk := newClock() // never advanced: every device ties on last_seen_at
	s, _ := newStore(t, registry.Config{Now: clk.Now})
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
}

// commandLog records the find commands a client sends.
type commandLog struct {
	mu    sync.Mutex
	finds []bson.Raw
}

func (l *commandLog) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.CommandName == "find" {
			l.mu.Lock()
			l.finds = append(l.finds, bson.Raw(append([]byte(nil), e.Command...)))
			l.mu.Unlock()
		}
	}}
}

// last returns the last find command sent, without the session and
// routing fields explain does not take.
func (l *commandLog) last(t *testing.T) bson.D {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.finds) == 0 {
		t.Fatal("no find command was sent")
	}
	var cmd, out bson.D
	if err := bson.Unmarshal(l.finds[len(l.finds)-1], &cmd); err != nil {
		t.Fatal(err)
	}
	for _, e := range cmd {
		if !strings.HasPrefix(e.Key, "$") && e.Key != "lsid" && e.Key != "txnNumber" {
			out = append(out, e)
		}
	}
	return out
}

// indexKeys renders an index key document as "field:1 other:-1".
func indexKeys(t *testing.T, raw bson.Raw) string {
	t.Helper()
	var d bson.D
	if err := bson.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, e := range d {
		parts = append(parts, fmt.Sprintf("%s:%v", e.Key, e.Value))
	}
	return strings.Join(parts, " ")
}

// planStages collects every "stage" (and the index it used) in an explain
// plan tree, whatever its nesting (classic or slot-based engine).
func planStages(v any, into *[]string) {
	switch x := v.(type) {
	case bson.M:
		if st, ok := x["stage"].(string); ok {
			if ix, ok := x["indexName"].(string); ok {
				st += ":" + ix
			}
			*into = append(*into, st)
		}
		for _, c := range x {
			planStages(c, into)
		}
	case bson.D:
		m := bson.M{}
		for _, e := range x {
			m[e.Key] = e.Value
		}
		planStages(m, into)
	case bson.A:
		for _, c := range x {
			planStages(c, into)
		}
	}
}

// TestListQueriesUseIndexes checks that the device and event list queries,
// exactly as the store sends them, are answered from an index, so that a
// page of one user's devices costs the same whatever the number of users.
//
// On MongoDB, explain shows IXSCAN on the named index and the documents
// examined stay within the user's own. FerretDB v1 answers explain with
// its backend's plan and filterPushdown/sortPushdown flags: its SQLite
// backend pushes down only {_id: value} filters (plan "SCAN devices_…"),
// its PostgreSQL backend pushes the filter down as jsonb containment that
// its btree indexes cannot serve (plan "Seq Scan"). Both scan the
// collection, so there the test skips after checking the indexes exist.
func TestListQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	fresh := mongotest.New(t) // a fresh database, dropped at the end
	log := &commandLog{}
	client, err := mongo.Connect(options.Client().ApplyURI(mongotest.URI(t)).SetMonitor(log.monitor()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Disconnect(context.Background()) })
	db := client.Database(fresh.Name())
	clk := newClock()
	s := registry.New(db, registry.Config{Now: clk.Now})
	ctx := context.Background()
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	const users, perUser = 50, 20
	populate(t, db, users, perUser, clk.Now())

	// The indexes the queries need exist, with the keys they need.
	for coll, want := range map[string]map[string]string{
		"devices": {"user_last_seen": "user_id:1 last_seen_at:-1 _id:-1"},
		"events":  {"user_trail": "user_id:1 at:-1 _id:-1"},
	} {
		specs, err := db.Collection(coll).Indexes().ListSpecifications(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for name, keys := range want {
			got := ""
			for _, sp := range specs {
				if sp.Name == name {
					got = indexKeys(t, sp.KeysDocument)
				}
			}
			if got != keys {
				t.Errorf("%s index %s = %q, want keys %q", coll, name, got, keys)
			}
		}
	}

	target := "user-0007"
	_, next, err := s.List(ctx, registry.DeviceQuery{UserID: target, Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	firstPage := log.last(t)
	if _, _, err := s.List(ctx, registry.DeviceQuery{UserID: target, Cursor: next, Limit: 5}); err != nil {
		t.Fatal(err)
	}
	nextPage := log.last(t)
	if _, _, err := s.List(ctx, registry.DeviceQuery{UserID: target, Status: registry.TokenValid, Platform: "android", Limit: 5}); err != nil {
		t.Fatal(err)
	}
	filtered := log.last(t)
	events, err := s.EventsBefore(ctx, target, time.Time{}, "", 5)
	if err != nil || len(events) != 5 {
		t.Fatalf("EventsBefore = %d events, %v", len(events), err)
	}
	eventsFirst := log.last(t)
	if _, err := s.EventsBefore(ctx, target, events[4].At, events[4].ID, 5); err != nil {
		t.Fatal(err)
	}
	eventsNext := log.last(t)

	for _, q := range []struct {
		name  string
		cmd   bson.D
		index string
	}{
		{"devices, first page", firstPage, "user_last_seen"},
		{"devices, next page", nextPage, "user_last_seen"},
		{"devices, filtered", filtered, "user_last_seen"},
		{"events, first page", eventsFirst, "user_trail"},
		{"events, next page", eventsNext, "user_trail"},
	} {
		t.Run(q.name, func(t *testing.T) {
			var out bson.M
			err := db.RunCommand(ctx, bson.D{{Key: "explain", Value: q.cmd}, {Key: "verbosity", Value: "executionStats"}}).Decode(&out)
			if err != nil {
				t.Skipf("the server does not explain find (%v)", err)
			}
			if _, ferret := out["filterPushdown"]; ferret {
				plan := fmt.Sprint(out["queryPlanner"])
				if strings.Contains(plan, "USING INDEX") || strings.Contains(plan, "USING COVERING INDEX") || strings.Contains(plan, "Index Scan") {
					return // a FerretDB backend that does use the index
				}
				t.Skipf("FerretDB scans the collection for this query (filterPushdown=%v sortPushdown=%v, plan %s): "+
					"FerretDB v1's SQLite backend pushes down only _id equality, and its PostgreSQL backend filters with "+
					"jsonb @>, which its btree indexes cannot serve; set %s to a MongoDB server to check IXSCAN",
					out["filterPushdown"], out["sortPushdown"], plan, mongotest.EnvURI)
			}
			qp, _ := out["queryPlanner"].(bson.M)
			var stages []string
			planStages(qp["winningPlan"], &stages)
			joined := strings.Join(stages, " ")
			if !strings.Contains(joined, "IXSCAN:"+q.index) || strings.Contains(joined, "COLLSCAN") {
				t.Errorf("winning plan stages %v, want IXSCAN on %s and no COLLSCAN", stages, q.index)
			}
			stats, _ := out["executionStats"].(bson.M)
			docs, _ := stats["totalDocsExamined"].(int32)
			keys, _ := stats["totalKeysExamined"].(int32)
			// A user's page reads at most that user's entries, never the
			// other users' (users*perUser of them).
			if docs > perUser || keys > 2*perUser+2 {
				t.Errorf("examined %d documents and %d keys for one user's page, want at most %d and %d", docs, keys, perUser, 2*perUser+2)
			}
		})
	}
}

// populate inserts users×perUser devices, and as many events, straight
// into the collections: binding each one would take minutes at 100,000.
func populate(tb testing.TB, db *mongo.Database, users, perUser int, now time.Time) {
	populateRange(tb, db, 0, users, perUser, now)
}

func populateRange(tb testing.TB, db *mongo.Database, fromUser, toUser, perUser int, now time.Time) {
	tb.Helper()
	ctx := context.Background()
	platforms := []string{"android", "ios", "web"}
	const batch = 2000
	var devices, events []any
	flush := func(force bool) {
		if len(devices) >= batch || force && len(devices) > 0 {
			if _, err := db.Collection("devices").InsertMany(ctx, devices); err != nil {
				tb.Fatal(err)
			}
			if _, err := db.Collection("events").InsertMany(ctx, events); err != nil {
				tb.Fatal(err)
			}
			devices, events = devices[:0], events[:0]
		}
	}
	for u := fromUser; u < toUser; u++ {
		user := fmt.Sprintf("user-%04d", u)
		for d := range perUser {
			device := fmt.Sprintf("device-%03d", d)
			seen := now.Add(-time.Duration(d) * time.Minute)
			token := fmt.Sprintf("tok:%s:%s", user, device)
			devices = append(devices, bson.D{
				{Key: "_id", Value: user + "/" + device}, {Key: "user_id", Value: user}, {Key: "device_id", Value: device},
				{Key: "platform", Value: platforms[d%len(platforms)]}, {Key: "fcm_token", Value: token},
				{Key: "token_key", Value: registry.TokenKey(token)}, {Key: "token_status", Value: registry.TokenValid},
				{Key: "token_validated_at", Value: seen}, {Key: "token_updated_at", Value: seen},
				{Key: "last_seen_at", Value: seen}, {Key: "created_at", Value: seen}, {Key: "session_id", Value: "s-" + user},
			})
			events = append(events, bson.D{
				{Key: "_id", Value: bson.NewObjectID()}, {Key: "user_id", Value: user}, {Key: "type", Value: registry.EventTokenBound},
				{Key: "actor", Value: "user:" + user}, {Key: "device_id", Value: device}, {Key: "at", Value: seen},
			})
			flush(false)
		}
	}
	flush(true)
}

// BenchmarkListDevices times one user's first page of devices (and of
// events) as the total grows from 1,000 to 100,000 devices, 20 per user.
// With an index serving the query the two sizes cost about the same; a
// collection scan grows with the total.
func BenchmarkListDevices(b *testing.B) {
	fresh := mongotest.New(b)
	s := registry.New(fresh.Database, registry.Config{})
	ctx := context.Background()
	if err := s.EnsureIndexes(ctx); err != nil {
		b.Fatal(err)
	}
	const perUser = 20
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	done := 0
	for _, users := range []int{50, 5000} {
		populateRange(b, fresh.Database, done, users, perUser, now)
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
