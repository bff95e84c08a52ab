// Command pushreg serves the push-notification device registry.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/pushreg/pushreg/auth"
	"github.com/pushreg/pushreg/handlers"
	"github.com/pushreg/pushreg/registry"
	"github.com/pushreg/pushreg/registry/embedded"
	"github.com/pushreg/pushreg/registry/mongodb"
)

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit(runtime.GOMAXPROCS(0)))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pushreg:", err)
		os.Exit(1)
	}
}

// defaultGCPercent is the GOGC pushreg runs with unless GOGC is set. A
// request allocates a lot and keeps little (the live heap stays at 20-40
// MiB), so collecting at 5× the live heap rather than 2× costs little
// memory and buys 25-30% more refreshes and pushes per CPU second
// (BenchmarkNativeRefresh, BenchmarkPushAPI).
const defaultGCPercent = 400

// defaultMemoryLimit, unless GOMEMLIMIT is set, makes the collector work
// harder rather than let the heap grow past it: each login's argon2 hash
// leaves 19 MiB of garbage, and at GOGC=400 a burst of logins took the
// process to 430 MiB on 2 cores. It leaves room for the hashes auth runs
// at once (2 per core) twice over, plus 128 MiB for everything else: 280
// MiB on 2 cores, 1.3 GiB on 16.
func defaultMemoryLimit(procs int) int64 {
	const hash = 19 << 20
	return 128<<20 + int64(2*procs)*2*hash
}

// run starts the service and blocks until ctx is cancelled, then shuts down
// in order: stop accepting, drain requests, stop background work, close the
// store.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isCLICommand(args[0]) {
		return runCLI(ctx, args, getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	if len(args) > 0 && args[0] == "help" {
		args = []string{"--help"}
	}
	cfg, err := loadConfig(args, getenv, stdout)
	if errors.Is(err, errHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	// The listeners come before the store, so that an address in use stops
	// start-up with one line, having created nothing.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("PUSHREG_ADDR: listen on %s: %w", cfg.Addr, err)
	}
	defer ln.Close()
	var metricsLn net.Listener
	if cfg.MetricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return fmt.Errorf("PUSHREG_METRICS_ADDR: listen on %s: %w", cfg.MetricsAddr, err)
		}
		defer metricsLn.Close()
	}
	var pprofLn net.Listener
	if cfg.PprofAddr != "" {
		if pprofLn, err = net.Listen("tcp", cfg.PprofAddr); err != nil {
			return fmt.Errorf("PUSHREG_PPROF_ADDR: listen on %s: %w", cfg.PprofAddr, err)
		}
		defer pprofLn.Close()
	}
	log := newLogger(cfg.LogFormat, cfg.LogLevel, stdout)

	st := store{uri: cfg.MongoURI, idIndexes: noIDIndexes}
	if st.uri == "" {
		srv, err := embedded.Start(ctx, embedded.Config{Dir: cfg.DataDir + "/db", PostgreSQLURL: cfg.PostgresURL,
			// FerretDB logs every connection at info; only its warnings matter here.
			Logger: newLogger(cfg.LogFormat, max(cfg.LogLevel, slog.LevelWarn), stdout).With("component", "ferretdb")})
		if err != nil {
			return err
		}
		defer srv.Close()
		st = store{uri: srv.URI(), idIndexes: srv.EnsureIDIndexes}
		cfg.storeWrites = mongodb.Writes{Exclusive: true}
		log.Info("running on the embedded development store (FerretDB); set PUSHREG_MONGODB_URI to use MongoDB",
			"data_dir", cfg.DataDir, "postgresql", cfg.PostgresURL != "")
	}

	app, err := build(ctx, cfg, log, st, time.Now)
	if err != nil {
		return err
	}
	defer app.close()

	if pprofLn != nil {
		defer servePprof(pprofLn, log)()
	}
	if metricsLn != nil {
		defer serveMetrics(metricsLn, app.metrics, log)()
	}
	server := &http.Server{
		Handler:           app.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- server.Serve(ln) }()
	log.Info("pushreg listening", "addr", ln.Addr().String())

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "drain_timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := server.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("drain incomplete", "error", err)
	}
	log.Info("stopped")
	return nil
}

// sweep runs the registry's sweeper (token hygiene, and the deletion of
// ended sessions and old events) every interval once the store is set up.
// Once the store is set up, it sweeps at once, then every interval: a
// process restarted more often than the interval still sweeps.
func sweep(ctx context.Context, log *slog.Logger, ix *indexer, devices *registry.Store, v registry.Revalidator,
	sessions *auth.Service, now func() time.Time, every time.Duration) {
	select {
	case <-ctx.Done():
		return
	case <-ix.done:
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		// Sessions that ended without their devices unbound (a revocation
		// a failure interrupted) are finished first, so no device stays
		// bound to an ended session past one sweep.
		unbound, err := sessions.UnbindEndedSessions(ctx, now(), sweepBatch)
		if err != nil && ctx.Err() == nil {
			log.Warn("sweep: unbinding the devices of ended sessions failed", "error", err)
		}
		res, err := devices.Sweep(ctx, v, sessions)
		if err != nil && ctx.Err() == nil {
			log.Warn("sweep failed", "error", err)
		} else if res != (registry.SweepResult{}) || unbound > 0 {
			log.Info("sweep", "staled", res.Staled, "expired", res.Expired, "verified", res.Verified, "invalidated", res.Invalidated,
				"idempotency_expired", res.IdempotencyExpired, "sessions_deleted", res.SessionsDeleted, "events_deleted", res.EventsDeleted,
				"ended_sessions_unbound", unbound)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweepBatch bounds each kind of the sweeper's work per run.
const sweepBatch = 1000

func newLogger(format string, level slog.Level, w io.Writer) *slog.Logger {
	if format == "" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// indexer creates the indexes in the background, retrying until the store
// answers, so pushreg starts (and reports not ready) while MongoDB is down.
type indexer struct {
	log    *slog.Logger
	ensure []func(context.Context) error
	done   chan struct{}
}

func newIndexer(log *slog.Logger, ensure ...func(context.Context) error) *indexer {
	return &indexer{log: log, ensure: ensure, done: make(chan struct{})}
}

func (ix *indexer) run(ctx context.Context) {
	delay := 500 * time.Millisecond
	for {
		err := ix.ensureAll(ctx)
		if err == nil {
			close(ix.done)
			return
		}
		ix.log.Warn("creating indexes failed; retrying", "error", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

func (ix *indexer) ensureAll(ctx context.Context) error {
	for _, f := range ix.ensure {
		// Generous: an upgrade of a large store moves every document it
		// must; a store that is down fails each command within seconds.
		cctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		err := f(cctx)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

func (ix *indexer) ready() error {
	select {
	case <-ix.done:
		return nil
	default:
		return fmt.Errorf("indexes not created yet: %w: %w", handlers.ErrStarting, mongodb.ErrUnavailable)
	}
}
