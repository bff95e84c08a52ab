package push

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"firebase.google.com/go/v4/messaging"
)

// MaxChunk is the most tokens handed to the SDK in one call, the SDK's own
// limit for SendEachForMulticast.
const MaxChunk = 500

// MaxDataBytes is the most bytes of data, keys and values together, that a
// message may carry, counting the push ID pushreg adds (see PushIDKey).
const MaxDataBytes = 4096

// PushIDKey is the data key under which every message carries its push's
// ID, the same for every device and every retry of one push. FCM may
// deliver a message twice (a send that timed out is retried, by the SDK
// and by pushreg, though FCM may have delivered it), so an app drops a
// message whose push ID it has seen.
const PushIDKey = "pushreg_push_id"

// pushIDLen is the length of a push ID: 128 random bits in hex.
const pushIDLen = 32

func newPushID() string {
	var b [pushIDLen / 2]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// withPushID returns a copy of msg whose data carries id.
func withPushID(msg *Message, id string) *Message {
	m := *msg
	m.Data = make(map[string]string, len(msg.Data)+1)
	for k, v := range msg.Data {
		m.Data[k] = v
	}
	m.Data[PushIDKey] = id
	return &m
}

// Message is what to send, without whom to send it to: SendToTokens adds the
// tokens. Its fields are those of messaging.MulticastMessage.
type Message struct {
	Data         map[string]string
	Notification *messaging.Notification
	Android      *messaging.AndroidConfig
	Webpush      *messaging.WebpushConfig
	APNS         *messaging.APNSConfig
	FCMOptions   *messaging.FCMOptions
}

func (m *Message) multicast(tokens []string) *messaging.MulticastMessage {
	return &messaging.MulticastMessage{
		Tokens:       tokens,
		Data:         m.Data,
		Notification: m.Notification,
		Android:      m.Android,
		Webpush:      m.Webpush,
		APNS:         m.APNS,
		FCMOptions:   m.FCMOptions,
	}
}

// CheckMessage refuses, with an error wrapping ErrPayloadInvalid that says
// why, a message FCM would refuse whatever the token, so that nothing is sent
// for it: an empty message (no data, no notification, no platform options),
// data of more than MaxDataBytes bytes counting keys and values, an empty or
// reserved data key ("from", "notification", "message_type", or one starting
// with "google." or "gcm."), or data that is not valid UTF-8.
//
// Data values are strings here; a JSON body whose data holds numbers or
// objects must be refused by whoever decodes it, before a Message exists.
// FCM remains the judge of what CheckMessage does not look at, such as the
// platform options, whose refusal SendToTokens reports as ClassReport.
func CheckMessage(msg *Message) error { return checkMessage(msg, false) }

// checkMessage is CheckMessage; stamped says msg may carry its push ID
// already (Deliverer adds it), which then counts as it is.
func checkMessage(msg *Message, stamped bool) error {
	if msg == nil || (len(msg.Data) == 0 && msg.Notification == nil && msg.Android == nil &&
		msg.Webpush == nil && msg.APNS == nil) {
		return fmt.Errorf("%w: empty message", ErrPayloadInvalid)
	}
	size := 0
	for k, v := range msg.Data {
		size += len(k) + len(v)
		switch {
		case k == "":
			return fmt.Errorf("%w: empty data key", ErrPayloadInvalid)
		case k == "from" || k == "notification" || k == "message_type" || (k == PushIDKey && !stamped):
			return fmt.Errorf("%w: data key %q is reserved", ErrPayloadInvalid, k)
		case strings.HasPrefix(k, "google.") || strings.HasPrefix(k, "gcm."):
			return fmt.Errorf("%w: data key %q has a reserved prefix", ErrPayloadInvalid, k)
		case !utf8.ValidString(k) || !utf8.ValidString(v):
			return fmt.Errorf("%w: data is not valid UTF-8", ErrPayloadInvalid)
		}
	}
	if !stamped {
		size += len(PushIDKey) + pushIDLen
	}
	if size > MaxDataBytes {
		return fmt.Errorf("%w: data is %d bytes with the push ID, more than %d", ErrPayloadInvalid, size, MaxDataBytes)
	}
	return nil
}

// Result is the outcome of sending to one token.
type Result struct {
	// Index is the token's index in the slice given to SendToTokens.
	Index int
	// MessageID is FCM's name for the message sent; empty on failure.
	MessageID string
	// Err is nil on success. Otherwise it is an *FCMError, or an error
	// wrapping ErrTokenMalformed for a token never sent.
	Err error
	// Class is Classify(Err).
	Class Class
	// Attempts is how many times the token was handed to the SDK; 0 for a
	// malformed token.
	Attempts int
}

// SendToTokens sends msg to every token, or, with dryRun, has FCM validate it
// for every token without delivering it. It returns one Result per token, in
// the order of tokens; the error is for the call as a whole: ErrPayloadInvalid
// (CheckMessage's, or the SDK's own checks, which hold for every token alike)
// or ErrNotConfigured in ModeFormatOnly. Tokens of the wrong shape are not
// sent: their Result wraps ErrTokenMalformed, ClassPrune.
//
// Tokens go to the SDK's SendEachForMulticast in chunks of up to MaxChunk.
// The SDK sends a chunk as one HTTP request per token, 50 at a time, and
// chunks start as long as the requests in flight, across all concurrent
// calls, stay within 50×Config.Concurrency; a token whose chunk is still
// waiting when ctx ends gets ctx's error, ClassRetry, without being sent.
// To use them all, the tokens are spread evenly over Concurrency chunks
// when that makes chunks smaller than MaxChunk (1,000 tokens at
// Concurrency 8 go as 8 chunks of 125, 1,200 at Concurrency 1 as 500, 500
// and 200).
//
// Only the tokens whose outcome is ClassRetry are sent again, after a backoff
// drawn uniformly from zero to Config.RetryBase×2^(retry-1) (capped at
// Config.RetryMaxWait) and never shorter than the longest Retry-After FCM gave
// for them; if that Retry-After exceeds Config.RetryMaxWait, retrying stops
// there. A token is handed to the SDK at most Config.MaxAttempts times
// (Result.Attempts). ClassPrune and ClassReport are never retried: pruning is
// the caller's job, since this package knows no database.
//
// Two retry layers meet here. The SDK itself (its default retry
// configuration, which applies to every send and cannot be changed) retries a
// request answered 503, or lost to a network failure, up to 4 more times,
// waiting 0s, 1s, 2s and 4s on timers no one can inject, or the 503's
// Retry-After when longer; a Retry-After over 2 minutes stops it at once. It
// does not retry 500 or 429. So one attempt at an UNAVAILABLE token is up to 5
// HTTP requests and about 7 seconds, and a token goes on the wire at most
// 5×MaxAttempts times in all, while INTERNAL and QUOTA_EXCEEDED cost one
// request per attempt. Wall time is bounded by ctx, which SendToTokens and the
// SDK both obey: give it a deadline.
func (c *Client) SendToTokens(ctx context.Context, tokens []string, msg *Message, dryRun bool) ([]Result, error) {
	if err := checkMessage(msg, true); err != nil {
		return nil, fmt.Errorf("push: send: %w", err)
	}
	if c.fcm == nil {
		return nil, fmt.Errorf("push: send: %w", ErrNotConfigured)
	}

	results := make([]Result, len(tokens))
	pending := make([]int, 0, len(tokens))
	for i, t := range tokens {
		results[i].Index = i
		if err := CheckTokenShape(t); err != nil {
			results[i].Err, results[i].Class = err, ClassPrune
			continue
		}
		pending = append(pending, i)
	}

	for attempt := 1; len(pending) > 0; attempt++ {
		if err := c.sendRound(ctx, tokens, pending, msg, dryRun, attempt, results); err != nil {
			return nil, fmt.Errorf("push: send: %w", err)
		}
		for _, i := range pending {
			if results[i].Class == ClassPrune {
				// A dead token must not pass validation from the cache
				// when an app binds it again.
				c.cache.remove(keyOf(tokens[i]))
			}
		}
		pending = retryable(pending, results)
		if len(pending) == 0 || attempt == c.cfg.MaxAttempts || ctx.Err() != nil {
			break
		}
		minWait := longestRetryAfter(pending, results)
		if minWait > c.cfg.RetryMaxWait {
			c.log.Warn("push: FCM asked to wait longer than RetryMaxWait; not retrying",
				"retry_after", minWait, "tokens", len(pending))
			break
		}
		wait := max(c.backoff(attempt), minWait)
		c.log.Debug("push: retrying", "tokens", len(pending), "attempt", attempt+1, "wait", wait)
		if err := c.cfg.Sleep(ctx, wait); err != nil {
			// The results keep the last failure, which is still what happened.
			break
		}
	}
	return results, nil
}

// sendRound sends the tokens at indexes idx, chunked, and fills their
// results. It fails only when the SDK refuses a chunk before sending any of
// it, which depends on the message alone.
func (c *Client) sendRound(ctx context.Context, tokens []string, idx []int, msg *Message, dryRun bool, attempt int, results []Result) error {
	var wg sync.WaitGroup
	// Spread the tokens over all Concurrency slots rather than filling
	// chunks of MaxChunk first: the SDK works through a chunk 50 requests at
	// a time, so 1,000 tokens in two chunks would keep 100 requests in
	// flight where eight chunks keep 400.
	size := min(MaxChunk, (len(idx)+c.cfg.Concurrency-1)/c.cfg.Concurrency)
	chunks := chunk(idx, max(size, 1))
	errs := make([]error, len(chunks))
	for n, ch := range chunks {
		weight := int64(min(len(ch), sdkWorkersPerChunk))
		if c.requests.Acquire(ctx, weight) != nil {
			for _, rest := range chunks[n:] {
				for _, i := range rest {
					results[i].Err = fmt.Errorf("push: not sent: %w", ctx.Err())
					results[i].Class = ClassRetry
				}
			}
			break
		}
		wg.Go(func() {
			defer c.requests.Release(weight)
			errs[n] = c.sendChunk(ctx, tokens, ch, msg, dryRun, attempt, results)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// sendChunk sends one chunk. Chunks have disjoint indexes, so concurrent
// chunks write to different results.
func (c *Client) sendChunk(ctx context.Context, tokens []string, idx []int, msg *Message, dryRun bool, attempt int, results []Result) error {
	batch := make([]string, len(idx))
	for j, i := range idx {
		batch[j] = tokens[i]
	}
	if c.onChunk != nil {
		c.onChunk(len(batch))
	}
	var br *messaging.BatchResponse
	var err error
	if dryRun {
		br, err = c.fcm.SendEachForMulticastDryRun(ctx, msg.multicast(batch))
	} else {
		br, err = c.fcm.SendEachForMulticast(ctx, msg.multicast(batch))
	}
	if err != nil {
		// SendEachForMulticast fails as a whole only when its own checks
		// refuse the message; tokens are never empty here.
		return fmt.Errorf("%w: %v", ErrPayloadInvalid, err)
	}
	now := c.cfg.Now()
	for j, r := range br.Responses {
		res := &results[idx[j]]
		res.Attempts = attempt
		if r.Success {
			res.MessageID, res.Err, res.Class = r.MessageID, nil, ClassNone
			continue
		}
		fe := newFCMError(r.Error, false, now)
		res.MessageID, res.Err, res.Class = "", fe, fe.Class
	}
	return nil
}

// backoff draws the wait before retry number retry (1 for the first), with
// full jitter: uniformly from zero to RetryBase×2^(retry-1), capped at
// RetryMaxWait, so that many clients failing together do not come back
// together.
func (c *Client) backoff(retry int) time.Duration {
	ceiling := c.cfg.RetryBase
	for i := 1; i < retry && ceiling < c.cfg.RetryMaxWait; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, c.cfg.RetryMaxWait)
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling + 1)
}

// retryable keeps the indexes whose result is ClassRetry, reusing idx.
func retryable(idx []int, results []Result) []int {
	out := idx[:0]
	for _, i := range idx {
		if results[i].Class == ClassRetry {
			out = append(out, i)
		}
	}
	return out
}

// longestRetryAfter returns the longest Retry-After among the results at idx.
func longestRetryAfter(idx []int, results []Result) time.Duration {
	var longest time.Duration
	for _, i := range idx {
		if fe, ok := results[i].Err.(*FCMError); ok && fe.RetryAfter > longest {
			longest = fe.RetryAfter
		}
	}
	return longest
}

// chunk splits idx into consecutive slices of at most size elements.
func chunk(idx []int, size int) [][]int {
	var out [][]int
	for len(idx) > size {
		out = append(out, idx[:size:size])
		idx = idx[size:]
	}
	if len(idx) > 0 {
		out = append(out, idx)
	}
	return out
}
