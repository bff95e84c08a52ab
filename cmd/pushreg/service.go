package main

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushreg/pushreg/auth"
	"github.com/pushreg/pushreg/handlers"
	"github.com/pushreg/pushreg/push"
	"github.com/pushreg/pushreg/registry"
	"github.com/pushreg/pushreg/registry/mongodb"
)

// service is pushreg assembled: its HTTP handler and what must be closed,
// in reverse order, when it stops.
type service struct {
	handler  http.Handler
	metrics  http.Handler // everything /metrics shows
	commands *mongodb.CommandCounter
	indexes  *indexer
	inFlight *inFlight
	alerts   *reuseAlerts
	closers  []func()
}

// close waits for the requests in flight, then closes what build opened,
// the store last. An HTTP server's drain gives up after
// PUSHREG_SHUTDOWN_TIMEOUT, but a request it left running still holds work
// the store must see: a push sent and not yet recorded under its
// Idempotency-Key would be sent again by the client's retry. So close
// waits as long as a request's work can last (handlers.MaxWork).
func (a *service) close() {
	if a.inFlight != nil {
		a.inFlight.wait(handlers.MaxWork)
	}
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// inFlight counts the requests being served.
type inFlight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n is 0
}

func newInFlight() *inFlight {
	idle := make(chan struct{})
	close(idle)
	return &inFlight{idle: idle}
}

func (f *inFlight) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		if f.n == 0 {
			f.idle = make(chan struct{})
		}
		f.n++
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			if f.n--; f.n == 0 {
				close(f.idle)
			}
			f.mu.Unlock()
		}()
		h.ServeHTTP(w, r)
	})
}

// wait returns once no request is in flight, or after d.
func (f *inFlight) wait(d time.Duration) {
	f.mu.Lock()
	idle := f.idle
	f.mu.Unlock()
	select {
	case <-idle:
	case <-time.After(d):
	}
}

// store is the MongoDB wire server the service uses.
type store struct {
	uri string
	// idIndexes gives a database's collections the indexes the embedded
	// FerretDB (on SQLite or PostgreSQL) needs to reach a document by _id
	// without scanning (embedded.Server.EnsureIDIndexes); a no-op on any
	// other store.
	idIndexes func(ctx context.Context, db string) error
}

// noIDIndexes is store.idIndexes for a store that needs none.
func noIDIndexes(context.Context, string) error { return nil }

// build connects to st and assembles the service. Its background work
// (indexes, admin bootstrap, sweeper) runs until close.
func build(ctx context.Context, cfg *config, log *slog.Logger, st store, now func() time.Time) (*service, error) {
	commands := &mongodb.CommandCounter{}
	client, err := mongodb.Connect(st.uri, mongodb.Options{Commands: commands})
	if err != nil {
		return nil, err
	}
	a := &service{commands: commands}
	a.closers = append(a.closers, func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		client.Disconnect(dctx)
	})
	db := client.Database(cfg.MongoDatabase)

	devices := registry.New(db, registry.Config{
		MaxDevicesPerUser: cfg.MaxDevicesPerUser,
		StaleAfter:        cfg.TokenStaleAfter,
		SessionRetention:  cfg.SessionRetention,
		EventRetention:    cfg.EventRetention,
		Now:               now,
		Writes:            cfg.storeWrites,
	})

	fcm, err := push.New(ctx, cfg.pushConfig(log.With("component", "push"), now))
	if err != nil {
		a.close()
		return nil, err
	}
	log.Info("FCM configured", "mode", fcm.Mode(), "project", fcm.ProjectID())

	keys, err := auth.LoadOrGenerateKeys(cfg.JWTKeysFile, cfg.DataDir)
	if err != nil {
		a.close()
		return nil, err
	}
	validator := tokenValidator{client: fcm}
	a.alerts = newReuseAlerts(cfg, deviceRegistry{store: devices, log: log}, log.With("component", "reuse_alert"))
	var alerter auth.ReuseAlerter // nil: no alerts
	if cfg.ReuseAlert != "off" {
		alerter = a.alerts
	}
	sessions, err := auth.New(auth.Config{
		DB:               db,
		Keys:             keys,
		Issuer:           cfg.Issuer,
		Audience:         cfg.Audience,
		AccessTTL:        cfg.AccessTTL,
		RefreshTTL:       cfg.RefreshTTL,
		SessionMaxAge:    cfg.SessionMaxAge,
		ReuseGrace:       cfg.RefreshReuseGrace,
		KecakTTL:         cfg.KecakTokenTTL,
		LoginRateLimit:   cfg.LoginRateLimit,
		RejectOnFCMError: cfg.FCMValidateOnError == "reject",
		Devices:          deviceRegistry{store: devices, log: log},
		Auditor:          deviceRegistry{store: devices, log: log},
		ReuseAlerter:     alerter,
		Validator:        validator,
		Logger:           log.With("component", "auth"),
		Now:              now,
		PasswordParams:   cfg.passwordParams,
		Writes:           cfg.storeWrites,
	})
	if err != nil {
		a.close()
		return nil, err
	}

	bg, stopBackground := context.WithCancel(context.Background())
	var background sync.WaitGroup
	a.closers = append(a.closers, func() {
		stopBackground()
		background.Wait()
	})
	setup := []func(context.Context) error{devices.EnsureIndexes, sessions.EnsureIndexes,
		// After both, which create every collection the service uses.
		func(ctx context.Context) error { return st.idIndexes(ctx, cfg.MongoDatabase) },
		devices.Upgrade, sessions.Upgrade}
	if cfg.AdminUsername != "" {
		setup = append(setup, func(ctx context.Context) error {
			u, created, err := sessions.EnsureAdmin(ctx, cfg.AdminUsername, cfg.AdminPassword)
			if err == nil && created {
				log.Info("created admin user", "username", u.Username, "id", u.ID)
			}
			return err
		})
	}
	indexes := newIndexer(log, setup...)
	background.Add(2)
	go func() { defer background.Done(); indexes.run(bg) }()
	go func() {
		defer background.Done()
		sweep(bg, log, indexes, devices, validator, sessions, now, cfg.SweepInterval)
	}()

	metrics := prometheus.NewRegistry()
	pusher, err := newPusher(metrics, log, fcm, sessions, devices, commands)
	if err != nil {
		a.close()
		return nil, err
	}
	// Before any request can detect a reuse; the alerts in flight are
	// waited for before the store closes.
	a.alerts.deliver = pusher
	a.closers = append(a.closers, a.alerts.wait)

	e, err := handlers.New(handlers.Config{
		Logger: log,
		Ready: func(ctx context.Context) error {
			if err := devices.Ping(ctx); err != nil {
				return err
			}
			return indexes.ready()
		},
		Auth:               sessions,
		Devices:            devices,
		Styles:             cfg.Styles,
		PublicURL:          cfg.PublicURL,
		AllowedReferers:    cfg.AllowedReferers,
		DuktigAuthKeys:     cfg.DuktigAuthKeys,
		CORSAllowedOrigins: cfg.CORSAllowedOrigins,
		Push:               pusher,
		Metrics:            metrics,
		MetricsElsewhere:   cfg.MetricsAddr != "",
	})
	if err != nil {
		a.close()
		return nil, err
	}

	a.inFlight = newInFlight()
	a.handler, a.indexes, a.metrics = a.inFlight.track(e), indexes, handlers.MetricsHandler(metrics)
	return a, nil
}
