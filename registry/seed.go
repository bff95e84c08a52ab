package registry

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// seedBatch is how many documents one insert of Seed carries.
const seedBatch = 1000

// Seed stores devices as Bind would have, with a few inserts rather than
// a bind each, for tests and benchmarks that need many devices. Their
// users must have no devices yet, and their tokens must be distinct and
// held by no device; it records no events and checks no limit.
func (s *Store) Seed(ctx context.Context, devices []Device) error {
	byUser := map[string]*userDoc{}
	var users, tokens []any
	for _, dv := range devices {
		u, ok := byUser[dv.UserID]
		if !ok {
			u = &userDoc{ID: dv.UserID, V: 1, Devices: map[string]deviceDoc{}}
			byUser[dv.UserID] = u
			users = append(users, u)
		}
		d := deviceDoc{UserID: dv.UserID, DeviceID: dv.DeviceID, Platform: dv.Platform, FCMToken: dv.FCMToken,
			TokenStatus: dv.TokenStatus, TokenValidatedAt: dv.TokenValidatedAt, TokenUpdatedAt: dv.TokenUpdatedAt,
			LastSeenAt: dv.LastSeenAt, CreatedAt: dv.CreatedAt, SessionID: dv.SessionID}
		if d.FCMToken != "" {
			d.TokenKey, d.TokenBind = TokenKey(d.FCMToken), bson.NewObjectID()
			tokens = append(tokens, tokenDoc{ID: d.TokenKey, UserID: d.UserID, DeviceID: d.DeviceID, Bind: d.TokenBind})
		}
		u.Devices[deviceField(d.DeviceID)] = d
	}
	for _, u := range byUser {
		u.OldestPushableSeen, u.OldestSeen, u.Unverified = u.summarize()
	}
	for coll, docs := range map[string][]any{s.users.Name(): users, s.tokens.Name(): tokens} {
		for len(docs) > 0 {
			n := min(seedBatch, len(docs))
			if _, err := s.db.Collection(coll).InsertMany(ctx, docs[:n]); err != nil {
				return fmt.Errorf("registry: seed %s: %w", coll, mongodb.Wrap(err))
			}
			docs = docs[n:]
		}
	}
	return nil
}
