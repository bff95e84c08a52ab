package push

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"
)

// tokenKey is how the cache knows a token: its SHA-256, so that a memory dump
// holds no token that could reach a device.
type tokenKey [sha256.Size]byte

func keyOf(token string) tokenKey { return sha256.Sum256([]byte(token)) }

// validCache remembers tokens FCM accepted, for a TTL counted from the
// acceptance (a hit does not extend it, so every token is asked about again at
// least once per TTL), and for at most max tokens, least recently used first
// out.
type validCache struct {
	max int
	ttl time.Duration

	mu    sync.Mutex
	order *list.List // of *cacheEntry, most recently used at the front
	byKey map[tokenKey]*list.Element
}

type cacheEntry struct {
	key     tokenKey
	expires time.Time
}

func newValidCache(max int, ttl time.Duration) *validCache {
	return &validCache{max: max, ttl: ttl, order: list.New(), byKey: make(map[tokenKey]*list.Element)}
}

// hit reports whether key was accepted less than ttl before now.
func (c *validCache) hit(key tokenKey, now time.Time) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok {
		return false
	}
	if !now.Before(el.Value.(*cacheEntry).expires) {
		c.order.Remove(el)
		delete(c.byKey, key)
		return false
	}
	c.order.MoveToFront(el)
	return true
}

// add records that key was accepted at now.
func (c *validCache) add(key tokenKey, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		el.Value.(*cacheEntry).expires = now.Add(c.ttl)
		c.order.MoveToFront(el)
		return
	}
	c.byKey[key] = c.order.PushFront(&cacheEntry{key: key, expires: now.Add(c.ttl)})
	for c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.byKey, oldest.Value.(*cacheEntry).key)
	}
}

// remove forgets key: FCM has since said the token is dead.
func (c *validCache) remove(key tokenKey) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		c.order.Remove(el)
		delete(c.byKey, key)
	}
}

// len returns the number of entries, expired ones included.
func (c *validCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
