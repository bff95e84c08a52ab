package registry

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

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

// TokenKey is the stand-in for an FCM token in stored documents: the _id
// of the token's holder record, and the field touches compare.
func TokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func userIndexes() []mongo.IndexModel {
	// The sweeper's searches, on MongoDB (FerretDB v1 uses no index but
	// _id's); no request needs any index but _id's.
	return []mongo.IndexModel{
		{Keys: bson.D{{Key: "oldest_pushable_seen", Value: 1}}, Options: options.Index().SetName("oldest_pushable_seen")},
		{Keys: bson.D{{Key: "oldest_seen", Value: 1}}, Options: options.Index().SetName("oldest_seen")},
		{Keys: bson.D{{Key: "unverified", Value: 1}, {Key: "_id", Value: 1}}, Options: options.Index().SetName("unverified")},
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
// in which case the caller binds instead. On a shared store (MongoDB) it
// updates the device in place: one round trip, two when a stale token is
// confirmed without Firebase's word (it becomes unverified, and pushable,
// again). On an exclusive store it reads the user's document and writes
// it back: two round trips, each by _id.
func (s *Store) Touch(ctx context.Context, b Binding) (bool, error) {
	if !s.writes.Exclusive {
		return s.touchInPlace(ctx, b)
	}
	now, key, f := s.now(), TokenKey(b.FCMToken), deviceField(b.DeviceID)
	held := false
	_, err := s.updateUser(ctx, b.UserID, func(u *userDoc) bool {
		d, ok := u.Devices[f]
		held = ok && d.holds(key)
		if !held {
			return false
		}
		d.LastSeenAt, d.SessionID = now, b.SessionID
		if b.Verified {
			d.TokenStatus, d.TokenValidatedAt = TokenValid, now
		} else if d.TokenStatus == TokenStale {
			d.TokenStatus = TokenUnverified
		}
		u.Devices[f] = d
		return true
	})
	if err != nil {
		return false, fmt.Errorf("registry: touch device: %w", err)
	}
	return held, nil
}

// touchInPlace is Touch as one conditional update of the device's fields
// by path. It bumps the version, so that a concurrent whole-document
// write does not undo it, and lowers the summaries the sweeper searches
// by only as far as a device seen now needs.
func (s *Store) touchInPlace(ctx context.Context, b Binding) (bool, error) {
	unlock, err := s.userLocks.Lock(ctx, b.UserID)
	if err != nil {
		return false, err
	}
	defer unlock()
	now, f := s.now(), "devices."+deviceField(b.DeviceID)+"."
	filter := bson.D{{Key: "_id", Value: b.UserID}, {Key: f + "token_key", Value: TokenKey(b.FCMToken)}}
	set := bson.D{{Key: f + "last_seen_at", Value: now}, {Key: f + "session_id", Value: b.SessionID}}
	if b.Verified {
		set = append(set, bson.E{Key: f + "token_status", Value: TokenValid}, bson.E{Key: f + "token_validated_at", Value: now})
	}
	update := func(filter, set bson.D) (bool, error) {
		res, err := s.users.UpdateOne(ctx, filter, bson.D{
			{Key: "$set", Value: set},
			{Key: "$inc", Value: bson.D{{Key: "v", Value: 1}}},
			{Key: "$min", Value: bson.D{{Key: "oldest_pushable_seen", Value: now}}},
		})
		if err != nil {
			return false, fmt.Errorf("registry: touch device: %w", mongodb.Wrap(err))
		}
		return res.MatchedCount == 1, nil
	}
	if b.Verified {
		return update(filter, set)
	}
	ok, err := update(append(filter, bson.E{Key: f + "token_status", Value: bson.D{{Key: "$in", Value: bson.A{TokenValid, TokenUnverified}}}}), set)
	if err != nil || ok {
		return ok, err
	}
	// A stale token the app confirms is pushable again, as unverified.
	return update(filter, append(set, bson.E{Key: f + "token_status", Value: TokenUnverified}, bson.E{Key: "unverified", Value: true}))
}

// Bind makes the device hold the token for the session, creating the
// device if needed, taking the token from any other device that held it,
// and evicting the least recently seen devices beyond the user's limit.
// Concurrent binds of one device produce one record.
//
// A token moves in three steps, under the token's lock: (1) it is taken
// from the device its holder record names, if that device still holds
// it; (2) the holder record names the new device; (3) the new device gets
// it. A failure between any two leaves at most one device holding the
// token, and the same bind again finishes the move.
func (s *Store) Bind(ctx context.Context, b Binding) (BindResult, error) {
	if ok, err := s.Touch(ctx, b); err != nil || ok {
		return BindResult{}, err
	}
	res, evicted, err := s.bindToken(ctx, b)
	// A token taken from its earlier holder stays taken even if the bind
	// then failed: the earlier owner's trail says so either way.
	for _, d := range res.MovedFrom {
		s.record(ctx, Event{UserID: d.UserID, Type: EventTokenMoved, Actor: b.Actor,
			DeviceID: d.DeviceID, SessionID: d.SessionID, Outcome: "token now held by another device"})
	}
	if err != nil {
		return res, err
	}
	// After the token's lock: no two token locks are ever held at once. A
	// token document left naming an evicted device is harmless (that
	// device holds no token any more) and is replaced when the token is
	// bound again, so failing to release one does not fail a bind that
	// happened: answering 503 for it would send the client's retry down
	// the touch path having evicted already.
	_ = s.releaseTokens(ctx, evicted)
	if res.TokenChanged {
		status := TokenUnverified
		if b.Verified {
			status = TokenValid
		}
		s.record(ctx, Event{UserID: b.UserID, Type: EventTokenBound, Actor: b.Actor,
			DeviceID: b.DeviceID, SessionID: b.SessionID, Outcome: string(status)})
	}
	limit := s.limit(b)
	for _, d := range res.Evicted {
		s.record(ctx, Event{UserID: d.UserID, Type: EventDeviceEvicted, Actor: b.Actor,
			DeviceID: d.DeviceID, SessionID: d.SessionID, Outcome: fmt.Sprintf("device limit %d reached", limit)})
	}
	return res, nil
}

func (s *Store) limit(b Binding) int {
	if b.MaxDevices > 0 {
		return b.MaxDevices
	}
	return s.cfg.MaxDevicesPerUser
}

// bindToken moves the token to the device (see Bind) and returns what
// changed, with the evicted devices as stored (their tokens to release).
func (s *Store) bindToken(ctx context.Context, b Binding) (BindResult, []deviceDoc, error) {
	key := TokenKey(b.FCMToken)
	unlock, err := s.tokenLocks.Lock(ctx, key)
	if err != nil {
		return BindResult{}, nil, err
	}
	defer unlock()
	var res BindResult
	for range writeAttempts {
		prev, found, err := s.readToken(ctx, key)
		if err != nil {
			return res, nil, err
		}
		moved := found && (prev.UserID != b.UserID || prev.DeviceID != b.DeviceID)
		if moved {
			holder, err := s.takeToken(ctx, prev.UserID, prev.DeviceID, key, bson.ObjectID{})
			if err != nil {
				return res, nil, fmt.Errorf("registry: unbind moved token: %w", err)
			}
			if holder != nil {
				res.MovedFrom = append(res.MovedFrom, holder.device())
			}
		}
		next := tokenDoc{ID: key, UserID: b.UserID, DeviceID: b.DeviceID, Bind: bson.NewObjectID()}
		ok, err := s.claimToken(ctx, prev, found, next)
		if err != nil {
			return res, nil, err
		}
		if !ok {
			continue // another instance moved it meanwhile: follow it
		}
		evicted, err := s.setToken(ctx, b, next.Bind, &res)
		if err != nil {
			return res, nil, err
		}
		if !s.writes.Exclusive {
			if err := s.settle(ctx, b, key, prev, moved, next.Bind, &res); err != nil {
				return res, evicted, err
			}
		}
		return res, evicted, nil
	}
	return res, nil, fmt.Errorf("registry: bind device: token kept moving: %w", mongodb.ErrUnavailable)
}

// settle closes, on a shared store, the races that the token's lock
// closes within one process. Another instance that named the previous
// holder may have given it the token after step 1 took it: take it again
// (only that binding, by its nonce), now that the holder record names
// this device, so any later such write sees the record and undoes itself.
// And if another instance claimed the token since step 2, this device
// gives it up.
func (s *Store) settle(ctx context.Context, b Binding, key string, prev tokenDoc, moved bool, bind bson.ObjectID, res *BindResult) error {
	if moved && !prev.Bind.IsZero() {
		holder, err := s.takeToken(ctx, prev.UserID, prev.DeviceID, key, prev.Bind)
		if err != nil {
			return fmt.Errorf("registry: unbind moved token: %w", err)
		}
		if holder != nil {
			res.MovedFrom = append(res.MovedFrom, holder.device())
		}
	}
	now, found, err := s.readToken(ctx, key)
	if err != nil || (found && now.Bind == bind) {
		return err
	}
	if _, err := s.takeToken(ctx, b.UserID, b.DeviceID, key, bind); err != nil {
		return fmt.Errorf("registry: give up a token moved meanwhile: %w", err)
	}
	return nil
}

// setToken gives the device the token, creating the device (and evicting
// the least recently seen others beyond the limit) if it is new. It fills
// res and returns the evicted devices as stored.
func (s *Store) setToken(ctx context.Context, b Binding, bind bson.ObjectID, res *BindResult) ([]deviceDoc, error) {
	now, key, f, limit := s.now(), TokenKey(b.FCMToken), deviceField(b.DeviceID), s.limit(b)
	var evicted []deviceDoc
	_, err := s.updateUser(ctx, b.UserID, func(u *userDoc) bool {
		evicted = nil
		d, ok := u.Devices[f]
		res.Created, res.TokenChanged = !ok, !d.holds(key)
		if !ok {
			d = deviceDoc{UserID: b.UserID, DeviceID: b.DeviceID, CreatedAt: now}
		}
		d.FCMToken, d.TokenKey, d.TokenBind = b.FCMToken, key, bind
		d.TokenStatus, d.TokenValidatedAt = TokenUnverified, time.Time{}
		if b.Verified {
			d.TokenStatus, d.TokenValidatedAt = TokenValid, now
		}
		d.TokenUpdatedAt, d.LastSeenAt, d.SessionID = now, now, b.SessionID
		if b.Platform != "" {
			d.Platform = b.Platform
		}
		u.Devices[f] = d
		if res.Created {
			evicted = evict(u, f, limit)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("registry: bind device: %w", err)
	}
	res.Evicted = nil
	for i := range evicted {
		res.Evicted = append(res.Evicted, evicted[i].device())
	}
	return evicted, nil
}

// evict removes the least recently seen devices but keep beyond limit.
func evict(u *userDoc, keep string, limit int) []deviceDoc {
	excess := len(u.Devices) - limit
	if excess <= 0 {
		return nil
	}
	others := make([]deviceDoc, 0, len(u.Devices))
	for f, d := range u.Devices {
		if f != keep {
			others = append(others, d)
		}
	}
	slices.SortFunc(others, func(a, b deviceDoc) int {
		if c := a.LastSeenAt.Compare(b.LastSeenAt); c != 0 {
			return c
		}
		return strings.Compare(a.DeviceID, b.DeviceID)
	})
	evicted := others[:min(excess, len(others))]
	for _, d := range evicted {
		delete(u.Devices, deviceField(d.DeviceID))
	}
	return evicted
}

// Get returns one device.
func (s *Store) Get(ctx context.Context, userID, deviceID string) (Device, error) {
	u, _, err := s.readUser(ctx, userID)
	if err != nil {
		return Device{}, fmt.Errorf("registry: get device: %w", err)
	}
	d, ok := u.Devices[deviceField(deviceID)]
	if !ok {
		return Device{}, fmt.Errorf("registry: device %q: %w", deviceID, ErrNotFound)
	}
	return d.device(), nil
}

// UnbindSession removes the token from every device the session bound
// (logout, revocation): they stay listed but receive no pushes. A device
// another session has bound since is left alone.
func (s *Store) UnbindSession(ctx context.Context, userID, sessionID, actor string) error {
	now := s.now()
	var unbound []deviceDoc
	_, err := s.updateUser(ctx, userID, func(u *userDoc) bool {
		unbound = nil
		for f, d := range u.Devices {
			if d.SessionID != sessionID || d.TokenStatus == TokenUnbound {
				continue
			}
			unbound = append(unbound, d)
			d.dropToken(TokenUnbound, now)
			u.Devices[f] = d
		}
		return len(unbound) > 0
	})
	if err != nil {
		return fmt.Errorf("registry: unbind devices: %w", err)
	}
	releaseErr := s.releaseTokens(ctx, unbound)
	for _, d := range unbound {
		s.record(ctx, Event{UserID: userID, Type: EventTokenUnbound, Actor: actor, DeviceID: d.DeviceID, SessionID: sessionID})
	}
	if releaseErr != nil {
		return fmt.Errorf("registry: unbind devices: %w", releaseErr)
	}
	return nil
}

// Delete removes a device. It returns the device so the caller can revoke
// the session bound to it.
func (s *Store) Delete(ctx context.Context, userID, deviceID, actor string) (Device, error) {
	f := deviceField(deviceID)
	var gone *deviceDoc
	_, err := s.updateUser(ctx, userID, func(u *userDoc) bool {
		gone = nil
		d, ok := u.Devices[f]
		if !ok {
			return false
		}
		gone = &d
		delete(u.Devices, f)
		return true
	})
	if err != nil {
		return Device{}, fmt.Errorf("registry: delete device: %w", err)
	}
	if gone == nil {
		return Device{}, fmt.Errorf("registry: device %q: %w", deviceID, ErrNotFound)
	}
	releaseErr := s.releaseToken(ctx, gone.TokenKey, gone.TokenBind)
	s.record(ctx, Event{UserID: userID, Type: EventDeviceDeleted, Actor: actor, DeviceID: deviceID, SessionID: gone.SessionID})
	if releaseErr != nil {
		return gone.device(), fmt.Errorf("registry: delete device: %w", releaseErr)
	}
	return gone.device(), nil
}

// MarkInvalid unbinds a token Firebase rejected, if the device still
// holds it, and records the prune.
func (s *Store) MarkInvalid(ctx context.Context, userID, deviceID, token, reason string) (bool, error) {
	f, key, now := deviceField(deviceID), TokenKey(token), s.now()
	var pruned *deviceDoc
	_, err := s.updateUser(ctx, userID, func(u *userDoc) bool {
		pruned = nil
		d, ok := u.Devices[f]
		if !ok || !d.holds(key) {
			return false
		}
		was := d
		pruned = &was
		d.dropToken(TokenInvalid, now)
		u.Devices[f] = d
		return true
	})
	if err != nil {
		return false, fmt.Errorf("registry: prune token: %w", err)
	}
	if pruned == nil {
		return false, nil
	}
	releaseErr := s.releaseToken(ctx, pruned.TokenKey, pruned.TokenBind)
	s.record(ctx, Event{UserID: userID, Type: EventTokenPruned, Actor: "fcm", DeviceID: deviceID, Outcome: reason})
	if releaseErr != nil {
		return true, fmt.Errorf("registry: prune token: %w", releaseErr)
	}
	return true, nil
}

// Pushable returns the user's devices whose tokens may be pushed to, in
// device ID order: one read of the user's document.
func (s *Store) Pushable(ctx context.Context, userID string) ([]Device, error) {
	u, _, err := s.readUser(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("registry: pushable devices: %w", err)
	}
	var out []Device
	for _, d := range u.Devices {
		if d.TokenStatus.Pushable() {
			out = append(out, d.device())
		}
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.DeviceID, b.DeviceID) })
	return out, nil
}

// pushableReaders bounds how many users' documents PushableOf reads at
// once.
const pushableReaders = 8

// PushableOf returns the pushable devices of many users, by user ID; users
// without one are absent. It reads each user's document by _id, several
// at a time: FerretDB v1 pushes neither $in nor $or down, so one query
// for them all would read every user's devices.
func (s *Store) PushableOf(ctx context.Context, userIDs []string) (map[string][]Device, error) {
	ids := slices.Compact(slices.Sorted(slices.Values(userIDs)))
	found := make([][]Device, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(pushableReaders)
	for i, id := range ids {
		g.Go(func() (err error) {
			found[i], err = s.Pushable(gctx, id)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := map[string][]Device{}
	for i, id := range ids {
		if len(found[i]) > 0 {
			out[id] = found[i]
		}
	}
	return out, nil
}

// DeviceQuery selects a page of a user's devices.
type DeviceQuery struct {
	UserID   string
	Status   TokenStatus // empty: any
	Platform string      // empty: any
	Cursor   string
	Limit    int
}

// List returns a user's devices, most recently seen first, from one read
// of the user's document. The cursor is the (last_seen_at, user/device
// ID) of the last device of the previous page, so a device inserted
// meanwhile (seen now, so first) never shifts later pages.
func (s *Store) List(ctx context.Context, q DeviceQuery) ([]Device, string, error) {
	var after time.Time
	var afterID string
	if q.Cursor != "" {
		var err error
		if after, afterID, err = decodeCursor(q.Cursor); err != nil {
			return nil, "", fmt.Errorf("registry: devices cursor: %w", ErrBadCursor)
		}
	}
	u, _, err := s.readUser(ctx, q.UserID)
	if err != nil {
		return nil, "", fmt.Errorf("registry: list devices: %w", err)
	}
	var docs []deviceDoc
	for _, d := range u.Devices {
		if (q.Status != "" && d.TokenStatus != q.Status) || (q.Platform != "" && d.Platform != q.Platform) {
			continue
		}
		// Stored times have millisecond precision, as the cursor does.
		if q.Cursor != "" && !(d.LastSeenAt.Before(after) ||
			d.LastSeenAt.Equal(after) && deviceKey(d.UserID, d.DeviceID) < afterID) {
			continue
		}
		docs = append(docs, d)
	}
	slices.SortFunc(docs, func(a, b deviceDoc) int {
		if c := b.LastSeenAt.Compare(a.LastSeenAt); c != 0 {
			return c
		}
		return strings.Compare(b.DeviceID, a.DeviceID)
	})
	next := ""
	if q.Limit > 0 && len(docs) > q.Limit {
		docs = docs[:q.Limit]
		last := docs[q.Limit-1]
		next = encodeCursor(last.LastSeenAt, deviceKey(last.UserID, last.DeviceID))
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
