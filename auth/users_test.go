package auth

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/pushreg/pushreg/registry/mongodb"
	"github.com/pushreg/pushreg/registry/mongotest"
)

// writeModes are the two ways pushreg writes: alone (the embedded store)
// and as one of several instances (MongoDB), run on the test server.
var writeModes = []struct {
	name   string
	writes mongodb.Writes
}{
	{"exclusive", mongodb.Writes{Exclusive: true}},
	{"shared", mongodb.Writes{Exclusive: false}},
}

func testService(t *testing.T, writes mongodb.Writes) (*Service, *mongotest.DB) {
	t.Helper()
	db := mongotest.New(t)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	s, err := New(Config{DB: db.Database, Keys: testKeys(t), Issuer: "test", Audience: "test",
		Devices: noDevices{}, Validator: noValidator{}, Writes: writes, Logger: slog.New(slog.DiscardHandler),
		PasswordParams: PasswordParams{MemoryKiB: 64, Iterations: 1, Parallelism: 1},
		Now:            func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureIndexes(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, db
}

// A login finds its user through key documents by _id: by username, by
// email, case-insensitively, and never through a key a user has left.
func TestLoginKeys(t *testing.T) {
	for _, m := range writeModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			s, _ := testService(t, m.writes)
			ctx := context.Background()
			ann, err := s.CreateUser(ctx, NewUser{Username: "Ann", Password: "ann-password", Email: "ann@example.com"}, "test")
			if err != nil {
				t.Fatal(err)
			}
			// A username that looks like another user's email wins over it.
			odd, err := s.CreateUser(ctx, NewUser{Username: "ann@example.com", Password: "odd-password"}, "test")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.CreateUser(ctx, NewUser{Username: "ANN", Password: "ann-password"}, "test"); !errors.Is(err, ErrUsernameTaken) {
				t.Errorf("creating ANN beside Ann = %v, want ErrUsernameTaken", err)
			}
			for _, c := range []struct{ login, want string }{
				{"ann", ann.ID}, {"ANN", ann.ID}, {"ann@example.com", odd.ID}, {"Ann@Example.com", odd.ID},
			} {
				u, err := s.users.byLogin(ctx, c.login)
				if err != nil || u.ID != c.want {
					t.Errorf("byLogin(%q) = %v, %v; want user %s", c.login, u, err, c.want)
				}
			}
			newEmail := "ann@example.org"
			if _, err := s.UpdateUser(ctx, ann.ID, UserPatch{Email: &newEmail}, "test"); err != nil {
				t.Fatal(err)
			}
			if u, err := s.users.byLogin(ctx, "ann@example.org"); err != nil || u.ID != ann.ID {
				t.Errorf("login by the new email = %v, %v; want Ann", u, err)
			}
			if _, err := s.users.byKey(ctx, "e", "ann@example.com"); !errors.Is(err, ErrNotFound) {
				t.Errorf("the old email's key = %v, want ErrNotFound", err)
			}
		})
	}
}

// A create that died between its username key and its user leaves a key
// pointing at nobody: the name is free, and the next create takes it.
func TestStaleUsernameKeyIsTakenOver(t *testing.T) {
	for _, m := range writeModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			s, _ := testService(t, m.writes)
			ctx := context.Background()
			if _, err := s.users.keys.InsertOne(ctx, keyDoc{ID: loginKey("u", "bo"), UserID: "gone"}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.users.byLogin(ctx, "bo"); !errors.Is(err, ErrNotFound) {
				t.Errorf("login through a stale key = %v, want ErrNotFound", err)
			}
			bo, err := s.CreateUser(ctx, NewUser{Username: "bo", Password: "bo-password"}, "test")
			if err != nil {
				t.Fatalf("create over a stale key = %v", err)
			}
			if u, err := s.users.byLogin(ctx, "bo"); err != nil || u.ID != bo.ID {
				t.Errorf("login = %v, %v; want the new bo", u, err)
			}
		})
	}
}

// Users written before login keys get their keys at start-up, and their
// last login from their newest session.
func TestUpgradeGivesEarlierUsersKeysAndLastLogin(t *testing.T) {
	for _, m := range writeModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			s, db := testService(t, m.writes)
			ctx := context.Background()
			login := time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC)
			if _, err := db.Collection("users").InsertOne(ctx, bson.M{"_id": "old1", "username": "Olga", "username_key": "olga",
				"email": "olga@example.com", "email_key": "olga@example.com", "password_hash": "x", "roles": []string{"user"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Collection("sessions").InsertOne(ctx, bson.M{"_id": "s1", "user_id": "old1", "created_at": login,
				"login_seq": bson.NewObjectID(), "revoked": false, "style": "native"}); err != nil {
				t.Fatal(err)
			}
			for range 2 { // idempotent
				if err := s.EnsureIndexes(ctx); err != nil {
					t.Fatal(err)
				}
			}
			for _, name := range []string{"olga", "OLGA@example.com"} {
				u, err := s.users.byLogin(ctx, name)
				if err != nil || u.ID != "old1" || !u.LastLoginAt.Equal(login) {
					t.Errorf("byLogin(%q) after the upgrade = %+v, %v; want old1 with last login %s", name, u, err, login)
				}
			}
		})
	}
}

type noDevices struct{}

func (noDevices) TouchDevice(context.Context, DeviceBinding) (bool, error)     { return true, nil }
func (noDevices) BindDevice(context.Context, DeviceBinding) ([]Evicted, error) { return nil, nil }
func (noDevices) BindDevices(context.Context, []DeviceBinding) ([]Evicted, error) {
	return nil, nil
}
func (noDevices) UnbindSession(context.Context, string, string, string) error {
	return nil
}
func (noDevices) DeviceSession(context.Context, string, string) (string, error) { return "", nil }
func (noDevices) DeleteDevice(context.Context, string, string, string) (string, error) {
	return "", nil
}

type noValidator struct{}

func (noValidator) ValidateToken(context.Context, string) (bool, error) { return false, nil }
func (noValidator) CachedToken(string) (bool, bool)                     { return false, true }
func (noValidator) CheckToken(string) error                             { return nil }
