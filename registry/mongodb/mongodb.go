// Package mongodb opens pushreg's MongoDB connection and turns driver
// failures into errors the rest of the service can act on.
package mongodb

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

// ErrUnavailable means the store could not be reached or did not answer in
// time; the request may succeed later.
var ErrUnavailable = errors.New("store unavailable")

// ErrDuplicate means a unique index refused a write.
var ErrDuplicate = errors.New("duplicate key")

// Options tune the connection.
type Options struct {
	// ServerSelectionTimeout bounds how long an operation waits for a
	// reachable server before failing with ErrUnavailable.
	ServerSelectionTimeout time.Duration
	// Commands, if set, counts every command sent to the server.
	Commands *CommandCounter
}

// Connect builds a client for uri. It does not wait for the server: pushreg
// starts while MongoDB is down and recovers when it returns.
func Connect(uri string, o Options) (*mongo.Client, error) {
	if o.ServerSelectionTimeout == 0 {
		o.ServerSelectionTimeout = 2 * time.Second
	}
	opts := options.Client().
		ApplyURI(uri).
		SetServerSelectionTimeout(o.ServerSelectionTimeout).
		SetConnectTimeout(o.ServerSelectionTimeout).
		// Journaled majority writes: a refresh the client saw succeed
		// survives a crash of the server or of pushreg.
		SetWriteConcern(writeconcern.Majority()).
		SetRetryWrites(true)
	opts.WriteConcern.Journal = ptr(true)
	if o.Commands != nil {
		opts.SetMonitor(o.Commands.Monitor())
	}
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, fmt.Errorf("mongodb: connect: %w", err)
	}
	return client, nil
}

func ptr[T any](v T) *T { return &v }

// Wrap classifies err from the driver: unreachable servers and timeouts
// wrap ErrUnavailable, unique-index violations wrap ErrDuplicate, and
// mongo.ErrNoDocuments is left for the caller to translate.
func Wrap(err error) error {
	switch {
	case err == nil:
		return nil
	case mongo.IsDuplicateKeyError(err):
		return fmt.Errorf("%w: %w", ErrDuplicate, err)
	case mongo.IsNetworkError(err), mongo.IsTimeout(err), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled), isServerSelection(err), isTransient(err), isBackendInterrupted(err):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// transientCodes are server errors of a replica set changing primaries or
// shutting down: the same request succeeds a moment later.
var transientCodes = []int{
	91,    // ShutdownInProgress
	189,   // PrimarySteppedDown
	10107, // NotWritablePrimary
	11600, // InterruptedAtShutdown
	11602, // InterruptedDueToReplStateChange
	13435, // NotPrimaryNoSecondaryOk
	13436, // NotPrimaryOrSecondary
}

func isTransient(err error) bool {
	var se mongo.ServerError
	if !errors.As(err, &se) {
		return false
	}
	if se.HasErrorLabel("RetryableWriteError") {
		return true
	}
	for _, c := range transientCodes {
		if se.HasErrorCode(c) {
			return true
		}
	}
	return false
}

// backendInterruptions are what FerretDB reports, as an InternalError, when
// its SQLite or PostgreSQL backend goes away under a command: the store is
// stopping or restarting, and the command was rolled back.
var backendInterruptions = []string{
	"sql: transaction has already been committed or rolled back", // database/sql ErrTxDone: rolled back at shutdown
	"sql: database is closed",
	"sql: connection is already closed",
	"database is locked", // SQLITE_BUSY
	"context canceled",
	"conn closed", // pgx
	"connection refused",
	"SQLSTATE 57P", // PostgreSQL operator intervention: admin or crash shutdown, cannot connect now
	"SQLSTATE 08",  // PostgreSQL connection exception
}

// isBackendInterrupted reports whether err is FerretDB's InternalError for
// a backend that went away. MongoDB names its own shutdown with the codes
// in transientCodes; FerretDB v1 only has the message.
func isBackendInterrupted(err error) bool {
	var se mongo.ServerError
	if !errors.As(err, &se) {
		return false
	}
	for _, m := range backendInterruptions {
		if se.HasErrorCodeWithMessage(1, m) {
			return true
		}
	}
	return false
}

func isServerSelection(err error) bool {
	var sse topology.ServerSelectionError
	return errors.As(err, &sse) ||
		errors.Is(err, mongo.ErrClientDisconnected)
}

// CommandCounter counts the commands (round trips) the driver sends.
type CommandCounter struct {
	started   atomic.Int64
	failed    atomic.Int64
	durations atomic.Int64 // nanoseconds, summed
}

// Monitor returns a command monitor that feeds the counter.
func (c *CommandCounter) Monitor() *event.CommandMonitor {
	return &event.CommandMonitor{
		Started: func(context.Context, *event.CommandStartedEvent) { c.started.Add(1) },
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) {
			c.durations.Add(int64(e.Duration))
		},
		Failed: func(_ context.Context, e *event.CommandFailedEvent) {
			c.failed.Add(1)
			c.durations.Add(int64(e.Duration))
		},
	}
}

// Started reports how many commands have been sent.
func (c *CommandCounter) Started() int64 { return c.started.Load() }

// Failed reports how many commands failed.
func (c *CommandCounter) Failed() int64 { return c.failed.Load() }

// Duration reports the total time spent waiting for command replies.
func (c *CommandCounter) Duration() time.Duration { return time.Duration(c.durations.Load()) }

// EnsureCollections creates the given collections where they do not exist.
// A collection is otherwise created by its first write, and work done per
// collection at start-up (the embedded FerretDB's _id indexes) needs
// them all to exist.
func EnsureCollections(ctx context.Context, colls ...*mongo.Collection) error {
	const namespaceExists = 48
	for _, c := range colls {
		err := c.Database().CreateCollection(ctx, c.Name())
		var se mongo.ServerError
		if errors.As(err, &se) && se.HasErrorCode(namespaceExists) {
			err = nil
		}
		if err != nil {
			return fmt.Errorf("mongodb: create collection %s: %w", c.Name(), Wrap(err))
		}
	}
	return nil
}

// EnsureIndexes creates the given indexes; creating an index that exists
// with the same definition is a no-op, so this runs at every start. Each
// index is created on its own: FerretDB v1 panics on a createIndexes batch
// that mixes existing and new indexes.
func EnsureIndexes(ctx context.Context, byCollection map[*mongo.Collection][]mongo.IndexModel) error {
	for coll, models := range byCollection {
		for _, m := range models {
			if _, err := coll.Indexes().CreateOne(ctx, m); err != nil {
				return fmt.Errorf("mongodb: indexes on %s: %w", coll.Name(), Wrap(err))
			}
		}
	}
	return nil
}

// DeleteBatch deletes at most limit of the documents matching filter and
// returns how many it deleted, in two round trips: the _ids of up to limit
// matches, then a deleteMany of those _ids that checks filter again, so a
// document that stopped matching in between stays. (deleteMany has no
// limit; this keeps one call's work bounded however much has piled up.)
// filter must not constrain _id itself. Errors are Wrap's.
func DeleteBatch(ctx context.Context, coll *mongo.Collection, filter bson.M, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	cur, err := coll.Find(ctx, filter, options.Find().SetProjection(bson.M{"_id": 1}).SetLimit(int64(limit)))
	if err != nil {
		return 0, Wrap(err)
	}
	var docs []struct {
		ID bson.RawValue `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return 0, Wrap(err)
	}
	if len(docs) == 0 {
		return 0, nil
	}
	ids := make(bson.A, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	del := bson.M{"_id": bson.M{"$in": ids}}
	for k, v := range filter {
		del[k] = v
	}
	res, err := coll.DeleteMany(ctx, del)
	if err != nil {
		return 0, Wrap(err)
	}
	return int(res.DeletedCount), nil
}

// DocLocks serialise this process's writes to one document. FerretDB v1
// applies every update, conditional or not, as a read then a write of the
// whole document, so two overlapping writes to one document can lose one
// of them; MongoDB needs no lock. A fixed set of stripes bounds memory.
type DocLocks struct{ stripes [256]chan struct{} }

// NewDocLocks returns an unlocked set.
func NewDocLocks() *DocLocks {
	l := &DocLocks{}
	for i := range l.stripes {
		l.stripes[i] = make(chan struct{}, 1)
	}
	return l
}

// Lock waits for the document's stripe, or for ctx, whose end is reported
// as ErrUnavailable: the store is too slow to take more work.
func (l *DocLocks) Lock(ctx context.Context, id string) (unlock func(), err error) {
	h := fnv.New32a()
	h.Write([]byte(id))
	ch := l.stripes[h.Sum32()%uint32(len(l.stripes))]
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for a write to %s: %w", ErrUnavailable, id, ctx.Err())
	}
}

// Writes says how this process makes a conditional write to one document.
//
// On MongoDB the condition goes in the write's filter, where the server
// checks it atomically: one round trip, and any number of pushreg
// instances may write. The embedded FerretDB is written by this process
// alone, under DocLocks, and its SQLite backend pushes a filter down to an
// index only when the filter is exactly {_id: …}: any other filter reads
// and decodes the whole collection. So on an Exclusive store the caller
// reads the document by _id, checks the condition in Go under the
// document's lock, and writes with the lone _id filter. This is the one
// place where the two stores' writes differ.
type Writes struct {
	// Exclusive means only this process writes the store (the embedded
	// FerretDB).
	Exclusive bool
}

// Filter is the filter of a write to the document id that must only apply
// while cond holds. On an Exclusive store the caller has checked cond.
func (w Writes) Filter(id any, cond ...bson.E) bson.D {
	f := bson.D{{Key: "_id", Value: id}}
	if w.Exclusive {
		return f
	}
	return append(f, cond...)
}

// DropIndex drops the index name from coll if it exists. It asks first:
// FerretDB logs a warning, with the whole command, for every drop of an
// index that is not there.
func DropIndex(ctx context.Context, coll *mongo.Collection, name string) error {
	specs, err := coll.Indexes().ListSpecifications(ctx)
	if err != nil {
		return fmt.Errorf("mongodb: indexes of %s: %w", coll.Name(), Wrap(err))
	}
	for _, s := range specs {
		if s.Name == name {
			if err := coll.Indexes().DropOne(ctx, name); err != nil {
				return fmt.Errorf("mongodb: drop index %s of %s: %w", name, coll.Name(), Wrap(err))
			}
		}
	}
	return nil
}
