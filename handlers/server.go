// Package handlers is pushreg's HTTP layer: each handler decodes a request,
// calls the domain packages and encodes the answer; one error handler turns
// domain errors into status codes.
package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushreg/pushreg/auth"
	"github.com/pushreg/pushreg/registry"
	"github.com/pushreg/pushreg/registry/mongodb"
)

// BodyLimit is the largest request body accepted; larger bodies get 413.
const BodyLimit = 1 << 20

// requestTimeout is Config.RequestTimeout's default.
const requestTimeout = 15 * time.Second

// MaxWork bounds how long the work of one request can last with the
// default request bound: the bound itself, then recording an idempotent
// push's outcome, which must happen even when the send used it all up.
const MaxWork = requestTimeout + recordTimeout + time.Second

// Config is what the HTTP layer needs from the rest of the service.
type Config struct {
	Logger *slog.Logger
	// Ready reports whether the store can serve requests.
	Ready   func(ctx context.Context) error
	Auth    *auth.Service
	Devices *registry.Store
	// Styles lists the refresh styles served; the others answer 404.
	Styles []string
	// AllowedReferers are origins accepted as Kecak Referer besides the
	// request's own host.
	AllowedReferers []string
	// PublicURL is where clients reach pushreg; the OAuth metadata names
	// its endpoints under it.
	PublicURL string
	// DuktigAuthKeys, when set, are the X-Auth-Key values Duktig sign-in
	// requires.
	DuktigAuthKeys []string
	// CORSAllowedOrigins turns CORS on for these origins; empty means off.
	CORSAllowedOrigins []string
	// RequestTimeout bounds the work of one request (default 15s).
	RequestTimeout time.Duration
	// Push sends messages (default: every send answers 503, not configured).
	Push Pusher
	// Metrics is served on GET /metrics, with request metrics added
	// (default: a registry of its own).
	Metrics *prometheus.Registry
	// MetricsElsewhere leaves GET /metrics off the API: the caller serves
	// Metrics on a listener of its own.
	MetricsElsewhere bool
}

func (c *Config) validate() error {
	var errs []error
	if c.Logger == nil {
		errs = append(errs, errors.New("missing Logger"))
	}
	if c.Ready == nil {
		errs = append(errs, errors.New("missing Ready"))
	}
	if c.Auth == nil || c.Devices == nil {
		errs = append(errs, errors.New("missing Auth or Devices"))
	}
	if c.PublicURL == "" {
		errs = append(errs, errors.New("missing PublicURL"))
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = requestTimeout
	}
	if c.Push == nil {
		c.Push = noPusher{}
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("handlers: config: %w", err)
	}
	return nil
}

// server holds what the handlers share.
type server struct {
	cfg     Config
	log     *slog.Logger
	auth    *auth.Service
	devices *registry.Store
}

func (s *server) styleOn(name string) bool {
	for _, st := range s.cfg.Styles {
		if st == name {
			return true
		}
	}
	return false
}

// New builds the echo server with every route.
func New(cfg Config) (*echo.Echo, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(cfg.Logger)
	// The client IP (rate limits, logs) is the peer's address: trusting
	// X-Forwarded-For by default would let anyone pick the IP the login
	// limit counts against.
	e.IPExtractor = echo.ExtractIPDirect()
	if err := instrument(e, cfg.Metrics); err != nil {
		return nil, err
	}
	if !cfg.MetricsElsewhere {
		e.GET("/metrics", echo.WrapHandler(MetricsHandler(cfg.Metrics)))
	}
	e.Use(
		requestID(),
		accessLog(cfg.Logger),
		recoverPanics(cfg.Logger),
		securityHeaders(),
		middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{Limit: "1M",
			// The import streams a body of its own limit (ImportBodyLimit).
			Skipper: func(c echo.Context) bool { return c.Path() == importPath }}),
	)
	if len(cfg.CORSAllowedOrigins) > 0 {
		e.Use(middleware.CORSWithConfig(middleware.CORSConfig{AllowOrigins: cfg.CORSAllowedOrigins}))
	}

	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", readyz(cfg.Ready, cfg.Logger))

	s := &server{cfg: cfg, log: cfg.Logger, auth: cfg.Auth, devices: cfg.Devices}
	timeout := withTimeout(cfg.RequestTimeout)
	e.GET("/.well-known/jwks.json", s.jwks)
	e.GET("/.well-known/oauth-authorization-server", s.metadata())
	s.nativeRoutes(e.Group("/v1", timeout, renderWith(renderProblemJSON)))
	s.importRoute(e) // an admin route, with its own timeout
	if s.styleOn("kecak") {
		s.kecakRoutes(e.Group(kecakPrefix, timeout, renderWith(renderKecak)))
	}
	if s.styleOn("duktig") {
		s.duktigRoutes(e.Group("", timeout))
	}
	if s.styleOn("abitmedia") {
		s.abitmediaRoutes(e.Group("", timeout))
	}
	if s.styleOn("kalsel") {
		s.kalselRoutes(e.Group("", timeout))
	}
	if s.styleOn("mcs") {
		s.mcsRoutes(e.Group("", timeout))
	}
	return e, nil
}

// ErrStarting is what Config.Ready wraps while the service is still
// setting up its store: /readyz answers 503, but logs it as the expected
// state it is.
var ErrStarting = errors.New("starting")

// readyz answers anyone, so it says what is not ready in a few words and
// leaves the details (addresses, the driver's topology) to the log.
func readyz(ready func(context.Context) error, log *slog.Logger) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			level := slog.LevelWarn
			if errors.Is(err, ErrStarting) {
				// Probes poll while the indexes are made: that is no fault.
				level = slog.LevelInfo
				markExpected(c)
			}
			logger(c, log).Log(ctx, level, "not ready", "error", err.Error())
			return c.JSON(http.StatusServiceUnavailable, map[string]string{
				"status": "unavailable", "reason": notReadyReason(err),
			})
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	}
}

// notReadyReason is the few words /readyz shows for err.
func notReadyReason(err error) string {
	if errors.Is(err, mongodb.ErrUnavailable) {
		return "store unavailable"
	}
	return "not ready"
}
