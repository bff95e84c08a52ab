package push_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushreg/pushreg/push"
	"github.com/pushreg/pushreg/push/fcmtest"
)

// newClient returns a Client in ModeEndpoint against srv, with a clock and a
// sleeper that never sleeps, adjusted by edit.
func newClient(t testing.TB, srv *fcmtest.Server, edit func(*push.Config)) *push.Client {
	t.Helper()
	cfg := push.Config{
		ProjectID: srv.ProjectID(),
		Endpoint:  srv.Endpoint(),
		Now:       newClock().Now,
		Sleep:     (&sleeper{}).Sleep,
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := push.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("push.New: %v", err)
	}
	if got := c.Mode(); got != push.ModeEndpoint {
		t.Fatalf("Mode() = %q, want %q", got, push.ModeEndpoint)
	}
	return c
}

// token returns a registration token of the real shape, distinct for each n.
func token(n int) string {
	return fmt.Sprintf("dev%05d:APA91b%s", n, strings.Repeat("Xy-_9", 28))
}

func tokens(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = token(i)
	}
	return out
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock {
	return &clock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// sleeper records the waits asked of it and returns at once.
type sleeper struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeper) Waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

func dataMessage() *push.Message {
	return &push.Message{Data: map[string]string{"kind": "ping"}}
}
