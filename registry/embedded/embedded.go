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
	"sync"
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
	// Addr is the loopback host:port to listen on; empty means
	// "127.0.0.1:0", a free port. A fixed address lets a server be stopped
	// and started again where its clients expect it, as a restarted
	// database would be. The server has no authentication, so anything
	// but a loopback address is refused.
	Addr string
}

// Server is a running embedded FerretDB.
type Server struct {
	uri string
	// dir holds the SQLite files; empty on PostgreSQL.
	dir string
	// pgURL is the PostgreSQL database's URL; empty on SQLite.
	pgURL string
	// lock holds dir/LOCK (SQLite only) until Close.
	lock   *os.File
	cancel context.CancelFunc
	done   chan struct{}
}

// Start starts FerretDB on cfg.Addr (by default a free loopback port) and
// returns once it accepts connections.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}

	var dir string
	var lock *os.File
	fcfg := &ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: addr},
		Logger:   slog.New(quietEndSessions(logger.Handler())),
	}
	if cfg.PostgreSQLURL != "" {
		fcfg.Handler = "postgresql"
		fcfg.PostgreSQLURL = cfg.PostgreSQLURL
	} else {
		var err error
		dir, err = filepath.Abs(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("embedded: data directory: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("embedded: data directory: %w", err)
		}
		if lock, err = lockDir(dir); err != nil {
			return nil, err
		}
		fcfg.Handler = "sqlite"
		// FerretDB wants a directory URI with a trailing slash.
		fcfg.SQLiteURL = (&url.URL{Scheme: "file", Path: dir + "/", OmitHost: true}).String()
	}

	f, err := newFerretDB(fcfg)
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, fmt.Errorf("embedded: start FerretDB: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	s := &Server{dir: dir, pgURL: cfg.PostgreSQLURL, lock: lock, cancel: cancel, done: make(chan struct{})}
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

// newMu serialises ferretdb.New, which writes a package variable of
// FerretDB's (version.Get().Package): two servers starting at once in one
// process, as parallel tests do, would race on it.
var newMu sync.Mutex

func newFerretDB(cfg *ferretdb.Config) (*ferretdb.FerretDB, error) {
	newMu.Lock()
	defer newMu.Unlock()
	return ferretdb.New(cfg)
}

// URI returns the mongodb:// URI clients connect to.
func (s *Server) URI() string { return s.uri }

// Addr returns the host:port the server listens on, to start it again
// there after Close.
func (s *Server) Addr() string {
	u, err := url.Parse(s.uri)
	if err != nil {
		return ""
	}
	return u.Host
}

// Close stops the server, closing its connections and its storage, and
// waits for it to finish.
func (s *Server) Close() {
	s.cancel()
	<-s.done
	if s.lock != nil {
		s.lock.Close()
	}
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("embedded: address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("embedded: address %q is not a loopback address", addr)
	}
	return nil
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
