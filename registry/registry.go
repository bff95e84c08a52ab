// Package registry keeps devices and their FCM tokens in MongoDB: the
// device records, their indexes, the token hygiene sweeper and the audit
// events about them.
package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

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
	// Writes says whether this process is the store's only writer (the
	// embedded store), which decides how a document is changed.
	Writes mongodb.Writes
}

// Store is the device registry.
type Store struct {
	db     *mongo.Database
	users  *mongo.Collection // user_devices: a user's devices, by user ID
	tokens *mongo.Collection // device_tokens: a token's holder, by TokenKey
	legacy *mongo.Collection // devices: one document per device, before user_devices; Upgrade moves them
	events *mongo.Collection
	// userLocks and tokenLocks serialise this process's writes to a user's
	// devices and to a token's holder. A token's lock may be held while a
	// user's is taken, never the reverse, and no one holds two locks of
	// one set: the locks are striped, so two IDs may share one.
	userLocks, tokenLocks *mongodb.DocLocks
	// keyLocks serialise this process's writes to an idempotency key's
	// record.
	keyLocks *mongodb.DocLocks
	writes   mongodb.Writes
	cfg      Config
	now      func() time.Time

	// unverifiedFrom is the user _id after which the next sweep looks for
	// unverified tokens, so that tokens Firebase cannot judge do not
	// hold up the others.
	sweepMu        sync.Mutex
	unverifiedFrom string
	sweepBatch     int
}

// New returns a store on db. Call EnsureIndexes before serving, and
// Upgrade to bring a store an earlier version wrote up to date.
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
		db:         db,
		users:      db.Collection("user_devices"),
		tokens:     db.Collection("device_tokens"),
		legacy:     db.Collection("devices"),
		events:     db.Collection("events"),
		userLocks:  mongodb.NewDocLocks(),
		tokenLocks: mongodb.NewDocLocks(),
		keyLocks:   mongodb.NewDocLocks(),
		writes:     cfg.Writes,
		cfg:        cfg,
		now:        now,
		sweepBatch: sweepBatch,
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
	if err := mongodb.EnsureCollections(ctx, s.users, s.tokens, s.events, s.idempotencyKeys()); err != nil {
		return err
	}
	return mongodb.EnsureIndexes(ctx, map[*mongo.Collection][]mongo.IndexModel{
		s.users:             userIndexes(),
		s.events:            eventIndexes(),
		s.idempotencyKeys(): idempotencyIndexes(),
	})
}
