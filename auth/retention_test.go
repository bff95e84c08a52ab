package auth

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/pushreg/pushreg/registry/mongodb"
	"github.com/pushreg/pushreg/registry/mongotest"
)

// sessionStore is a Service holding only its sessions, on a fresh
// database with the sessions' indexes.
func sessionStore(t *testing.T) (*Service, *sessions) {
	t.Helper()
	db := mongotest.New(t)
	ss := &sessions{coll: db.Collection("sessions"), locks: mongodb.NewDocLocks(), writes: mongotest.Writes()}
	if err := mongodb.EnsureIndexes(context.Background(), map[*mongo.Collection][]mongo.IndexModel{ss.coll: sessionIndexes()}); err != nil {
		t.Fatal(err)
	}
	return &Service{sessions: ss}, ss
}

// sessionIDs lists the IDs of the sessions left, sorted.
func sessionIDs(t *testing.T, ss *sessions) []string {
	t.Helper()
	cur, err := ss.coll.Find(context.Background(), bson.M{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []sessionDoc
	if err := cur.All(context.Background(), &docs); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range docs {
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	return ids
}

func TestDeleteEndedSessionsPastRetention(t *testing.T) {
	t.Parallel()
	svc, ss := sessionStore(t)
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	const retention = 30 * 24 * time.Hour
	cutoff := now.Add(-retention)
	day := 24 * time.Hour
	later := now.Add(60 * day)

	tests := []struct {
		id            string
		expires, idle time.Time
		revokedAt     time.Time // zero: not revoked
		deleted       bool
	}{
		{id: "live", expires: later, idle: now.Add(day)},
		{id: "revoked-past-retention", expires: later, idle: later, revokedAt: cutoff.Add(-time.Second), deleted: true},
		{id: "revoked-inside-retention", expires: later, idle: later, revokedAt: cutoff.Add(time.Second)},
		{id: "revoked-exactly-retention-ago", expires: later, idle: later, revokedAt: cutoff},
		{id: "expired-past-retention", expires: cutoff.Add(-time.Second), idle: later, deleted: true},
		{id: "expired-inside-retention", expires: cutoff.Add(time.Second), idle: later},
		{id: "expired-exactly-retention-ago", expires: cutoff, idle: later},
		{id: "idle-past-retention", expires: later, idle: cutoff.Add(-time.Second), deleted: true},
		{id: "idle-inside-retention", expires: later, idle: now.Add(-day)},
		{id: "idle-exactly-retention-ago", expires: later, idle: cutoff},
		// It ended at its absolute expiry, long before its revocation.
		{id: "expired-past-then-revoked", expires: cutoff.Add(-day), idle: later, revokedAt: now.Add(-day), deleted: true},
		// Refreshed until the end, so its stored idle expiry is past the
		// absolute one, which ended it.
		{id: "expired-past-idle-beyond", expires: cutoff.Add(-day), idle: cutoff.Add(29 * day), deleted: true},
	}
	var kept []string
	for _, tt := range tests {
		d := &sessionDoc{ID: tt.id, UserID: "u", CreatedAt: now.Add(-100 * day), ExpiresAt: tt.expires, IdleExpiresAt: tt.idle,
			Cred: credential{Gen: 1, Hash: hashSecret(newSecret())}}
		if err := ss.insert(ctx, d); err != nil {
			t.Fatal(err)
		}
		if !tt.revokedAt.IsZero() {
			if err := ss.revoke(ctx, tt.id, "logged out", tt.revokedAt); err != nil {
				t.Fatal(err)
			}
		}
		if !tt.deleted {
			kept = append(kept, tt.id)
		}
	}
	slices.Sort(kept)

	n, err := svc.DeleteEndedSessions(ctx, cutoff, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(tests) - len(kept); n != want {
		t.Errorf("DeleteEndedSessions = %d, want %d", n, want)
	}
	if got := sessionIDs(t, ss); !slices.Equal(got, kept) {
		t.Errorf("sessions left %q, want %q", got, kept)
	}
	// Nothing more to do at the same cutoff.
	if n, err := svc.DeleteEndedSessions(ctx, cutoff, 1000); err != nil || n != 0 {
		t.Errorf("second DeleteEndedSessions = %d, %v; want 0, nil", n, err)
	}
}

// More candidates than the limit: exactly the limit goes in one call, the
// rest in the next ones, and live sessions are never among them.
func TestDeleteEndedSessionsIsBounded(t *testing.T) {
	t.Parallel()
	svc, ss := sessionStore(t)
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	cutoff := now.Add(-30 * 24 * time.Hour)
	insert := func(id string, expires time.Time) {
		t.Helper()
		d := &sessionDoc{ID: id, UserID: "u", ExpiresAt: expires, IdleExpiresAt: expires,
			Cred: credential{Gen: 1, Hash: hashSecret(newSecret())}}
		if err := ss.insert(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"e1", "e2", "e3", "e4", "e5"} {
		insert(id, cutoff.Add(-time.Hour))
	}
	insert("live", now.Add(time.Hour))

	for i, want := range []int{2, 2, 1, 0} {
		n, err := svc.DeleteEndedSessions(ctx, cutoff, 2)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("call %d: deleted %d, want %d", i+1, n, want)
		}
		if got, wantLeft := len(sessionIDs(t, ss)), 6-min(2*(i+1), 5); got != wantLeft {
			t.Errorf("call %d: %d sessions left, want %d", i+1, got, wantLeft)
		}
	}
	if got := sessionIDs(t, ss); !slices.Equal(got, []string{"live"}) {
		t.Errorf("sessions left %q, want only the live one", got)
	}
}
