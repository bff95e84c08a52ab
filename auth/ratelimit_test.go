package auth

import (
	"strconv"
	"testing"
	"time"
)

// A table full of live keys must not let a key it does not track guess
// without limit: the limit fails closed, and opens again as windows end.
func TestLimiterFailsClosedWhenFull(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(3, func() time.Time { return now })
	for i := range maxLimiterEntries {
		if wait := l.reserve("name:spray-" + strconv.Itoa(i)); wait != 0 {
			t.Fatalf("filling key %d refused (%s)", i, wait)
		}
	}
	allowed := 0
	for range 10 {
		if l.reserve("name:victim") == 0 {
			allowed++
		}
	}
	if allowed > 3 {
		t.Errorf("%d guesses allowed at a new key with the table full, want at most the limit of 3", allowed)
	}
	now = now.Add(time.Minute)
	if wait := l.reserve("name:victim"); wait != 0 {
		t.Errorf("a new key once the spray's windows ended waits %s, want 0", wait)
	}
}

// Keys whose logins succeeded make room before anything is refused.
func TestLimiterEvictsRefundedKeysFirst(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(3, func() time.Time { return now })
	l.max = 4
	for i := range 4 {
		k := "account:" + strconv.Itoa(i)
		l.reserve(k)
		if i%2 == 0 {
			l.refund(k)
		}
	}
	for i, k := range []string{"name:a", "name:b", "name:c"} {
		want := i < 2
		if got := l.reserve(k) == 0; got != want {
			t.Errorf("new key %d allowed = %v, want %v (two refunded keys to evict)", i, got, want)
		}
	}
}

func TestClientKeyGroupsIPv6By64(t *testing.T) {
	cases := []struct{ a, b string }{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
	}
	for _, c := range cases {
		if clientKey(c.a) != clientKey(c.b) {
			t.Errorf("clientKey(%s) = %s, clientKey(%s) = %s: want one key", c.a, clientKey(c.a), c.b, clientKey(c.b))
		}
	}
	distinct := [][2]string{
		{"2001:db8:1:2::1", "2001:db8:1:3::1"},
		{"192.0.2.7", "192.0.2.8"},
	}
	for _, c := range distinct {
		if clientKey(c[0]) == clientKey(c[1]) {
			t.Errorf("clientKey(%s) = clientKey(%s) = %s: want different keys", c[0], c[1], clientKey(c[0]))
		}
	}
}
