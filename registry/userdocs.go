package registry

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// Storage. A user's devices live in one document of user_devices, whose
// _id is the user ID; which device holds a token is recorded in
// device_tokens, whose _id is the token's TokenKey. Every request reads
// and writes these by _id alone: the only filter FerretDB v1's SQLite
// backend pushes down, and one MongoDB serves from its _id index.

// userDoc is one user's devices as stored.
type userDoc struct {
	ID string `bson:"_id"`
	// V counts the document's writes: on a shared store a write applies
	// only to the version it read.
	V int64 `bson:"v"`
	// Devices are keyed by deviceField, so that MongoDB can update one
	// device in place by path (FerretDB v1 has no positional operator).
	// The device limit bounds their number.
	Devices map[string]deviceDoc `bson:"devices"`
	// The sweeper's summaries, exact after a whole-document write and a
	// lower bound after an in-place touch (which only makes a device
	// seen later, or pushable again): OldestPushableSeen is the earliest
	// last_seen_at of a device holding a pushable token, OldestSeen that
	// of any device, and Unverified says some device may hold an
	// unverified token.
	OldestPushableSeen *time.Time `bson:"oldest_pushable_seen,omitempty"`
	OldestSeen         *time.Time `bson:"oldest_seen,omitempty"`
	Unverified         bool       `bson:"unverified"`
}

// deviceDoc is one device as stored in its user's document. A device
// without a token has an empty fcm_token and token_key. token_bind is
// the binding's nonce, which the token's document repeats while it names
// this device.
type deviceDoc struct {
	UserID           string        `bson:"user_id"`
	DeviceID         string        `bson:"device_id"`
	Platform         string        `bson:"platform"`
	FCMToken         string        `bson:"fcm_token"`
	TokenKey         string        `bson:"token_key"`
	TokenBind        bson.ObjectID `bson:"token_bind"`
	TokenStatus      TokenStatus   `bson:"token_status"`
	TokenValidatedAt time.Time     `bson:"token_validated_at"`
	TokenUpdatedAt   time.Time     `bson:"token_updated_at"`
	LastSeenAt       time.Time     `bson:"last_seen_at"`
	CreatedAt        time.Time     `bson:"created_at"`
	SessionID        string        `bson:"session_id"`
}

// tokenDoc says which device holds a token. It may be stale (the device
// no longer holds it): only a bind follows it, and only to remove the
// token from that device if it still holds it.
type tokenDoc struct {
	ID       string        `bson:"_id"` // TokenKey
	UserID   string        `bson:"user_id"`
	DeviceID string        `bson:"device_id"`
	Bind     bson.ObjectID `bson:"bind"`
}

func (d *deviceDoc) device() Device {
	return Device{
		UserID:           d.UserID,
		DeviceID:         d.DeviceID,
		Platform:         d.Platform,
		FCMToken:         d.FCMToken,
		TokenStatus:      d.TokenStatus,
		TokenValidatedAt: d.TokenValidatedAt,
		TokenUpdatedAt:   d.TokenUpdatedAt,
		LastSeenAt:       d.LastSeenAt,
		CreatedAt:        d.CreatedAt,
		SessionID:        d.SessionID,
	}
}

// holds reports whether the device holds the token with this key.
func (d *deviceDoc) holds(key string) bool { return d.TokenKey != "" && d.TokenKey == key }

// dropToken takes the token off the device, leaving it in status.
func (d *deviceDoc) dropToken(status TokenStatus, now time.Time) {
	d.FCMToken, d.TokenKey, d.TokenBind = "", "", bson.ObjectID{}
	d.TokenStatus, d.TokenUpdatedAt = status, now
}

// deviceField is the key of a device in its user's document: hex, since a
// device ID may hold dots or start with a dollar, and prefixed so that it
// is never empty nor all digits.
func deviceField(deviceID string) string { return "d" + hex.EncodeToString([]byte(deviceID)) }

// deviceKey is the device's position in the list cursor.
func deviceKey(userID, deviceID string) string { return userID + "/" + deviceID }

// summarize computes the sweeper's summaries from the devices.
func (u *userDoc) summarize() (pushable, seen *time.Time, unverified bool) {
	for _, d := range u.Devices {
		t := d.LastSeenAt
		if seen == nil || t.Before(*seen) {
			seen = &t
		}
		if d.TokenStatus.Pushable() && (pushable == nil || t.Before(*pushable)) {
			pushable = &t
		}
		unverified = unverified || d.TokenStatus == TokenUnverified
	}
	return pushable, seen, unverified
}

// summaryOutdated reports whether the stored summaries differ from the
// devices, so that the sweeper, having found the document by them, writes
// them back instead of finding it again next run.
func (u *userDoc) summaryOutdated() bool {
	p, s, un := u.summarize()
	eq := func(a, b *time.Time) bool { return (a == nil) == (b == nil) && (a == nil || a.Equal(*b)) }
	return !eq(p, u.OldestPushableSeen) || !eq(s, u.OldestSeen) || un != u.Unverified
}

// writeAttempts bounds the reads and conditional writes of one change on
// a shared store before it gives up as unavailable.
const writeAttempts = 8

func idFilter(id string) bson.D { return bson.D{{Key: "_id", Value: id}} }

// readUser returns the user's document, empty if it does not exist.
func (s *Store) readUser(ctx context.Context, userID string) (userDoc, bool, error) {
	u := userDoc{ID: userID}
	err := s.users.FindOne(ctx, idFilter(userID)).Decode(&u)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return userDoc{ID: userID, Devices: map[string]deviceDoc{}}, false, nil
	}
	if err != nil {
		return userDoc{}, false, fmt.Errorf("registry: read devices: %w", mongodb.Wrap(err))
	}
	if u.Devices == nil {
		u.Devices = map[string]deviceDoc{}
	}
	return u, true, nil
}

// updateUser applies change to the user's document and writes it back
// whole, under the user's lock. On an exclusive store the lock is what
// makes the read and the write one step, and the write's filter is the
// lone _id; on a shared store the write applies only to the version read,
// and a miss reads again. change may run more than once, on a fresh read
// each time, and reports whether it changed anything; when it did not,
// nothing is written. It returns the document as written (or read).
func (s *Store) updateUser(ctx context.Context, userID string, change func(*userDoc) bool) (userDoc, error) {
	unlock, err := s.userLocks.Lock(ctx, userID)
	if err != nil {
		return userDoc{}, err
	}
	defer unlock()
	for range writeAttempts {
		u, found, err := s.readUser(ctx, userID)
		if err != nil {
			return userDoc{}, err
		}
		if !change(&u) {
			return u, nil
		}
		ok, err := s.writeUser(ctx, &u, found)
		if err != nil || ok {
			return u, err
		}
	}
	return userDoc{}, fmt.Errorf("registry: devices of %s kept changing: %w", userID, mongodb.ErrUnavailable)
}

// writeUser writes the document read at u.V (found: it existed), and
// reports false if another writer got there first.
func (s *Store) writeUser(ctx context.Context, u *userDoc, found bool) (bool, error) {
	read := u.V
	u.V++
	u.OldestPushableSeen, u.OldestSeen, u.Unverified = u.summarize()
	filter := s.writes.Filter(u.ID, bson.E{Key: "v", Value: read})
	switch {
	case len(u.Devices) == 0 && !found:
		return true, nil
	case len(u.Devices) == 0:
		// A user without devices has no document: the collection holds
		// only users with devices.
		res, err := s.users.DeleteOne(ctx, filter)
		if err != nil {
			return false, fmt.Errorf("registry: write devices: %w", mongodb.Wrap(err))
		}
		return res.DeletedCount == 1, nil
	case !found:
		_, err := s.users.InsertOne(ctx, u)
		if mongo.IsDuplicateKeyError(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("registry: write devices: %w", mongodb.Wrap(err))
		}
		return true, nil
	}
	res, err := s.users.ReplaceOne(ctx, filter, u)
	if err != nil {
		return false, fmt.Errorf("registry: write devices: %w", mongodb.Wrap(err))
	}
	return res.MatchedCount == 1, nil
}

// readToken returns the document of the token with this key.
func (s *Store) readToken(ctx context.Context, key string) (tokenDoc, bool, error) {
	var t tokenDoc
	err := s.tokens.FindOne(ctx, idFilter(key)).Decode(&t)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return tokenDoc{}, false, nil
	}
	if err != nil {
		return tokenDoc{}, false, fmt.Errorf("registry: read token holder: %w", mongodb.Wrap(err))
	}
	return t, true, nil
}

// claimToken points the token's document at a new holder, replacing prev
// (found: it existed). On a shared store it applies only if the document
// is still prev, and reports false otherwise. The caller holds the
// token's lock.
func (s *Store) claimToken(ctx context.Context, prev tokenDoc, found bool, next tokenDoc) (bool, error) {
	if s.writes.Exclusive {
		_, err := s.tokens.ReplaceOne(ctx, idFilter(next.ID), next, options.Replace().SetUpsert(true))
		if err != nil {
			return false, fmt.Errorf("registry: record token holder: %w", mongodb.Wrap(err))
		}
		return true, nil
	}
	if !found {
		_, err := s.tokens.InsertOne(ctx, next)
		if mongo.IsDuplicateKeyError(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("registry: record token holder: %w", mongodb.Wrap(err))
		}
		return true, nil
	}
	res, err := s.tokens.ReplaceOne(ctx, s.writes.Filter(next.ID, bson.E{Key: "bind", Value: prev.Bind}), next)
	if err != nil {
		return false, fmt.Errorf("registry: record token holder: %w", mongodb.Wrap(err))
	}
	return res.MatchedCount == 1, nil
}

// releaseToken deletes the token's document if it still records the
// binding (its nonce) a device just gave up. Failing to is harmless: the
// document is stale, and the next bind of the token replaces it.
func (s *Store) releaseToken(ctx context.Context, key string, bind bson.ObjectID) error {
	if key == "" {
		return nil
	}
	unlock, err := s.tokenLocks.Lock(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	if s.writes.Exclusive {
		t, found, err := s.readToken(ctx, key)
		if err != nil || !found || t.Bind != bind {
			return err
		}
	}
	if _, err := s.tokens.DeleteOne(ctx, s.writes.Filter(key, bson.E{Key: "bind", Value: bind})); err != nil {
		return fmt.Errorf("registry: release token: %w", mongodb.Wrap(err))
	}
	return nil
}

// releaseTokens releases the tokens the devices gave up, and reports the
// first failure after trying them all.
func (s *Store) releaseTokens(ctx context.Context, gave []deviceDoc) error {
	var first error
	for _, d := range gave {
		if err := s.releaseToken(ctx, d.TokenKey, d.TokenBind); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// takeToken removes the token from a device if it holds it (and, when
// bind is not zero, holds it by that binding), leaving it unbound. It
// returns the device as it was, or nil if it did not hold the token.
func (s *Store) takeToken(ctx context.Context, userID, deviceID, key string, bind bson.ObjectID) (*deviceDoc, error) {
	var before *deviceDoc
	f := deviceField(deviceID)
	now := s.now()
	_, err := s.updateUser(ctx, userID, func(u *userDoc) bool {
		before = nil
		d, ok := u.Devices[f]
		if !ok || !d.holds(key) || (!bind.IsZero() && d.TokenBind != bind) {
			return false
		}
		was := d
		before = &was
		d.dropToken(TokenUnbound, now)
		u.Devices[f] = d
		return true
	})
	if err != nil {
		return nil, err
	}
	return before, nil
}
