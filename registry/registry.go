// Package registry keeps devices and their FCM tokens in MongoDB: the
// device records, their indexes, the token hygiene sweeper and the audit
// events about them.
package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// ErrNotFound means the device (or user) does not exist.
var ErrNotFound = errors.New("not found")

// ErrBadCursor means a pagination cursor was not one this store handed out.
var ErrBadCursor = errors.New("bad cursor")

// Config tunes the registry.
type Config struct {
	// MaxDevicesPerUser applies when a user's plan sets no device count.
	MaxDevicesPerUser int
	// StaleAfter is how long a token may go unrefreshed before it is
	// marked stale and no longer pushed to.
	StaleAfter time.Duration
	// ExpireAfter is how long a device may go unseen before it is deleted
	// (FCM itself expires tokens unused for 270 days).
	ExpireAfter time.Duration
	// SessionRetention is how long the sweeper keeps a session after it
	// ended (the session is its login's audit entry).
	SessionRetention time.Duration
	// EventRetention is how long the sweeper keeps an audit event.
	EventRetention time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Store is the device registry.
type Store struct {
	db      *mongo.Database
	devices lockedCollection
	events  *mongo.Collection
	cfg     Config
	now     func() time.Time
}

// New returns a store on db. Call EnsureIndexes before serving.
func New(db *mongo.Database, cfg Config) *Store {
	if cfg.MaxDevicesPerUser <= 0 {
		cfg.MaxDevicesPerUser = 100
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 60 * 24 * time.Hour
	}
	if cfg.ExpireAfter <= 0 {
		cfg.ExpireAfter = 270 * 24 * time.Hour
	}
	if cfg.SessionRetention <= 0 {
		cfg.SessionRetention = 30 * 24 * time.Hour
	}
	if cfg.EventRetention <= 0 {
		cfg.EventRetention = 90 * 24 * time.Hour
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Store{
		db:      db,
		devices: lockedCollection{Collection: db.Collection("devices"), locks: mongodb.NewDocLocks()},
		events:  db.Collection("events"),
		cfg:     cfg,
		now:     now,
	}
}

// Ping reports whether the store answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.Client().Ping(ctx, nil); err != nil {
		return fmt.Errorf("registry: ping: %w", mongodb.Wrap(err))
	}
	return nil
}

// EnsureIndexes creates the registry's collections and indexes; it is
// idempotent.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	if err := mongodb.EnsureCollections(ctx, s.devices.Collection, s.events, s.idempotencyKeys()); err != nil {
		return err
	}
	return mongodb.EnsureIndexes(ctx, map[*mongo.Collection][]mongo.IndexModel{
		s.devices.Collection: deviceIndexes(),
		s.events:             eventIndexes(),
		s.idempotencyKeys():  idempotencyIndexes(),
	})
}

// lockedCollection is a collection whose single-document writes, by _id,
// take that document's lock (see mongodb.DocLocks), so a touch, a prune
// and a logout of one device cannot undo each other on FerretDB.
type lockedCollection struct {
	*mongo.Collection
	locks *mongodb.DocLocks
}

func (c lockedCollection) lock(ctx context.Context, filter bson.M) (func(), error) {
	id, ok := filter["_id"].(string)
	if !ok {
		return nil, fmt.Errorf("registry: write without a string _id in its filter")
	}
	return c.locks.Lock(ctx, id)
}

func (c lockedCollection) updateOne(ctx context.Context, filter bson.M, update any) (*mongo.UpdateResult, error) {
	unlock, err := c.lock(ctx, filter)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return c.UpdateOne(ctx, filter, update)
}

func (c lockedCollection) deleteOne(ctx context.Context, filter bson.M) (*mongo.DeleteResult, error) {
	unlock, err := c.lock(ctx, filter)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return c.DeleteOne(ctx, filter)
}

// findOneAndUpdate decodes the result into out; mongo.ErrNoDocuments
// passes through.
func (c lockedCollection) findOneAndUpdate(ctx context.Context, filter bson.M, update any, out any, opts ...options.Lister[options.FindOneAndUpdateOptions]) error {
	unlock, err := c.lock(ctx, filter)
	if err != nil {
		return err
	}
	defer unlock()
	return c.FindOneAndUpdate(ctx, filter, update, opts...).Decode(out)
}

func (c lockedCollection) findOneAndDelete(ctx context.Context, filter bson.M, out any) error {
	unlock, err := c.lock(ctx, filter)
	if err != nil {
		return err
	}
	defer unlock()
	return c.FindOneAndDelete(ctx, filter).Decode(out)
}
