package auth

import (
	"net/netip"
	"sync"
	"time"
)

// limiter counts failed logins per key (an account, a name, a client
// address) in a fixed one-minute window. Only failures count, so many users
// behind one NAT who type their passwords right are never throttled.
type limiter struct {
	mu      sync.Mutex
	limit   int
	window  time.Duration
	max     int // live keys tracked at most
	now     func() time.Time
	entries map[string]*window
}

type window struct {
	start time.Time
	fails int
}

// maxLimiterEntries bounds memory under a spray of distinct usernames and
// addresses.
const maxLimiterEntries = 100_000

func newLimiter(limit int, now func() time.Time) *limiter {
	return &limiter{limit: limit, window: time.Minute, max: maxLimiterEntries, now: now, entries: map[string]*window{}}
}

// clientKey is the limiter's key for a client address. An IPv6 client
// counts by its /64, the block one subscriber or host is given, so that
// cycling through its own addresses does not give it fresh limits.
func clientKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return "ip:" + ip
	}
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + addr.String()
}

// reserve counts an attempt against every key and returns zero, or, when
// a key has no attempts left, the wait before it has, counting nothing.
// When the table is full of live keys, a key it does not track yet is
// refused too (the limit fails closed): evicting a tracked key would hand
// whoever filled the table fresh guesses at it.
func (l *limiter) reserve(keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var wait time.Duration
	fresh := 0
	for _, k := range keys {
		w, ok := l.entries[k]
		switch {
		case !ok:
			fresh++
		case now.Sub(w.start) >= l.window:
			// Ended: it starts again in place.
		case w.fails >= l.limit:
			wait = max(wait, w.start.Add(l.window).Sub(now))
		}
	}
	if wait > 0 {
		return wait
	}
	if fresh > 0 && len(l.entries)+fresh > l.max {
		if wait := l.makeRoom(now, fresh); wait > 0 {
			return wait
		}
	}
	for _, k := range keys {
		w, ok := l.entries[k]
		if !ok || now.Sub(w.start) >= l.window {
			w = &window{start: now}
			l.entries[k] = w
		}
		w.fails++
	}
	return 0
}

// makeRoom drops the keys whose window has ended, then those with no
// failure counted (their logins succeeded), until n more fit. If they do
// not, it returns how long until the oldest window ends.
func (l *limiter) makeRoom(now time.Time, n int) time.Duration {
	oldest := now
	for k, w := range l.entries {
		if now.Sub(w.start) >= l.window || w.fails == 0 {
			delete(l.entries, k)
		} else if w.start.Before(oldest) {
			oldest = w.start
		}
	}
	if len(l.entries)+n <= l.max {
		return 0
	}
	return max(oldest.Add(l.window).Sub(now), time.Second)
}

// refund gives back the attempt of a login that succeeded: only failures
// count.
func (l *limiter) refund(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if w, ok := l.entries[k]; ok && w.fails > 0 {
			w.fails--
		}
	}
}
