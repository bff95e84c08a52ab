package auth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// A login writes only its session: the session is the login's audit
// entry and the source of the user's last login time. That keeps a login
// at two round trips (the user, the session) instead of four.

// ErrBadCursor means a pagination cursor was not one this service handed
// out.
var ErrBadCursor = errors.New("bad cursor")

// trailPosition is where a page of the audit trail ends. The trail is
// ordered newest first by time, then by ObjectID: events have one as
// their ID, and a session takes one when it is created (login_seq), so
// entries of the same millisecond keep the order they were written in.
type trailPosition struct {
	at  time.Time
	seq string // an ObjectID in hex, which sorts as its bytes do
}

func (p trailPosition) String() string {
	return strconv.FormatInt(p.at.UnixMilli(), 10) + "." + p.seq
}

func parseTrailPosition(s string) (trailPosition, error) {
	ms, seq, ok := strings.Cut(s, ".")
	n, err := strconv.ParseInt(ms, 10, 64)
	if _, oidErr := bson.ObjectIDFromHex(seq); !ok || err != nil || oidErr != nil {
		return trailPosition{}, fmt.Errorf("auth: audit trail cursor: %w", ErrBadCursor)
	}
	return trailPosition{at: time.UnixMilli(n).UTC(), seq: seq}, nil
}

// compare orders positions as the trail lists them: -1 when a comes first.
func (a trailPosition) compare(b trailPosition) int {
	if c := b.at.Compare(a.at); c != 0 {
		return c
	}
	return cmp.Compare(b.seq, a.seq)
}

type trailEntry struct {
	pos   trailPosition
	event AuditEvent
}

// AuditTrail returns a page of the user's audit trail, newest first: the
// events the Auditor recorded merged with the user's logins. The cursor
// is empty for the first page; the returned one is empty after the last.
func (s *Service) AuditTrail(ctx context.Context, userID, cursor string, limit int) ([]AuditEvent, string, error) {
	if limit < 1 {
		return nil, "", invalid("limit", "must be at least 1")
	}
	var after trailPosition
	if cursor != "" {
		var err error
		if after, err = parseTrailPosition(cursor); err != nil {
			return nil, "", err
		}
	}
	events, err := s.cfg.Auditor.AuditedBefore(ctx, userID, after.at, after.seq, limit+1)
	if err != nil {
		return nil, "", err
	}
	logins, err := s.sessions.loginsBefore(ctx, userID, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	entries := make([]trailEntry, 0, len(events)+len(logins))
	for _, e := range events {
		entries = append(entries, trailEntry{pos: trailPosition{at: e.At, seq: e.ID}, event: e})
	}
	for _, d := range logins {
		entries = append(entries, trailEntry{pos: trailPosition{at: d.CreatedAt, seq: d.LoginSeq.Hex()}, event: loginEvent(d)})
	}
	slices.SortFunc(entries, func(a, b trailEntry) int { return a.pos.compare(b.pos) })
	next := ""
	if len(entries) > limit {
		entries = entries[:limit]
		next = entries[limit-1].pos.String()
	}
	out := make([]AuditEvent, len(entries))
	for i, e := range entries {
		out[i] = e.event
	}
	return out, next, nil
}

func loginEvent(d sessionDoc) AuditEvent {
	return AuditEvent{ID: d.ID, UserID: d.UserID, Type: "login", Actor: "user:" + d.UserID,
		DeviceID: d.DeviceID, SessionID: d.ID, Outcome: "style " + d.Style, At: d.CreatedAt}
}

// loginsBefore returns up to limit of the user's sessions created after
// the position in the trail's order, newest first; a zero position
// means from the newest.
func (ss *sessions) loginsBefore(ctx context.Context, userID string, after trailPosition, limit int) ([]sessionDoc, error) {
	filter := bson.M{"user_id": userID}
	if !after.at.IsZero() {
		seq, err := bson.ObjectIDFromHex(after.seq)
		if err != nil {
			return nil, fmt.Errorf("auth: audit trail cursor: %w", ErrBadCursor)
		}
		// The $lte bound lets MongoDB scan the index from the position.
		filter["created_at"] = bson.M{"$lte": after.at}
		filter["$or"] = bson.A{bson.M{"created_at": bson.M{"$lt": after.at}}, bson.M{"login_seq": bson.M{"$lt": seq}}}
	}
	cur, err := ss.coll.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: "created_at", Value: -1}, {Key: "login_seq", Value: -1}}).SetLimit(int64(limit)).
		SetProjection(bson.M{"user_id": 1, "device_id": 1, "style": 1, "created_at": 1, "login_seq": 1}))
	if err != nil {
		return nil, fmt.Errorf("auth: logins: %w", mongodb.Wrap(err))
	}
	var docs []sessionDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("auth: logins: %w", mongodb.Wrap(err))
	}
	return docs, nil
}

// Upgrade brings sessions written before logins were ordered in the audit
// trail up to date: each gets a login_seq, without which the trail's
// cursor could not page past it. It runs at every start and has nothing
// to do once done.
func (s *Service) Upgrade(ctx context.Context) error {
	cur, err := s.sessions.coll.Find(ctx, bson.M{"login_seq": bson.M{"$exists": false}},
		options.Find().SetProjection(bson.M{"_id": 1}))
	if err != nil {
		return fmt.Errorf("auth: upgrade sessions: %w", mongodb.Wrap(err))
	}
	var legacy []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &legacy); err != nil {
		return fmt.Errorf("auth: upgrade sessions: %w", mongodb.Wrap(err))
	}
	for _, d := range legacy {
		if err := s.sessions.setLoginSeq(ctx, d.ID); err != nil {
			return err
		}
	}
	if len(legacy) > 0 {
		s.cfg.Logger.Info("gave earlier sessions their place in the audit trail", "sessions", len(legacy))
	}
	return s.sessions.upgradeRefreshModes(ctx, s.cfg.Logger)
}

// upgradeUsers gives the users written before login keys and stored login
// times their keys and their last login, taken from their sessions.
func (s *Service) upgradeUsers(ctx context.Context) error {
	cur, err := s.users.coll.Find(ctx, bson.M{"keyed": bson.M{"$ne": true}})
	if err != nil {
		return fmt.Errorf("auth: upgrade users: %w", mongodb.Wrap(err))
	}
	var legacy []User
	if err := cur.All(ctx, &legacy); err != nil {
		return fmt.Errorf("auth: upgrade users: %w", mongodb.Wrap(err))
	}
	for i := range legacy {
		u := &legacy[i]
		if u.LastLoginAt.IsZero() {
			at, err := s.sessions.lastLogin(ctx, u.ID)
			if err != nil {
				return err
			}
			if !at.IsZero() {
				if err := s.users.raiseLastLogin(ctx, u.ID, at); err != nil {
					return err
				}
			}
		}
		if err := s.users.keyUser(ctx, u); err != nil {
			return err
		}
	}
	if len(legacy) > 0 {
		s.cfg.Logger.Info("gave earlier users their login keys and last login", "users", len(legacy))
	}
	s.users.keyed.Store(true)
	return nil
}

func (ss *sessions) setLoginSeq(ctx context.Context, id string) error {
	unlock, err := ss.locks.Lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	_, err = ss.coll.UpdateOne(ctx, ss.writes.Filter(id, bson.E{Key: "login_seq", Value: bson.M{"$exists": false}}),
		bson.M{"$set": bson.M{"login_seq": bson.NewObjectID()}})
	if err != nil {
		return fmt.Errorf("auth: upgrade session: %w", mongodb.Wrap(err))
	}
	return nil
}

// lastLogin returns when the user's newest session was created; zero if
// the user never logged in.
func (ss *sessions) lastLogin(ctx context.Context, userID string) (time.Time, error) {
	var d sessionDoc
	err := ss.coll.FindOne(ctx, bson.M{"user_id": userID}, options.FindOne().
		SetSort(bson.D{{Key: "created_at", Value: -1}}).SetProjection(bson.M{"created_at": 1})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("auth: last login: %w", mongodb.Wrap(err))
	}
	return d.CreatedAt, nil
}
