package auth

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func bcryptOf(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// fakeBcrypt is a well-formed bcrypt hash of the given cost that matches
// nothing: its cost is only parsed, never spent.
func fakeBcrypt(cost string) string { return "$2a$" + cost + "$" + strings.Repeat("A", 53) }

func TestCheckPasswordBcrypt(t *testing.T) {
	h := bcryptOf(t, "old-password")
	long := strings.Repeat("p", 72)
	hLong := bcryptOf(t, long)
	tests := []struct {
		name, password, hash string
		want                 bool
		wantErr              bool
	}{
		{"2a matches", "old-password", h, true, false},
		{"2b matches", "old-password", "$2b$" + h[4:], true, false},
		{"2y matches", "old-password", "$2y$" + h[4:], true, false},
		{"wrong password", "old-passwore", h, false, false},
		{"empty password", "", h, false, false},
		// bcrypt reads 72 bytes, as the backends that wrote the hash did.
		{"beyond 72 bytes", long + "ignored", hLong, true, false},
		{"truncated hash", "old-password", h[:50], false, true},
		{"cost beyond the bound", "old-password", fakeBcrypt("15"), false, true},
		{"empty hash", "old-password", "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checkPassword(tt.password, tt.hash)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("checkPassword = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestValidatePasswordHash(t *testing.T) {
	argon := hashPassword("pw", PasswordParams{MemoryKiB: 64, Iterations: 1, Parallelism: 1})
	tests := []struct {
		name, hash string
		ok         bool
	}{
		{"argon2id as pushreg writes", argon, true},
		{"argon2id at OWASP cost", strings.Replace(argon, "m=64,t=1,p=1", "m=19456,t=2,p=1", 1), true},
		{"argon2id of another version", strings.Replace(argon, "v=19", "v=16", 1), false},
		{"argon2id with absurd memory", strings.Replace(argon, "m=64", "m=4194304", 1), false},
		{"argon2id at 256 MiB", strings.Replace(argon, "m=64", "m=262144", 1), true},
		{"argon2id above 256 MiB", strings.Replace(argon, "m=64", "m=262145", 1), false},
		{"argon2id with too many passes", strings.Replace(argon, "t=1", "t=17", 1), false},
		{"argon2id with a short salt", "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + strings.Repeat("A", 43), false},
		{"argon2i", strings.Replace(argon, "argon2id", "argon2i", 1), false},
		{"bcrypt 2a", bcryptOf(t, "pw"), true},
		{"bcrypt at cost 14", fakeBcrypt("14"), true},
		{"bcrypt at cost 15", fakeBcrypt("15"), false},
		{"bcrypt at cost 3", fakeBcrypt("03"), false},
		{"bcrypt too short", "$2a$10$" + strings.Repeat("A", 40), false},
		{"bcrypt 2x", "$2x$" + bcryptOf(t, "pw")[4:], false},
		{"md5crypt", "$1$saltsalt$abcdefghijklmnopqrstuv", false},
		{"plain text", "hunter22", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validatePasswordHash(tt.hash)
			if (err == nil) != tt.ok {
				t.Fatalf("validatePasswordHash = %v, want ok %v", err, tt.ok)
			}
			var ie *InvalidInputError
			if err != nil && (!errors.As(err, &ie) || ie.Field != "password_hash" || strings.Contains(err.Error(), tt.hash)) {
				t.Errorf("error = %q, want an input error on password_hash that does not quote the hash", err)
			}
		})
	}
}

func TestNeedsRehash(t *testing.T) {
	tests := []struct {
		hash string
		want bool
	}{
		{"$2a$04$" + strings.Repeat("A", 53), true},
		{"$2b$04$" + strings.Repeat("A", 53), true},
		{"$2y$04$" + strings.Repeat("A", 53), true},
		{hashPassword("pw", PasswordParams{MemoryKiB: 64, Iterations: 1, Parallelism: 1}), false},
		{"", false},
	}
	for _, tt := range tests {
		if got := needsRehash(tt.hash); got != tt.want {
			t.Errorf("needsRehash(%.7s…) = %v, want %v", tt.hash, got, tt.want)
		}
	}
}

// A bcrypt user is rehashed to argon2id at a successful login, and only
// then; a user without a hash is refused as a wrong password would be.
func TestLoginRehashesBcrypt(t *testing.T) {
	for _, m := range writeModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			s, _ := testService(t, m.writes)
			ctx := context.Background()
			h := bcryptOf(t, "kecak-password")
			lines := []ImportLine{
				{Number: 1, User: ImportUser{Username: "kim", PasswordHash: h}},
				{Number: 2, User: ImportUser{Username: "lee"}},
			}
			res, err := s.Import(ctx, ImportOptions{AdminID: "admin"}, func() (ImportLine, error) {
				if len(lines) == 0 {
					return ImportLine{}, io.EOF
				}
				l := lines[0]
				lines = lines[1:]
				return l, nil
			})
			if err != nil || res.UsersCreated != 2 || len(res.Errors) != 0 {
				t.Fatalf("import = %+v, %v; want 2 users created", res, err)
			}
			if _, err := s.Authenticate(ctx, "kim", "wrong-password", ""); !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("wrong password = %v, want ErrInvalidCredentials", err)
			}
			if u, _ := s.users.byName(ctx, "kim"); u.PasswordHash != h {
				t.Fatal("a failed login rehashed the password")
			}
			if _, err := s.Authenticate(ctx, "kim", "kecak-password", ""); err != nil {
				t.Fatalf("bcrypt login = %v", err)
			}
			u, _ := s.users.byName(ctx, "kim")
			if !strings.HasPrefix(u.PasswordHash, "$argon2id$v=19$m=64,t=1,p=1$") {
				t.Fatalf("hash after login = %.12s…, want argon2id at the service's parameters", u.PasswordHash)
			}
			if _, err := s.Authenticate(ctx, "kim", "kecak-password", ""); err != nil {
				t.Fatalf("login after the rehash = %v", err)
			}
			for _, pw := range []string{"anything-at-all", "x"} {
				if _, err := s.Authenticate(ctx, "lee", pw, ""); !errors.Is(err, ErrInvalidCredentials) {
					t.Errorf("login without a hash = %v, want ErrInvalidCredentials", err)
				}
			}
		})
	}
}

// A rehash does not overwrite a hash an admin set since the login read
// the user.
func TestReplaceHashOnlyIfUnchanged(t *testing.T) {
	for _, m := range writeModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			s, _ := testService(t, m.writes)
			ctx := context.Background()
			u, err := s.CreateUser(ctx, NewUser{Username: "max", Password: "first-password"}, "test")
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := s.users.replaceHash(ctx, u.ID, "$2a$stale", "fresh"); ok || err != nil {
				t.Errorf("replaceHash over a changed hash = %v, %v; want false", ok, err)
			}
			if ok, err := s.users.replaceHash(ctx, u.ID, u.PasswordHash, "fresh"); !ok || err != nil {
				t.Errorf("replaceHash = %v, %v; want true", ok, err)
			}
		})
	}
}
