package registry

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// TokenStatus says whether a device's FCM token may be pushed to.
type TokenStatus string

// Token statuses. Pushes go to valid and unverified tokens only.
const (
	// TokenValid: Firebase accepted the token in a dry run.
	TokenValid TokenStatus = "valid"
	// TokenUnverified: bound while Firebase could not be asked (outage, or
	// format-only mode); the sweeper asks again.
	TokenUnverified TokenStatus = "unverified"
	// TokenInvalid: Firebase rejected the token; it was unbound.
	TokenInvalid TokenStatus = "invalid"
	// TokenStale: the app has not confirmed the token for StaleAfter.
	TokenStale TokenStatus = "stale"
	// TokenUnbound: the device holds no token (logged out, or its token
	// moved to another device).
	TokenUnbound TokenStatus = "unbound"
)

// Pushable reports whether pushes go to a token in this status.
func (s TokenStatus) Pushable() bool { return s == TokenValid || s == TokenUnverified }

// Device is one app installation of one user.
type Device struct {
	UserID           string
	DeviceID         string
	Platform         string
	FCMToken         string
	TokenStatus      TokenStatus
	TokenValidatedAt time.Time
	TokenUpdatedAt   time.Time
	LastSeenAt       time.Time
	CreatedAt        time.Time
	SessionID        string
}

// deviceDoc is a device as stored. The _id joins user and device ID so
// that concurrent binds of one device meet on the primary key, and
// token_key is unique so a token belongs to one device at a time; an
// unbound device gets a token_key of its own so the index stays unique
// without a sparse or partial index (FerretDB v1 supports neither).
type deviceDoc struct {
	ID               string      `bson:"_id"`
	UserID           string      `bson:"user_id"`
	DeviceID         string      `bson:"device_id"`
	Platform         string      `bson:"platform"`
	FCMToken         string      `bson:"fcm_token"`
	TokenKey         string      `bson:"token_key"`
	TokenStatus      TokenStatus `bson:"token_status"`
	TokenValidatedAt time.Time   `bson:"token_validated_at"`
	TokenUpdatedAt   time.Time   `bson:"token_updated_at"`
	LastSeenAt       time.Time   `bson:"last_seen_at"`
	CreatedAt        time.Time   `bson:"created_at"`
	SessionID        string      `bson:"session_id"`
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

func deviceKey(userID, deviceID string) string { return userID + "/" + deviceID }

// TokenKey is the indexed stand-in for an FCM token.
func TokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func unboundKey(id string) string { return "none:" + id }

func deviceIndexes() []mongo.IndexModel {
	return []mongo.IndexModel{
		{Keys: bson.D{{Key: "token_key", Value: 1}}, Options: options.Index().SetUnique(true).SetName("token_key_unique")},
		{Keys: bson.D{{Key: "user_id", Value: 1}, {Key: "last_seen_at", Value: -1}, {Key: "_id", Value: -1}}, Options: options.Index().SetName("user_last_seen")},
		{Keys: bson.D{{Key: "session_id", Value: 1}}, Options: options.Index().SetName("session")},
		{Keys: bson.D{{Key: "last_seen_at", Value: 1}}, Options: options.Index().SetName("last_seen")},
		{Keys: bson.D{{Key: "token_status", Value: 1}}, Options: options.Index().SetName("token_status")},
	}
}

// Binding asks for a device to hold an FCM token on behalf of a session.
type Binding struct {
	UserID    string
	DeviceID  string
	Platform  string
	FCMToken  string
	SessionID string
	// Verified says Firebase accepted the token (status valid); otherwise
	// it is bound as unverified.
	Verified bool
	// MaxDevices is the user's device limit; zero means the default.
	MaxDevices int
	// Actor is who asked, for the audit trail.
	Actor string
}

// BindResult says what a bind changed.
type BindResult struct {
	Created      bool
	TokenChanged bool
	// MovedFrom lists the devices that held the token before.
	MovedFrom []Device
	// Evicted lists devices removed to respect the device limit.
	Evicted []Device
}

// Touch records that a device confirmed the token it already holds, for
// the session. It reports false when the device does not hold that token,
// in which case the caller binds instead. One round trip; two when a stale
// token is confirmed without Firebase's word (it becomes unverified, and
// pushable, again).
func (s *Store) Touch(ctx context.Context, b Binding) (bool, error) {
	now := s.now()
	filter := bson.M{"_id": deviceKey(b.UserID, b.DeviceID), "token_key": TokenKey(b.FCMToken)}
	set := bson.M{"last_seen_at": now, "session_id": b.SessionID}
	if b.Verified {
		set["token_status"] = TokenValid
		set["token_validated_at"] = now
	} else {
		filter["token_status"] = bson.M{"$ne": TokenStale}
	}
	res, err := s.devices.updateOne(ctx, filter, bson.M{"$set": set})
	if err == nil && res.MatchedCount == 0 && !b.Verified {
		delete(filter, "token_status")
		set["token_status"] = TokenUnverified
		res, err = s.devices.updateOne(ctx, filter, bson.M{"$set": set})
	}
	if err != nil {
		return false, fmt.Errorf("registry: touch device: %w", mongodb.Wrap(err))
	}
	return res.MatchedCount == 1, nil
}

// Bind makes the device hold the token for the session, creating the
// device if needed, taking the token from any other device that held it,
// and evicting the least recently seen devices beyond the user's limit.
// Concurrent binds of one device produce one record.
func (s *Store) Bind(ctx context.Context, b Binding) (BindResult, error) {
	if ok, err := s.Touch(ctx, b); err != nil || ok {
		return BindResult{}, err
	}
	id := deviceKey(b.UserID, b.DeviceID)
	key := TokenKey(b.FCMToken)
	var res BindResult
	for attempt := 0; attempt < 8; attempt++ {
		now := s.now()
		status, validatedAt := TokenUnverified, time.Time{}
		if b.Verified {
			status, validatedAt = TokenValid, now
		}
		set := bson.M{
			"user_id": b.UserID, "device_id": b.DeviceID,
			"fcm_token": b.FCMToken, "token_key": key,
			"token_status": status, "token_validated_at": validatedAt,
			"token_updated_at": now, "last_seen_at": now, "session_id": b.SessionID,
		}
		if b.Platform != "" {
			set["platform"] = b.Platform
		}
		var before deviceDoc
		err := s.devices.findOneAndUpdate(ctx, bson.M{"_id": id},
			bson.M{"$set": set, "$setOnInsert": bson.M{"created_at": now}}, &before,
			options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.Before))
		switch {
		case err == nil:
			res.TokenChanged = before.TokenKey != key
		case errors.Is(err, mongo.ErrNoDocuments):
			res.Created, res.TokenChanged = true, true
		case mongo.IsDuplicateKeyError(err):
			// Either another bind created this device first (retry as an
			// update), or another device holds the token (take it).
			moved, err := s.takeToken(ctx, id, key, b)
			if err != nil {
				return res, err
			}
			res.MovedFrom = append(res.MovedFrom, moved...)
			continue
		default:
			return res, fmt.Errorf("registry: bind device: %w", mongodb.Wrap(err))
		}
		if res.TokenChanged {
			s.record(ctx, Event{UserID: b.UserID, Type: EventTokenBound, Actor: b.Actor,
				DeviceID: b.DeviceID, SessionID: b.SessionID, Outcome: string(status)})
		}
		if res.Created {
			evicted, err := s.enforceLimit(ctx, b)
			if err != nil {
				return res, err
			}
			res.Evicted = evicted
		}
		return res, nil
	}
	return res, fmt.Errorf("registry: bind device: %w", mongodb.ErrUnavailable)
}

// takeToken unbinds the token from whichever other device holds it.
func (s *Store) takeToken(ctx context.Context, id, key string, b Binding) ([]Device, error) {
	var holder deviceDoc
	err := s.devices.FindOne(ctx, bson.M{"token_key": key}).Decode(&holder)
	if errors.Is(err, mongo.ErrNoDocuments) || (err == nil && holder.ID == id) {
		return nil, nil // the conflict was on _id, or it is gone: retry
	}
	if err != nil {
		return nil, fmt.Errorf("registry: find token holder: %w", mongodb.Wrap(err))
	}
	res, err := s.devices.updateOne(ctx, bson.M{"_id": holder.ID, "token_key": key},
		bson.M{"$set": bson.M{"fcm_token": "", "token_key": unboundKey(holder.ID),
			"token_status": TokenUnbound, "token_updated_at": s.now()}})
	if err != nil {
		return nil, fmt.Errorf("registry: unbind moved token: %w", mongodb.Wrap(err))
	}
	if res.ModifiedCount == 0 {
		return nil, nil
	}
	s.record(ctx, Event{UserID: holder.UserID, Type: EventTokenMoved, Actor: b.Actor,
		DeviceID: holder.DeviceID, SessionID: holder.SessionID,
		Outcome: "token now held by another device"})
	return []Device{holder.device()}, nil
}

// enforceLimit removes the least recently seen devices beyond the limit.
func (s *Store) enforceLimit(ctx context.Context, b Binding) ([]Device, error) {
	limit := b.MaxDevices
	if limit <= 0 {
		limit = s.cfg.MaxDevicesPerUser
	}
	n, err := s.devices.CountDocuments(ctx, bson.M{"user_id": b.UserID})
	if err != nil {
		return nil, fmt.Errorf("registry: count devices: %w", mongodb.Wrap(err))
	}
	excess := int(n) - limit
	if excess <= 0 {
		return nil, nil
	}
	cur, err := s.devices.Find(ctx,
		bson.M{"user_id": b.UserID, "device_id": bson.M{"$ne": b.DeviceID}},
		options.Find().SetSort(bson.D{{Key: "last_seen_at", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(int64(excess)))
	if err != nil {
		return nil, fmt.Errorf("registry: find evictable devices: %w", mongodb.Wrap(err))
	}
	var docs []deviceDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("registry: find evictable devices: %w", mongodb.Wrap(err))
	}
	var evicted []Device
	for _, d := range docs {
		res, err := s.devices.deleteOne(ctx, bson.M{"_id": d.ID})
		if err != nil {
			return evicted, fmt.Errorf("registry: evict device: %w", mongodb.Wrap(err))
		}
		if res.DeletedCount == 1 {
			evicted = append(evicted, d.device())
			s.record(ctx, Event{UserID: d.UserID, Type: EventDeviceEvicted, Actor: b.Actor,
				DeviceID: d.DeviceID, SessionID: d.SessionID,
				Outcome: fmt.Sprintf("device limit %d reached", limit)})
		}
	}
	return evicted, nil
}

// Get returns one device.
func (s *Store) Get(ctx context.Context, userID, deviceID string) (Device, error) {
	var d deviceDoc
	err := s.devices.FindOne(ctx, bson.M{"_id": deviceKey(userID, deviceID)}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return Device{}, fmt.Errorf("registry: device %q: %w", deviceID, ErrNotFound)
	}
	if err != nil {
		return Device{}, fmt.Errorf("registry: get device: %w", mongodb.Wrap(err))
	}
	return d.device(), nil
}

// UnbindSession removes the token from every device the session bound
// (logout, revocation): they stay listed but receive no pushes. A device
// another session has bound since is left alone.
func (s *Store) UnbindSession(ctx context.Context, userID, sessionID, actor string) error {
	bound, err := s.find(ctx, bson.M{"user_id": userID, "session_id": sessionID,
		"token_status": bson.M{"$ne": TokenUnbound}}, 0)
	if err != nil {
		return err
	}
	for _, d := range bound {
		res, err := s.devices.updateOne(ctx, bson.M{"_id": d.ID, "session_id": sessionID, "token_key": d.TokenKey},
			bson.M{"$set": bson.M{"fcm_token": "", "token_key": unboundKey(d.ID),
				"token_status": TokenUnbound, "token_updated_at": s.now()}})
		if err != nil {
			return fmt.Errorf("registry: unbind device: %w", mongodb.Wrap(err))
		}
		if res.ModifiedCount == 1 {
			s.record(ctx, Event{UserID: userID, Type: EventTokenUnbound, Actor: actor, DeviceID: d.DeviceID, SessionID: sessionID})
		}
	}
	return nil
}

// Delete removes a device. It returns the device so the caller can revoke
// the session bound to it.
func (s *Store) Delete(ctx context.Context, userID, deviceID, actor string) (Device, error) {
	var d deviceDoc
	err := s.devices.findOneAndDelete(ctx, bson.M{"_id": deviceKey(userID, deviceID)}, &d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return Device{}, fmt.Errorf("registry: device %q: %w", deviceID, ErrNotFound)
	}
	if err != nil {
		return Device{}, fmt.Errorf("registry: delete device: %w", mongodb.Wrap(err))
	}
	s.record(ctx, Event{UserID: userID, Type: EventDeviceDeleted, Actor: actor, DeviceID: deviceID, SessionID: d.SessionID})
	return d.device(), nil
}

// MarkInvalid unbinds a token Firebase rejected, if the device still
// holds it, and records the prune.
func (s *Store) MarkInvalid(ctx context.Context, userID, deviceID, token, reason string) (bool, error) {
	id := deviceKey(userID, deviceID)
	res, err := s.devices.updateOne(ctx, bson.M{"_id": id, "token_key": TokenKey(token)},
		bson.M{"$set": bson.M{"fcm_token": "", "token_key": unboundKey(id),
			"token_status": TokenInvalid, "token_updated_at": s.now()}})
	if err != nil {
		return false, fmt.Errorf("registry: prune token: %w", mongodb.Wrap(err))
	}
	if res.ModifiedCount == 0 {
		return false, nil
	}
	s.record(ctx, Event{UserID: userID, Type: EventTokenPruned, Actor: "fcm", DeviceID: deviceID, Outcome: reason})
	return true, nil
}

// Pushable returns the user's devices whose tokens may be pushed to.
func (s *Store) Pushable(ctx context.Context, userID string) ([]Device, error) {
	byUser, err := s.PushableOf(ctx, []string{userID})
	return byUser[userID], err
}

// PushableOf returns the pushable devices of many users in one query, by
// user ID; users without one are absent. Only what a send needs is read:
// UserID, DeviceID, Platform, FCMToken and TokenStatus; the times and the
// session are left zero.
func (s *Store) PushableOf(ctx context.Context, userIDs []string) (map[string][]Device, error) {
	filter := bson.M{"user_id": bson.M{"$in": userIDs},
		"token_status": bson.M{"$in": bson.A{TokenValid, TokenUnverified}}}
	if len(userIDs) == 1 {
		// The same query to MongoDB, but FerretDB on PostgreSQL pushes an
		// equality down to the database, not $in: with $in it reads and
		// decodes every device of every user (scripts/bench push-1).
		filter["user_id"] = userIDs[0]
	}
	// One batch for a large user rather than the driver's 101 documents
	// and then getMores.
	cur, err := s.devices.Find(ctx, filter, options.Find().SetBatchSize(pushableBatch).SetProjection(bson.M{
		"user_id": 1, "device_id": 1, "platform": 1, "fcm_token": 1, "token_status": 1}))
	if err != nil {
		return nil, fmt.Errorf("registry: pushable devices: %w", mongodb.Wrap(err))
	}
	var docs []deviceDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("registry: pushable devices: %w", mongodb.Wrap(err))
	}
	out := map[string][]Device{}
	for i := range docs {
		out[docs[i].UserID] = append(out[docs[i].UserID], docs[i].device())
	}
	return out, nil
}

// pushableBatch is how many devices a batch of PushableOf carries: about
// 150 bytes each as projected.
const pushableBatch = 2000

// DeviceQuery selects a page of a user's devices.
type DeviceQuery struct {
	UserID   string
	Status   TokenStatus // empty: any
	Platform string      // empty: any
	Cursor   string
	Limit    int
}

// List returns a user's devices, most recently seen first. The cursor is
// the (last_seen_at, _id) of the last device of the previous page, so a
// device inserted meanwhile (seen now, so first) never shifts later pages.
func (s *Store) List(ctx context.Context, q DeviceQuery) ([]Device, string, error) {
	filter := bson.M{"user_id": q.UserID}
	if q.Status != "" {
		filter["token_status"] = q.Status
	}
	if q.Platform != "" {
		filter["platform"] = q.Platform
	}
	if q.Cursor != "" {
		seen, id, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("registry: devices cursor: %w", ErrBadCursor)
		}
		filter["$or"] = bson.A{
			bson.M{"last_seen_at": bson.M{"$lt": seen}},
			bson.M{"last_seen_at": seen, "_id": bson.M{"$lt": id}},
		}
	}
	cur, err := s.devices.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: "last_seen_at", Value: -1}, {Key: "_id", Value: -1}}).
		SetLimit(int64(q.Limit)+1))
	if err != nil {
		return nil, "", fmt.Errorf("registry: list devices: %w", mongodb.Wrap(err))
	}
	var docs []deviceDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, "", fmt.Errorf("registry: list devices: %w", mongodb.Wrap(err))
	}
	next := ""
	if len(docs) > q.Limit {
		docs = docs[:q.Limit]
		last := docs[q.Limit-1]
		next = encodeCursor(last.LastSeenAt, last.ID)
	}
	out := make([]Device, len(docs))
	for i := range docs {
		out[i] = docs[i].device()
	}
	return out, next, nil
}

func encodeCursor(t time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(t.UnixMilli(), 10) + "|" + id))
}

func decodeCursor(c string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", err
	}
	ms, id, ok := strings.Cut(string(b), "|")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil {
		return time.Time{}, "", errors.New("malformed cursor")
	}
	return time.UnixMilli(n).UTC(), id, nil
}
