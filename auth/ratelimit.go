package auth

import (
	"sync"
	"time"
)

// limiter counts failed logins per key (a username or a client IP) in a
// fixed one-minute window. Only failures count, so many users behind one
// NAT who type their passwords right are never throttled.
type limiter struct {
	mu      sync.Mutex
	limit   int
	window  time.Duration
	now     func() time.Time
	entries map[string]*window
}

type window struct {
	start time.Time
	fails int
}

// maxLimiterEntries bounds memory under a spray of distinct usernames.
const maxLimiterEntries = 100_000

func newLimiter(limit int, now func() time.Time) *limiter {
	return &limiter{limit: limit, window: time.Minute, now: now, entries: map[string]*window{}}
}

// reserve counts an attempt against every key and returns zero, or, when
// a key has no attempts left, the wait before it has, counting nothing.
func (l *limiter) reserve(keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var wait time.Duration
	for _, k := range keys {
		if w, ok := l.entries[k]; ok && now.Sub(w.start) < l.window && w.fails >= l.limit {
			wait = max(wait, w.start.Add(l.window).Sub(now))
		}
	}
	if wait > 0 {
		return wait
	}
	if len(l.entries) >= maxLimiterEntries {
		for k, w := range l.entries {
			if now.Sub(w.start) >= l.window {
				delete(l.entries, k)
			}
		}
	}
	for _, k := range keys {
		w, ok := l.entries[k]
		if !ok || now.Sub(w.start) >= l.window {
			if len(l.entries) >= maxLimiterEntries {
				continue // full of live entries: the other key still counts
			}
			w = &window{start: now}
			l.entries[k] = w
		}
		w.fails++
	}
	return 0
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
