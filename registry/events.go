package registry

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// EventType names something that happened to a user's sessions or devices.
type EventType string

// Event types of the audit trail. Logins are not recorded here: a
// session is its own login record (see auth's AuditTrail).
const (
	EventRefresh        EventType = "refresh"
	EventReuseDetected  EventType = "reuse_detected"
	EventSessionRevoked EventType = "session_revoked"
	EventTokenBound     EventType = "token_bound"
	EventTokenMoved     EventType = "token_moved"
	EventTokenUnbound   EventType = "token_unbound"
	EventTokenPruned    EventType = "token_pruned"
	EventTokenStale     EventType = "token_stale"
	EventDeviceEvicted  EventType = "device_evicted"
	EventDeviceDeleted  EventType = "device_deleted"
	EventDeviceExpired  EventType = "device_expired"
	EventAdminAction    EventType = "admin_action"
)

// Event is one entry of a user's audit trail. It never holds a secret: no
// token, password or key, only identifiers and outcomes.
type Event struct {
	ID        string
	UserID    string
	Type      EventType
	Actor     string
	DeviceID  string
	SessionID string
	Outcome   string
	At        time.Time
}

type eventDoc struct {
	ID        bson.ObjectID `bson:"_id"`
	UserID    string        `bson:"user_id"`
	Type      EventType     `bson:"type"`
	Actor     string        `bson:"actor,omitempty"`
	DeviceID  string        `bson:"device_id,omitempty"`
	SessionID string        `bson:"session_id,omitempty"`
	Outcome   string        `bson:"outcome,omitempty"`
	At        time.Time     `bson:"at"`
}

func eventIndexes() []mongo.IndexModel {
	return []mongo.IndexModel{
		{Keys: bson.D{{Key: "user_id", Value: 1}, {Key: "at", Value: -1}, {Key: "_id", Value: -1}}, Options: options.Index().SetName("user_trail")},
		// The sweeper deletes by age (FerretDB v1 has no TTL indexes).
		{Keys: bson.D{{Key: "at", Value: 1}}, Options: options.Index().SetName("age")},
	}
}

// Upgrade brings a store an earlier version wrote up to date: it drops
// the events index the trail's order no longer uses, and moves devices
// stored one document each into their users' documents (see
// upgradeDevices). It runs at every start, in the background.
func (s *Store) Upgrade(ctx context.Context) error {
	if err := mongodb.DropIndex(ctx, s.events, "user_newest"); err != nil {
		return err
	}
	return s.upgradeDevices(ctx)
}

// Record appends an event to the user's audit trail.
func (s *Store) Record(ctx context.Context, e Event) error {
	if e.At.IsZero() {
		e.At = s.now()
	}
	// A fresh ObjectID keeps events in insertion order for the cursor.
	doc := eventDoc{ID: bson.NewObjectID(), UserID: e.UserID, Type: e.Type, Actor: e.Actor,
		DeviceID: e.DeviceID, SessionID: e.SessionID, Outcome: e.Outcome, At: e.At}
	if _, err := s.events.InsertOne(ctx, doc); err != nil {
		return fmt.Errorf("registry: record event: %w", mongodb.Wrap(err))
	}
	return nil
}

// record is Record for callers whose own write already succeeded: a lost
// audit entry must not turn a done change into a reported failure.
func (s *Store) record(ctx context.Context, e Event) {
	_ = s.Record(ctx, e)
}

// recordMany appends events in one insert, as record does one; a failure
// loses them, as it does for record.
func (s *Store) recordMany(ctx context.Context, events []Event) {
	if len(events) == 0 {
		return
	}
	docs := make([]any, len(events))
	for i, e := range events {
		if e.At.IsZero() {
			e.At = s.now()
		}
		docs[i] = eventDoc{ID: bson.NewObjectID(), UserID: e.UserID, Type: e.Type, Actor: e.Actor,
			DeviceID: e.DeviceID, SessionID: e.SessionID, Outcome: e.Outcome, At: e.At}
	}
	_, _ = s.events.InsertMany(ctx, docs)
}

// EventsBefore returns up to limit of the user's events that come after
// the position (at, id) in the trail's order, newest first: by time, then
// by ID (an ObjectID in hex). A zero at means from the newest. The
// position is what the auth package's merged trail hands out.
func (s *Store) EventsBefore(ctx context.Context, userID string, at time.Time, id string, limit int) ([]Event, error) {
	// Versions before the session stood for the login also recorded a
	// "login" event; the session now lists it.
	filter := bson.M{"user_id": userID, "type": bson.M{"$ne": "login"}}
	if !at.IsZero() {
		oid, err := bson.ObjectIDFromHex(id)
		if err != nil {
			return nil, fmt.Errorf("registry: events cursor: %w", ErrBadCursor)
		}
		// The $lte bound lets MongoDB scan the index from the position.
		filter["at"] = bson.M{"$lte": at}
		filter["$or"] = bson.A{bson.M{"at": bson.M{"$lt": at}}, bson.M{"_id": bson.M{"$lt": oid}}}
	}
	cur, err := s.events.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: "at", Value: -1}, {Key: "_id", Value: -1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("registry: events: %w", mongodb.Wrap(err))
	}
	var docs []eventDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("registry: events: %w", mongodb.Wrap(err))
	}
	out := make([]Event, len(docs))
	for i, d := range docs {
		out[i] = Event{ID: d.ID.Hex(), UserID: d.UserID, Type: d.Type, Actor: d.Actor,
			DeviceID: d.DeviceID, SessionID: d.SessionID, Outcome: d.Outcome, At: d.At}
	}
	return out, nil
}

// deleteOldEvents deletes at most limit events recorded before t.
func (s *Store) deleteOldEvents(ctx context.Context, t time.Time, limit int) (int, error) {
	n, err := mongodb.DeleteBatch(ctx, s.events, bson.M{"at": bson.M{"$lt": t}}, limit)
	if err != nil {
		return n, fmt.Errorf("registry: delete old events: %w", err)
	}
	return n, nil
}
