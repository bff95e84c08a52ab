package embedded_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry/embedded"
)

// A second store on a data directory a running one holds is refused, with
// one line naming the directory; once the first closes, it starts.
func TestStoreRefusesADirectoryInUse(t *testing.T) {
	dir := t.TempDir()
	first, err := embedded.Start(context.Background(), embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	second, err := embedded.Start(context.Background(), embedded.Config{Dir: dir})
	if err == nil {
		second.Close()
		first.Close()
		t.Fatal("a second store started on a directory in use")
	}
	if msg := err.Error(); !strings.Contains(msg, "in use by another pushreg") || !strings.Contains(msg, dir) || strings.Contains(msg, "\n") {
		t.Errorf("error = %q, want one line saying %s is in use", msg, dir)
	}
	first.Close()
	again, err := embedded.Start(context.Background(), embedded.Config{Dir: dir})
	if err != nil {
		t.Fatalf("start after the first closed: %v", err)
	}
	again.Close()
}

// The driver's endSessions at Disconnect, which FerretDB v1 does not
// implement, is no warning, nor is FerretDB's deadline race on a closed
// connection (the Start's probe connection provokes it at random); another
// failed command still is.
func TestStoreLogsNoWarningForEndSessions(t *testing.T) {
	var buf syncBuffer
	srv, err := embedded.Start(context.Background(), embedded.Config{Dir: t.TempDir(),
		Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.Database("db").Collection("c").InsertOne(ctx, bson.M{"_id": 1}); err != nil {
		t.Fatal(err)
	}
	if err := client.Database("db").RunCommand(ctx, bson.D{{Key: "noSuchCommandHere", Value: 1}}).Err(); err == nil {
		t.Fatal("an unknown command succeeded")
	}
	if err := client.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Close() // flushes FerretDB's logging of the connection
	logs := buf.String()
	if strings.Contains(logs, "endSessions") {
		t.Errorf("the endSessions refusal was logged at info or above:\n%s", logs)
	}
	var warnings []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `"level":"WARN"`) {
			warnings = append(warnings, l)
		}
	}
	if len(warnings) != 2 || !strings.Contains(warnings[0], "Response header") || !strings.Contains(warnings[1], "noSuchCommandHere") {
		t.Errorf("want exactly the other failed command's header and message as warnings, got:\n%s", strings.Join(warnings, "\n"))
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }
