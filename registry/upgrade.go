package registry

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// upgradeDevices moves every device of the old devices collection into
// its user's document, recording the holder of each token, then drops the
// old collection. A device its user's document already has (bound since
// this version started) wins, and so does a token another device already
// holds. Each device moves on its own, as a bind does (holder record,
// then device), so an upgrade stopped halfway leaves nothing
// inconsistent and runs again from the start: what it moved is found
// present. It reads the old collection once.
func (s *Store) upgradeDevices(ctx context.Context) error {
	cur, err := s.legacy.Find(ctx, bson.D{})
	if err != nil {
		return fmt.Errorf("registry: upgrade devices: %w", mongodb.Wrap(err))
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		// The old document has the fields of deviceDoc, and an _id
		// (user/device) and token_key ("none:…" when unbound) of its own.
		var old deviceDoc
		if err := cur.Decode(&old); err != nil {
			return fmt.Errorf("registry: upgrade device %v: %w", cur.Current.Lookup("_id"), err)
		}
		if err := s.adopt(ctx, old); err != nil {
			return fmt.Errorf("registry: upgrade device %s/%s: %w", old.UserID, old.DeviceID, err)
		}
		// Gone once moved: an upgrade stopped halfway resumes where it
		// stopped, and never brings back a device moved, then removed.
		if _, err := s.legacy.DeleteOne(ctx, bson.D{{Key: "_id", Value: cur.Current.Lookup("_id")}}); err != nil {
			return fmt.Errorf("registry: upgrade device %s/%s: %w", old.UserID, old.DeviceID, mongodb.Wrap(err))
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("registry: upgrade devices: %w", mongodb.Wrap(err))
	}
	// Dropping a collection that does not exist succeeds.
	if err := s.legacy.Drop(ctx); err != nil {
		return fmt.Errorf("registry: drop the old devices collection: %w", mongodb.Wrap(err))
	}
	return nil
}

// adopt adds an old device to its user's document, unless it is there.
func (s *Store) adopt(ctx context.Context, d deviceDoc) error {
	d.TokenBind = bson.ObjectID{}
	if d.FCMToken == "" || d.TokenStatus == TokenUnbound || d.TokenStatus == TokenInvalid {
		d.FCMToken, d.TokenKey = "", ""
		return s.addDevice(ctx, d)
	}
	d.TokenKey = TokenKey(d.FCMToken)
	unlock, err := s.tokenLocks.Lock(ctx, d.TokenKey)
	if err != nil {
		return err
	}
	defer unlock()
	u, _, err := s.readUser(ctx, d.UserID)
	if err != nil {
		return err
	}
	if _, ok := u.Devices[deviceField(d.DeviceID)]; ok {
		return nil
	}
	for range writeAttempts {
		prev, found, err := s.readToken(ctx, d.TokenKey)
		if err != nil {
			return err
		}
		if found && (prev.UserID != d.UserID || prev.DeviceID != d.DeviceID) {
			holder, _, err := s.readUser(ctx, prev.UserID)
			if err != nil {
				return err
			}
			if h, ok := holder.Devices[deviceField(prev.DeviceID)]; ok && h.holds(d.TokenKey) {
				// Bound again since the start: the token has moved on.
				d.dropToken(TokenUnbound, d.TokenUpdatedAt)
				return s.addDevice(ctx, d)
			}
		}
		next := tokenDoc{ID: d.TokenKey, UserID: d.UserID, DeviceID: d.DeviceID, Bind: bson.NewObjectID()}
		ok, err := s.claimToken(ctx, prev, found, next)
		if err != nil {
			return err
		}
		if ok {
			d.TokenBind = next.Bind
			return s.addDevice(ctx, d)
		}
	}
	return fmt.Errorf("registry: token kept moving: %w", mongodb.ErrUnavailable)
}

// addDevice adds the device to its user's document unless it is there.
func (s *Store) addDevice(ctx context.Context, d deviceDoc) error {
	f := deviceField(d.DeviceID)
	_, err := s.updateUser(ctx, d.UserID, func(u *userDoc) bool {
		if _, ok := u.Devices[f]; ok {
			return false
		}
		u.Devices[f] = d
		return true
	})
	return err
}
