package registry

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// Verdict is Firebase's opinion of a token, for the sweeper.
type Verdict int

// Verdicts.
const (
	VerdictUnknown Verdict = iota // could not tell; ask again next sweep
	VerdictValid
	VerdictInvalid
)

// Revalidator asks Firebase about a token again.
type Revalidator interface {
	Revalidate(ctx context.Context, token string) (Verdict, error)
}

// EndedSessions deletes sessions that ended long enough ago. Sessions
// are auth's (its Service is one); the sweeper only schedules and bounds
// their deletion, as it does for the registry's own records.
type EndedSessions interface {
	// DeleteEndedSessions deletes at most limit sessions that ended
	// before endedBefore and returns how many it deleted.
	DeleteEndedSessions(ctx context.Context, endedBefore time.Time, limit int) (int, error)
}

// SweepResult counts what one sweep changed.
type SweepResult struct {
	Staled, Expired, Verified, Invalidated int
	// IdempotencyExpired counts idempotency records deleted for being
	// older than IdempotencyTTL.
	IdempotencyExpired int
	// SessionsDeleted counts sessions deleted for having ended more than
	// SessionRetention ago; EventsDeleted, events older than
	// EventRetention.
	SessionsDeleted, EventsDeleted int
}

// sweepBatch bounds one sweep's work per kind; the next sweep continues.
const sweepBatch = 1000

// Sweep does token hygiene and keeps stored history bounded: tokens the
// app has not confirmed for StaleAfter become stale (no pushes), devices
// unseen for ExpireAfter are deleted, idempotency records older than
// IdempotencyTTL are deleted, sessions that ended more than
// SessionRetention ago (through ended; nil skips them) and events older
// than EventRetention are deleted, and unverified tokens are validated
// again (through v; nil skips them).
func (s *Store) Sweep(ctx context.Context, v Revalidator, ended EndedSessions) (SweepResult, error) {
	var res SweepResult
	now := s.now()

	stale, err := s.find(ctx, bson.M{"token_status": bson.M{"$in": bson.A{TokenValid, TokenUnverified}},
		"last_seen_at": bson.M{"$lt": now.Add(-s.cfg.StaleAfter)}}, sweepBatch)
	if err != nil {
		return res, err
	}
	for _, d := range stale {
		r, err := s.devices.updateOne(ctx, bson.M{"_id": d.ID, "token_key": d.TokenKey,
			"last_seen_at": bson.M{"$lt": now.Add(-s.cfg.StaleAfter)}},
			bson.M{"$set": bson.M{"token_status": TokenStale}})
		if err != nil {
			return res, fmt.Errorf("registry: mark stale: %w", mongodb.Wrap(err))
		}
		if r.ModifiedCount == 1 {
			res.Staled++
			s.record(ctx, Event{UserID: d.UserID, Type: EventTokenStale, Actor: "sweeper", DeviceID: d.DeviceID,
				Outcome: fmt.Sprintf("not confirmed since %s", d.LastSeenAt.Format("2006-01-02"))})
		}
	}

	expired, err := s.find(ctx, bson.M{"last_seen_at": bson.M{"$lt": now.Add(-s.cfg.ExpireAfter)}}, sweepBatch)
	if err != nil {
		return res, err
	}
	for _, d := range expired {
		r, err := s.devices.deleteOne(ctx, bson.M{"_id": d.ID, "last_seen_at": bson.M{"$lt": now.Add(-s.cfg.ExpireAfter)}})
		if err != nil {
			return res, fmt.Errorf("registry: delete expired device: %w", mongodb.Wrap(err))
		}
		if r.DeletedCount == 1 {
			res.Expired++
			s.record(ctx, Event{UserID: d.UserID, Type: EventDeviceExpired, Actor: "sweeper", DeviceID: d.DeviceID,
				SessionID: d.SessionID, Outcome: "unseen too long"})
		}
	}

	if res.IdempotencyExpired, err = s.sweepIdempotency(ctx, now); err != nil {
		return res, err
	}
	if ended != nil {
		if res.SessionsDeleted, err = ended.DeleteEndedSessions(ctx, now.Add(-s.cfg.SessionRetention), sweepBatch); err != nil {
			return res, err
		}
	}
	if res.EventsDeleted, err = s.deleteOldEvents(ctx, now.Add(-s.cfg.EventRetention), sweepBatch); err != nil {
		return res, err
	}

	if v == nil {
		return res, nil
	}
	unverified, err := s.find(ctx, bson.M{"token_status": TokenUnverified}, sweepBatch)
	if err != nil {
		return res, err
	}
	for _, d := range unverified {
		verdict, err := v.Revalidate(ctx, d.FCMToken)
		if err != nil {
			// Firebase is still unreachable: asking about the rest would
			// cost a validation timeout each. Next sweep.
			break
		}
		if verdict == VerdictUnknown {
			continue // format-only mode: only the shape could be checked
		}
		if verdict == VerdictInvalid {
			if ok, err := s.MarkInvalid(ctx, d.UserID, d.DeviceID, d.FCMToken, "rejected on re-validation"); err != nil {
				return res, err
			} else if ok {
				res.Invalidated++
			}
			continue
		}
		r, err := s.devices.updateOne(ctx, bson.M{"_id": d.ID, "token_key": d.TokenKey, "token_status": TokenUnverified},
			bson.M{"$set": bson.M{"token_status": TokenValid, "token_validated_at": s.now()}})
		if err != nil {
			return res, fmt.Errorf("registry: mark verified: %w", mongodb.Wrap(err))
		}
		res.Verified += int(r.ModifiedCount)
	}
	return res, nil
}

// find returns the devices matching filter, at most limit (0: all).
func (s *Store) find(ctx context.Context, filter bson.M, limit int64) ([]deviceDoc, error) {
	cur, err := s.devices.Find(ctx, filter, options.Find().SetLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("registry: sweep: %w", mongodb.Wrap(err))
	}
	var docs []deviceDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("registry: sweep: %w", mongodb.Wrap(err))
	}
	return docs, nil
}
