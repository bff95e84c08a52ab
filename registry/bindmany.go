package registry

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry/mongodb"
)

// BindMany binds each binding as Bind would, in order, with results in
// the same order. Bindings of users who have no devices yet, with tokens
// no device holds, are written in bulk: their token documents, then their
// users' documents, two inserts in all (a bulk import of new users is
// mostly these). The others, and any whose insert meets a document that
// exists, go through Bind one at a time, which finds and finishes what the
// bulk left: a token document naming a device that does not hold the
// token is stale, and harmless. It stops at the first store failure.
func (s *Store) BindMany(ctx context.Context, bs []Binding) ([]BindResult, error) {
	res := make([]BindResult, len(bs))
	slow := make([]bool, len(bs))
	perUser := map[string]int{}
	seenToken := map[string]bool{}
	for i, b := range bs {
		perUser[b.UserID]++
		key := TokenKey(b.FCMToken)
		// A user over the limit in one batch, or a token named twice, needs
		// Bind's eviction and move rules.
		if seenToken[key] {
			slow[i] = true
		}
		seenToken[key] = true
	}
	for i, b := range bs {
		if perUser[b.UserID] > s.limit(b) {
			slow[i] = true
		}
	}

	now := s.now()
	docs := make([]deviceDoc, len(bs))
	var tokens []any
	var tokenOf []int
	for i, b := range bs {
		if slow[i] {
			continue
		}
		d := deviceDoc{UserID: b.UserID, DeviceID: b.DeviceID, Platform: b.Platform, FCMToken: b.FCMToken,
			TokenKey: TokenKey(b.FCMToken), TokenBind: bson.NewObjectID(), TokenStatus: TokenUnverified,
			TokenUpdatedAt: now, LastSeenAt: now, CreatedAt: now, SessionID: b.SessionID}
		if b.Verified {
			d.TokenStatus, d.TokenValidatedAt = TokenValid, now
		}
		docs[i] = d
		tokens = append(tokens, tokenDoc{ID: d.TokenKey, UserID: d.UserID, DeviceID: d.DeviceID, Bind: d.TokenBind})
		tokenOf = append(tokenOf, i)
	}
	taken, err := insertEach(ctx, s.tokens, tokens)
	if err != nil {
		return res, fmt.Errorf("registry: bind devices: %w", err)
	}
	for j, ok := range taken {
		if !ok {
			slow[tokenOf[j]] = true // another device holds it: a move
		}
	}

	byUser := map[string]*userDoc{}
	var users []any
	var userOf []string
	for i, d := range docs {
		if slow[i] {
			continue
		}
		u, ok := byUser[d.UserID]
		if !ok {
			u = &userDoc{ID: d.UserID, V: 1, Devices: map[string]deviceDoc{}}
			byUser[d.UserID] = u
			users = append(users, u)
			userOf = append(userOf, d.UserID)
		}
		u.Devices[deviceField(d.DeviceID)] = d
	}
	for _, u := range byUser {
		u.OldestPushableSeen, u.OldestSeen, u.Unverified = u.summarize()
	}
	written, err := insertEach(ctx, s.users, users)
	if err != nil {
		return res, fmt.Errorf("registry: bind devices: %w", err)
	}
	fresh := map[string]bool{}
	for j, ok := range written {
		fresh[userOf[j]] = ok // false: the user has devices already
	}
	var bound []Event
	for i, b := range bs {
		if slow[i] || !fresh[b.UserID] {
			r, err := s.Bind(ctx, b)
			if err != nil {
				s.recordMany(ctx, bound)
				return res, err
			}
			res[i] = r
			continue
		}
		res[i] = BindResult{Created: true, TokenChanged: true}
		bound = append(bound, Event{UserID: b.UserID, Type: EventTokenBound, Actor: b.Actor,
			DeviceID: b.DeviceID, SessionID: b.SessionID, Outcome: string(docs[i].TokenStatus)})
	}
	s.recordMany(ctx, bound)
	return res, nil
}

// insertEach inserts docs unordered and reports which were written: a
// document whose _id exists is not, and is no error.
func insertEach(ctx context.Context, coll *mongo.Collection, docs []any) ([]bool, error) {
	ok := make([]bool, len(docs))
	for i := range ok {
		ok[i] = true
	}
	if len(docs) == 0 {
		return ok, nil
	}
	_, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && bwe.WriteConcernError == nil {
		for _, we := range bwe.WriteErrors {
			if !mongo.IsDuplicateKeyError(we) {
				return nil, mongodb.Wrap(err)
			}
			ok[we.Index] = false
		}
		return ok, nil
	}
	if err != nil {
		return nil, mongodb.Wrap(err)
	}
	return ok, nil
}
