package auth

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// Roles a user can hold.
const (
	RoleUser  = "user"
	RoleAdmin = "admin"
)

// Plan is a user's account plan; DeviceCount caps their devices.
type Plan struct {
	Name           string `bson:"name"`
	DeviceCount    int    `bson:"device_count"`
	DataPointCount int    `bson:"data_point_count"`
	EmailCount     int    `bson:"email_count"`
}

// Profile is what a user shows of themselves.
type Profile struct {
	Nickname string `bson:"nickname"`
	Timezone string `bson:"timezone"`
	Language string `bson:"language"`
	ImageURL string `bson:"image_url"`
	Plan     Plan   `bson:"plan"`
}

// User is an account. PasswordHash never leaves this package's callers'
// servers: the HTTP layer has no field for it.
type User struct {
	ID           string    `bson:"_id"`
	Username     string    `bson:"username"`
	UsernameKey  string    `bson:"username_key"`
	Email        string    `bson:"email"`
	EmailKey     string    `bson:"email_key"`
	PasswordHash string    `bson:"password_hash"`
	Roles        []string  `bson:"roles"`
	Disabled     bool      `bson:"disabled"`
	Profile      Profile   `bson:"profile"`
	CreatedAt    time.Time `bson:"created_at"`
	UpdatedAt    time.Time `bson:"updated_at"`
	// LastLoginAt is stamped by every login (see users.stampLogin).
	LastLoginAt time.Time `bson:"last_login_at"`
	// Keyed says the user's login keys exist (see loginKey); users written
	// before keys existed get them at start-up.
	Keyed bool `bson:"keyed"`
}

// HasRole reports whether the user holds role.
func (u *User) HasRole(role string) bool {
	for _, r := range u.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// FullName is the display name Kecak answers with.
func (u *User) FullName() string {
	if u.Profile.Nickname != "" {
		return u.Profile.Nickname
	}
	return u.Username
}

var usernamePattern = regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,64}$`)

// NewUser is a request to create an account.
type NewUser struct {
	Username string
	Password string
	Email    string
	Roles    []string
	Profile  Profile
}

func (n *NewUser) validate() error {
	if !usernamePattern.MatchString(n.Username) {
		return invalid("username", "must be 1-64 characters of letters, digits and . _ @ + -")
	}
	if err := validatePassword(n.Password); err != nil {
		return err
	}
	if err := validateEmail(n.Email); err != nil {
		return err
	}
	if err := n.validateRoles(); err != nil {
		return err
	}
	return validateProfile(n.Profile)
}

// validateRoles defaults no roles to user and refuses unknown ones.
func (n *NewUser) validateRoles() error {
	if len(n.Roles) == 0 {
		n.Roles = []string{RoleUser}
	}
	for _, r := range n.Roles {
		if r != RoleUser && r != RoleAdmin {
			return invalid("roles", fmt.Sprintf("unknown role %q (user, admin)", r))
		}
	}
	return nil
}

func validatePassword(p string) error {
	if n := utf8.RuneCountInString(p); n < 8 || len(p) > 256 || !utf8.ValidString(p) {
		return invalid("password", "must be 8-256 characters of valid UTF-8")
	}
	return nil
}

func validateEmail(e string) error {
	if e == "" {
		return nil
	}
	at := strings.IndexByte(e, '@')
	if len(e) > 254 || at < 1 || at == len(e)-1 || strings.ContainsAny(e, " \t\r\n\x00") || !utf8.ValidString(e) {
		return invalid("email", "is not an email address")
	}
	return nil
}

func validText(field, v string) error {
	if len(v) > 512 || !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
		return invalid(field, "must be at most 512 bytes of valid UTF-8 without NUL")
	}
	return nil
}

func validateProfile(p Profile) error {
	for field, v := range map[string]string{"nickname": p.Nickname, "timezone": p.Timezone, "language": p.Language, "image_url": p.ImageURL} {
		if err := validText(field, v); err != nil {
			return err
		}
	}
	if p.Plan.DeviceCount < 0 || p.Plan.DataPointCount < 0 || p.Plan.EmailCount < 0 {
		return invalid("plan", "counts must not be negative")
	}
	return nil
}

// users is the users collection and its login keys. A login names a user
// by username or email; reaching the user by either field would be a query
// the embedded store answers by reading every user, and a scatter over
// every shard on a sharded MongoDB. So each username and email has a key
// document whose _id is the normalised name (loginKey), pointing at the
// user's _id: a login is two reads by _id. Every write to a user takes
// its lock (see mongodb.DocLocks).
type users struct {
	coll *mongo.Collection
	keys *mongo.Collection
	// keyed says every user has its login keys (the start-up upgrade
	// ran); until then a login falls back to the fields.
	keyed  atomic.Bool
	locks  *mongodb.DocLocks
	writes mongodb.Writes
	params PasswordParams
	now    func() time.Time
}

// loginKey is the _id of the key document of a username ("u:") or an
// email ("e:"), case-insensitive.
func loginKey(kind, name string) string { return kind + ":" + strings.ToLower(name) }

// keyDoc points a username or an email at its user.
type keyDoc struct {
	ID     string `bson:"_id"`
	UserID string `bson:"user_id"`
}

func userIndexes() []mongo.IndexModel {
	return []mongo.IndexModel{
		// Not unique: the username's key document is the lock on the name
		// (see claimUsername), and a sharded users collection can only hold
		// unique indexes that start with its shard key.
		{Keys: bson.D{{Key: "username_key", Value: 1}}, Options: options.Index().SetName("username")},
		{Keys: bson.D{{Key: "email_key", Value: 1}}, Options: options.Index().SetName("email")},
	}
}

// create makes a user: the username's key first, which is the lock on the
// name, then the email's, then the user. A create that failed half way
// leaves a key pointing at no user, which the next create of that name
// takes over.
func (us *users) create(ctx context.Context, n NewUser) (*User, error) {
	if err := n.validate(); err != nil {
		return nil, err
	}
	now := us.now()
	u := &User{
		ID: randomID(12), Username: n.Username, UsernameKey: strings.ToLower(n.Username),
		Email: n.Email, EmailKey: strings.ToLower(n.Email),
		PasswordHash: hashPassword(n.Password, us.params),
		Roles:        n.Roles, Profile: n.Profile, CreatedAt: now, UpdatedAt: now, Keyed: true,
	}
	return u, us.insert(ctx, u)
}

// insert writes a new user: its keys first, then the user.
func (us *users) insert(ctx context.Context, u *User) error {
	if err := us.claimUsername(ctx, u); err != nil {
		return err
	}
	if err := us.claimEmail(ctx, u.ID, u.Email); err != nil {
		return err
	}
	if _, err := us.coll.InsertOne(ctx, u); err != nil {
		err = mongodb.Wrap(err)
		if errors.Is(err, mongodb.ErrDuplicate) {
			return fmt.Errorf("auth: create user %q: %w", u.Username, ErrUsernameTaken)
		}
		return fmt.Errorf("auth: create user: %w", err)
	}
	// Another create, seeing the key before this user existed, may have
	// taken it over as stale: the name is then theirs.
	var k keyDoc
	if err := us.keys.FindOne(ctx, bson.M{"_id": loginKey("u", u.Username)}).Decode(&k); err != nil {
		return fmt.Errorf("auth: create user: %w", mongodb.Wrap(err))
	}
	if k.UserID != u.ID {
		if _, err := us.coll.DeleteOne(ctx, bson.M{"_id": u.ID}); err != nil {
			return fmt.Errorf("auth: create user: %w", mongodb.Wrap(err))
		}
		return fmt.Errorf("auth: create user %q: %w", u.Username, ErrUsernameTaken)
	}
	return nil
}

// claimUsername points u's username key at u, unless it names a user that
// exists.
func (us *users) claimUsername(ctx context.Context, u *User) error {
	id := loginKey("u", u.Username)
	unlock, err := us.locks.Lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	_, err = us.keys.InsertOne(ctx, keyDoc{ID: id, UserID: u.ID})
	if err = mongodb.Wrap(err); !errors.Is(err, mongodb.ErrDuplicate) {
		if err != nil {
			return fmt.Errorf("auth: create user: %w", err)
		}
		return nil
	}
	var held keyDoc
	if err := us.keys.FindOne(ctx, bson.M{"_id": id}).Decode(&held); err != nil {
		return fmt.Errorf("auth: create user: %w", mongodb.Wrap(err))
	}
	if _, err := us.byID(ctx, held.UserID); !errors.Is(err, ErrNotFound) {
		if err != nil {
			return err
		}
		return fmt.Errorf("auth: create user %q: %w", u.Username, ErrUsernameTaken)
	}
	// Left by a create that failed before writing its user.
	res, err := us.keys.UpdateOne(ctx, us.writes.Filter(id, bson.E{Key: "user_id", Value: held.UserID}),
		bson.M{"$set": bson.M{"user_id": u.ID}})
	if err != nil {
		return fmt.Errorf("auth: create user: %w", mongodb.Wrap(err))
	}
	if res.MatchedCount == 0 {
		// Another instance's create took the key over first.
		return fmt.Errorf("auth: create user %q: %w", u.Username, ErrUsernameTaken)
	}
	return nil
}

// claimEmail points an email's key at the user unless another user has it:
// an email signs in the first account that gave it.
func (us *users) claimEmail(ctx context.Context, userID, email string) error {
	if email == "" {
		return nil
	}
	_, err := us.keys.InsertOne(ctx, keyDoc{ID: loginKey("e", email), UserID: userID})
	if err = mongodb.Wrap(err); err != nil && !errors.Is(err, mongodb.ErrDuplicate) {
		return fmt.Errorf("auth: email key: %w", err)
	}
	return nil
}

// releaseEmail removes an email's key if it points at the user.
func (us *users) releaseEmail(ctx context.Context, userID, email string) error {
	id := loginKey("e", email)
	if us.writes.Exclusive {
		var held keyDoc
		err := us.keys.FindOne(ctx, bson.M{"_id": id}).Decode(&held)
		if errors.Is(err, mongo.ErrNoDocuments) || (err == nil && held.UserID != userID) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("auth: email key: %w", mongodb.Wrap(err))
		}
	}
	if _, err := us.keys.DeleteOne(ctx, us.writes.Filter(id, bson.E{Key: "user_id", Value: userID})); err != nil {
		return fmt.Errorf("auth: email key: %w", mongodb.Wrap(err))
	}
	return nil
}

// byKey finds the user a login key points at; ErrNotFound when none does,
// or when the key is stale (the user's name or email has moved on).
func (us *users) byKey(ctx context.Context, kind, name string) (*User, error) {
	var k keyDoc
	err := us.keys.FindOne(ctx, bson.M{"_id": loginKey(kind, name)}).Decode(&k)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("auth: user %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: find user: %w", mongodb.Wrap(err))
	}
	u, err := us.byID(ctx, k.UserID)
	if err != nil {
		return nil, err
	}
	key := u.UsernameKey
	if kind == "e" {
		key = u.EmailKey
	}
	if key != strings.ToLower(name) {
		return nil, fmt.Errorf("auth: user %s: stale key: %w", name, ErrNotFound)
	}
	return u, nil
}

// byName finds a user by username, case-insensitively.
func (us *users) byName(ctx context.Context, username string) (*User, error) {
	return us.byKey(ctx, "u", username)
}

func (us *users) findOne(ctx context.Context, filter bson.M, what string) (*User, error) {
	var u User
	err := us.coll.FindOne(ctx, filter).Decode(&u)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("auth: user %s: %w", what, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: find user: %w", mongodb.Wrap(err))
	}
	return &u, nil
}

func (us *users) byID(ctx context.Context, id string) (*User, error) {
	return us.findOne(ctx, bson.M{"_id": id}, id)
}

func (us *users) existing(ctx context.Context, ids []string) (map[string]bool, error) {
	if len(ids) == 1 {
		// A push to one user (the common case) asks by _id alone, the one
		// filter the embedded store does not answer by reading every user.
		_, err := us.byID(ctx, ids[0])
		if errors.Is(err, ErrNotFound) {
			return map[string]bool{}, nil
		}
		if err != nil {
			return nil, err
		}
		return map[string]bool{ids[0]: true}, nil
	}
	cur, err := us.coll.Find(ctx, bson.M{"_id": bson.M{"$in": ids}}, options.Find().SetProjection(bson.M{"_id": 1}))
	if err != nil {
		return nil, fmt.Errorf("auth: find users: %w", mongodb.Wrap(err))
	}
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("auth: find users: %w", mongodb.Wrap(err))
	}
	out := make(map[string]bool, len(docs))
	for _, d := range docs {
		out[d.ID] = true
	}
	return out, nil
}

// byLogin finds a user by username, or by email when the login looks like
// one and no username matches: two reads by _id, three for an email.
// Until the start-up upgrade has given every earlier user its keys, a
// login its keys do not find looks the user up by field, as before.
func (us *users) byLogin(ctx context.Context, login string) (*User, error) {
	u, err := us.byKey(ctx, "u", login)
	if errors.Is(err, ErrNotFound) && strings.Contains(login, "@") {
		// A username that looks like an email wins over another user's email.
		u, err = us.byKey(ctx, "e", login)
	}
	if errors.Is(err, ErrNotFound) && !us.keyed.Load() {
		return us.byFieldLegacy(ctx, login)
	}
	return u, err
}

// byFieldLegacy is byLogin for users written before login keys existed.
func (us *users) byFieldLegacy(ctx context.Context, login string) (*User, error) {
	key := strings.ToLower(login)
	u, err := us.findOne(ctx, bson.M{"username_key": key}, "by name")
	if errors.Is(err, ErrNotFound) && strings.Contains(login, "@") {
		return us.findOne(ctx, bson.M{"email_key": key}, "by email")
	}
	return u, err
}

// stampLogin records a login's time on the user and returns the user as it
// was before: its disabled flag as of now, and its previous login.
func (us *users) stampLogin(ctx context.Context, id string, at time.Time) (*User, error) {
	unlock, err := us.locks.Lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var u User
	err = us.coll.FindOneAndUpdate(ctx, bson.M{"_id": id}, bson.M{"$set": bson.M{"last_login_at": at}}).Decode(&u)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("auth: user %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: stamp login: %w", mongodb.Wrap(err))
	}
	return &u, nil
}

// replaceHash sets the user's password hash to fresh if it is still old,
// under the user's lock, and reports whether it did.
func (us *users) replaceHash(ctx context.Context, id, old, fresh string) (bool, error) {
	unlock, err := us.locks.Lock(ctx, id)
	if err != nil {
		return false, err
	}
	defer unlock()
	if us.writes.Exclusive {
		u, err := us.byID(ctx, id)
		if err != nil || u.PasswordHash != old {
			return false, err
		}
	}
	res, err := us.coll.UpdateOne(ctx, us.writes.Filter(id, bson.E{Key: "password_hash", Value: old}),
		bson.M{"$set": bson.M{"password_hash": fresh, "updated_at": us.now()}})
	if err != nil {
		return false, fmt.Errorf("auth: rehash password: %w", mongodb.Wrap(err))
	}
	return res.MatchedCount == 1, nil
}

// UserPatch changes the fields that are set.
type UserPatch struct {
	Email    *string
	Password *string
	Roles    *[]string
	Disabled *bool
	Nickname *string
	Timezone *string
	Language *string
	ImageURL *string
	Plan     *Plan
	// KeepSessions keeps the user's sessions alive through a password
	// change, which otherwise revokes them.
	KeepSessions bool
	// passwordHash replaces the hash as it is (an import's).
	passwordHash *string
}

func (us *users) update(ctx context.Context, id string, p UserPatch) (*User, error) {
	set := bson.M{"updated_at": us.now()}
	if p.Email != nil {
		if err := validateEmail(*p.Email); err != nil {
			return nil, err
		}
		set["email"], set["email_key"] = *p.Email, strings.ToLower(*p.Email)
	}
	if p.Password != nil {
		if err := validatePassword(*p.Password); err != nil {
			return nil, err
		}
		set["password_hash"] = hashPassword(*p.Password, us.params)
	}
	if p.passwordHash != nil {
		set["password_hash"] = *p.passwordHash
	}
	if p.Roles != nil {
		n := NewUser{Username: "x", Password: "xxxxxxxx", Roles: *p.Roles}
		if err := n.validate(); err != nil {
			return nil, err
		}
		set["roles"] = n.Roles
	}
	if p.Disabled != nil {
		set["disabled"] = *p.Disabled
	}
	for field, v := range map[string]*string{"nickname": p.Nickname, "timezone": p.Timezone, "language": p.Language, "image_url": p.ImageURL} {
		if v != nil {
			if err := validText(field, *v); err != nil {
				return nil, err
			}
			set["profile."+field] = *v
		}
	}
	if p.Plan != nil {
		if err := validateProfile(Profile{Plan: *p.Plan}); err != nil {
			return nil, err
		}
		set["profile.plan"] = *p.Plan
	}
	unlock, err := us.locks.Lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var before *User
	if p.Email != nil {
		if before, err = us.byID(ctx, id); err != nil {
			return nil, err
		}
		// The new email's key before the user names it, so a login by it
		// finds the user as soon as the user says so.
		if err := us.claimEmail(ctx, id, *p.Email); err != nil {
			return nil, err
		}
	}
	var u User
	err = us.coll.FindOneAndUpdate(ctx, bson.M{"_id": id}, bson.M{"$set": set},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&u)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("auth: user %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: update user: %w", mongodb.Wrap(err))
	}
	if before != nil && before.EmailKey != "" && before.EmailKey != u.EmailKey {
		if err := us.releaseEmail(ctx, id, before.Email); err != nil {
			return nil, err
		}
	}
	return &u, nil
}

// raiseLastLogin sets the user's last login to at unless a later login
// is recorded (one that ran while the upgrade read the sessions).
func (us *users) raiseLastLogin(ctx context.Context, id string, at time.Time) error {
	unlock, err := us.locks.Lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	if us.writes.Exclusive {
		u, err := us.byID(ctx, id)
		if err != nil || !u.LastLoginAt.Before(at) {
			return err
		}
	}
	_, err = us.coll.UpdateOne(ctx, us.writes.Filter(id, bson.E{Key: "last_login_at", Value: bson.M{"$not": bson.M{"$gte": at}}}),
		bson.M{"$set": bson.M{"last_login_at": at}})
	if err != nil {
		return fmt.Errorf("auth: upgrade user: %w", mongodb.Wrap(err))
	}
	return nil
}

// repointStaleKey points the key id at userID if it names no user.
func (us *users) repointStaleKey(ctx context.Context, id, userID string) error {
	unlock, err := us.locks.Lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	var held keyDoc
	if err := us.keys.FindOne(ctx, bson.M{"_id": id}).Decode(&held); err != nil {
		return mongodb.Wrap(err)
	}
	if held.UserID == userID {
		return nil
	}
	if _, err := us.byID(ctx, held.UserID); !errors.Is(err, ErrNotFound) {
		return err
	}
	_, err = us.keys.UpdateOne(ctx, us.writes.Filter(id, bson.E{Key: "user_id", Value: held.UserID}),
		bson.M{"$set": bson.M{"user_id": userID}})
	return mongodb.Wrap(err)
}

// keyUser gives a user written before login keys existed its keys.
func (us *users) keyUser(ctx context.Context, u *User) error {
	id := loginKey("u", u.Username)
	_, err := us.keys.InsertOne(ctx, keyDoc{ID: id, UserID: u.ID})
	if err = mongodb.Wrap(err); errors.Is(err, mongodb.ErrDuplicate) {
		// A create of this name that failed on the old unique index left
		// a key naming no user: the name is this user's.
		err = us.repointStaleKey(ctx, id, u.ID)
	}
	if err != nil {
		return fmt.Errorf("auth: username key: %w", err)
	}
	if err := us.claimEmail(ctx, u.ID, u.Email); err != nil {
		return err
	}
	unlock, err := us.locks.Lock(ctx, u.ID)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := us.coll.UpdateOne(ctx, bson.M{"_id": u.ID}, bson.M{"$set": bson.M{"keyed": true}}); err != nil {
		return fmt.Errorf("auth: key user: %w", mongodb.Wrap(err))
	}
	return nil
}

// list returns users ordered by username key after cursor.
func (us *users) list(ctx context.Context, prefix, cursor string, limit int) ([]User, string, error) {
	filter := bson.M{}
	key := bson.M{}
	if prefix != "" {
		key["$gte"] = strings.ToLower(prefix)
		key["$lt"] = strings.ToLower(prefix) + "\uffff"
	}
	if cursor != "" {
		key["$gt"] = cursor
		if lo, ok := key["$gte"].(string); ok && lo > cursor {
			delete(key, "$gt")
		} else {
			delete(key, "$gte")
		}
	}
	if len(key) > 0 {
		filter["username_key"] = key
	}
	cur, err := us.coll.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: "username_key", Value: 1}}).SetLimit(int64(limit)+1))
	if err != nil {
		return nil, "", fmt.Errorf("auth: list users: %w", mongodb.Wrap(err))
	}
	var out []User
	if err := cur.All(ctx, &out); err != nil {
		return nil, "", fmt.Errorf("auth: list users: %w", mongodb.Wrap(err))
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].UsernameKey
	}
	return out, next, nil
}
