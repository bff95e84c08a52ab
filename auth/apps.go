package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// Scopes an app may hold.
const (
	ScopePushSend    = "push:send"
	ScopeDevicesRead = "devices:read"
	ScopeMCS         = "mcs"
)

var knownScopes = map[string]bool{ScopePushSend: true, ScopeDevicesRead: true, ScopeMCS: true}

// App is a backend client: it authenticates with its ID and secret.
type App struct {
	ID         string    `bson:"_id"`
	Name       string    `bson:"name"`
	SecretHash string    `bson:"secret_hash"`
	Scopes     []string  `bson:"scopes"`
	Revoked    bool      `bson:"revoked"`
	CreatedAt  time.Time `bson:"created_at"`
}

// HasScope reports whether the app holds scope.
func (a *App) HasScope(scope string) bool {
	for _, s := range a.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

type apps struct {
	coll *mongo.Collection
	now  func() time.Time
}

// create stores a new app and returns it with its secret, shown once. The
// secret has 256 random bits, so a plain SHA-256 is enough to store it.
func (as *apps) create(ctx context.Context, name string, scopes []string) (*App, string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 128 {
		return nil, "", invalid("name", "must be 1-128 characters")
	}
	if len(scopes) == 0 {
		return nil, "", invalid("scopes", "must list at least one of push:send, devices:read, mcs")
	}
	for _, s := range scopes {
		if !knownScopes[s] {
			return nil, "", invalid("scopes", fmt.Sprintf("unknown scope %q (push:send, devices:read, mcs)", s))
		}
	}
	secret := encodeSecret(newSecret())
	a := &App{ID: "app_" + randomID(10), Name: name, SecretHash: hashSecret([]byte(secret)),
		Scopes: scopes, CreatedAt: as.now()}
	if _, err := as.coll.InsertOne(ctx, a); err != nil {
		return nil, "", fmt.Errorf("auth: create app: %w", mongodb.Wrap(err))
	}
	return a, secret, nil
}

// authenticate returns the app whose ID and secret these are.
func (as *apps) authenticate(ctx context.Context, id, secret string) (*App, error) {
	var a App
	err := as.coll.FindOne(ctx, bson.M{"_id": id}).Decode(&a)
	if errors.Is(err, mongo.ErrNoDocuments) {
		// Compare anyway so an unknown ID costs what a wrong secret costs.
		equalHash(hashSecret([]byte(secret)), strings.Repeat("0", 64))
		return nil, fmt.Errorf("auth: app: %w", ErrInvalidCredentials)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: find app: %w", mongodb.Wrap(err))
	}
	if !equalHash(hashSecret([]byte(secret)), a.SecretHash) || a.Revoked {
		return nil, fmt.Errorf("auth: app %s: %w", id, ErrInvalidCredentials)
	}
	return &a, nil
}

// active returns the app if it exists and is not revoked.
func (as *apps) active(ctx context.Context, id string) (*App, error) {
	var a App
	err := as.coll.FindOne(ctx, bson.M{"_id": id}).Decode(&a)
	if errors.Is(err, mongo.ErrNoDocuments) || (err == nil && a.Revoked) {
		return nil, fmt.Errorf("auth: app %s: %w", id, ErrInvalidToken)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: find app: %w", mongodb.Wrap(err))
	}
	return &a, nil
}

func (as *apps) revoke(ctx context.Context, id string) error {
	res, err := as.coll.UpdateOne(ctx, bson.M{"_id": id}, bson.M{"$set": bson.M{"revoked": true}})
	if err != nil {
		return fmt.Errorf("auth: revoke app: %w", mongodb.Wrap(err))
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("auth: app %s: %w", id, ErrNotFound)
	}
	return nil
}
