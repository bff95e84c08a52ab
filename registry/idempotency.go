package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// IdempotencyTTL is how long an idempotency key is remembered, counted from
// the first request that used it. The sweeper deletes older records.
const IdempotencyTTL = 24 * time.Hour

// Errors of ClaimIdempotencyKey.
var (
	// ErrIdempotencyInProgress means another request holding the same key
	// is still running; come back when it is done.
	ErrIdempotencyInProgress = errors.New("idempotency key in use by a request still in progress")
	// ErrIdempotencyMismatch means the key was used with a different
	// request.
	ErrIdempotencyMismatch = errors.New("idempotency key already used for a different request")
)

// States of an idempotency record.
const (
	idemPending = "pending"
	idemDone    = "done"
)

// idempotencyDoc is a remembered request. The _id hashes scope and key
// together, so the unique primary key is the lock two concurrent requests
// meet on; the request itself is kept only as a hash.
type idempotencyDoc struct {
	ID          string `bson:"_id"`
	Scope       string `bson:"scope"`
	RequestHash string `bson:"request_hash"`
	State       string `bson:"state"`
	// Claim names the request holding a pending record, so that only it
	// completes or releases the record.
	Claim string `bson:"claim"`
	// LeaseUntil is when a pending record is presumed abandoned (its
	// request died with its process) and may be taken over.
	LeaseUntil  time.Time `bson:"lease_until"`
	Status      int       `bson:"status,omitempty"`
	Response    []byte    `bson:"response,omitempty"`
	CreatedAt   time.Time `bson:"created_at"`
	CompletedAt time.Time `bson:"completed_at,omitempty"`
}

// idempotencyKeys is the collection of idempotency records.
func (s *Store) idempotencyKeys() *mongo.Collection { return s.db.Collection("idempotency_keys") }

func idempotencyIndexes() []mongo.IndexModel {
	return []mongo.IndexModel{
		// The sweeper deletes by age (FerretDB v1 has no TTL indexes).
		{Keys: bson.D{{Key: "created_at", Value: 1}}, Options: options.Index().SetName("created")},
	}
}

// IdempotencyClaim is the outcome of ClaimIdempotencyKey: either a stored
// response to replay, or the right to run the request, which must end with
// CompleteIdempotencyKey or ReleaseIdempotencyKey.
type IdempotencyClaim struct {
	// Replay, when not nil, is the response of the earlier request with the
	// same key and request; nothing was claimed.
	Replay *StoredResponse
	id     string
	claim  string
}

// StoredResponse is a response remembered under an idempotency key.
type StoredResponse struct {
	Status int
	Body   []byte
	// CreatedAt is when the first request with the key arrived.
	CreatedAt time.Time
}

// IdempotencyKeyID is the stored ID of key within scope.
func IdempotencyKeyID(scope, key string) string {
	sum := sha256.Sum256([]byte(scope + "\x00" + key))
	return hex.EncodeToString(sum[:])
}

// ClaimIdempotencyKey starts a request carrying an idempotency key: scope
// says whose keys these are (a principal), requestHash identifies the request
// (a SHA-256 of what was asked), and lease bounds how long the claim is
// held before a request that died is presumed gone.
//
// The first request with a key inserts a pending record, an atomic
// single-document write that a concurrent request with the same key loses
// on the unique _id. Later requests with the key, within IdempotencyTTL, get:
//   - the stored response (Replay), if it was completed and the request
//     hash matches;
//   - ErrIdempotencyMismatch, if the request hash differs;
//   - ErrIdempotencyInProgress, if the first request is still running;
//   - the claim, if the first request's lease ran out without completing
//     (its process died), or the record is older than IdempotencyTTL.
func (s *Store) ClaimIdempotencyKey(ctx context.Context, scope, key, requestHash string, lease time.Duration) (IdempotencyClaim, error) {
	id := IdempotencyKeyID(scope, key)
	for attempt := 0; attempt < 4; attempt++ {
		now := s.now()
		doc := idempotencyDoc{ID: id, Scope: scope, RequestHash: requestHash, State: idemPending,
			Claim: newClaim(), LeaseUntil: now.Add(lease), CreatedAt: now}
		_, err := s.idempotencyKeys().InsertOne(ctx, doc)
		if err == nil {
			return IdempotencyClaim{id: id, claim: doc.Claim}, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return IdempotencyClaim{}, fmt.Errorf("registry: claim idempotency key: %w", mongodb.Wrap(err))
		}

		var old idempotencyDoc
		err = s.idempotencyKeys().FindOne(ctx, bson.M{"_id": id}).Decode(&old)
		if errors.Is(err, mongo.ErrNoDocuments) {
			continue // released or swept meanwhile: insert again
		}
		if err != nil {
			return IdempotencyClaim{}, fmt.Errorf("registry: read idempotency key: %w", mongodb.Wrap(err))
		}
		expired := !now.Before(old.CreatedAt.Add(IdempotencyTTL))
		switch {
		case !expired && old.RequestHash != requestHash:
			return IdempotencyClaim{}, fmt.Errorf("registry: %w", ErrIdempotencyMismatch)
		case !expired && old.State == idemDone:
			return IdempotencyClaim{Replay: &StoredResponse{Status: old.Status, Body: old.Response, CreatedAt: old.CreatedAt}}, nil
		case !expired && now.Before(old.LeaseUntil):
			return IdempotencyClaim{}, fmt.Errorf("registry: %w", ErrIdempotencyInProgress)
		}
		// Expired, or abandoned: take it over, unless someone else just did
		// (the condition on the old claim makes the replacement a
		// compare-and-swap).
		took, err := s.swapKey(ctx, id, old.Claim, idemAny, func(c *mongo.Collection, filter bson.D) (int64, error) {
			res, err := c.ReplaceOne(ctx, filter, doc)
			if err != nil {
				return 0, err
			}
			return res.MatchedCount, nil
		})
		if err != nil {
			return IdempotencyClaim{}, fmt.Errorf("registry: take over idempotency key: %w", err)
		}
		if took {
			return IdempotencyClaim{id: id, claim: doc.Claim}, nil
		}
	}
	return IdempotencyClaim{}, fmt.Errorf("registry: claim idempotency key: %w", ErrIdempotencyInProgress)
}

// CompleteIdempotencyKey stores the response of a claimed request, for
// later requests with the same key to replay. It fails with ErrNotFound
// when the claim was lost (its lease ran out and another request took the
// key over).
func (s *Store) CompleteIdempotencyKey(ctx context.Context, c IdempotencyClaim, status int, body []byte) error {
	done, err := s.swapKey(ctx, c.id, c.claim, idemPending, func(coll *mongo.Collection, filter bson.D) (int64, error) {
		res, err := coll.UpdateOne(ctx, filter,
			bson.M{"$set": bson.M{"state": idemDone, "status": status, "response": body, "completed_at": s.now()}})
		if err != nil {
			return 0, err
		}
		return res.MatchedCount, nil
	})
	if err != nil {
		return fmt.Errorf("registry: complete idempotency key: %w", err)
	}
	if !done {
		return fmt.Errorf("registry: complete idempotency key: claim lost: %w", ErrNotFound)
	}
	return nil
}

// ReleaseIdempotencyKey forgets a claimed request that failed without an
// effect worth remembering, so that the same key may be used again at once.
func (s *Store) ReleaseIdempotencyKey(ctx context.Context, c IdempotencyClaim) error {
	_, err := s.swapKey(ctx, c.id, c.claim, idemPending, func(coll *mongo.Collection, filter bson.D) (int64, error) {
		res, err := coll.DeleteOne(ctx, filter)
		if err != nil {
			return 0, err
		}
		return res.DeletedCount, nil
	})
	if err != nil {
		return fmt.Errorf("registry: release idempotency key: %w", err)
	}
	return nil
}

// idemAny is swapKey's state for "whatever the state".
const idemAny = ""

// swapKey applies write to the key's record if it still carries claim (and
// state, unless idemAny), and reports whether it did. On MongoDB the
// condition is in write's filter; on the embedded store, where FerretDB
// applies any write as a read then a write and finds a filter other than a
// lone _id by reading every record, the record is read by _id and checked
// here, under the key's lock, and written by _id (see mongodb.Writes). Two
// retries taking over one abandoned key thus cannot both win.
func (s *Store) swapKey(ctx context.Context, id, claim, state string, write func(*mongo.Collection, bson.D) (int64, error)) (bool, error) {
	unlock, err := s.keyLocks.Lock(ctx, id)
	if err != nil {
		return false, err
	}
	defer unlock()
	cond := bson.D{{Key: "claim", Value: claim}}
	if state != idemAny {
		cond = append(cond, bson.E{Key: "state", Value: state})
	}
	if s.writes.Exclusive {
		var cur idempotencyDoc
		err := s.idempotencyKeys().FindOne(ctx, bson.M{"_id": id}).Decode(&cur)
		if errors.Is(err, mongo.ErrNoDocuments) || (err == nil && (cur.Claim != claim || (state != idemAny && cur.State != state))) {
			return false, nil
		}
		if err != nil {
			return false, mongodb.Wrap(err)
		}
	}
	n, err := write(s.idempotencyKeys(), s.writes.Filter(id, cond...))
	if err != nil {
		return false, mongodb.Wrap(err)
	}
	return n == 1, nil
}

// sweepIdempotency deletes the idempotency records older than
// IdempotencyTTL, in one round trip.
func (s *Store) sweepIdempotency(ctx context.Context, now time.Time) (int, error) {
	res, err := s.idempotencyKeys().DeleteMany(ctx, bson.M{"created_at": bson.M{"$lt": now.Add(-IdempotencyTTL)}})
	if err != nil {
		return 0, fmt.Errorf("registry: sweep idempotency keys: %w", mongodb.Wrap(err))
	}
	return int(res.DeletedCount), nil
}

func newClaim() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
