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
	closers  []func()
}

func (a *service) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// build connects to the store at mongoURI and assembles the service. Its
// background work (indexes, admin bootstrap, sweeper) runs until close.
func build(ctx context.Context, cfg *config, log *slog.Logger, mongoURI string, now func() time.Time) (*service, error) {
	commands := &mongodb.CommandCounter{}
	client, err := mongodb.Connect(mongoURI, mongodb.Options{Commands: commands})
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

	fcm, err := push.New(ctx, push.Config{
		ProjectID:                    cfg.FCMProjectID,
		CredentialsFile:              cfg.FCMCredentialsFile,
		GoogleApplicationCredentials: cfg.GoogleCredentials,
		Endpoint:                     cfg.FCMEndpoint,
		ValidateTimeout:              cfg.FCMValidateTimeout,
		ValidateCacheTTL:             cfg.FCMValidateCache,
		MaxAttempts:                  cfg.PushMaxAttempts,
		Concurrency:                  cfg.PushConcurrency,
		Logger:                       log.With("component", "push"),
		Now:                          now,
	})
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
		Validator:        validator,
		Logger:           log.With("component", "auth"),
		Now:              now,
		PasswordParams:   cfg.passwordParams,
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
	setup := []func(context.Context) error{devices.EnsureIndexes, sessions.EnsureIndexes, devices.Upgrade, sessions.Upgrade}
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
		sweep(bg, log, indexes, devices, validator, sessions, cfg.SweepInterval)
	}()

	metrics := prometheus.NewRegistry()
	pusher, err := newPusher(metrics, log, fcm, sessions, devices, commands)
	if err != nil {
		a.close()
		return nil, err
	}

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

	a.handler, a.indexes, a.metrics = e, indexes, handlers.MetricsHandler(metrics)
	return a, nil
}
