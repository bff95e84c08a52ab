// Package handlers is pushreg's HTTP layer: each handler decodes a request,
// calls the domain packages and encodes the answer; one error handler turns
// domain errors into status codes.
package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// BodyLimit is the largest request body accepted; larger bodies get 413.
const BodyLimit = 1 << 20

// Config is what the HTTP layer needs from the rest of the service.
type Config struct {
	Logger *slog.Logger
	// Ready reports whether the store can serve requests.
	Ready func(ctx context.Context) error
	// CORSAllowedOrigins turns CORS on for these origins; empty means off.
	CORSAllowedOrigins []string
}

func (c *Config) validate() error {
	if c.Logger == nil {
		return errors.New("handlers: Config.Logger is required")
	}
	if c.Ready == nil {
		return errors.New("handlers: Config.Ready is required")
	}
	return nil
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
	e.Use(
		requestID(),
		accessLog(cfg.Logger),
		recoverPanics(cfg.Logger),
		securityHeaders(),
		middleware.BodyLimit("1M"),
	)
	if len(cfg.CORSAllowedOrigins) > 0 {
		e.Use(middleware.CORSWithConfig(middleware.CORSConfig{AllowOrigins: cfg.CORSAllowedOrigins}))
	}

	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", readyz(cfg.Ready))
	return e, nil
}

func readyz(ready func(context.Context) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			return c.JSON(http.StatusServiceUnavailable, map[string]string{
				"status": "unavailable", "reason": err.Error(),
			})
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	}
}
