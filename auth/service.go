package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// Evicted is a device a bind removed for the device limit, and the session
// that had bound it.
type Evicted struct{ DeviceID, SessionID string }

// DeviceBinding asks the device registry to bind a device to a token.
type DeviceBinding struct {
	UserID, DeviceID, Platform, FCMToken, SessionID string
	Verified                                        bool
	MaxDevices                                      int
	Actor                                           string
}

// Devices is what auth needs of the device registry.
type Devices interface {
	// TouchDevice records that the device still holds the token; false
	// means it does not and BindDevice is needed.
	TouchDevice(ctx context.Context, b DeviceBinding) (bool, error)
	// BindDevice binds the device to the token, and returns the devices it
	// evicted to respect the device limit.
	BindDevice(ctx context.Context, b DeviceBinding) (evicted []Evicted, err error)
	// BindDevices binds each device as BindDevice would, in order, in as
	// few round trips as the store allows (a bulk import's new users).
	BindDevices(ctx context.Context, bs []DeviceBinding) (evicted []Evicted, err error)
	// UnbindSession unbinds the tokens of the devices the session bound.
	UnbindSession(ctx context.Context, userID, sessionID, actor string) error
	// DeviceSession returns the session the device is bound to, empty if
	// none; an unknown device is an error that says so.
	DeviceSession(ctx context.Context, userID, deviceID string) (string, error)
	// DeleteDevice removes the device and returns the session it was
	// bound to when it went.
	DeleteDevice(ctx context.Context, userID, deviceID, actor string) (string, error)
}

// TokenValidator checks an FCM token with Firebase. Its errors wrap
// ErrFCMTokenMalformed, ErrFCMTokenRejected or ErrFCMUnavailable.
type TokenValidator interface {
	ValidateToken(ctx context.Context, token string) (verified bool, err error)
	// CachedToken answers as ValidateToken would when that answer needs no
	// call to Firebase (a recent acceptance, or format-only mode); ok is
	// false when Firebase would have to be asked.
	CachedToken(token string) (verified, ok bool)
	// CheckToken checks only the token's shape, without Firebase; its
	// error wraps ErrFCMTokenMalformed and never quotes the token.
	CheckToken(token string) error
}

// AuditEvent is an entry for a user's audit trail; it holds no secret.
// ID and At are set by the store that records it.
type AuditEvent struct {
	ID, UserID, Type, Actor, DeviceID, SessionID, Outcome string
	At                                                    time.Time
}

// Auditor records audit events and reads them back.
type Auditor interface {
	Audit(ctx context.Context, e AuditEvent)
	// AuditedBefore returns up to limit of the user's recorded events
	// after the position (at, id), newest first: by time, then by ID, an
	// ObjectID in hex. A zero at means from the newest.
	AuditedBefore(ctx context.Context, userID string, at time.Time, id string, limit int) ([]AuditEvent, error)
}

// ReuseAlert is a session reuse detection has just revoked, with the
// device and FCM token it had bound then (its revocation unbinds them).
type ReuseAlert struct {
	UserID, SessionID, DeviceID, FCMToken string
	At                                    time.Time
}

// ReuseAlerter warns a user that reuse detection revoked one of their
// sessions. ReuseDetected runs on the path of the request that detected
// it, so it must return at once and can fail nothing.
type ReuseAlerter interface {
	ReuseDetected(a ReuseAlert)
}

type noReuseAlert struct{}

func (noReuseAlert) ReuseDetected(ReuseAlert) {}

// Config configures the Service.
type Config struct {
	DB             *mongo.Database
	Keys           *KeySet
	Issuer         string
	Audience       string
	AccessTTL      time.Duration
	RefreshTTL     time.Duration
	SessionMaxAge  time.Duration
	ReuseGrace     time.Duration
	KecakTTL       time.Duration
	PasswordParams PasswordParams
	LoginRateLimit int
	// RejectOnFCMError answers 503 when Firebase cannot validate a token;
	// otherwise the token is bound as unverified.
	RejectOnFCMError bool
	Devices          Devices
	Validator        TokenValidator
	Auditor          Auditor
	// ReuseAlerter is told of every session reuse detection revokes
	// (default: nobody).
	ReuseAlerter ReuseAlerter
	Logger       *slog.Logger
	Now          func() time.Time
	// Writes says whether this process is the store's only writer (see
	// mongodb.Writes).
	Writes mongodb.Writes
}

func (c *Config) validate() error {
	var errs []error
	if c.DB == nil {
		errs = append(errs, errors.New("missing DB"))
	}
	if c.Keys == nil {
		errs = append(errs, errors.New("missing Keys"))
	}
	if c.Devices == nil || c.Validator == nil {
		errs = append(errs, errors.New("missing Devices or Validator"))
	}
	if c.Issuer == "" || c.Audience == "" {
		errs = append(errs, errors.New("missing Issuer or Audience"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("auth: config: %w", err)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.AccessTTL, 15*time.Minute)
	def(&c.RefreshTTL, 30*24*time.Hour)
	def(&c.SessionMaxAge, 90*24*time.Hour)
	def(&c.ReuseGrace, 10*time.Second)
	def(&c.KecakTTL, 10*24*time.Hour)
	if c.PasswordParams == (PasswordParams{}) {
		c.PasswordParams = OWASPParams
	}
	if c.LoginRateLimit <= 0 {
		c.LoginRateLimit = 10
	}
	if c.Auditor == nil {
		c.Auditor = noAudit{}
	}
	if c.ReuseAlerter == nil {
		c.ReuseAlerter = noReuseAlert{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

type noAudit struct{}

func (noAudit) Audit(context.Context, AuditEvent) {}

func (noAudit) AuditedBefore(context.Context, string, time.Time, string, int) ([]AuditEvent, error) {
	return nil, nil
}

// Service is the session core every login and refresh style uses.
type Service struct {
	cfg       Config
	users     *users
	sessions  *sessions
	apps      *apps
	signer    *signer
	limiter   *limiter
	dummyHash string
	hashSlots chan struct{}
}

// New builds the service. Call EnsureIndexes before serving.
func New(cfg Config) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Service{
		cfg: cfg,
		users: &users{coll: cfg.DB.Collection("users"), keys: cfg.DB.Collection("user_keys"),
			locks: mongodb.NewDocLocks(), writes: cfg.Writes, params: cfg.PasswordParams, now: cfg.Now},
		sessions:  &sessions{coll: cfg.DB.Collection("sessions"), locks: mongodb.NewDocLocks(), writes: cfg.Writes},
		apps:      &apps{coll: cfg.DB.Collection("apps"), now: cfg.Now},
		signer:    &signer{keys: cfg.Keys, issuer: cfg.Issuer, audience: cfg.Audience, now: cfg.Now},
		limiter:   newLimiter(cfg.LoginRateLimit, cfg.Now),
		dummyHash: hashPassword("pushreg-no-such-user", cfg.PasswordParams),
		hashSlots: make(chan struct{}, 2*runtime.GOMAXPROCS(0)),
	}, nil
}

// EnsureIndexes creates the users, sessions and apps collections and their
// indexes; it is idempotent.
func (s *Service) EnsureIndexes(ctx context.Context) error {
	if err := mongodb.EnsureCollections(ctx, s.users.coll, s.users.keys, s.sessions.coll, s.apps.coll); err != nil {
		return err
	}
	// Earlier versions made username_key unique. Every earlier user gets
	// its login keys before that index goes (MongoDB refuses a second
	// index on the same key): until then the index keeps a create from
	// taking an earlier user's name.
	if err := s.upgradeUsers(ctx); err != nil {
		return err
	}
	if err := mongodb.DropIndex(ctx, s.users.coll, "username_unique"); err != nil {
		return err
	}
	return mongodb.EnsureIndexes(ctx, map[*mongo.Collection][]mongo.IndexModel{
		s.users.coll:    userIndexes(),
		s.sessions.coll: sessionIndexes(),
	})
}

// JWKS returns the public keys that verify pushreg's tokens.
func (s *Service) JWKS() []byte { return s.cfg.Keys.JWKS() }

// Issuer is the iss of pushreg's tokens.
func (s *Service) Issuer() string { return s.cfg.Issuer }

// AccessTTL is the default access token lifetime.
func (s *Service) AccessTTL() time.Duration { return s.cfg.AccessTTL }

// DeviceRequest is a device and FCM token a client asks to bind.
type DeviceRequest struct {
	DeviceID string
	FCMToken string
	Platform string
}

// Validate checks the shape of the device fields (the FCM token's shape
// is the validator's).
func (d *DeviceRequest) Validate() error {
	if err := validateDeviceID("device_id", d.DeviceID); err != nil {
		return err
	}
	switch d.Platform {
	case "", "android", "ios", "web":
	default:
		return invalid("platform", "must be android, ios or web")
	}
	return nil
}

func validateDeviceID(field, id string) error {
	if n := len(id); n == 0 || n > 128 {
		return invalid(field, "must be 1-128 printable characters")
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || r > 0x7e {
			return invalid(field, "must be 1-128 printable characters")
		}
	}
	return nil
}

// LoginRequest is a password sign-in.
type LoginRequest struct {
	Login    string // username, or email
	Password string
	ClientIP string
	Style    string
	// Kecak asks for a Kecak session token instead of a refresh token.
	Kecak bool
	// FixedRefresh makes a session whose refresh token never rotates
	// (Duktig, kalsel); such a session is refused by the rotating routes,
	// and a rotating one by the fixed routes.
	FixedRefresh bool
	Device       *DeviceRequest
	// ClientDeviceID is a device the client names without binding a token
	// to it (Duktig's X-Device-Id); a refresh that requires a device ID
	// matches it when the session has no bound device.
	ClientDeviceID string
}

// Grant is what a successful login or refresh hands out.
type Grant struct {
	// User is set by logins; its LastLoginAt is the login before this one
	// (zero on a first login).
	User            *User
	Session         Session
	AccessToken     string
	AccessExpiresAt time.Time
	// AccessTTL is the access token's lifetime as issued.
	AccessTTL time.Duration
	// RefreshToken is the session's refresh credential (new when it
	// rotated); empty for Kecak sessions.
	RefreshToken string
	// KecakToken is the Kecak session token, for Kecak sessions.
	KecakToken     string
	KecakExpiresAt time.Time
	// TokenVerified says Firebase accepted the bound FCM token.
	TokenVerified bool
}

// Authenticate checks a username (or email) and password, with the rate
// limit and without telling unknown users from wrong passwords.
func (s *Service) Authenticate(ctx context.Context, login, password, clientIP string) (*User, error) {
	var client []string
	if clientIP != "" {
		client = []string{clientKey(clientIP)}
	}
	// Every attempt takes a slot before the password is checked, so a
	// burst of concurrent guesses cannot all pass; a success gives its
	// slots back. The client's slot comes first, so an address that is
	// limited costs no lookup.
	if wait := s.limiter.reserve(client...); wait > 0 {
		return nil, &RateLimitedError{RetryAfter: wait}
	}
	u, err := s.findLogin(ctx, login, password)
	if errors.Is(err, ErrNotFound) {
		u = nil
	} else if err != nil {
		s.limiter.refund(client...)
		return nil, err
	}
	// One bucket per account, whether its username or its email is typed;
	// a name that is no account gets a bucket of its own.
	account := "name:" + strings.ToLower(login)
	if u != nil {
		account = "account:" + u.ID
	}
	if wait := s.limiter.reserve(account); wait > 0 {
		s.limiter.refund(client...)
		return nil, &RateLimitedError{RetryAfter: wait}
	}
	keys := append(client, account)
	// An unknown user, and a user imported without a password, cost what
	// a wrong password costs.
	hash := s.dummyHash
	hasPassword := u != nil && u.PasswordHash != ""
	if hasPassword {
		hash = u.PasswordHash
	}
	ok, err := s.hashPassword(ctx, password, hash)
	if err != nil {
		return nil, err
	}
	if !hasPassword || !ok {
		return nil, fmt.Errorf("auth: login: %w", ErrInvalidCredentials)
	}
	s.limiter.refund(keys...)
	if u.Disabled {
		return nil, fmt.Errorf("auth: login %s: %w", u.ID, ErrAccountDisabled)
	}
	if needsRehash(u.PasswordHash) {
		s.rehash(ctx, u, password)
	}
	return u, nil
}

// rehash replaces an imported bcrypt hash by an argon2id hash of the
// password that just checked, unless the hash changed meanwhile (an
// admin set a password). The login has succeeded either way: a failure
// is logged, and the next login tries again.
func (s *Service) rehash(ctx context.Context, u *User, password string) {
	select {
	case s.hashSlots <- struct{}{}:
	case <-ctx.Done():
		return
	}
	fresh := hashPassword(password, s.cfg.PasswordParams)
	<-s.hashSlots
	replaced, err := s.users.replaceHash(ctx, u.ID, u.PasswordHash, fresh)
	if err != nil {
		s.cfg.Logger.WarnContext(ctx, "rehashing a password failed", "user_id", u.ID, "error", err)
		return
	}
	if replaced {
		u.PasswordHash = fresh
	}
}

// findLogin returns the user a login names; ErrNotFound also when the
// credentials are empty or too long to be any user's.
func (s *Service) findLogin(ctx context.Context, login, password string) (*User, error) {
	if login == "" || password == "" || len(login) > 254 || len(password) > 256 {
		return nil, fmt.Errorf("auth: login: %w", ErrNotFound)
	}
	return s.users.byLogin(ctx, login)
}

// hashPassword checks a password with at most len(hashSlots) argon2id
// computations at once: each takes 19 MiB, and a burst of logins must
// queue (or time out as 503) rather than exhaust memory.
func (s *Service) hashPassword(ctx context.Context, password, phc string) (bool, error) {
	select {
	case s.hashSlots <- struct{}{}:
	case <-ctx.Done():
		return false, fmt.Errorf("auth: waiting to check a password: %w: %w", ErrUnavailable, ctx.Err())
	}
	defer func() { <-s.hashSlots }()
	return checkPassword(password, phc)
}

// Login signs a user in and starts a session, bound to the device when
// the request carries one.
func (s *Service) Login(ctx context.Context, r LoginRequest) (*Grant, error) {
	if r.Device != nil {
		if err := r.Device.Validate(); err != nil {
			return nil, err
		}
	}
	if r.ClientDeviceID != "" {
		if err := validateDeviceID("X-Device-Id", r.ClientDeviceID); err != nil {
			return nil, err
		}
	}
	u, err := s.Authenticate(ctx, r.Login, r.Password, r.ClientIP)
	if err != nil {
		return nil, err
	}
	verified, err := s.validateDevice(ctx, r.Device)
	if err != nil {
		return nil, err
	}
	secret := newSecret()
	d := &sessionDoc{
		ID: randomID(sidLen), UserID: u.ID, Username: u.Username, Roles: u.Roles, Style: r.Style,
		Refresh: modeRotating, MaxDevices: u.Profile.Plan.DeviceCount, ClientDeviceID: r.ClientDeviceID,
		Cred: credential{Gen: 1, Hash: hashSecret(secret)},
	}
	if r.FixedRefresh {
		d.Refresh = modeFixed
	}
	if r.Device != nil {
		d.DeviceID, d.Platform, d.FCMToken = r.Device.DeviceID, r.Device.Platform, r.Device.FCMToken
		// Bind before the session exists: a session never claims a device
		// the registry does not know.
		var ev evictions
		err := s.bindDevice(ctx, s.binding(d, verified, "user:"+u.ID), &ev)
		s.revokeEvicted(ctx, ev)
		if err != nil {
			return nil, err
		}
	}
	// The session is the login's audit entry (see AuditTrail), so its time
	// is taken after the device bind, which the trail shows first.
	now := s.cfg.Now()
	d.CreatedAt, d.RefreshedAt, d.ExpiresAt = now, now, now.Add(s.cfg.SessionMaxAge)
	d.IdleExpiresAt = now.Add(min(s.cfg.RefreshTTL, s.cfg.SessionMaxAge))
	if err := s.sessions.insert(ctx, d); err != nil {
		return nil, err
	}
	previous, err := s.stampLogin(ctx, d)
	if err != nil {
		return nil, err
	}
	u.LastLoginAt = previous
	g := &Grant{User: u, Session: d.session(), TokenVerified: verified}
	if err := s.issueAccess(g, d, 0); err != nil {
		return nil, err
	}
	if r.Kecak {
		err = s.issueKecak(g, d, 1, secret)
	} else {
		g.RefreshToken = s.cfg.Keys.encodeRefresh(refreshToken{sessionID: d.ID, gen: 1, secret: secret})
	}
	return g, err
}

// stampLogin records the login of session d on its user, once the session
// is written, and returns the user's login before this one. The user's
// answer also closes a race: a disable that ran since Authenticate read
// the user revoked only the sessions it saw, so a session written after it
// is revoked here. Its credential has not been handed out yet, so a
// failure here leaves nothing usable behind.
func (s *Service) stampLogin(ctx context.Context, d *sessionDoc) (time.Time, error) {
	before, err := s.users.stampLogin(ctx, d.UserID, d.CreatedAt)
	if err != nil {
		return time.Time{}, err
	}
	if !before.Disabled {
		return before.LastLoginAt, nil
	}
	if err := s.RevokeSession(ctx, d.ID, "account disabled", "system"); err != nil {
		return time.Time{}, err
	}
	return time.Time{}, fmt.Errorf("auth: login %s: %w", d.UserID, ErrAccountDisabled)
}

// RefreshRequest uses a refresh token.
type RefreshRequest struct {
	RefreshToken string
	// Rotate replaces the refresh token; styles whose clients keep theirs
	// refresh without rotating.
	Rotate bool
	Device *DeviceRequest
	// AccessTTL overrides the access token lifetime (kalsel's limit).
	AccessTTL time.Duration
	// RequireDeviceID, when set, must be the session's device: the bound
	// one, or else the one the client named at sign-in.
	RequireDeviceID string
}

// Refresh exchanges a refresh token for a new access token (and, when
// rotating, a new refresh token). Without a device change it is one round
// trip.
func (s *Service) Refresh(ctx context.Context, r RefreshRequest) (*Grant, error) {
	rt, err := s.cfg.Keys.decodeRefresh(r.RefreshToken)
	if err != nil {
		return nil, err
	}
	if r.Device != nil {
		if err := r.Device.Validate(); err != nil {
			return nil, err
		}
	}
	p := presented(rt)
	pol := s.policy(r.Rotate)
	changesDevice := r.Device != nil
	var adv advanced
	var verified bool
	var ev evictions
	if changesDevice {
		pol.set = bson.M{"device_id": r.Device.DeviceID, "fcm_token": r.Device.FCMToken}
		if r.Device.Platform != "" {
			pol.set["platform"] = r.Device.Platform
		}
		if verified, err = s.checkThenValidate(ctx, p, pol, r.Device); err != nil {
			return nil, err
		}
		adv, err = s.sessions.checkBindAdvance(ctx, p, pol, func(d *sessionDoc) error {
			return s.bindDevice(ctx, s.binding(withDevice(d, r.Device), verified, "session:"+d.ID), &ev)
		})
		s.revokeEvicted(ctx, ev)
	} else {
		adv, err = s.sessions.advance(ctx, p, pol)
	}
	if err != nil {
		return nil, s.auditFailure(ctx, err, p)
	}
	if r.RequireDeviceID != "" && r.RequireDeviceID != adv.doc.deviceName() {
		return nil, fmt.Errorf("auth: session %s: %w", adv.doc.ID, ErrDeviceMismatch)
	}
	g := &Grant{Session: adv.doc.session(), TokenVerified: verified}
	if err := s.issueAccess(g, adv.doc, r.AccessTTL); err != nil {
		return nil, err
	}
	g.RefreshToken = s.cfg.Keys.encodeRefresh(refreshToken{sessionID: adv.doc.ID, gen: adv.gen, secret: adv.secret})
	if changesDevice && !adv.duplicate {
		s.cfg.Auditor.Audit(ctx, AuditEvent{UserID: adv.doc.UserID, Type: "refresh", Actor: "session:" + adv.doc.ID,
			DeviceID: adv.doc.DeviceID, SessionID: adv.doc.ID, Outcome: "device bound"})
	}
	return g, nil
}

// RefreshKecak is the Kecak refresh: it validates the FCM token, binds the
// session to the device and token, retires the presented Kecak token and
// returns its successor carrying device_id and fcm_token. Only a Kecak
// session token refreshes: an access token would renew itself for the
// session's whole life without ever meeting rotation. With the token
// already bound to the device and recently validated, it is two round
// trips.
func (s *Service) RefreshKecak(ctx context.Context, token string, dev DeviceRequest) (*Grant, error) {
	// Request errors first, then the token (the order the README gives).
	if err := dev.Validate(); err != nil {
		return nil, err
	}
	claims, err := s.verifyKecak(ctx, token)
	if err != nil {
		return nil, err
	}
	secret, err := decodeSecret(claims.ID)
	if err != nil {
		return nil, err
	}
	p := presented{sessionID: claims.SessionID, gen: claims.Gen, secret: secret}
	pol := s.policy(true)
	sameBinding := claims.DeviceID == dev.DeviceID && claims.FCMToken == dev.FCMToken
	var adv advanced
	var verified, cached bool
	var ev evictions
	if sameBinding {
		verified, cached = s.cfg.Validator.CachedToken(dev.FCMToken)
	}
	if cached {
		// Nothing to ask Firebase: rotate, then confirm the device holds
		// the token, both under the session's lock so that a revocation or
		// device removal cannot slip in between and be undone by a rebind.
		adv, err = s.sessions.advanceThen(ctx, p, pol, func(d *sessionDoc) {
			s.confirmDevice(ctx, s.binding(d, verified, "session:"+d.ID), &ev)
		})
	} else {
		pol.set = bson.M{"device_id": dev.DeviceID, "fcm_token": dev.FCMToken}
		if verified, err = s.checkThenValidate(ctx, p, pol, &dev); err != nil {
			return nil, err
		}
		adv, err = s.sessions.checkBindAdvance(ctx, p, pol, func(d *sessionDoc) error {
			return s.bindDevice(ctx, s.binding(withDevice(d, &dev), verified, "session:"+d.ID), &ev)
		})
	}
	s.revokeEvicted(ctx, ev)
	if err != nil {
		return nil, s.auditFailure(ctx, err, p)
	}
	g := &Grant{Session: adv.doc.session(), TokenVerified: verified}
	if !adv.duplicate && !sameBinding {
		s.cfg.Auditor.Audit(ctx, AuditEvent{UserID: adv.doc.UserID, Type: "refresh", Actor: "session:" + adv.doc.ID,
			DeviceID: dev.DeviceID, SessionID: adv.doc.ID, Outcome: "kecak token refreshed with new binding"})
	}
	return g, s.issueKecak(g, adv.doc, adv.gen, adv.secret)
}

// checkThenValidate checks the credential, then asks Firebase about the
// device's token: only a credential that checks gets a dry run, so a
// stolen or dead token is no FCM-token oracle and no drain on quota. The
// session's lock is not held while Firebase answers (up to
// PUSHREG_FCM_VALIDATE_TIMEOUT), so a slow Firebase holds up no other
// session sharing the lock's stripe; the bind that follows checks the
// credential again under the lock.
func (s *Service) checkThenValidate(ctx context.Context, p presented, pol advancePolicy, dev *DeviceRequest) (bool, error) {
	if _, err := s.sessions.check(ctx, p, pol); err != nil {
		return false, s.auditFailure(ctx, err, p)
	}
	return s.validateDevice(ctx, dev)
}

// confirmDevice records that the session's device still holds its token,
// binding it again if the token moved away since. The credential has
// rotated by then, so a failure is logged and the refresh still answered;
// the next refresh binds again.
func (s *Service) confirmDevice(ctx context.Context, b DeviceBinding, ev *evictions) {
	held, err := s.cfg.Devices.TouchDevice(ctx, b)
	if err != nil {
		s.cfg.Logger.WarnContext(ctx, "touch device failed", "session_id", b.SessionID, "error", err)
		return
	}
	if !held {
		if err := s.bindDevice(ctx, b, ev); err != nil {
			s.cfg.Logger.WarnContext(ctx, "rebinding the device failed", "session_id", b.SessionID, "error", err)
		}
	}
}

// evictions are the sessions whose devices a bind evicted to respect the
// user's device limit. Each is revoked (recorded), so that its next
// refresh is refused rather than recreating its device and evicting
// another: a user over the limit would otherwise cycle through devices
// that each miss pushes.
type evictions []Evicted

// bindDevice binds b and adds the sessions of the devices it evicted to ev.
func (s *Service) bindDevice(ctx context.Context, b DeviceBinding, ev *evictions) error {
	evicted, err := s.cfg.Devices.BindDevice(ctx, b)
	for _, e := range evicted {
		if e.SessionID != "" && e.SessionID != b.SessionID {
			*ev = append(*ev, e)
		}
	}
	return err
}

// revokeEvicted revokes the sessions of evicted devices. It runs once no
// session lock is held: DocLocks are striped, so taking another session's
// lock while holding one could wait on a stripe this request holds. The
// bind has happened, so a failure is logged, not returned.
func (s *Service) revokeEvicted(ctx context.Context, ev evictions) {
	for _, e := range ev {
		if err := s.revokeOn(ctx, e.SessionID, e.DeviceID, "device evicted", "system"); err != nil {
			s.cfg.Logger.WarnContext(ctx, "revoking the session of an evicted device failed", "session_id", e.SessionID, "error", err)
		}
	}
}

// CheckKecak checks a Kecak token against its session in the store.
func (s *Service) CheckKecak(ctx context.Context, token string) (Session, *User, error) {
	claims, err := s.verifyKecakLive(ctx, stripBearer(token))
	if err != nil {
		return Session{}, nil, err
	}
	secret, err := decodeSecret(claims.ID)
	if err != nil {
		return Session{}, nil, err
	}
	p := presented{sessionID: claims.SessionID, gen: claims.Gen, secret: secret}
	d, err := s.sessions.check(ctx, p, s.checkPolicy())
	if err != nil {
		return Session{}, nil, s.auditFailure(ctx, err, p)
	}
	u, err := s.users.byID(ctx, d.UserID)
	if err != nil {
		return Session{}, nil, err
	}
	if u.Disabled {
		// Disabling revokes every session; this covers one that a failed
		// revocation left behind.
		return Session{}, nil, refused(CauseRevoked, fmt.Errorf("auth: session %s: user disabled: %w", d.ID, ErrSessionRevoked))
	}
	return d.session(), u, nil
}

// verifyKecak checks a Kecak session token, telling an access token
// presented in its place apart: it is refused with a message that says so.
func (s *Service) verifyKecak(ctx context.Context, token string) (*Claims, error) {
	token = stripBearer(token)
	if token == "" {
		return nil, refused(CauseMalformed, fmt.Errorf("auth: %w: no token", ErrInvalidToken))
	}
	c, err := s.verifyKecakLive(ctx, token)
	if err == nil || CauseOf(err) != CauseUnknown {
		return c, err
	}
	if _, aerr := s.signer.verify(typAccess, token); aerr == nil {
		return nil, refused(CauseUnknown, fmt.Errorf("auth: %w", ErrNotSessionToken))
	}
	return nil, err
}

// verifyKecakLive is signer.verify of a Kecak token, except that an
// expired one is refused for what its session is: the cause is
// token_expired only while the session lives (a Kecak token's expiry is
// capped by its session's, so it often expires with it).
func (s *Service) verifyKecakLive(ctx context.Context, token string) (*Claims, error) {
	c, err := s.signer.verify(typKecak, token)
	if CauseOf(err) != CauseTokenExpired {
		return c, err
	}
	if _, serr := s.liveSession(ctx, c.SessionID); serr != nil {
		return nil, serr
	}
	return nil, err
}

// stripBearer accepts a token with or without the "Bearer " prefix.
func stripBearer(h string) string {
	h = strings.TrimSpace(h)
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return h
}

// VerifyAccess checks an access token's signature and claims. It does not
// read the store: a revoked session's token lives out its short lifetime.
func (s *Service) VerifyAccess(token string) (*Claims, error) {
	c, err := s.signer.verify(typAccess, stripBearer(token))
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Authorize is VerifyAccess for a request: a token that lives longer than
// PUSHREG_ACCESS_TTL (kalsel's limit allows up to 7 days) must also still
// have a live session, so revoking a session ends every token it issued
// within PUSHREG_ACCESS_TTL.
func (s *Service) Authorize(ctx context.Context, token string) (*Claims, error) {
	c, err := s.VerifyAccess(token)
	if err != nil {
		return nil, err
	}
	if c.SessionID != "" && c.ExpiresAt != nil && c.IssuedAt != nil &&
		c.ExpiresAt.Sub(c.IssuedAt.Time) > s.cfg.AccessTTL {
		d, err := s.liveSession(ctx, c.SessionID)
		if err != nil {
			return nil, err
		}
		// The session's roles are current; the claims' are as issued, up
		// to a week ago.
		c.Roles = d.Roles
	}
	return c, nil
}

// liveSession reads a session and refuses revoked or expired ones.
func (s *Service) liveSession(ctx context.Context, id string) (*sessionDoc, error) {
	d, err := s.sessions.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := d.endedError(s.cfg.Now()); err != nil {
		return nil, err
	}
	return d, nil
}

// validateDevice asks Firebase about the token, applying the outage
// policy: accept binds it as unverified, reject fails the request.
func (s *Service) validateDevice(ctx context.Context, d *DeviceRequest) (bool, error) {
	if d == nil {
		return false, nil
	}
	verified, err := s.cfg.Validator.ValidateToken(ctx, d.FCMToken)
	switch {
	case err == nil:
		return verified, nil
	case errors.Is(err, ErrFCMUnavailable) && !s.cfg.RejectOnFCMError:
		s.cfg.Logger.WarnContext(ctx, "Firebase unavailable; binding token as unverified", "error", err)
		return false, nil
	}
	return false, err
}

func (s *Service) policy(rotate bool) advancePolicy {
	mode := modeFixed
	if rotate {
		mode = modeRotating
	}
	return advancePolicy{rotate: rotate, mode: mode, now: s.cfg.Now(), refreshTTL: s.cfg.RefreshTTL, grace: s.cfg.ReuseGrace}
}

// checkPolicy is the policy of a credential check that changes nothing
// (CheckTokenApi, RFC 7009 revocation): any refresh mode.
func (s *Service) checkPolicy() advancePolicy {
	return advancePolicy{now: s.cfg.Now(), grace: s.cfg.ReuseGrace}
}

func (s *Service) binding(d *sessionDoc, verified bool, actor string) DeviceBinding {
	return DeviceBinding{UserID: d.UserID, DeviceID: d.DeviceID, Platform: d.Platform, FCMToken: d.FCMToken,
		SessionID: d.ID, Verified: verified, MaxDevices: d.MaxDevices, Actor: actor}
}

func withDevice(d *sessionDoc, dev *DeviceRequest) *sessionDoc {
	c := *d
	c.DeviceID, c.FCMToken = dev.DeviceID, dev.FCMToken
	if dev.Platform != "" {
		c.Platform = dev.Platform
	}
	return &c
}

// auditFailure records reuse detections; every error passes through.
func (s *Service) auditFailure(ctx context.Context, err error, p presented) error {
	if errors.Is(err, ErrTokenReused) {
		s.cfg.Logger.WarnContext(ctx, "security: retired credential reused; session revoked", "session_id", p.sessionID)
		if d, gerr := s.sessions.get(ctx, p.sessionID); gerr == nil {
			s.cfg.Auditor.Audit(ctx, AuditEvent{UserID: d.UserID, Type: "reuse_detected", Actor: "system",
				DeviceID: d.DeviceID, SessionID: d.ID, Outcome: "session revoked"})
			// Read before anything unbinds the session's device, so the
			// alert reaches it too.
			s.cfg.ReuseAlerter.ReuseDetected(ReuseAlert{UserID: d.UserID, SessionID: d.ID,
				DeviceID: d.DeviceID, FCMToken: d.FCMToken, At: s.cfg.Now()})
			// The thief's device, if it bound one, stops getting pushes now,
			// not at the next sweep. It runs with no session lock held.
			if uerr := s.unbindEnded(ctx, d, "system"); uerr != nil {
				s.cfg.Logger.WarnContext(ctx, "unbinding a reused session's devices failed; the sweeper will", "session_id", d.ID, "error", uerr)
			}
		}
	}
	return err
}

func (s *Service) issueAccess(g *Grant, d *sessionDoc, ttl time.Duration) error {
	if ttl <= 0 {
		ttl = s.cfg.AccessTTL
	}
	// No fcm_token: an access token travels on every request, and any log
	// that keeps one would keep the device's push address.
	c := &Claims{RegisteredClaims: s.signer.claimsFor(d.UserID, ttl), SessionID: d.ID, Roles: d.Roles,
		DeviceID: d.DeviceID}
	tok, err := s.signer.sign(typAccess, c)
	if err != nil {
		return err
	}
	g.AccessToken, g.AccessExpiresAt, g.AccessTTL = tok, c.ExpiresAt.Time, ttl
	return nil
}

func (s *Service) issueKecak(g *Grant, d *sessionDoc, gen int64, secret []byte) error {
	c := &Claims{RegisteredClaims: s.signer.claimsFor(d.UserID, s.cfg.KecakTTL), SessionID: d.ID,
		Roles: d.Roles, DeviceID: d.DeviceID, FCMToken: d.FCMToken, Gen: gen}
	c.ID = encodeSecret(secret)
	if c.ExpiresAt.After(d.ExpiresAt) {
		c.ExpiresAt.Time = d.ExpiresAt
	}
	tok, err := s.signer.sign(typKecak, c)
	if err != nil {
		return err
	}
	g.KecakToken, g.KecakExpiresAt = tok, c.ExpiresAt.Time
	return nil
}
