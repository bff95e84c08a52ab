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
// The device searches count users (each with at most its device limit of
// devices), re-validation counts tokens. Store.sweepBatch holds it, so
// that tests can lower it.
const sweepBatch = 1000

// Sweep does token hygiene and keeps stored history bounded: tokens the
// app has not confirmed for StaleAfter become stale (no pushes), devices
// unseen for ExpireAfter are deleted, idempotency records older than
// IdempotencyTTL are deleted, sessions that ended more than
// SessionRetention ago (through ended; nil skips them) and events older
// than EventRetention are deleted, and unverified tokens are validated
// again (through v; nil skips them).
//
// The device work finds users by the summaries their documents carry
// (oldest_pushable_seen, oldest_seen, unverified), up to sweepBatch each,
// then changes each user's document by _id as a request would. On
// MongoDB an index serves each search, so a sweep costs what it changes;
// FerretDB v1 uses no index but _id's, so there each of the three
// searches reads every user's document once per sweep: background work
// that grows with the users, where no request does.
func (s *Store) Sweep(ctx context.Context, v Revalidator, ended EndedSessions) (SweepResult, error) {
	var res SweepResult
	now := s.now()
	var err error
	if res.Staled, err = s.markStale(ctx, now.Add(-s.cfg.StaleAfter)); err != nil {
		return res, err
	}
	if res.Expired, err = s.deleteExpired(ctx, now.Add(-s.cfg.ExpireAfter)); err != nil {
		return res, err
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
	res.Verified, res.Invalidated, err = s.revalidate(ctx, v)
	return res, err
}

// dueUsers returns the documents of up to limit users matching filter, in
// the order of the indexed field sortBy, so that MongoDB reads them off
// the index that serves filter instead of sorting every match.
func (s *Store) dueUsers(ctx context.Context, filter bson.D, sortBy string, limit int) ([]userDoc, error) {
	cur, err := s.users.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: sortBy, Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("registry: sweep: %w", mongodb.Wrap(err))
	}
	var docs []userDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("registry: sweep: %w", mongodb.Wrap(err))
	}
	return docs, nil
}

// markStale marks stale the pushable tokens of devices last seen before
// cutoff, and returns how many it marked.
func (s *Store) markStale(ctx context.Context, cutoff time.Time) (int, error) {
	due, err := s.dueUsers(ctx, bson.D{{Key: "oldest_pushable_seen", Value: bson.D{{Key: "$lt", Value: cutoff}}}}, "oldest_pushable_seen", s.sweepBatch)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, du := range due {
		var staled []deviceDoc
		_, err := s.updateUser(ctx, du.ID, func(u *userDoc) bool {
			staled = nil
			for f, d := range u.Devices {
				if d.TokenStatus.Pushable() && d.LastSeenAt.Before(cutoff) {
					d.TokenStatus = TokenStale
					u.Devices[f] = d
					staled = append(staled, d)
				}
			}
			return len(staled) > 0 || u.summaryOutdated()
		})
		if err != nil {
			return n, fmt.Errorf("registry: mark stale: %w", err)
		}
		n += len(staled)
		for _, d := range staled {
			s.record(ctx, Event{UserID: d.UserID, Type: EventTokenStale, Actor: "sweeper", DeviceID: d.DeviceID,
				Outcome: fmt.Sprintf("not confirmed since %s", d.LastSeenAt.Format("2006-01-02"))})
		}
	}
	return n, nil
}

// deleteExpired deletes the devices last seen before cutoff, and returns
// how many it deleted.
func (s *Store) deleteExpired(ctx context.Context, cutoff time.Time) (int, error) {
	due, err := s.dueUsers(ctx, bson.D{{Key: "oldest_seen", Value: bson.D{{Key: "$lt", Value: cutoff}}}}, "oldest_seen", s.sweepBatch)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, du := range due {
		var expired []deviceDoc
		_, err := s.updateUser(ctx, du.ID, func(u *userDoc) bool {
			expired = nil
			for f, d := range u.Devices {
				if d.LastSeenAt.Before(cutoff) {
					delete(u.Devices, f)
					expired = append(expired, d)
				}
			}
			return len(expired) > 0 || u.summaryOutdated()
		})
		if err != nil {
			return n, fmt.Errorf("registry: delete expired devices: %w", err)
		}
		n += len(expired)
		if err := s.releaseTokens(ctx, expired); err != nil {
			return n, fmt.Errorf("registry: delete expired devices: %w", err)
		}
		for _, d := range expired {
			s.record(ctx, Event{UserID: d.UserID, Type: EventDeviceExpired, Actor: "sweeper", DeviceID: d.DeviceID,
				SessionID: d.SessionID, Outcome: "unseen too long"})
		}
	}
	return n, nil
}

// revalidate asks Firebase again about up to s.sweepBatch unverified tokens,
// resuming after the last user the previous sweep reached, and returns
// how many became valid and invalid.
func (s *Store) revalidate(ctx context.Context, v Revalidator) (verified, invalidated int, err error) {
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	due, err := s.dueUsers(ctx, bson.D{{Key: "unverified", Value: true},
		{Key: "_id", Value: bson.D{{Key: "$gt", Value: s.unverifiedFrom}}}}, "_id", s.sweepBatch)
	if err != nil {
		return 0, 0, err
	}
	asked := 0
	for _, du := range due {
		valid := map[string]string{} // device field → token key
		stop := false
		for f, d := range du.Devices {
			if d.TokenStatus != TokenUnverified || d.FCMToken == "" {
				continue
			}
			if asked == s.sweepBatch {
				stop = true
				break
			}
			asked++
			verdict, err := v.Revalidate(ctx, d.FCMToken)
			if err != nil {
				// Firebase is still unreachable: asking about the rest would
				// cost a validation timeout each. Next sweep.
				stop = true
				break
			}
			switch verdict {
			case VerdictValid:
				valid[f] = d.TokenKey
			case VerdictInvalid:
				ok, err := s.MarkInvalid(ctx, d.UserID, d.DeviceID, d.FCMToken, "rejected on re-validation")
				if err != nil {
					return verified, invalidated, err
				}
				if ok {
					invalidated++
				}
			}
			// VerdictUnknown: format-only mode could check only the shape.
		}
		n, err := s.markVerified(ctx, du.ID, valid)
		verified += n
		if err != nil || stop {
			return verified, invalidated, err // this user again next sweep
		}
		s.unverifiedFrom = du.ID
	}
	if len(due) < s.sweepBatch {
		s.unverifiedFrom = "" // the end: start over next sweep
	}
	return verified, invalidated, nil
}

// markVerified makes valid the unverified tokens Firebase accepted, if
// the devices still hold them, and returns how many.
func (s *Store) markVerified(ctx context.Context, userID string, valid map[string]string) (int, error) {
	now := s.now()
	n := 0
	_, err := s.updateUser(ctx, userID, func(u *userDoc) bool {
		n = 0
		for f, key := range valid {
			if d, ok := u.Devices[f]; ok && d.holds(key) && d.TokenStatus == TokenUnverified {
				d.TokenStatus, d.TokenValidatedAt = TokenValid, now
				u.Devices[f] = d
				n++
			}
		}
		return n > 0 || u.summaryOutdated()
	})
	if err != nil {
		return 0, fmt.Errorf("registry: mark verified: %w", err)
	}
	return n, nil
}
