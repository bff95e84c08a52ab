// Package embedded runs FerretDB v1 in-process as a MongoDB-compatible
// server, so pushreg (and its tests) work on a machine with no MongoDB.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Config says where the embedded server keeps its data.
type Config struct {
	// Dir holds the SQLite files; it is created if missing.
	Dir string
	// PostgreSQLURL, when set, makes FerretDB store its data in that
	// PostgreSQL database instead of SQLite files under Dir.
	PostgreSQLURL string
	// Logger receives FerretDB's own logs; nil discards them.
	Logger *slog.Logger
}

// Server is a running embedded FerretDB.
type Server struct {
	uri    string
	cancel context.CancelFunc
	done   chan struct{}
}

// Start starts FerretDB on a free loopback port and returns once it accepts
// connections.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	fcfg := &ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Logger:   logger,
	}
	if cfg.PostgreSQLURL != "" {
		fcfg.Handler = "postgresql"
		fcfg.PostgreSQLURL = cfg.PostgreSQLURL
	} else {
		dir, err := filepath.Abs(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("embedded: data directory: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("embedded: data directory: %w", err)
		}
		fcfg.Handler = "sqlite"
		// FerretDB wants a directory URI with a trailing slash.
		fcfg.SQLiteURL = (&url.URL{Scheme: "file", Path: dir + "/", OmitHost: true}).String()
	}

	f, err := ferretdb.New(fcfg)
	if err != nil {
		return nil, fmt.Errorf("embedded: start FerretDB: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	s := &Server{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = f.Run(runCtx)
	}()

	// MongoDBURI blocks until the listener is bound.
	s.uri = f.MongoDBURI()
	if err := waitListening(ctx, s.uri); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// URI returns the mongodb:// URI clients connect to.
func (s *Server) URI() string { return s.uri }

// Close stops the server, closing its connections and its storage, and
// waits for it to finish.
func (s *Server) Close() {
	s.cancel()
	<-s.done
}

func waitListening(ctx context.Context, uri string) error {
	u, err := url.Parse(uri)
	if err != nil {
		return fmt.Errorf("embedded: bad URI %q: %w", uri, err)
	}
	host := strings.TrimSuffix(u.Host, "/")
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", host)
		if err == nil {
			return conn.Close()
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return errors.Join(errors.New("embedded: FerretDB did not start listening"), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
