package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// Limits of a bulk import.
const (
	// MaxImportErrors is how many line errors an import reports; the rest
	// are only counted, so a file of garbage cannot grow the answer
	// without bound.
	MaxImportErrors = 1000
	// importBatch is how many users are written per InsertMany.
	importBatch = 500
	// importValidators bounds the Firebase validations in flight during
	// an import that asks for them.
	importValidators = 8
)

// ErrImportLineTooLong is a line longer than the caller's per-line limit.
var ErrImportLineTooLong = errors.New("line too long")

// ImportUser is one user of a bulk import, as one line asks for it.
type ImportUser struct {
	Username string
	// Email, when set, is the user's email ("" clears it on an update);
	// nil leaves an existing user's email as it is.
	Email *string
	// PasswordHash is argon2id (PHC) or bcrypt. Empty: a new user cannot
	// log in until an admin sets a password; an existing user keeps theirs.
	PasswordHash string
	// Roles are validated as an admin's; nil: ["user"] for a new user,
	// unchanged for an existing one.
	Roles   []string
	Devices []ImportDevice
}

// ImportDevice is a device to bind to an imported user.
type ImportDevice struct {
	DeviceID, FCMToken, Platform string
	// LastSeenAt is accepted but not stored: the registry's bind stamps
	// its own time.
	LastSeenAt time.Time
}

// ImportLine is one line of an import: a user, or Err when the caller
// could not read the line into one (malformed JSON, too long).
type ImportLine struct {
	Number int
	User   ImportUser
	Err    error
}

// ImportOptions says who imports and how.
type ImportOptions struct {
	// AdminID is the importing admin, whose audit trail records the import.
	AdminID string
	// Validate asks Firebase about every token: a rejected token is a line
	// error, and an unreachable Firebase binds the token unverified.
	// Otherwise tokens are checked for shape and bound unverified.
	Validate bool
}

// ImportError is a line that did not land, or a device of it that did not.
// Message names the field and never quotes a hash or a token.
type ImportError struct {
	Line    int
	Message string
}

// ImportResult counts what an import did.
type ImportResult struct {
	UsersCreated, UsersUpdated, DevicesBound int
	// Errors are the first MaxImportErrors line errors, in line order;
	// ErrorsOmitted counts the rest.
	Errors        []ImportError
	ErrorsOmitted int
}

func (r *ImportResult) fail(line int, err error) {
	if len(r.Errors) >= MaxImportErrors {
		r.ErrorsOmitted++
		return
	}
	r.Errors = append(r.Errors, ImportError{Line: line, Message: lineMessage(err)})
}

// lineMessage is what a line error says: the field and the reason for
// input errors, a fixed sentence for the rest, so that nothing a line
// carried is echoed.
func lineMessage(err error) string {
	var ie *InvalidInputError
	switch {
	case errors.As(err, &ie):
		return ie.Error()
	case errors.Is(err, ErrImportLineTooLong):
		return err.Error()
	case errors.Is(err, ErrUsernameTaken):
		return "username: taken by a user the import cannot update"
	}
	return "the line could not be imported"
}

// Import creates or updates the users that next yields, one line at a
// time until io.EOF, writing them in batches and binding their devices.
// A line that is invalid is reported by its number and skipped; every
// valid line lands. An error from next (the body could not be read) or
// from the store stops the import: the lines before it have landed, and
// the counts so far are returned with the error. The import is recorded
// on the admin's audit trail either way.
func (s *Service) Import(ctx context.Context, opts ImportOptions, next func() (ImportLine, error)) (*ImportResult, error) {
	im := &importer{s: s, opts: opts, actor: "user:" + opts.AdminID, res: &ImportResult{}, names: map[string]bool{}}
	err := im.run(ctx, next)
	r := im.res
	outcome := fmt.Sprintf("import: %d users created, %d updated, %d devices bound, %d line errors",
		r.UsersCreated, r.UsersUpdated, r.DevicesBound, len(r.Errors)+r.ErrorsOmitted)
	if err != nil {
		outcome += fmt.Sprintf("; stopped after line %d", im.last)
	}
	// The trail records what landed even when the client went away.
	s.auditAdmin(context.WithoutCancel(ctx), opts.AdminID, "", im.actor, outcome)
	return r, err
}

// importer is one import in progress.
type importer struct {
	s     *Service
	opts  ImportOptions
	actor string
	res   *ImportResult
	batch []*importing
	// names are the username keys in batch: a name seen twice flushes the
	// batch first, so the later line updates what the earlier created.
	names map[string]bool
	last  int
}

// importing is a valid line on its way to the store.
type importing struct {
	line int
	in   ImportUser
	user *User // once written: created, or the existing user updated
}

func (im *importer) run(ctx context.Context, next func() (ImportLine, error)) error {
	for {
		l, err := next()
		if errors.Is(err, io.EOF) {
			return im.flush(ctx)
		}
		if err != nil {
			// Complete lines read before the failure still land.
			return errors.Join(err, im.flush(ctx))
		}
		im.last = l.Number
		if l.Err == nil {
			l.Err = im.s.checkImportUser(&l.User)
		}
		if l.Err != nil {
			im.res.fail(l.Number, l.Err)
			continue
		}
		key := strings.ToLower(l.User.Username)
		if im.names[key] {
			if err := im.flush(ctx); err != nil {
				return err
			}
		}
		im.names[key] = true
		im.batch = append(im.batch, &importing{line: l.Number, in: l.User})
		if len(im.batch) >= importBatch {
			if err := im.flush(ctx); err != nil {
				return err
			}
		}
	}
}

// checkImportUser validates a line's user and its devices' shapes, so that
// a line with any bad field changes nothing.
func (s *Service) checkImportUser(u *ImportUser) error {
	if !usernamePattern.MatchString(u.Username) {
		return invalid("username", "must be 1-64 characters of letters, digits and . _ @ + -")
	}
	if u.Email != nil {
		if err := validateEmail(*u.Email); err != nil {
			return err
		}
	}
	if u.PasswordHash != "" {
		if err := validatePasswordHash(u.PasswordHash); err != nil {
			return err
		}
	}
	if u.Roles != nil {
		n := NewUser{Roles: u.Roles}
		if err := n.validateRoles(); err != nil {
			return err
		}
		u.Roles = n.Roles
	}
	seen := make(map[string]bool, len(u.Devices))
	for i, d := range u.Devices {
		field := fmt.Sprintf("devices[%d]", i)
		dr := DeviceRequest{DeviceID: d.DeviceID, FCMToken: d.FCMToken, Platform: d.Platform}
		if err := dr.Validate(); err != nil {
			var ie *InvalidInputError
			if errors.As(err, &ie) {
				return invalid(field+"."+ie.Field, ie.Reason)
			}
			return err
		}
		if seen[d.DeviceID] {
			return invalid(field+".device_id", "appears twice in the line")
		}
		seen[d.DeviceID] = true
		if err := s.cfg.Validator.CheckToken(d.FCMToken); err != nil {
			return invalid(field+".fcm_token", strings.TrimPrefix(err.Error(), "fcm_token: "))
		}
	}
	return nil
}

// flush writes the batch: new users in bulk, existing ones one by one,
// then every device.
func (im *importer) flush(ctx context.Context) error {
	batch := im.batch
	im.batch, im.names = nil, map[string]bool{}
	if len(batch) == 0 {
		return nil
	}
	existing, err := im.createAll(ctx, batch)
	if err != nil {
		return err
	}
	for _, p := range existing {
		if err := im.update(ctx, p); err != nil {
			return err
		}
	}
	return im.bindAll(ctx, batch)
}

// createAll writes the users of batch whose username is free, as create
// does but in three InsertMany: the username keys (a duplicate means the
// name is taken), the email keys (a duplicate means another account
// signs in with that email, which keeps it), then the users. It returns
// the lines whose username was taken.
func (im *importer) createAll(ctx context.Context, batch []*importing) ([]*importing, error) {
	us := im.s.users
	now := us.now()
	unordered := options.InsertMany().SetOrdered(false)
	users := make([]*User, len(batch))
	keys := make([]any, len(batch))
	for i, p := range batch {
		u := newImportedUser(p, now)
		users[i] = u
		keys[i] = keyDoc{ID: loginKey("u", u.Username), UserID: u.ID}
	}
	taken, err := duplicates(us.keys.InsertMany(ctx, keys, unordered))
	if err != nil {
		return nil, fmt.Errorf("auth: import username keys: %w", err)
	}
	var existing []*importing
	var emails, docs []any
	var fresh []*importing
	for i, p := range batch {
		if taken[i] {
			existing = append(existing, p)
			continue
		}
		p.user = users[i]
		fresh = append(fresh, p)
		docs = append(docs, users[i])
		if users[i].Email != "" {
			emails = append(emails, keyDoc{ID: loginKey("e", users[i].Email), UserID: users[i].ID})
		}
	}
	if len(emails) > 0 {
		// A duplicate email key is another account's email: it keeps it.
		if _, err := duplicates(us.keys.InsertMany(ctx, emails, unordered)); err != nil {
			return nil, fmt.Errorf("auth: import email keys: %w", err)
		}
	}
	if len(docs) == 0 {
		return existing, nil
	}
	refused, err := duplicates(us.coll.InsertMany(ctx, docs, unordered))
	if err != nil {
		return nil, fmt.Errorf("auth: import users: %w", err)
	}
	for i, p := range fresh {
		if refused[i] {
			// A user whose key is missing holds the name (written before
			// keys existed and not yet upgraded); its key left behind names
			// no user, which a later create takes over.
			im.res.fail(p.line, ErrUsernameTaken)
			p.user = nil
			continue
		}
		im.res.UsersCreated++
	}
	return existing, nil
}

// duplicates returns the positions of an unordered InsertMany's documents
// that a unique index refused; any other failure is an error.
func duplicates(_ *mongo.InsertManyResult, err error) (map[int]bool, error) {
	if err == nil {
		return nil, nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
		return nil, mongodb.Wrap(err)
	}
	dup := make(map[int]bool, len(bwe.WriteErrors))
	for _, we := range bwe.WriteErrors {
		if !mongo.IsDuplicateKeyError(we.WriteError) {
			return nil, mongodb.Wrap(err)
		}
		dup[we.Index] = true
	}
	return dup, nil
}

// update applies a line to the user already holding its username, as an
// admin's change would (new roles reach live sessions; a new hash
// revokes them); a key left by a failed create is taken over instead.
func (im *importer) update(ctx context.Context, p *importing) error {
	u, err := im.s.users.byName(ctx, p.in.Username)
	if errors.Is(err, ErrNotFound) {
		return im.createOne(ctx, p)
	}
	if err != nil {
		return err
	}
	var patch UserPatch
	if p.in.Email != nil && *p.in.Email != u.Email {
		patch.Email = p.in.Email
	}
	if p.in.Roles != nil && !sameRoles(p.in.Roles, u.Roles) {
		patch.Roles = &p.in.Roles
	}
	if p.in.PasswordHash != "" && p.in.PasswordHash != u.PasswordHash {
		patch.passwordHash = &p.in.PasswordHash
	}
	if patch != (UserPatch{}) {
		if u, err = im.s.updateUser(ctx, u.ID, patch, im.actor, "user updated by import"); err != nil {
			return im.lineOrFatal(p, err)
		}
	}
	p.user = u
	im.res.UsersUpdated++
	return nil
}

// newImportedUser is the user a line creates, with roles ["user"] unless
// the line names others.
func newImportedUser(p *importing, now time.Time) *User {
	u := &User{ID: randomID(12), Username: p.in.Username, UsernameKey: strings.ToLower(p.in.Username),
		PasswordHash: p.in.PasswordHash, Roles: p.in.Roles, CreatedAt: now, UpdatedAt: now, Keyed: true}
	if u.Roles == nil {
		u.Roles = []string{RoleUser}
	}
	if p.in.Email != nil {
		u.Email, u.EmailKey = *p.in.Email, strings.ToLower(*p.in.Email)
	}
	return u
}

// createOne creates a user whose username key names no user.
func (im *importer) createOne(ctx context.Context, p *importing) error {
	u := newImportedUser(p, im.s.users.now())
	if err := im.s.users.insert(ctx, u); err != nil {
		return im.lineOrFatal(p, err)
	}
	p.user = u
	im.res.UsersCreated++
	return nil
}

// lineOrFatal reports err on the line when it is about the line, and
// returns it when the store failed.
func (im *importer) lineOrFatal(p *importing, err error) error {
	var ie *InvalidInputError
	if errors.As(err, &ie) || errors.Is(err, ErrUsernameTaken) || errors.Is(err, ErrNotFound) {
		im.res.fail(p.line, err)
		return nil
	}
	return err
}

func sameRoles(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// importBind is one device of a written user, with Firebase's verdict.
type importBind struct {
	p        *importing
	i        int
	verified bool
	err      error
}

// bindAll binds the devices of the batch's written users, in line order,
// so a token named by two lines ends on the later line's device.
func (im *importer) bindAll(ctx context.Context, batch []*importing) error {
	var binds []*importBind
	for _, p := range batch {
		if p.user == nil {
			continue
		}
		for i := range p.in.Devices {
			binds = append(binds, &importBind{p: p, i: i})
		}
	}
	if im.opts.Validate {
		im.validateAll(ctx, binds)
	}
	var devices []DeviceBinding
	for _, b := range binds {
		d := b.p.in.Devices[b.i]
		field := fmt.Sprintf("devices[%d].fcm_token", b.i)
		switch {
		case b.err == nil:
		case errors.Is(b.err, ErrFCMTokenRejected):
			im.res.fail(b.p.line, invalid(field, "rejected by Firebase"))
			continue
		case errors.Is(b.err, ErrFCMTokenMalformed):
			im.res.fail(b.p.line, invalid(field, "not an FCM registration token"))
			continue
		case errors.Is(b.err, ErrFCMUnavailable):
			// Bound unverified; the sweeper asks Firebase again.
		default:
			return fmt.Errorf("auth: import: validate token: %w", b.err)
		}
		devices = append(devices, DeviceBinding{UserID: b.p.user.ID, DeviceID: d.DeviceID,
			Platform: d.Platform, FCMToken: d.FCMToken, Verified: b.verified,
			MaxDevices: b.p.user.Profile.Plan.DeviceCount, Actor: im.actor})
	}
	// In one call: the devices of new users are written in bulk.
	evicted, err := im.s.cfg.Devices.BindDevices(ctx, devices)
	im.s.revokeEvicted(ctx, evicted)
	if err != nil {
		return fmt.Errorf("auth: import: bind devices: %w", err)
	}
	im.res.DevicesBound += len(devices)
	return nil
}

// validateAll asks Firebase about each token, a few at a time: one by one,
// a large import would wait on Firebase's latency for every device.
func (im *importer) validateAll(ctx context.Context, binds []*importBind) {
	work := make(chan *importBind)
	var wg sync.WaitGroup
	for range min(importValidators, len(binds)) {
		wg.Go(func() {
			for b := range work {
				b.verified, b.err = im.s.cfg.Validator.ValidateToken(ctx, b.p.in.Devices[b.i].FCMToken)
			}
		})
	}
	for _, b := range binds {
		work <- b
	}
	close(work)
	wg.Wait()
}
