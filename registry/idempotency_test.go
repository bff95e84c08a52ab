package registry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pushreg/pushreg/registry"
)

const lease = time.Minute

func TestIdempotencyClaimCompleteReplay(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s, db := newStore(t, registry.Config{Now: clk.Now})
	ctx := context.Background()

	c, err := s.ClaimIdempotencyKey(ctx, "app:a", "k1", "h1", lease)
	if err != nil || c.Replay != nil {
		t.Fatalf("first claim = %+v, %v; want a claim", c, err)
	}
	// While the first request runs, the same key is busy, whatever the body.
	if _, err := s.ClaimIdempotencyKey(ctx, "app:a", "k1", "h1", lease); !errors.Is(err, registry.ErrIdempotencyInProgress) {
		t.Errorf("claim while pending: err = %v, want ErrIdempotencyInProgress", err)
	}
	if _, err := s.ClaimIdempotencyKey(ctx, "app:a", "k1", "other", lease); !errors.Is(err, registry.ErrIdempotencyMismatch) {
		t.Errorf("claim of another request while pending: err = %v, want ErrIdempotencyMismatch", err)
	}
	// Keys belong to their scope.
	if other, err := s.ClaimIdempotencyKey(ctx, "app:b", "k1", "h1", lease); err != nil || other.Replay != nil {
		t.Errorf("claim in another scope = %+v, %v; want a claim", other, err)
	}

	if err := s.CompleteIdempotencyKey(ctx, c, 200, []byte(`{"sent":1}`)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(registry.IdempotencyTTL - time.Second)
	before := db.Commands.Started()
	r, err := s.ClaimIdempotencyKey(ctx, "app:a", "k1", "h1", lease)
	if err != nil || r.Replay == nil {
		t.Fatalf("claim after completion = %+v, %v; want a replay", r, err)
	}
	if got := db.Commands.Started() - before; got != 2 {
		t.Errorf("a replay took %d round trips, want 2 (the refused insert, the read)", got)
	}
	if r.Replay.Status != 200 || string(r.Replay.Body) != `{"sent":1}` {
		t.Errorf("replay = %d %s, want 200 {\"sent\":1}", r.Replay.Status, r.Replay.Body)
	}
	if _, err := s.ClaimIdempotencyKey(ctx, "app:a", "k1", "other", lease); !errors.Is(err, registry.ErrIdempotencyMismatch) {
		t.Errorf("claim of another request after completion: err = %v, want ErrIdempotencyMismatch", err)
	}

	// After IdempotencyTTL the key is forgotten, even before a sweep.
	clk.Advance(time.Second)
	if c, err := s.ClaimIdempotencyKey(ctx, "app:a", "k1", "other", lease); err != nil || c.Replay != nil {
		t.Errorf("claim after the TTL = %+v, %v; want a fresh claim", c, err)
	}
}

func TestIdempotencyRelease(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, registry.Config{})
	ctx := context.Background()
	c, err := s.ClaimIdempotencyKey(ctx, "user:u", "k", "h", lease)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseIdempotencyKey(ctx, c); err != nil {
		t.Fatal(err)
	}
	// A released key is free again, for any request.
	c2, err := s.ClaimIdempotencyKey(ctx, "user:u", "k", "h2", lease)
	if err != nil || c2.Replay != nil {
		t.Fatalf("claim after release = %+v, %v; want a claim", c2, err)
	}
	// The released claim cannot complete the new one.
	if err := s.CompleteIdempotencyKey(ctx, c, 200, []byte("{}")); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("completing a released claim: err = %v, want ErrNotFound", err)
	}
}

// TestIdempotencyAbandonedLease shows that a pending record whose request
// died is taken over once its lease ends, and that the dead request cannot
// then overwrite the new one's response.
func TestIdempotencyAbandonedLease(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s, _ := newStore(t, registry.Config{Now: clk.Now})
	ctx := context.Background()
	dead, err := s.ClaimIdempotencyKey(ctx, "app:a", "k", "h", lease)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(lease)
	if _, err := s.ClaimIdempotencyKey(ctx, "app:a", "k", "other", lease); !errors.Is(err, registry.ErrIdempotencyMismatch) {
		t.Errorf("another request on an abandoned key: err = %v, want ErrIdempotencyMismatch", err)
	}
	live, err := s.ClaimIdempotencyKey(ctx, "app:a", "k", "h", lease)
	if err != nil || live.Replay != nil {
		t.Fatalf("claim after the lease = %+v, %v; want a claim", live, err)
	}
	if err := s.CompleteIdempotencyKey(ctx, dead, 200, []byte(`"dead"`)); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("completing a lost claim: err = %v, want ErrNotFound", err)
	}
	if err := s.CompleteIdempotencyKey(ctx, live, 200, []byte(`"live"`)); err != nil {
		t.Fatal(err)
	}
	r, err := s.ClaimIdempotencyKey(ctx, "app:a", "k", "h", lease)
	if err != nil || r.Replay == nil || string(r.Replay.Body) != `"live"` {
		t.Fatalf("replay = %+v, %v; want the live response", r, err)
	}
}

// TestIdempotencyConcurrentClaims races claims of one key: exactly one wins.
func TestIdempotencyConcurrentClaims(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, registry.Config{})
	ctx := context.Background()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = s.ClaimIdempotencyKey(ctx, "app:a", "race", "h", lease) })
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, registry.ErrIdempotencyInProgress):
			t.Errorf("claim %d: %v, want nil or ErrIdempotencyInProgress", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d concurrent claims won, want 1", won, n)
	}
}

func TestSweepDeletesOldIdempotencyKeys(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s, db := newStore(t, registry.Config{Now: clk.Now})
	ctx := context.Background()
	old, err := s.ClaimIdempotencyKey(ctx, "app:a", "old", "h", lease)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteIdempotencyKey(ctx, old, 200, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(registry.IdempotencyTTL / 2)
	if _, err := s.ClaimIdempotencyKey(ctx, "app:a", "young", "h", lease); err != nil {
		t.Fatal(err)
	}
	clk.Advance(registry.IdempotencyTTL/2 + time.Second)

	res, err := s.Sweep(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.IdempotencyExpired != 1 {
		t.Errorf("IdempotencyExpired = %d, want 1", res.IdempotencyExpired)
	}
	n, err := db.Collection("idempotency_keys").CountDocuments(ctx, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d idempotency records left, want 1 (the young one)", n)
	}
}

// Retries racing to take over one abandoned key: exactly one wins. On the
// embedded store FerretDB applies the conditional replacement as a read
// then a write, so both would match without the key's lock.
func TestIdempotencyConcurrentTakeovers(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s, _ := newStore(t, registry.Config{Now: clk.Now})
	ctx := context.Background()
	for round := range 10 {
		key := fmt.Sprintf("abandoned-%d", round)
		if _, err := s.ClaimIdempotencyKey(ctx, "app:a", key, "h", lease); err != nil {
			t.Fatal(err)
		}
		clk.Advance(lease) // its process died
		const n = 6
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { _, errs[i] = s.ClaimIdempotencyKey(ctx, "app:a", key, "h", lease) })
		}
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, registry.ErrIdempotencyInProgress):
				t.Errorf("round %d, claim %d: %v, want nil or ErrIdempotencyInProgress", round, i, err)
			}
		}
		if won != 1 {
			t.Errorf("round %d: %d of %d takeovers of an abandoned key won, want 1", round, won, n)
		}
	}
}
