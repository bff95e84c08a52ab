package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuffer struct {
	mu sync.Mutex
	sb strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.sb.String() }

func TestDoubleReceivesLogsAndLists(t *testing.T) {
	pr, pw := io.Pipe()
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"--addr", "127.0.0.1:0", "--latency", "1ms"}, pw, &logs)
		pw.Close()
		done <- err
	}()
	first, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	endpoint, ok := strings.CutPrefix(strings.TrimSpace(first), "PUSHREG_FCM_ENDPOINT=http://127.0.0.1:")
	if !ok || !strings.HasSuffix(endpoint, "/v1") {
		t.Fatalf("first line = %q, want PUSHREG_FCM_ENDPOINT=http://127.0.0.1:PORT/v1", first)
	}
	base := "http://127.0.0.1:" + strings.TrimSuffix(endpoint, "/v1")

	const token = "dGhpc2lzYWRldmljZQ:APA91bSecretRestOfTheToken"
	body := `{"message": {"token": "` + token + `", "notification": {"title": "Hello"}, "data": {"k": "v"}}}`
	resp, err := http.Post(base+"/v1/projects/pushreg-dev/messages:send", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("send = %d, want 200", resp.StatusCode)
	}

	resp, err = http.Get(base + "/messages")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Messages []map[string]any `json:"messages"`
	}
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil || len(list.Messages) != 1 || list.Messages[0]["answer"] != "OK" {
		t.Fatalf("GET /messages = %+v, %v; want the one message", list, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the double did not stop")
	}
	got := logs.String()
	if !strings.Contains(got, "msg=message") || !strings.Contains(got, "title=Hello") || !strings.Contains(got, "dGhpc2lzYWRl") {
		t.Errorf("the message was not logged with its token's prefix:\n%s", got)
	}
	if strings.Contains(got, "SecretRest") {
		t.Errorf("the log holds the whole token:\n%s", got)
	}
}

func TestDoubleRefusesNonLoopback(t *testing.T) {
	err := run(context.Background(), []string{"--addr", "0.0.0.0:9099"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("run on 0.0.0.0 = %v, want a loopback refusal", err)
	}
}
