package embedded_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/pushreg/pushreg/registry/embedded"
	"github.com/pushreg/pushreg/registry/mongodb"
)

// TestStoreRestartsOnSameAddress: a server stopped and started again on
// its address and files is the same database to a client that never
// reconnected by hand.
func TestStoreRestartsOnSameAddress(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := embedded.Start(ctx, embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("Addr() = %q, want 127.0.0.1 and the port chosen", addr)
	}
	client, err := mongodb.Connect(srv.URI(), mongodb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	coll := client.Database("restart").Collection("docs")
	if _, err := coll.InsertOne(ctx, bson.M{"_id": "kept"}); err != nil {
		t.Fatal(err)
	}

	srv.Close()
	if err := coll.FindOne(ctx, bson.M{"_id": "kept"}).Err(); err == nil {
		t.Fatal("a read succeeded with the server stopped")
	}
	srv, err = embedded.Start(ctx, embedded.Config{Dir: dir, Addr: addr})
	if err != nil {
		t.Fatalf("start again on %s: %v", addr, err)
	}
	defer srv.Close()
	if srv.URI() != "mongodb://"+addr+"/" {
		t.Errorf("URI() = %q after the restart, want the same address %s", srv.URI(), addr)
	}
	// The same client finds the server again once its monitor does.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := coll.FindOne(ctx, bson.M{"_id": "kept"}).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the document written before the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStoreRefusesNonLoopbackAddress(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:0", ":27017", "192.0.2.1:0", "example.com:0", "127.0.0.1"} {
		if srv, err := embedded.Start(context.Background(), embedded.Config{Dir: t.TempDir(), Addr: addr}); err == nil {
			srv.Close()
			t.Errorf("Start with Addr %q succeeded, want an error", addr)
		}
	}
}

// TestStoresStartConcurrently: parallel tests start servers of their own
// at the same time (FerretDB's constructor writes a package variable).
func TestStoresStartConcurrently(t *testing.T) {
	t.Parallel()
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			srv, err := embedded.Start(context.Background(), embedded.Config{Dir: t.TempDir()})
			if err == nil {
				srv.Close()
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
