// Package mongotest gives each test a fresh database on a real MongoDB
// wire server: an embedded FerretDB shared by the test binary, or the
// server named by PUSHREG_TEST_MONGODB_URI.
package mongotest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/pushreg/pushreg/registry/embedded"
	"github.com/pushreg/pushreg/registry/mongodb"
)

// EnvURI names the variable that points tests at an external server.
const EnvURI = "PUSHREG_TEST_MONGODB_URI"

// The server is shared by every test in a binary: starting FerretDB per
// test would dominate the run time.
var (
	once      sync.Once
	serverURI string
	server    *embedded.Server
	serverDir string
	startErr  error
)

// Main runs the tests of a package and then stops the embedded server and
// removes its files. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if server != nil {
		server.Close()
	}
	if serverDir != "" {
		os.RemoveAll(serverDir)
	}
	os.Exit(code)
}

// Writes is how code under test should write to the test server: the
// embedded FerretDB is written by one process, as pushreg's embedded
// store is (see mongodb.Writes); a server named by EnvURI is not assumed
// to be.
func Writes() mongodb.Writes { return mongodb.Writes{Exclusive: os.Getenv(EnvURI) == ""} }

// URI returns the URI of the shared test server, starting it if needed.
func URI(t testing.TB) string {
	t.Helper()
	once.Do(start)
	if startErr != nil {
		t.Fatalf("mongotest: %v", startErr)
	}
	return serverURI
}

func start() {
	if uri := os.Getenv(EnvURI); uri != "" {
		serverURI = uri
		return
	}
	serverDir, startErr = os.MkdirTemp("", "pushreg-mongotest-")
	if startErr != nil {
		return
	}
	var logger *slog.Logger
	if os.Getenv("PUSHREG_TEST_FERRETDB_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	server, startErr = embedded.Start(context.Background(), embedded.Config{Dir: serverDir, Logger: logger})
	if startErr == nil {
		serverURI = server.URI()
	}
}

// DB is a fresh database for one test, with the client that reaches it
// and a counter of the commands sent through that client.
type DB struct {
	*mongo.Database
	Client   *mongo.Client
	Commands *mongodb.CommandCounter
	// server is the shared embedded server holding the database; nil
	// with PUSHREG_TEST_MONGODB_URI or a DB made by hand.
	server *embedded.Server
}

// EnsureIDIndexes gives the database's collections the indexes the
// embedded FerretDB needs to reach a document by _id without scanning, as
// pushreg does at start-up (embedded.Server.EnsureIDIndexes). On any other
// server it does nothing.
func (db *DB) EnsureIDIndexes(ctx context.Context) error {
	if db.server == nil {
		return nil
	}
	return db.server.EnsureIDIndexes(ctx, db.Name())
}

// New returns a fresh, empty database that is dropped when the test ends.
func New(t testing.TB) *DB {
	t.Helper()
	counter := &mongodb.CommandCounter{}
	client, err := mongodb.Connect(URI(t), mongodb.Options{
		ServerSelectionTimeout: 10 * time.Second,
		Commands:               counter,
	})
	if err != nil {
		t.Fatalf("mongotest: %v", err)
	}
	db := client.Database(name())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := db.Drop(ctx); err != nil {
			t.Errorf("mongotest: drop %s: %v", db.Name(), err)
		}
		client.Disconnect(ctx)
	})
	return &DB{Database: db, Client: client, Commands: counter, server: server}
}

func name() string {
	b := make([]byte, 6)
	rand.Read(b)
	return fmt.Sprintf("t_%s", hex.EncodeToString(b))
}
