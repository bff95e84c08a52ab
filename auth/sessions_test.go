package auth

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pushreg/pushreg/registry/mongodb"
	"github.com/pushreg/pushreg/registry/mongotest"
)

func TestMain(m *testing.M) { mongotest.Main(m) }

// On FerretDB every update is a read then a write of the whole document;
// a refresh in flight must not write back a session a revocation ended.
func TestRevocationIsNotLostToAConcurrentRefresh(t *testing.T) {
	t.Parallel()
	db := mongotest.New(t)
	ss := &sessions{coll: db.Collection("sessions"), locks: mongodb.NewDocLocks(), writes: mongotest.Writes()}
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for round := range 50 {
		secret := newSecret()
		d := &sessionDoc{ID: randomID(sidLen), UserID: "u", ExpiresAt: now.Add(time.Hour), IdleExpiresAt: now.Add(time.Hour),
			Cred: credential{Gen: 1, Hash: hashSecret(secret)}}
		if err := ss.insert(ctx, d); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			ss.advance(ctx, presented{sessionID: d.ID, gen: 1, secret: secret},
				advancePolicy{rotate: true, now: now, refreshTTL: time.Hour, grace: 10 * time.Second})
		}()
		go func() { defer wg.Done(); ss.revoke(ctx, d.ID, "logged out", now) }()
		wg.Wait()
		got, err := ss.get(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Revoked {
			t.Fatalf("round %d: the revocation was lost to the concurrent refresh", round)
		}
	}
}
