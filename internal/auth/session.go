package auth

import (
	"sync"
	"time"
)

// sessionCache remembers whether sessions may still be used, so that
// verifying an access token rarely touches the store. A session this process
// revoked is known at once; a revocation made elsewhere (the CLI, another
// node) is seen when the entry expires (ttl). Revoked entries are kept for a
// whole access-token lifetime since they never become valid again.
type sessionCache struct {
	ttl, revokedTTL time.Duration
	now             func() time.Time
	maxEntries      int

	mu sync.RWMutex
	m  map[string]cacheEntry
}

type cacheEntry struct {
	user  string
	ok    bool
	until time.Time
}

func newSessionCache(ttl, revokedTTL time.Duration, now func() time.Time) *sessionCache {
	return &sessionCache{ttl: ttl, revokedTTL: revokedTTL, now: now, maxEntries: 200_000, m: make(map[string]cacheEntry)}
}

// get returns the cached verdict for sid when fresh and for the same user.
func (c *sessionCache) get(sid, user string) (ok, found bool) {
	c.mu.RLock()
	e, hit := c.m[sid]
	c.mu.RUnlock()
	if !hit || c.now().After(e.until) || e.user != user {
		return false, false
	}
	return e.ok, true
}

func (c *sessionCache) put(sid, user string, ok bool) {
	ttl := c.ttl
	if !ok {
		ttl = c.revokedTTL
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.makeRoom()
	c.m[sid] = cacheEntry{user: user, ok: ok, until: c.now().Add(ttl)}
}

// revoke marks sid revoked at once.
func (c *sessionCache) revoke(sid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[sid]
	c.makeRoom()
	c.m[sid] = cacheEntry{user: e.user, ok: false, until: c.now().Add(c.revokedTTL)}
}

// revokeUser marks every cached session of user revoked, except keep.
// Sessions not cached are read from the store, where they are revoked.
func (c *sessionCache) revokeUser(user, keep string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	until := c.now().Add(c.revokedTTL)
	for sid, e := range c.m {
		if e.user == user && sid != keep {
			c.m[sid] = cacheEntry{user: user, ok: false, until: until}
		}
	}
}

// makeRoom keeps the cache bounded; callers hold mu. Dropping an entry only
// costs a store read later.
func (c *sessionCache) makeRoom() {
	if len(c.m) < c.maxEntries {
		return
	}
	now := c.now()
	for sid, e := range c.m {
		if now.After(e.until) {
			delete(c.m, sid)
		}
	}
	for sid, e := range c.m {
		if len(c.m) < c.maxEntries*3/4 {
			break
		}
		if e.ok {
			delete(c.m, sid)
		}
	}
}
