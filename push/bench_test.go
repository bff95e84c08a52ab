package push_test

import (
	"context"
	"testing"
	"time"

	"github.com/pushreg/pushreg/push"
	"github.com/pushreg/pushreg/push/fcmtest"
)

func BenchmarkCheckTokenShape(b *testing.B) {
	tok := token(1)
	b.SetBytes(int64(len(tok)))
	for b.Loop() {
		if err := push.CheckTokenShape(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendToTokens fans one message out to 1,000 tokens through the
// double answering each request after 20ms, and reports messages per second.
func BenchmarkSendToTokens(b *testing.B) {
	srv := fcmtest.New(b)
	srv.SetLatency(20 * time.Millisecond)
	srv.SetRecord(false) // keep memory flat however many iterations run
	c := newClient(b, srv, nil)
	toks := tokens(1000)
	msg := dataMessage()
	ctx := context.Background()

	sent := 0
	start := time.Now()
	for b.Loop() {
		res, err := c.SendToTokens(ctx, toks, msg, false)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				b.Fatalf("token %d: %v", r.Index, r.Err)
			}
		}
		sent += len(res)
	}
	b.ReportMetric(float64(sent)/time.Since(start).Seconds(), "msgs/s")
}
