package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/pushreg/pushreg/push/fcmtest"
)

// importAnswer is POST /v1/admin/import's answer, as a client decodes it.
type importAnswer struct {
	UsersCreated  int `json:"users_created"`
	UsersUpdated  int `json:"users_updated"`
	DevicesBound  int `json:"devices_bound"`
	ErrorsOmitted int `json:"errors_omitted"`
	Errors        []struct {
		Line  int    `json:"line"`
		Error string `json:"error"`
	} `json:"errors"`
}

func (r importAnswer) errorLines() []int {
	var lines []int
	for _, e := range r.Errors {
		lines = append(lines, e.Line)
	}
	return lines
}

// ndjson joins lines, marshalling those that are not strings already.
func ndjson(t testing.TB, lines ...any) string {
	t.Helper()
	var b strings.Builder
	for _, l := range lines {
		if s, ok := l.(string); ok {
			b.WriteString(s)
		} else {
			j, err := json.Marshal(l)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(j)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// importBody posts body to the import route as the admin and decodes the
// 200 answer.
func (a *api) importBody(query, body string) importAnswer {
	a.t.Helper()
	h := bearer(a.admin())
	h["Content-Type"] = "application/x-ndjson"
	r := a.must(http.StatusOK, request{method: "POST", path: "/v1/admin/import" + query, header: h, body: body})
	var out importAnswer
	if err := json.Unmarshal(r.body, &out); err != nil {
		t := a.t
		t.Fatalf("import answer: %v: %s", err, r.body)
	}
	return out
}

// argon2PHC hashes password as pushreg stores it, at the tests' cost.
func argon2PHC(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	sum := argon2.IDKey([]byte(password), salt, 1, 64, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(sum))
}

// storedHash reads a user's password hash from the store.
func (a *api) storedHash(username string) string {
	a.t.Helper()
	var u struct {
		Hash string `bson:"password_hash"`
	}
	if err := a.db.Collection("users").FindOne(context.Background(), bson.M{"username_key": strings.ToLower(username)}).Decode(&u); err != nil {
		a.t.Fatalf("user %s: %v", username, err)
	}
	return u.Hash
}

func TestImportUsers(t *testing.T) {
	a := newAPI(t, nil)
	carolID := a.createUser(map[string]any{"username": "carol", "password": "carol-password-1"})
	a.login("carol", "carol-password-1", map[string]string{"device_id": "carol-phone", "fcm_token": fcmToken("shared")})
	daveID := a.createUser(map[string]any{"username": "dave", "password": "dave-password-1", "email": "dave@old.example.com"})

	argonHash := argon2PHC("alice-old-password")
	bc, err := bcrypt.GenerateFromPassword([]byte("bob-old-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	bcryptHash := string(bc)
	a.remember(map[string]any{"password": argonHash, "token": bcryptHash})

	body := ndjson(t,
		map[string]any{"username": "alice", "email": "alice@example.com", "password_hash": argonHash,
			"devices": []map[string]any{{"device_id": "alice-phone", "fcm_token": fcmToken("alice"), "platform": "android", "last_seen_at": "2026-01-02T03:04:05Z"}}},
		map[string]any{"username": "bob", "password_hash": bcryptHash, "roles": []string{"user"},
			"devices": []map[string]any{{"device_id": "bob-tablet", "fcm_token": fcmToken("shared")}}},
		`{"username": "broken",`,
		map[string]any{"username": "eve", "password_hash": "$2a$10$" + strings.Repeat("x", 20)},
		map[string]any{"username": "dave", "email": "dave@new.example.com", "roles": []string{"user", "admin"}},
		map[string]any{"username": "nohash", "email": "nohash@example.com"},
		map[string]any{"username": "xavier", "devices": []map[string]any{{"device_id": "d1", "fcm_token": "not a token!"}}},
		`{"username": "yann", "favourite_colour": "blue"}`,
		"   ",
		map[string]any{"username": "bad name!"},
		map[string]any{"username": "ALICE", "roles": []string{"user", "admin"}},
		map[string]any{"username": "zoe", "devices": []map[string]any{{"device_id": "z1", "fcm_token": fcmToken("zoe"), "last_seen_at": "yesterday"}}},
	)
	got := a.importBody("", body)

	if got.UsersCreated != 3 || got.UsersUpdated != 2 || got.DevicesBound != 2 || got.ErrorsOmitted != 0 {
		t.Errorf("counts = %+v, want 3 created (alice, bob, nohash), 2 updated (dave, ALICE), 2 devices bound", got)
	}
	if want := []int{3, 4, 7, 8, 10, 12}; !slices.Equal(got.errorLines(), want) {
		t.Errorf("error lines = %v, want %v (%+v)", got.errorLines(), want, got.Errors)
	}
	wantField := map[int]string{3: "line", 4: "password_hash", 7: "devices[0].fcm_token", 8: "unknown field", 10: "username", 12: "devices[0].last_seen_at"}
	for _, e := range got.Errors {
		if !strings.Contains(e.Error, wantField[e.Line]) {
			t.Errorf("line %d error = %q, want it to name %q", e.Line, e.Error, wantField[e.Line])
		}
		if strings.Contains(e.Error, "$2a$") || strings.Contains(e.Error, "not a token") {
			t.Errorf("line %d error = %q echoes a secret", e.Line, e.Error)
		}
	}

	// The good lines landed: the old passwords sign in.
	a.login("alice", "alice-old-password", nil)
	if h := a.storedHash("bob"); !strings.HasPrefix(h, "$2a$") {
		t.Fatalf("bob's hash before a login = %.7s…, want the imported bcrypt", h)
	}
	a.login("bob", "bob-old-password", nil)
	if h := a.storedHash("bob"); !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("bob's hash after a login = %.20s…, want argon2id at the service's parameters", h)
	}
	a.login("bob", "bob-old-password", nil)
	wrong := []struct{ user, password string }{
		{"bob", "not-bobs-password"},
		{"nohash", "any-password-at-all"},
		{"nohash", ""},
	}
	for _, w := range wrong {
		a.must(http.StatusUnauthorized, request{method: "POST", path: "/v1/auth/login",
			body: map[string]string{"username": w.user, "password": w.password}})
	}

	// dave was updated, not duplicated; a second line for alice updated her.
	dave := admGet[map[string]any](a, "/v1/admin/users/"+daveID)
	if dave["email"] != "dave@new.example.com" || fmt.Sprint(dave["roles"]) != "[user admin]" {
		t.Errorf("dave = %v, want the new email and roles user, admin", dave)
	}
	if page := admGet[admUserPage](a, "/v1/admin/users?prefix=dave"); len(page.Users) != 1 {
		t.Errorf("users named dave = %d, want 1", len(page.Users))
	}
	alice := admGet[admUserPage](a, "/v1/admin/users?username=alice").Users[0]
	if u := admGet[map[string]any](a, "/v1/admin/users/"+alice.ID); fmt.Sprint(u["roles"]) != "[user admin]" || u["email"] != "alice@example.com" {
		t.Errorf("alice = %v, want roles user, admin and her email kept", u)
	}

	// The shared token moved from carol's phone to bob's tablet.
	carolDevs := admGet[admDevicePage](a, "/v1/admin/users/"+carolID+"/devices").Devices
	if len(carolDevs) != 1 || carolDevs[0].TokenStatus != "unbound" || carolDevs[0].FCMToken != "" {
		t.Errorf("carol's devices = %+v, want carol-phone unbound", carolDevs)
	}
	bob := admGet[admUserPage](a, "/v1/admin/users?username=bob").Users[0]
	bobDevs := admGet[admDevicePage](a, "/v1/admin/users/"+bob.ID+"/devices").Devices
	if len(bobDevs) != 1 || bobDevs[0].DeviceID != "bob-tablet" || bobDevs[0].TokenStatus != "unverified" || bobDevs[0].FCMToken != fcmToken("shared") {
		t.Errorf("bob's devices = %+v, want bob-tablet holding the shared token, unverified", bobDevs)
	}
	var moved bool
	for _, e := range admGet[admEventPage](a, "/v1/admin/users/"+carolID+"/events?limit=200").Events {
		moved = moved || e.Type == "token_moved" && e.DeviceID == "carol-phone"
	}
	if !moved {
		t.Error("carol's trail has no token_moved event for carol-phone")
	}

	// One admin_action on the importing admin's own trail, with the counts.
	root := admGet[admUserPage](a, "/v1/admin/users?username="+adminName).Users[0]
	var imports []string
	for _, e := range admGet[admEventPage](a, "/v1/admin/users/"+root.ID+"/events?limit=200").Events {
		if e.Type == "admin_action" && strings.HasPrefix(e.Outcome, "import:") {
			imports = append(imports, e.Outcome)
		}
	}
	want := "import: 3 users created, 2 updated, 2 devices bound, 6 line errors"
	if len(imports) != 1 || imports[0] != want {
		t.Errorf("admin's import events = %q, want [%q]", imports, want)
	}
}

func TestImportRefusals(t *testing.T) {
	a := newAPI(t, nil)
	a.createUser(map[string]any{"username": "uma", "password": "uma-password-1"})
	user := a.login("uma", "uma-password-1", nil)["access_token"].(string)
	_, appCreds := a.admApp("devices:read", "push:send")
	appToken := a.admAppToken(appCreds)
	line := `{"username": "someone"}` + "\n"
	tests := []struct {
		name   string
		header map[string]string
		ctype  string
		want   int
	}{
		{"no credentials", nil, "application/x-ndjson", http.StatusUnauthorized},
		{"a user who is no admin", bearer(user), "application/x-ndjson", http.StatusForbidden},
		{"an app's Basic credentials", appCreds, "application/x-ndjson", http.StatusForbidden},
		{"an app's token", bearer(appToken), "application/x-ndjson", http.StatusForbidden},
		{"JSON", bearer(a.admin()), "application/json", http.StatusUnsupportedMediaType},
		{"no content type", bearer(a.admin()), "", http.StatusUnsupportedMediaType},
		{"NDJSON with parameters", bearer(a.admin()), "application/x-ndjson; charset=utf-8", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"Content-Type": tt.ctype}
			for k, v := range tt.header {
				h[k] = v
			}
			a.must(tt.want, request{method: "POST", path: "/v1/admin/import", header: h, body: line})
		})
	}
	if r := a.do(request{method: "POST", path: "/v1/auth/login", body: map[string]string{"username": "someone", "password": "whatever-it-is"}}); r.status != http.StatusUnauthorized {
		t.Errorf("login of a user imported without a hash = %d, want 401", r.status)
	}
}

func TestImportValidateWithFirebase(t *testing.T) {
	a := newAPI(t, nil)
	a.fcm.SetTokenError(fcmToken("dead"), fcmtest.Unregistered)
	body := ndjson(t,
		map[string]any{"username": "gina", "devices": []map[string]any{{"device_id": "g1", "fcm_token": fcmToken("live")}}},
		map[string]any{"username": "hugo", "devices": []map[string]any{
			{"device_id": "h1", "fcm_token": fcmToken("hugo-ok")}, {"device_id": "h2", "fcm_token": fcmToken("dead")}}},
	)
	got := a.importBody("?validate=true", body)
	if got.UsersCreated != 2 || got.DevicesBound != 2 || len(got.Errors) != 1 ||
		got.Errors[0].Line != 2 || got.Errors[0].Error != "devices[1].fcm_token: rejected by Firebase" {
		t.Fatalf("import = %+v, want 2 users, 2 devices and line 2's second device rejected", got)
	}
	hugo := admGet[admUserPage](a, "/v1/admin/users?username=hugo").Users[0]
	devs := admGet[admDevicePage](a, "/v1/admin/users/"+hugo.ID+"/devices").Devices
	if len(devs) != 1 || devs[0].DeviceID != "h1" || devs[0].TokenStatus != "valid" {
		t.Errorf("hugo's devices = %+v, want h1 valid only", devs)
	}
}

// An import body may exceed the 1 MiB every other route allows; a line
// longer than the line limit is a line error, and the lines around it
// land.
func TestImportLineLimitAndLargeBody(t *testing.T) {
	a := newAPI(t, nil)
	padded := func(name string, pad int) string {
		return `{"username": "` + name + `"` + strings.Repeat(" ", pad) + "}"
	}
	body := ndjson(t, padded("ivy", 700<<10), padded("jay", 1<<20), padded("kim", 700<<10))
	if len(body) <= 2<<20 {
		t.Fatalf("body is %d bytes, want over 2 MiB", len(body))
	}
	got := a.importBody("", body)
	if got.UsersCreated != 2 || len(got.Errors) != 1 || got.Errors[0].Line != 2 || !strings.Contains(got.Errors[0].Error, "line too long") {
		t.Errorf("import = %+v, want ivy and kim created and line 2 too long", got)
	}
}

func TestImportErrorCap(t *testing.T) {
	a := newAPI(t, nil)
	bad := make([]any, 1005)
	for i := range bad {
		bad[i] = `{"username": "no spaces allowed"}`
	}
	got := a.importBody("", ndjson(t, bad...))
	if len(got.Errors) != 1000 || got.ErrorsOmitted != 5 || got.Errors[999].Line != 1000 {
		t.Errorf("errors = %d (last line %d), omitted %d; want 1000 through line 1000, 5 omitted",
			len(got.Errors), got.Errors[len(got.Errors)-1].Line, got.ErrorsOmitted)
	}
}
