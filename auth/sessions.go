package auth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// Session is one login on one device.
type Session struct {
	ID            string
	UserID        string
	Username      string
	Roles         []string
	Style         string
	DeviceID      string
	Platform      string
	FCMToken      string
	MaxDevices    int
	CreatedAt     time.Time
	RefreshedAt   time.Time
	ExpiresAt     time.Time
	IdleExpiresAt time.Time
	Revoked       bool
	RevokedAt     time.Time
	RevokeReason  string
}

// sessionDoc is a session as stored. cred is its current credential: a
// refresh token's or a Kecak token's secret, of which only hashes are
// kept. prev_next is the successor secret sealed with a key derived from
// the previous secret, so a duplicate of the last refresh can be answered
// with the same successor while a dump of the database lets nobody
// refresh.
type sessionDoc struct {
	ID       string   `bson:"_id"`
	UserID   string   `bson:"user_id"`
	Username string   `bson:"username"`
	Roles    []string `bson:"roles"`
	Style    string   `bson:"style"`
	// Refresh is the session's refresh mode, fixed when it is created:
	// modeRotating or modeFixed (empty only in sessions written before
	// modes existed, until the start-up upgrade gives them one).
	Refresh  string `bson:"refresh"`
	DeviceID string `bson:"device_id"`
	Platform string `bson:"platform"`
	FCMToken string `bson:"fcm_token"`
	// ClientDeviceID is the device the client named at sign-in without
	// binding a token (see LoginRequest).
	ClientDeviceID string    `bson:"client_device_id,omitempty"`
	MaxDevices     int       `bson:"max_devices"`
	CreatedAt      time.Time `bson:"created_at"`
	// LoginSeq orders the login among the user's audit events.
	LoginSeq      bson.ObjectID `bson:"login_seq"`
	RefreshedAt   time.Time     `bson:"refreshed_at"`
	ExpiresAt     time.Time     `bson:"expires_at"`
	IdleExpiresAt time.Time     `bson:"idle_expires_at"`
	Revoked       bool          `bson:"revoked"`
	RevokedAt     time.Time     `bson:"revoked_at"`
	RevokeReason  string        `bson:"revoke_reason"`
	// Unbound records that the session ended and its devices were
	// unbound; until then a retry or the sweeper finishes the job.
	Unbound bool       `bson:"unbound,omitempty"`
	Cred    credential `bson:"cred"`
}

// Refresh modes. A session's refresh token either rotates at every use
// (native, abitmedia, MCS, Kecak) or is kept by the client (Duktig,
// kalsel); a token is refused by the routes of the other mode, so a stolen
// rotating token cannot be laundered into long-lived tokens that rotation
// and reuse detection never see.
const (
	modeRotating = "rotating"
	modeFixed    = "fixed"
)

type credential struct {
	Gen       int64     `bson:"gen"`
	Hash      string    `bson:"hash"`
	PrevHash  string    `bson:"prev_hash"`
	PrevNext  []byte    `bson:"prev_next"`
	RotatedAt time.Time `bson:"rotated_at"`
}

// deviceName is the device the session is on: the bound one, else the one
// its client named at sign-in.
func (d *sessionDoc) deviceName() string {
	if d.DeviceID != "" {
		return d.DeviceID
	}
	return d.ClientDeviceID
}

func (d *sessionDoc) session() Session {
	return Session{
		ID: d.ID, UserID: d.UserID, Username: d.Username, Roles: d.Roles, Style: d.Style,
		DeviceID: d.DeviceID, Platform: d.Platform, FCMToken: d.FCMToken, MaxDevices: d.MaxDevices,
		CreatedAt: d.CreatedAt, RefreshedAt: d.RefreshedAt, ExpiresAt: d.ExpiresAt,
		IdleExpiresAt: d.IdleExpiresAt, Revoked: d.Revoked, RevokedAt: d.RevokedAt, RevokeReason: d.RevokeReason,
	}
}

func sessionIndexes() []mongo.IndexModel {
	return []mongo.IndexModel{
		{Keys: bson.D{{Key: "user_id", Value: 1}, {Key: "revoked", Value: 1}}, Options: options.Index().SetName("user_live")},
		{Keys: bson.D{{Key: "expires_at", Value: 1}}, Options: options.Index().SetName("expiry")},
		// With "expiry", one per clause of endedFilter's $or, so the
		// sweeper's search is three index scans on MongoDB.
		{Keys: bson.D{{Key: "idle_expires_at", Value: 1}}, Options: options.Index().SetName("idle_expiry")},
		{Keys: bson.D{{Key: "revoked", Value: 1}, {Key: "revoked_at", Value: 1}}, Options: options.Index().SetName("revoked")},
		// The user's logins, newest first (see AuditTrail).
		{Keys: bson.D{{Key: "user_id", Value: 1}, {Key: "created_at", Value: -1}, {Key: "login_seq", Value: -1}}, Options: options.Index().SetName("user_logins")},
	}
}

// sessions is the sessions collection. Every write to a session takes its
// lock (see mongodb.DocLocks): without it, on FerretDB, a refresh in
// flight could write back a session that a revocation had just ended.
type sessions struct {
	coll   *mongo.Collection
	locks  *mongodb.DocLocks
	writes mongodb.Writes
}

func (ss *sessions) insert(ctx context.Context, d *sessionDoc) error {
	// Taken at the write, so the login follows what it recorded first
	// (a device bind) in the audit trail.
	d.LoginSeq = bson.NewObjectID()
	if _, err := ss.coll.InsertOne(ctx, d); err != nil {
		return fmt.Errorf("auth: create session: %w", mongodb.Wrap(err))
	}
	return nil
}

func (ss *sessions) get(ctx context.Context, id string) (*sessionDoc, error) {
	var d sessionDoc
	err := ss.coll.FindOne(ctx, bson.M{"_id": id}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		// A credential whose session was deleted (or never existed).
		return nil, refused(CauseUnknown, fmt.Errorf("auth: session: %w", ErrInvalidToken))
	}
	if err != nil {
		return nil, fmt.Errorf("auth: get session: %w", mongodb.Wrap(err))
	}
	return &d, nil
}

// presented is a credential a client showed: session, generation, secret.
type presented struct {
	sessionID string
	gen       int64
	secret    []byte
}

// advanced is the outcome of using a credential.
type advanced struct {
	doc    *sessionDoc
	gen    int64
	secret []byte
	// duplicate: the credential had just been rotated (within the grace
	// window); the answer repeats the successor and nothing changed.
	duplicate bool
}

// advancePolicy says how a use of a credential changes the session.
type advancePolicy struct {
	rotate bool
	// mode is the refresh mode the route serves; empty accepts any.
	mode       string
	now        time.Time
	refreshTTL time.Duration
	grace      time.Duration
	// set holds extra fields to write with the credential change.
	set bson.M
}

// advance uses a credential: rotating it (a new secret replaces it) or
// not (the session's idle expiry slides). The happy path is one round trip.
func (ss *sessions) advance(ctx context.Context, p presented, pol advancePolicy) (advanced, error) {
	unlock, err := ss.locks.Lock(ctx, p.sessionID)
	if err != nil {
		return advanced{}, err
	}
	defer unlock()
	return ss.advanceLocked(ctx, p, pol)
}

// advanceThen is advance followed by then, still under the session's lock,
// so that nothing another request does to the session comes between them.
func (ss *sessions) advanceThen(ctx context.Context, p presented, pol advancePolicy, then func(*sessionDoc)) (advanced, error) {
	unlock, err := ss.locks.Lock(ctx, p.sessionID)
	if err != nil {
		return advanced{}, err
	}
	defer unlock()
	adv, err := ss.advanceLocked(ctx, p, pol)
	if err == nil {
		then(adv.doc)
	}
	return adv, err
}

// checkBindAdvance checks the credential, lets bind record the device the
// request names, then advances the credential with pol.set — all under the
// session's lock. The device is bound before the credential moves, so a
// failed bind leaves the presented token usable; and two requests with
// one credential but different devices or tokens cannot interleave, so
// the session and the device record end up naming the same binding.
func (ss *sessions) checkBindAdvance(ctx context.Context, p presented, pol advancePolicy, bind func(*sessionDoc) error) (advanced, error) {
	unlock, err := ss.locks.Lock(ctx, p.sessionID)
	if err != nil {
		return advanced{}, err
	}
	defer unlock()
	d, err := ss.checkLocked(ctx, p, pol)
	if err != nil {
		return advanced{}, err
	}
	if err := bind(d); err != nil {
		return advanced{}, err
	}
	return ss.advanceLocked(ctx, p, pol)
}

// advanceLocked is advance for a caller holding the session's lock.
func (ss *sessions) advanceLocked(ctx context.Context, p presented, pol advancePolicy) (advanced, error) {
	h := hashSecret(p.secret)
	// bson.D rather than bson.M: the driver encodes it without reflecting
	// over a map (encoding the filter and update was 6% of a refresh's CPU
	// in a profile of the running service).
	filter := bson.D{
		{Key: "_id", Value: p.sessionID}, {Key: "revoked", Value: false},
		{Key: "cred.gen", Value: p.gen}, {Key: "cred.hash", Value: h},
		// Not the other mode; a session from before modes matches either.
		{Key: "refresh", Value: bson.D{{Key: "$ne", Value: otherMode(pol.mode)}}},
		{Key: "expires_at", Value: bson.D{{Key: "$gt", Value: pol.now}}},
		{Key: "idle_expires_at", Value: bson.D{{Key: "$gt", Value: pol.now}}},
	}
	// The idle expiry slides but never past the absolute one; the pipeline
	// form that would express min() is not in FerretDB v1, so the sliding
	// value is capped after reading (see below).
	set := make(bson.D, 0, 3+len(pol.set))
	set = append(set, bson.E{Key: "refreshed_at", Value: pol.now},
		bson.E{Key: "idle_expires_at", Value: pol.now.Add(pol.refreshTTL)})
	for k, v := range pol.set {
		set = append(set, bson.E{Key: k, Value: v})
	}
	out := advanced{gen: p.gen, secret: p.secret}
	if pol.rotate {
		out.gen, out.secret = p.gen+1, newSecret()
		sealed, err := seal(p.secret, out.secret)
		if err != nil {
			return advanced{}, err
		}
		set = append(set, bson.E{Key: "cred", Value: credential{Gen: out.gen, Hash: hashSecret(out.secret),
			PrevHash: h, PrevNext: sealed, RotatedAt: pol.now}})
	}
	if ss.writes.Exclusive {
		return ss.advanceByID(ctx, p, pol, set, out)
	}
	var d sessionDoc
	err := ss.coll.FindOneAndUpdate(ctx, filter, bson.D{{Key: "$set", Value: set}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&d)
	if err == nil {
		if d.IdleExpiresAt.After(d.ExpiresAt) {
			d.IdleExpiresAt = d.ExpiresAt
		}
		out.doc = &d
		return out, nil
	}
	if !errors.Is(err, mongo.ErrNoDocuments) {
		return advanced{}, fmt.Errorf("auth: refresh session: %w", mongodb.Wrap(err))
	}
	return ss.diagnose(ctx, p, pol)
}

// advanceByID is advanceLocked on an Exclusive store: the session is read
// by _id and judged here, then written by _id, the only filter the
// embedded store finds without reading every session (see
// mongodb.Writes). Two round trips, whatever the number of sessions.
func (ss *sessions) advanceByID(ctx context.Context, p presented, pol advancePolicy, set bson.D, out advanced) (advanced, error) {
	d, err := ss.get(ctx, p.sessionID)
	if err != nil {
		return advanced{}, err
	}
	if judge(d, p, pol) != verdictCurrent {
		return ss.diagnoseDoc(ctx, d, p, pol)
	}
	if _, err := ss.coll.UpdateOne(ctx, ss.writes.Filter(d.ID), bson.D{{Key: "$set", Value: set}}); err != nil {
		return advanced{}, fmt.Errorf("auth: refresh session: %w", mongodb.Wrap(err))
	}
	for _, e := range set {
		d.apply(e.Key, e.Value)
	}
	if d.IdleExpiresAt.After(d.ExpiresAt) {
		d.IdleExpiresAt = d.ExpiresAt
	}
	out.doc = d
	return out, nil
}

// apply makes d what a $set of key to v makes the stored session, for the
// fields a refresh sets.
func (d *sessionDoc) apply(key string, v any) {
	switch key {
	case "refreshed_at":
		d.RefreshedAt = v.(time.Time)
	case "idle_expires_at":
		d.IdleExpiresAt = v.(time.Time)
	case "device_id":
		d.DeviceID = v.(string)
	case "fcm_token":
		d.FCMToken = v.(string)
	case "platform":
		d.Platform = v.(string)
	case "cred":
		d.Cred = v.(credential)
	default:
		panic("auth: a refresh sets an unknown session field " + key)
	}
}

// verdict is what a presented credential is to its session.
type verdict int

const (
	verdictCurrent     verdict = iota
	verdictDuplicate           // just rotated, inside the grace window
	verdictExpired             // past the absolute expiry
	verdictIdleExpired         // past the idle expiry
	verdictRevoked
	verdictReused // genuine but retired: a copy is in someone else's hands
	verdictUnknown
)

func judge(d *sessionDoc, p presented, pol advancePolicy) verdict {
	h := hashSecret(p.secret)
	now, grace := pol.now, pol.grace
	switch {
	case d.Revoked:
		return verdictRevoked
	case pol.mode != "" && d.Refresh == otherMode(pol.mode):
		// Refused without judging the credential further: a route of the
		// other mode neither uses it nor revokes for it.
		return verdictUnknown
	case d.Cred.Gen == p.gen && equalHash(d.Cred.Hash, h):
		return d.expiry(now, verdictCurrent)
	case d.Cred.Gen == p.gen+1 && equalHash(d.Cred.PrevHash, h) && now.Sub(d.Cred.RotatedAt) <= grace:
		return d.expiry(now, verdictDuplicate)
	case p.gen < d.Cred.Gen:
		// The credential's MAC or signature was checked before: it is one
		// this session really had.
		return verdictReused
	}
	return verdictUnknown
}

// expiry is live, or the expiry the session is past at now (the absolute
// one first: once it passes, idleness no longer matters).
func (d *sessionDoc) expiry(now time.Time, live verdict) verdict {
	switch {
	case !now.Before(d.ExpiresAt):
		return verdictExpired
	case !now.Before(d.IdleExpiresAt):
		return verdictIdleExpired
	}
	return live
}

// reasonReuse is the revocation reason of reuse detection; a session
// revoked for it answers CauseReused to every later credential, so the
// holder of the current one (often the victim) learns of the theft too.
const reasonReuse = "refresh token reuse detected"

// revokedError is the refusal of a credential of the revoked session d.
func (d *sessionDoc) revokedError() error {
	cause := CauseRevoked
	if d.RevokeReason == reasonReuse {
		cause = CauseReused
	}
	return refused(cause, fmt.Errorf("auth: session %s: %w", d.ID, ErrSessionRevoked))
}

// endedError is the refusal of a credential of the session d at now, nil
// while the session lives.
func (d *sessionDoc) endedError(now time.Time) error {
	if d.Revoked {
		return d.revokedError()
	}
	switch d.expiry(now, verdictCurrent) {
	case verdictExpired:
		return refused(CauseExpired, fmt.Errorf("auth: session %s: %w", d.ID, ErrTokenExpired))
	case verdictIdleExpired:
		return refused(CauseIdleExpired, fmt.Errorf("auth: session %s: %w", d.ID, ErrTokenExpired))
	}
	return nil
}

// diagnose explains why a credential did not match: unknown, revoked,
// expired, a duplicate within the grace window (answered with the same
// successor), or reuse of a retired credential, which revokes the session.
func (ss *sessions) diagnose(ctx context.Context, p presented, pol advancePolicy) (advanced, error) {
	d, err := ss.get(ctx, p.sessionID)
	if err != nil {
		return advanced{}, err
	}
	return ss.diagnoseDoc(ctx, d, p, pol)
}

// diagnoseDoc is diagnose of the session d, just read under its lock.
func (ss *sessions) diagnoseDoc(ctx context.Context, d *sessionDoc, p presented, pol advancePolicy) (advanced, error) {
	d, err := ss.checkDoc(ctx, d, p, pol)
	if err != nil {
		return advanced{}, err
	}
	if d.Cred.Gen == p.gen {
		// The credential is current, yet the conditional update missed:
		// another instance changed the session in between. The client
		// may simply retry.
		return advanced{}, fmt.Errorf("auth: session %s: concurrent update: %w", d.ID, ErrUnavailable)
	}
	next, err := open(p.secret, d.Cred.PrevNext)
	if err != nil || !equalHash(hashSecret(next), d.Cred.Hash) {
		return advanced{}, refused(CauseUnknown, fmt.Errorf("auth: session %s: successor unavailable: %w", d.ID, ErrInvalidToken))
	}
	if changesFields(d, pol.set) {
		// A duplicate asking for another binding (a retry whose first
		// answer was lost, sent with the FCM token the app has now) has had
		// its device bound by the caller; the session must name that
		// binding too, or the two disagree until the next refresh.
		if d, err = ss.setIfCurrent(ctx, d, pol.set); err != nil {
			return advanced{}, err
		}
	}
	return advanced{doc: d, gen: d.Cred.Gen, secret: next, duplicate: true}, nil
}

// changesFields reports whether set gives any of the session's binding
// fields a new value (any other field counts as a change).
func changesFields(d *sessionDoc, set bson.M) bool {
	cur := map[string]string{"device_id": d.DeviceID, "fcm_token": d.FCMToken, "platform": d.Platform}
	for k, v := range set {
		if s, ok := v.(string); !ok || cur[k] != s {
			return true
		}
	}
	return false
}

// setIfCurrent writes set to the session unless its credential moved on
// since d was read.
func (ss *sessions) setIfCurrent(ctx context.Context, d *sessionDoc, set bson.M) (*sessionDoc, error) {
	// On an Exclusive store the caller read d under the session's lock.
	var out sessionDoc
	err := ss.coll.FindOneAndUpdate(ctx,
		ss.writes.Filter(d.ID, bson.E{Key: "revoked", Value: false},
			bson.E{Key: "cred.gen", Value: d.Cred.Gen}, bson.E{Key: "cred.hash", Value: d.Cred.Hash}),
		bson.M{"$set": set}, options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&out)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("auth: session %s: concurrent update: %w", d.ID, ErrUnavailable)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: update session binding: %w", mongodb.Wrap(err))
	}
	return &out, nil
}

// check reports whether a credential is current (or a duplicate within the
// grace window) without changing anything, except that reuse of a retired
// credential revokes the session.
func (ss *sessions) check(ctx context.Context, p presented, pol advancePolicy) (*sessionDoc, error) {
	unlock, err := ss.locks.Lock(ctx, p.sessionID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return ss.checkLocked(ctx, p, pol)
}

// checkLocked is check for a caller holding the session's lock.
func (ss *sessions) checkLocked(ctx context.Context, p presented, pol advancePolicy) (*sessionDoc, error) {
	d, err := ss.get(ctx, p.sessionID)
	if err != nil {
		return nil, err
	}
	return ss.checkDoc(ctx, d, p, pol)
}

// checkDoc is checkLocked of the session d, just read under its lock.
func (ss *sessions) checkDoc(ctx context.Context, d *sessionDoc, p presented, pol advancePolicy) (*sessionDoc, error) {
	now := pol.now
	switch judge(d, p, pol) {
	case verdictCurrent, verdictDuplicate:
		return d, nil
	case verdictExpired, verdictIdleExpired, verdictRevoked:
		return nil, d.endedError(now)
	case verdictReused:
		if err := ss.revokeDoc(ctx, d, reasonReuse, now); err != nil {
			return nil, err
		}
		return nil, refused(CauseReused, fmt.Errorf("auth: session %s: %w", d.ID, ErrTokenReused))
	}
	// Another refresh mode's credential, or one this session never had.
	return nil, refused(CauseUnknown, fmt.Errorf("auth: session %s: %w", d.ID, ErrInvalidToken))
}

// setFields writes fields of a live session.
func (ss *sessions) setFields(ctx context.Context, id string, set bson.M) error {
	unlock, err := ss.locks.Lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	return ss.setFieldsLocked(ctx, id, set)
}

// setFieldsLocked is setFields for a caller holding the session's lock. On
// an Exclusive store a revoked session gets the fields too, which changes
// nothing it does.
func (ss *sessions) setFieldsLocked(ctx context.Context, id string, set bson.M) error {
	if _, err := ss.coll.UpdateOne(ctx, ss.writes.Filter(id, bson.E{Key: "revoked", Value: false}), bson.M{"$set": set}); err != nil {
		return fmt.Errorf("auth: update session: %w", mongodb.Wrap(err))
	}
	return nil
}

func (ss *sessions) revoke(ctx context.Context, id, reason string, now time.Time) error {
	unlock, err := ss.locks.Lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	if !ss.writes.Exclusive {
		return ss.revokeDoc(ctx, &sessionDoc{ID: id}, reason, now)
	}
	d, err := ss.get(ctx, id)
	if err != nil {
		return err
	}
	return ss.revokeDoc(ctx, d, reason, now)
}

// revokeDoc revokes the session d unless it is revoked already, keeping
// the first revocation's time and reason. On an Exclusive store d is the
// session as just read under its lock; otherwise the store checks.
func (ss *sessions) revokeDoc(ctx context.Context, d *sessionDoc, reason string, now time.Time) error {
	if d.Revoked {
		return nil
	}
	_, err := ss.coll.UpdateOne(ctx, ss.writes.Filter(d.ID, bson.E{Key: "revoked", Value: false}),
		bson.M{"$set": bson.M{"revoked": true, "revoked_at": now, "revoke_reason": reason}})
	if err != nil {
		return fmt.Errorf("auth: revoke session: %w", mongodb.Wrap(err))
	}
	return nil
}

// boundOf returns the user's sessions whose devices have not been unbound:
// the live ones, and those that ended without that being finished.
func (ss *sessions) boundOf(ctx context.Context, userID string) ([]sessionDoc, error) {
	return ss.find(ctx, bson.M{"user_id": userID, "unbound": bson.M{"$ne": true}}, 0)
}

// endedBound returns up to limit sessions that ended by now (revoked, or
// past an expiry) whose devices have not been unbound.
func (ss *sessions) endedBound(ctx context.Context, now time.Time, limit int) ([]sessionDoc, error) {
	return ss.find(ctx, bson.M{"unbound": bson.M{"$ne": true}, "$or": bson.A{
		bson.M{"revoked": true},
		bson.M{"expires_at": bson.M{"$lte": now}},
		bson.M{"idle_expires_at": bson.M{"$lte": now}},
	}}, limit)
}

func (ss *sessions) find(ctx context.Context, filter bson.M, limit int) ([]sessionDoc, error) {
	cur, err := ss.coll.Find(ctx, filter, options.Find().SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("auth: find sessions: %w", mongodb.Wrap(err))
	}
	var docs []sessionDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("auth: find sessions: %w", mongodb.Wrap(err))
	}
	return docs, nil
}

// markUnbound records that the ended session's devices are unbound.
func (ss *sessions) markUnbound(ctx context.Context, id string) error {
	unlock, err := ss.locks.Lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := ss.coll.UpdateOne(ctx, ss.writes.Filter(id), bson.M{"$set": bson.M{"unbound": true}}); err != nil {
		return fmt.Errorf("auth: mark session unbound: %w", mongodb.Wrap(err))
	}
	return nil
}

// setRoles gives the user's live sessions new roles, so the next refresh
// issues tokens with them.
func (ss *sessions) setRoles(ctx context.Context, userID string, roles []string) error {
	live, err := ss.listUser(ctx, userID, true)
	if err != nil {
		return err
	}
	for _, d := range live {
		if err := ss.setFields(ctx, d.ID, bson.M{"roles": roles}); err != nil {
			return err
		}
	}
	return nil
}

func (ss *sessions) listUser(ctx context.Context, userID string, liveOnly bool) ([]Session, error) {
	filter := bson.M{"user_id": userID}
	if liveOnly {
		filter["revoked"] = false
	}
	cur, err := ss.coll.Find(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("auth: list sessions: %w", mongodb.Wrap(err))
	}
	var docs []sessionDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("auth: list sessions: %w", mongodb.Wrap(err))
	}
	out := make([]Session, len(docs))
	for i := range docs {
		out[i] = docs[i].session()
	}
	return out, nil
}

// fixedRefreshStyles are the styles whose sessions were created with a
// fixed refresh token before sessions recorded their mode.
var fixedRefreshStyles = []string{"duktig", "kalsel"}

// upgradeRefreshModes gives the live sessions written before refresh
// modes existed the mode their style gave them. Each is written under its
// lock, as a refresh would be.
func (ss *sessions) upgradeRefreshModes(ctx context.Context, log *slog.Logger) error {
	cur, err := ss.coll.Find(ctx, bson.M{"refresh": bson.M{"$exists": false}, "revoked": false},
		options.Find().SetProjection(bson.M{"_id": 1, "style": 1}))
	if err != nil {
		return fmt.Errorf("auth: upgrade sessions: %w", mongodb.Wrap(err))
	}
	var legacy []struct {
		ID    string `bson:"_id"`
		Style string `bson:"style"`
	}
	if err := cur.All(ctx, &legacy); err != nil {
		return fmt.Errorf("auth: upgrade sessions: %w", mongodb.Wrap(err))
	}
	for _, d := range legacy {
		mode := modeRotating
		if slices.Contains(fixedRefreshStyles, d.Style) {
			mode = modeFixed
		}
		if err := ss.setIfMissing(ctx, d.ID, "refresh", mode); err != nil {
			return err
		}
	}
	if len(legacy) > 0 {
		log.Info("gave earlier sessions their refresh mode", "sessions", len(legacy))
	}
	return nil
}

func (ss *sessions) setIfMissing(ctx context.Context, id, field string, value any) error {
	unlock, err := ss.locks.Lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	// Only the start-up upgrade writes these fields to earlier sessions,
	// so on an Exclusive store the field is still missing.
	_, err = ss.coll.UpdateOne(ctx, ss.writes.Filter(id, bson.E{Key: field, Value: bson.M{"$exists": false}}),
		bson.M{"$set": bson.M{field: value}})
	if err != nil {
		return fmt.Errorf("auth: upgrade session: %w", mongodb.Wrap(err))
	}
	return nil
}

// otherMode is the refresh mode a route serving mode refuses; for a route
// serving any, a value no session has.
func otherMode(mode string) string {
	switch mode {
	case modeRotating:
		return modeFixed
	case modeFixed:
		return modeRotating
	}
	return "-"
}

// DeleteEndedSessions deletes at most limit sessions that ended before
// endedBefore and returns how many it deleted. A session ends at the
// earliest of its revocation, its absolute expiry and its idle expiry.
// Its login leaves the audit trail with it; if it was the user's newest
// session, the user's last login time becomes the newest remaining
// session's (zero when none is left).
func (s *Service) DeleteEndedSessions(ctx context.Context, endedBefore time.Time, limit int) (int, error) {
	n, err := mongodb.DeleteBatch(ctx, s.sessions.coll, endedFilter(endedBefore), limit)
	if err != nil {
		return n, fmt.Errorf("auth: delete ended sessions: %w", err)
	}
	return n, nil
}

// endedFilter matches the sessions that ended before t. A live session's
// revoked_at is the zero time, hence the revoked flag beside it. For a t
// in the past, no write takes a session out of this set: a refresh needs
// both expiries after now and a revocation writes revoked_at = now. So
// the delete needs no session locks; on FerretDB an update racing it
// writes back by _id and matches nothing once the document is gone.
func endedFilter(t time.Time) bson.M {
	return bson.M{"$or": bson.A{
		bson.M{"revoked": true, "revoked_at": bson.M{"$lt": t}},
		bson.M{"expires_at": bson.M{"$lt": t}},
		bson.M{"idle_expires_at": bson.M{"$lt": t}},
	}}
}

func equalHash(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// seal encrypts next with a key only the holder of prev can derive.
func seal(prev, next []byte) ([]byte, error) {
	aead, err := successorAEAD(prev)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, next, nil), nil
}

func open(prev, sealed []byte) ([]byte, error) {
	aead, err := successorAEAD(prev)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, errors.New("auth: sealed successor too short")
	}
	return aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
}

func successorAEAD(prev []byte) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, prev, nil, "pushreg successor", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
