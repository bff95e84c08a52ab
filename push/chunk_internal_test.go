package push

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushreg/pushreg/push/fcmtest"
)

// TestSendChunks sends to 1,200 tokens, in chunks of at most 500 spread over
// the Concurrency slots. The SDK sends one HTTP request per
// token, so the wire cannot show chunking; the onChunk hook sees each chunk as
// it goes to the SDK, and the double's record shows every token went once.
// The SDK also refuses more than 500 tokens in one call, so a wrong chunking
// would fail the send outright.
func TestSendChunks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		concurrency int
		want        []int // chunk sizes, sorted
	}{
		{1, []int{200, 500, 500}},
		{3, []int{400, 400, 400}},
		{8, []int{150, 150, 150, 150, 150, 150, 150, 150}},
	}
	for _, tt := range tests {
		concurrency := tt.concurrency
		t.Run(fmt.Sprintf("concurrency %d", concurrency), func(t *testing.T) {
			t.Parallel()
			srv := fcmtest.New(t)
			// Latency keeps requests in flight long enough to count them.
			srv.SetLatency(20 * time.Millisecond)
			c, err := New(context.Background(), Config{Endpoint: srv.Endpoint(), ProjectID: srv.ProjectID(), Concurrency: concurrency})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			var mu sync.Mutex
			var sizes []int
			c.onChunk = func(n int) {
				mu.Lock()
				defer mu.Unlock()
				sizes = append(sizes, n)
			}

			toks := make([]string, 1200)
			for i := range toks {
				toks[i] = fmt.Sprintf("dev%05d:APA91bToken", i)
			}
			got, err := c.SendToTokens(context.Background(), toks, &Message{Data: map[string]string{"k": "v"}}, false)
			if err != nil {
				t.Fatalf("SendToTokens: %v", err)
			}

			slices.Sort(sizes)
			if !slices.Equal(sizes, tt.want) {
				t.Errorf("chunk sizes = %v, want %v", sizes, tt.want)
			}
			seen := make(map[string]int)
			for _, r := range srv.Requests() {
				seen[r.Token]++
			}
			for i, tok := range toks {
				if seen[tok] != 1 {
					t.Errorf("token %d sent %d times, want once", i, seen[tok])
				}
				if got[i].Index != i || got[i].Err != nil || got[i].MessageID == "" {
					t.Errorf("result %d = %+v, want a success at index %d", i, got[i], i)
				}
			}
			if len(seen) != len(toks) {
				t.Errorf("double saw %d distinct tokens, want %d", len(seen), len(toks))
			}
			// The SDK runs 50 workers per call, so the chunks in flight bound
			// the requests in flight.
			if max := srv.Stats().MaxInFlight; max > 50*concurrency {
				t.Errorf("%d requests in flight at most, want at most %d", max, 50*concurrency)
			}
		})
	}
}

// Concurrent sends share the Client's bound on requests in flight, so the
// requests to FCM stay bounded however many pushes arrive together, small
// sends share it rather than queue, and a send whose context ends while it
// waits reports its tokens as not sent.
func TestConcurrentSendsShareTheRequestBound(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	srv.SetLatency(20 * time.Millisecond)
	const concurrency = 2
	c, err := New(context.Background(), Config{Endpoint: srv.Endpoint(), ProjectID: srv.ProjectID(), Concurrency: concurrency})
	if err != nil {
		t.Fatal(err)
	}
	msg := &Message{Data: map[string]string{"k": "v"}}
	var wg sync.WaitGroup
	for s := range 4 {
		toks := make([]string, 300)
		for i := range toks {
			toks[i] = fmt.Sprintf("s%d-dev%04d:APA91bToken", s, i)
		}
		wg.Go(func() {
			res, err := c.SendToTokens(context.Background(), toks, msg, false)
			if err != nil {
				t.Errorf("send %d: %v", s, err)
				return
			}
			for _, r := range res {
				if r.Err != nil {
					t.Errorf("send %d, token %d: %v", s, r.Index, r.Err)
				}
			}
		})
	}
	wg.Wait()
	if got := srv.Stats().MaxInFlight; got > 50*concurrency {
		t.Errorf("4 sends at once kept %d requests in flight, want at most %d", got, 50*concurrency)
	}
	if got := len(srv.Requests()); got != 4*300 {
		t.Errorf("the double saw %d requests, want %d", got, 4*300)
	}

	// Ten sends of two tokens are all in flight together: each chunk takes
	// room for its 2 requests, not a whole chunk's 50, so all 20 requests
	// arrive long before the first is answered.
	srv.Reset()
	srv.SetLatency(3 * time.Second)
	var small sync.WaitGroup
	for s := range 10 {
		small.Go(func() {
			c.SendToTokens(context.Background(), []string{fmt.Sprintf("small%d-a:APA91bToken", s), fmt.Sprintf("small%d-b:APA91bToken", s)}, msg, false)
		})
	}
	waitCtx, cancelWait := context.WithTimeout(context.Background(), 2*time.Second)
	if err := srv.WaitRequests(waitCtx, 20); err != nil {
		t.Errorf("ten small sends at once: %v, want all 20 requests in flight together", err)
	}
	cancelWait()
	small.Wait()

	// One send holds the whole bound for a while; another gives up waiting.
	srv.Reset()
	srv.SetLatency(time.Second)
	busy := make([]string, 200)
	for i := range busy {
		busy[i] = fmt.Sprintf("busy%04d:APA91bToken", i)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.SendToTokens(context.Background(), busy, msg, false)
	}()
	if err := srv.WaitRequests(context.Background(), 50*concurrency); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	res, err := c.SendToTokens(ctx, []string{"late0001:APA91bToken", "late0002:APA91bToken"}, msg, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !errors.Is(r.Err, context.DeadlineExceeded) || r.Class != ClassRetry || r.Attempts != 0 {
			t.Errorf("late token %d = %+v, want not sent: deadline exceeded, ClassRetry, 0 attempts", r.Index, r)
		}
	}
	<-done
	for _, r := range srv.Requests() {
		if strings.HasPrefix(r.Token, "late") {
			t.Errorf("the double saw %s, sent after its context ended", r.Token)
		}
	}
}

func TestChunk(t *testing.T) {
	t.Parallel()
	idx := func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	tests := []struct {
		n    int
		want []int
	}{
		{0, nil},
		{1, []int{1}},
		{500, []int{500}},
		{501, []int{500, 1}},
		{1200, []int{500, 500, 200}},
	}
	for _, tt := range tests {
		var sizes []int
		next := 0
		for _, ch := range chunk(idx(tt.n), MaxChunk) {
			sizes = append(sizes, len(ch))
			for _, i := range ch {
				if i != next {
					t.Fatalf("chunk(%d): index %d where %d was due", tt.n, i, next)
				}
				next++
			}
		}
		if !slices.Equal(sizes, tt.want) {
			t.Errorf("chunk(%d) sizes = %v, want %v", tt.n, sizes, tt.want)
		}
	}
}

func TestBackoffCeiling(t *testing.T) {
	t.Parallel()
	c := &Client{cfg: Config{RetryBase: 100 * time.Millisecond, RetryMaxWait: time.Second}}
	for retry, ceiling := range map[int]time.Duration{
		1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond,
		5: time.Second, 60: time.Second,
	} {
		for range 200 {
			if d := c.backoff(retry); d < 0 || d > ceiling {
				t.Fatalf("backoff(%d) = %v, want within [0, %v]", retry, d, ceiling)
			}
		}
	}
}

func TestValidCache(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newValidCache(2, time.Hour)
	a, b, d := keyOf("a"), keyOf("b"), keyOf("d")
	c.add(a, now)
	c.add(b, now)
	if !c.hit(a, now) { // a is now the most recently used
		t.Fatal("a missing")
	}
	c.add(d, now) // evicts b, the least recently used
	if c.hit(b, now) {
		t.Error("b still cached past the size bound")
	}
	if !c.hit(a, now) || !c.hit(d, now) {
		t.Error("a or d evicted")
	}
	if n := c.len(); n != 2 {
		t.Errorf("len = %d, want 2", n)
	}
	if c.hit(a, now.Add(time.Hour)) {
		t.Error("a still cached at its expiry")
	}
	if n := c.len(); n != 1 {
		t.Errorf("len = %d after expiry, want 1", n)
	}
	var off *validCache // a disabled cache
	off.add(a, now)
	if off.hit(a, now) {
		t.Error("disabled cache hit")
	}
}
