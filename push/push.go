// Package push is pushreg's only way to Firebase Cloud Messaging: it checks
// registration tokens (by shape, and by a dry-run send), sends messages to
// tokens, and classifies FCM's errors once for everyone else.
//
// FCM is reached only through the Firebase Admin SDK. In tests the SDK is
// pointed at push/fcmtest, never stubbed.
package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"golang.org/x/sync/semaphore"
	"google.golang.org/api/option"
)

// Errors returned by this package, wrapped with context. Test for them with
// errors.Is.
var (
	// ErrTokenMalformed means a token does not have the shape of an FCM
	// registration token; FCM was not asked.
	ErrTokenMalformed = errors.New("push: token malformed")
	// ErrTokenInvalid means FCM said the token is no good (UNREGISTERED,
	// SENDER_ID_MISMATCH, INVALID_ARGUMENT about the token): drop it.
	ErrTokenInvalid = errors.New("push: token rejected by FCM")
	// ErrUnavailable means FCM could not give an answer now (UNAVAILABLE,
	// INTERNAL, QUOTA_EXCEEDED, a timeout, a network failure): try later.
	ErrUnavailable = errors.New("push: FCM unavailable")
	// ErrNotConfigured means the Client runs in ModeFormatOnly, so nothing
	// can be sent.
	ErrNotConfigured = errors.New("push: FCM not configured")
	// ErrPayloadInvalid means a message cannot be sent as it is, whatever the
	// token.
	ErrPayloadInvalid = errors.New("push: payload invalid")
	// ErrConfig means a Config cannot be used.
	ErrConfig = errors.New("push: invalid configuration")
)

// Mode says how a Client reaches FCM.
type Mode string

// The modes of a Client, chosen by New from its Config.
const (
	// ModeFirebase sends to Google's FCM with service-account credentials.
	ModeFirebase Mode = "firebase"
	// ModeEndpoint sends, unauthenticated, to an FCM-compatible endpoint such
	// as an emulator or push/fcmtest.
	ModeEndpoint Mode = "endpoint"
	// ModeFormatOnly has no FCM at all: tokens are checked for shape only and
	// nothing can be sent.
	ModeFormatOnly Mode = "format-only"
)

// DefaultEndpointProject is the project ID used in ModeEndpoint when
// Config.ProjectID is empty. Emulators and push/fcmtest accept any project
// name, so a fixed development name saves configuration there.
const DefaultEndpointProject = "pushreg-dev"

// Defaults for the zero values of Config.
const (
	DefaultValidateTimeout   = 3 * time.Second
	DefaultValidateCacheTTL  = 24 * time.Hour
	DefaultValidateCacheSize = 100_000
	DefaultMaxAttempts       = 3
	DefaultConcurrency       = 8
	DefaultRetryBase         = 500 * time.Millisecond
	DefaultRetryMaxWait      = 30 * time.Second
)

// Config configures a Client. The zero value of every field but ProjectID
// means its default.
type Config struct {
	// ProjectID is the Firebase project messages are sent for. It is
	// required in ModeFirebase: taking it silently from the credentials would
	// let a wrong file send for the wrong project, where every token answers
	// SENDER_ID_MISMATCH and would be pruned. In ModeEndpoint it defaults to
	// DefaultEndpointProject.
	ProjectID string
	// CredentialsFile is a service-account JSON file. Setting it selects
	// ModeFirebase.
	CredentialsFile string
	// GoogleApplicationCredentials is the value of the
	// GOOGLE_APPLICATION_CREDENTIALS environment variable, which the caller
	// reads: this package reads no environment. It is used as the
	// credentials file when CredentialsFile is empty and Endpoint is not set.
	GoogleApplicationCredentials string
	// Endpoint is the base URL of an FCM-compatible API, ending in /v1 as
	// FCM's own https://fcm.googleapis.com/v1 does. Setting it selects
	// ModeEndpoint, which sends without authentication, as emulators expect.
	// It cannot be combined with CredentialsFile; it takes precedence over
	// GoogleApplicationCredentials, which is often set machine-wide.
	Endpoint string

	// ValidateTimeout bounds one Validate call's wait for FCM (default 3s).
	ValidateTimeout time.Duration
	// ValidateCacheTTL is how long a token FCM accepted is trusted without
	// asking again (default 24h).
	ValidateCacheTTL time.Duration
	// ValidateCacheSize bounds the number of cached tokens (default 100,000);
	// the least recently used go first. A negative size disables the cache.
	ValidateCacheSize int

	// MaxAttempts is how many times SendToTokens hands one token to the SDK
	// before giving up on a retryable failure (default 3).
	MaxAttempts int
	// Concurrency bounds the requests to FCM in flight across all of the
	// Client's sends at 50×Concurrency (default 8): the SDK keeps up to 50
	// requests of a chunk in flight, so a chunk of n tokens counts for
	// min(n, 50) of them until it is done.
	Concurrency int
	// RetryBase is the ceiling of the first backoff; it doubles with every
	// retry (default 500ms).
	RetryBase time.Duration
	// RetryMaxWait caps a backoff. A Retry-After from FCM longer than it ends
	// the retries, leaving the caller to come back later (default 30s).
	RetryMaxWait time.Duration

	// Now tells the time (default time.Now).
	Now func() time.Time
	// Sleep waits d or until ctx is done, whichever comes first, returning
	// ctx.Err() in the second case (default: a timer).
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives the package's few log lines (default: discarded).
	Logger *slog.Logger
}

// Client validates tokens and sends messages. It is safe for concurrent use.
type Client struct {
	mode    Mode
	project string
	fcm     *messaging.Client // nil in ModeFormatOnly
	cfg     Config            // defaults applied
	cache   *validCache       // nil when disabled
	log     *slog.Logger
	// requests counts the requests to FCM that chunks in flight may have
	// out (see Config.Concurrency).
	requests *semaphore.Weighted

	// onChunk, when set, is called with the size of every chunk right before
	// it goes to the SDK. Tests use it to see chunking, which the wire cannot
	// show because the SDK sends one HTTP request per token.
	onChunk func(size int)
}

// New returns a Client for cfg. Its mode follows from cfg: ModeEndpoint when
// Endpoint is set, ModeFirebase when a credentials file is given (through
// CredentialsFile or GoogleApplicationCredentials), ModeFormatOnly otherwise,
// which New logs once at warn level. The credentials file is read here, so a
// missing or broken one fails at start-up.
func New(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.Logger, requests: semaphore.NewWeighted(int64(sdkWorkersPerChunk * cfg.Concurrency))}
	if cfg.ValidateCacheSize > 0 {
		c.cache = newValidCache(cfg.ValidateCacheSize, cfg.ValidateCacheTTL)
	}

	var opts []option.ClientOption
	switch {
	case cfg.Endpoint != "" && cfg.CredentialsFile != "":
		return nil, fmt.Errorf("%w: set Endpoint or CredentialsFile, not both", ErrConfig)
	case cfg.Endpoint != "":
		endpoint, err := checkEndpoint(cfg.Endpoint)
		if err != nil {
			return nil, err
		}
		c.mode, c.project = ModeEndpoint, cfg.ProjectID
		if c.project == "" {
			c.project = DefaultEndpointProject
		}
		opts = []option.ClientOption{option.WithEndpoint(endpoint), option.WithHTTPClient(endpointHTTPClient(cfg.Concurrency))}
	case cfg.CredentialsFile != "" || cfg.GoogleApplicationCredentials != "":
		if cfg.ProjectID == "" {
			return nil, fmt.Errorf("%w: ProjectID is required with Firebase credentials", ErrConfig)
		}
		file := cfg.CredentialsFile
		if file == "" {
			file = cfg.GoogleApplicationCredentials
		}
		c.mode, c.project = ModeFirebase, cfg.ProjectID
		opts = []option.ClientOption{option.WithCredentialsFile(file)}
	default:
		c.mode = ModeFormatOnly
		// Info, not a warning: it is the documented development default,
		// and the log says plainly what it means.
		c.log.Info("push: no Firebase credentials or endpoint configured: tokens are checked for shape only and nothing can be sent")
		return c, nil
	}
	// pushreg sets up no OpenTelemetry, yet the SDK's HTTP client wraps
	// every FCM request in otelhttp instrumentation unless told not to:
	// about 8% of the CPU of a fan-out (scripts/bench, BenchmarkPushAPI).
	opts = append(opts, option.WithTelemetryDisabled())

	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: c.project}, opts...)
	if err != nil {
		return nil, fmt.Errorf("push: firebase app: %w", err)
	}
	c.fcm, err = app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("push: firebase messaging: %w", err)
	}
	return c, nil
}

// endpointHTTPClient is the HTTP client for ModeEndpoint, unauthenticated.
// The SDK's own keeps at most 100 idle connections, which suits FCM's
// HTTP/2, where requests share a connection. An HTTP/1.1 endpoint (an
// emulator, a proxy, the test double) needs one per request in flight, up
// to 50×Concurrency (see Config.Concurrency); with fewer, every fan-out
// closes and redials most of them (12% of a fan-out's CPU in
// BenchmarkPushAPI). Twice that is kept, so validations (dry runs, outside
// the bound) have room too.
func endpointHTTPClient(concurrency int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 2 * sdkWorkersPerChunk * concurrency
	t.MaxIdleConnsPerHost = t.MaxIdleConns
	return &http.Client{Transport: t}
}

// sdkWorkersPerChunk is how many requests SendEachForMulticast keeps in
// flight for one chunk.
const sdkWorkersPerChunk = 50

// Mode reports how the Client reaches FCM.
func (c *Client) Mode() Mode { return c.mode }

// ProjectID returns the project the Client sends for; empty in
// ModeFormatOnly.
func (c *Client) ProjectID() string { return c.project }

func withDefaults(cfg Config) (Config, error) {
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"ValidateTimeout", cfg.ValidateTimeout},
		{"ValidateCacheTTL", cfg.ValidateCacheTTL},
		{"RetryBase", cfg.RetryBase},
		{"RetryMaxWait", cfg.RetryMaxWait},
	} {
		if f.d < 0 {
			return cfg, fmt.Errorf("%w: %s is negative", ErrConfig, f.name)
		}
	}
	if cfg.MaxAttempts < 0 || cfg.Concurrency < 0 {
		return cfg, fmt.Errorf("%w: MaxAttempts and Concurrency must not be negative", ErrConfig)
	}
	setDefault(&cfg.ValidateTimeout, DefaultValidateTimeout)
	setDefault(&cfg.ValidateCacheTTL, DefaultValidateCacheTTL)
	setDefault(&cfg.ValidateCacheSize, DefaultValidateCacheSize)
	setDefault(&cfg.MaxAttempts, DefaultMaxAttempts)
	setDefault(&cfg.Concurrency, DefaultConcurrency)
	setDefault(&cfg.RetryBase, DefaultRetryBase)
	setDefault(&cfg.RetryMaxWait, DefaultRetryMaxWait)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// checkEndpoint refuses what the SDK would only refuse at the first send.
func checkEndpoint(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%w: Endpoint %q is not an http(s) URL", ErrConfig, raw)
	}
	// The SDK appends "/projects/..." itself.
	return strings.TrimRight(raw, "/"), nil
}

// sleep is the default Config.Sleep.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
