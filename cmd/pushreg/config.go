package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pushreg/pushreg/auth"
	"github.com/pushreg/pushreg/push"
	"github.com/pushreg/pushreg/registry/mongodb"
)

// config is pushreg's whole configuration, read once at start-up.
type config struct {
	Addr            string
	PublicURL       string
	MongoURI        string
	MongoDatabase   string
	DataDir         string
	PostgresURL     string
	LogLevel        slog.Level
	LogFormat       string
	ShutdownTimeout time.Duration
	SweepInterval   time.Duration
	PprofAddr       string
	MetricsAddr     string
	// SessionRetention and EventRetention bound how long the sweeper keeps
	// ended sessions (the logins of the audit trail) and audit events.
	SessionRetention time.Duration
	EventRetention   time.Duration

	FCMProjectID       string
	FCMCredentialsFile string
	GoogleCredentials  string
	FCMEndpoint        string
	FCMValidateTimeout time.Duration
	FCMValidateOnError string
	FCMValidateCache   time.Duration
	PushConcurrency    int
	PushMaxAttempts    int
	ReuseAlert         string
	ReuseAlertTitle    string
	ReuseAlertBody     string

	AdminUsername      string
	AdminPassword      string
	SessionMaxAge      time.Duration
	RefreshTTL         time.Duration
	RefreshReuseGrace  time.Duration
	AccessTTL          time.Duration
	Issuer             string
	Audience           string
	JWTKeysFile        string
	KecakTokenTTL      time.Duration
	AllowedReferers    []string
	LoginRateLimit     int
	MaxDevicesPerUser  int
	TokenStaleAfter    time.Duration
	Styles             []string
	DuktigAuthKeys     []string
	CORSAllowedOrigins []string

	// passwordParams is argon2id's cost; tests lower it, operators cannot.
	passwordParams auth.PasswordParams
	// storeWrites says whether this process is the store's only writer:
	// true on the embedded store, which run starts.
	storeWrites mongodb.Writes
}

// setting is one configuration variable: its environment name, the flag
// that overrides it, its default and how it is parsed into the config.
type setting struct {
	env, def, usage string
	parse           func(c *config, v string) error
}

func (s setting) flagName() string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.env, "PUSHREG_")), "_", "-")
}

var allStyles = []string{"kecak", "duktig", "abitmedia", "kalsel", "mcs"}

// settings lists every variable; the README's configuration table is this list.
func settings() []setting {
	return []setting{
		{"PUSHREG_ADDR", "127.0.0.1:8080", "address the HTTP server listens on", hostPort(func(c *config) *string { return &c.Addr })},
		{"PUSHREG_PUBLIC_URL", "", "URL clients reach pushreg at (default http://ADDR)", urlValue(func(c *config) *string { return &c.PublicURL })},
		{"PUSHREG_MONGODB_URI", "", "MongoDB URI; empty starts the embedded FerretDB store", str(func(c *config) *string { return &c.MongoURI })},
		{"PUSHREG_MONGODB_DATABASE", "pushreg", "database name", nonEmpty(func(c *config) *string { return &c.MongoDatabase })},
		{"PUSHREG_DATA_DIR", "./data", "embedded store files and generated keys", nonEmpty(func(c *config) *string { return &c.DataDir })},
		{"PUSHREG_FERRETDB_POSTGRES_URL", "", "run the embedded FerretDB on this PostgreSQL instead of SQLite", str(func(c *config) *string { return &c.PostgresURL })},
		{"PUSHREG_LOG_LEVEL", "info", "debug, info, warn or error", func(c *config, v string) error { return c.LogLevel.UnmarshalText([]byte(v)) }},
		{"PUSHREG_LOG_FORMAT", "", "json or text (default text on a terminal, json otherwise)", oneOf(func(c *config) *string { return &c.LogFormat }, "", "json", "text")},
		{"PUSHREG_SHUTDOWN_TIMEOUT", "10s", "how long shutdown waits for in-flight requests", duration(func(c *config) *time.Duration { return &c.ShutdownTimeout })},
		{"PUSHREG_PPROF_ADDR", "", "loopback address to serve Go's profiler (/debug/pprof/) on; empty: off", loopbackAddr(func(c *config) *string { return &c.PprofAddr })},
		{"PUSHREG_METRICS_ADDR", "", "address to serve /metrics on, apart from the API; empty: the API's own listener", hostPort(func(c *config) *string { return &c.MetricsAddr })},
		{"PUSHREG_SWEEP_INTERVAL", "1h", "how often the sweeper marks stale tokens, deletes expired devices, ended sessions and old events, and re-validates unverified tokens", duration(func(c *config) *time.Duration { return &c.SweepInterval })},
		{"PUSHREG_SESSION_RETENTION", "30d", "how long a session is kept after it ended (revoked or expired); its login leaves the audit trail with it", duration(func(c *config) *time.Duration { return &c.SessionRetention })},
		{"PUSHREG_EVENT_RETENTION", "90d", "how long an audit event is kept", duration(func(c *config) *time.Duration { return &c.EventRetention })},

		{"PUSHREG_FCM_PROJECT_ID", "", "Firebase project ID", str(func(c *config) *string { return &c.FCMProjectID })},
		{"PUSHREG_FCM_CREDENTIALS_FILE", "", "service account JSON (or set GOOGLE_APPLICATION_CREDENTIALS)", str(func(c *config) *string { return &c.FCMCredentialsFile })},
		{"GOOGLE_APPLICATION_CREDENTIALS", "", "standard Google credentials file, used when PUSHREG_FCM_CREDENTIALS_FILE is empty", str(func(c *config) *string { return &c.GoogleCredentials })},
		{"PUSHREG_FCM_ENDPOINT", "", "FCM-compatible base URL (…/v1) reached without Google credentials, as emulators are", urlValue(func(c *config) *string { return &c.FCMEndpoint })},
		{"PUSHREG_FCM_VALIDATE_TIMEOUT", "3s", "bound on one FCM token validation", duration(func(c *config) *time.Duration { return &c.FCMValidateTimeout })},
		{"PUSHREG_FCM_VALIDATE_ON_ERROR", "accept", "when Firebase cannot answer: accept (bind as unverified) or reject (503)", oneOf(func(c *config) *string { return &c.FCMValidateOnError }, "accept", "reject")},
		{"PUSHREG_FCM_VALIDATE_CACHE", "24h", "a token validated this recently is not sent to Firebase again", duration(func(c *config) *time.Duration { return &c.FCMValidateCache })},
		{"PUSHREG_PUSH_CONCURRENCY", "8", "bounds the requests to FCM in flight, across all pushes, at 50 × this", positive(func(c *config) *int { return &c.PushConcurrency })},
		{"PUSHREG_PUSH_MAX_ATTEMPTS", "3", "attempts per token for retryable FCM errors", positive(func(c *config) *int { return &c.PushMaxAttempts })},
		{"PUSHREG_REUSE_ALERT", "data", "when reuse detection revokes a session, push the user's devices a data message (data), one with a notification too (notification), or nothing (off)", oneOf(func(c *config) *string { return &c.ReuseAlert }, "data", "notification", "off")},
		{"PUSHREG_REUSE_ALERT_TITLE", "Was this you?", "the reuse alert's notification title", nonEmpty(func(c *config) *string { return &c.ReuseAlertTitle })},
		{"PUSHREG_REUSE_ALERT_BODY", "Someone used an old sign-in of your account, so we signed that device out. If it wasn't you, change your password.", "the reuse alert's notification body", nonEmpty(func(c *config) *string { return &c.ReuseAlertBody })},

		{"PUSHREG_ADMIN_USERNAME", "", "admin user made sure to exist at start-up", str(func(c *config) *string { return &c.AdminUsername })},
		{"PUSHREG_ADMIN_PASSWORD", "", "that admin's password (used only when the user is created)", str(func(c *config) *string { return &c.AdminPassword })},
		{"PUSHREG_SESSION_MAX_AGE", "90d", "absolute session lifetime", duration(func(c *config) *time.Duration { return &c.SessionMaxAge })},
		{"PUSHREG_REFRESH_TTL", "30d", "idle session lifetime, extended by every refresh", duration(func(c *config) *time.Duration { return &c.RefreshTTL })},
		{"PUSHREG_REFRESH_REUSE_GRACE", "10s", "window in which a rotated token may be presented again without counting as theft", duration(func(c *config) *time.Duration { return &c.RefreshReuseGrace })},
		{"PUSHREG_ACCESS_TTL", "15m", "access token lifetime", duration(func(c *config) *time.Duration { return &c.AccessTTL })},
		{"PUSHREG_ISSUER", "", "JWT iss (default the public URL)", str(func(c *config) *string { return &c.Issuer })},
		{"PUSHREG_AUDIENCE", "pushreg", "JWT aud", nonEmpty(func(c *config) *string { return &c.Audience })},
		{"PUSHREG_JWT_KEYS_FILE", "", "JWK Set or PEM file of signing keys (first private key signs); default a generated key in the data dir", str(func(c *config) *string { return &c.JWTKeysFile })},
		{"PUSHREG_KECAK_TOKEN_TTL", "10d", "lifetime of a Kecak session token", duration(func(c *config) *time.Duration { return &c.KecakTokenTTL })},
		{"PUSHREG_ALLOWED_REFERERS", "", "comma-separated origins accepted as Referer besides the request's own host", origins(func(c *config) *[]string { return &c.AllowedReferers })},
		{"PUSHREG_LOGIN_RATE_LIMIT", "10", "failed logins per account and per client IP per minute", positive(func(c *config) *int { return &c.LoginRateLimit })},
		{"PUSHREG_MAX_DEVICES_PER_USER", "100", "device limit when a user's plan sets none", positive(func(c *config) *int { return &c.MaxDevicesPerUser })},
		{"PUSHREG_TOKEN_STALE_AFTER", "60d", "a token unconfirmed this long is stale and not pushed to", duration(func(c *config) *time.Duration { return &c.TokenStaleAfter })},
		{"PUSHREG_STYLES", strings.Join(allStyles, ","), "refresh styles served (kecak, duktig, abitmedia, kalsel, mcs)", styles},
		{"PUSHREG_DUKTIG_AUTH_KEYS", "", "comma-separated X-Auth-Key values Duktig sign-in requires (empty: none)", list(func(c *config) *[]string { return &c.DuktigAuthKeys })},
		{"PUSHREG_CORS_ALLOWED_ORIGINS", "", "comma-separated origins allowed by CORS (empty: CORS off)", origins(func(c *config) *[]string { return &c.CORSAllowedOrigins })},
	}
}

// errHelp is loadConfig's answer to -h: the usage went to stdout, and run
// ends without error.
var errHelp = errors.New("help requested")

// loadConfig reads every setting from the environment, then from flags of
// the same name, and validates them all, so that a bad value stops
// start-up before anything is opened or created. A bad value is an error
// naming the variable.
func loadConfig(args []string, getenv func(string) string, stdout io.Writer) (*config, error) {
	fs := flag.NewFlagSet("pushreg", flag.ContinueOnError)
	// The flag package would print an error and the whole usage; a bad
	// flag is one line, like any bad setting.
	fs.SetOutput(io.Discard)
	ss := settings()
	values := make([]*string, len(ss))
	for i, s := range ss {
		// The default shown by -h is the built-in one, never the
		// environment's value, which may be a password or a URI with one.
		values[i] = fs.String(s.flagName(), s.def, fmt.Sprintf("%s (env %s)", s.usage, s.env))
	}
	if err := fs.Parse(normalizeFlags(args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, fs)
			return nil, errHelp
		}
		return nil, fmt.Errorf("%v (see pushreg --help)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see pushreg --help)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c := &config{}
	for i, s := range ss {
		v := *values[i]
		if e := getenv(s.env); e != "" && !set[s.flagName()] {
			v = e
		}
		if err := s.parse(c, v); err != nil {
			return nil, fmt.Errorf("%s: %w", s.env, err)
		}
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.Addr
	}
	if c.Issuer == "" {
		c.Issuer = c.PublicURL
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// validate checks what no single setting's parser can: settings that go
// together, and files that must be readable.
func (c *config) validate() error {
	if (c.AdminUsername == "") != (c.AdminPassword == "") {
		return errors.New("PUSHREG_ADMIN_USERNAME and PUSHREG_ADMIN_PASSWORD must be set together")
	}
	if c.AdminPassword != "" && len(c.AdminPassword) < 8 {
		// Caught here, not when the bootstrap fails in the background and
		// leaves the service unready.
		return errors.New("PUSHREG_ADMIN_PASSWORD: must be at least 8 characters")
	}
	if c.JWTKeysFile != "" {
		// Reading only: with files given, nothing is generated.
		if _, err := auth.LoadOrGenerateKeys(c.JWTKeysFile, ""); err != nil {
			return fmt.Errorf("PUSHREG_JWT_KEYS_FILE: %w", err)
		}
	}
	// push.New reads the credentials file and checks the combination
	// (endpoint or credentials, project ID with credentials) without
	// reaching the network; the client made here is thrown away.
	if _, err := push.New(context.Background(), c.pushConfig(slog.New(slog.DiscardHandler), time.Now)); err != nil {
		return fmt.Errorf("FCM settings (PUSHREG_FCM_*): %w", err)
	}
	return nil
}

// pushConfig is the push client's configuration.
func (c *config) pushConfig(log *slog.Logger, now func() time.Time) push.Config {
	return push.Config{
		ProjectID:                    c.FCMProjectID,
		CredentialsFile:              c.FCMCredentialsFile,
		GoogleApplicationCredentials: c.GoogleCredentials,
		Endpoint:                     c.FCMEndpoint,
		ValidateTimeout:              c.FCMValidateTimeout,
		ValidateCacheTTL:             c.FCMValidateCache,
		MaxAttempts:                  c.PushMaxAttempts,
		Concurrency:                  c.PushConcurrency,
		Logger:                       log,
		Now:                          now,
	}
}

// printUsage writes -h's answer: how to run the service, the admin
// commands (from the CLI's own table, so a new one shows here), and the
// settings.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "Usage:")
	fmt.Fprintln(w, "  pushreg [serve] [flags]     run the service (every flag is also an environment variable)")
	var groups []string
	verbs := map[string][]string{}
	for _, c := range cliCommands() {
		if _, seen := verbs[c.group]; !seen {
			groups = append(groups, c.group)
		}
		if c.verb != "" {
			verbs[c.group] = append(verbs[c.group], c.verb)
		} else if verbs[c.group] == nil {
			verbs[c.group] = []string{}
		}
	}
	for _, g := range groups {
		cmd := g
		if len(verbs[g]) > 0 {
			cmd += " " + strings.Join(verbs[g], "|")
		}
		fmt.Fprintf(w, "  pushreg %s\n", cmd)
	}
	fmt.Fprintln(w, "Admin commands talk to a running pushreg; pushreg COMMAND -h describes each.")
	fmt.Fprintln(w, "\nFlags (defaults are the built-in ones; the environment's values are not shown):")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// normalizeFlags accepts --mongodb_uri as well as --mongodb-uri.
func normalizeFlags(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		if strings.HasPrefix(a, "-") {
			name, rest, hasValue := strings.Cut(a, "=")
			a = strings.ReplaceAll(name, "_", "-")
			if hasValue {
				a += "=" + rest
			}
		}
		out[i] = a
	}
	return out
}

func str(field func(*config) *string) func(*config, string) error {
	return func(c *config, v string) error { *field(c) = v; return nil }
}

// hostPort accepts host:port (or :port); empty stays empty.
func hostPort(field func(*config) *string) func(*config, string) error {
	return func(c *config, v string) error {
		if v != "" {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return fmt.Errorf("%q is not host:port (%v)", v, err)
			}
		}
		*field(c) = v
		return nil
	}
}

// loopbackAddr accepts a loopback host:port, or empty. It serves the
// profiler, whose profiles show the process's internals: reach it through
// a tunnel.
func loopbackAddr(field func(*config) *string) func(*config, string) error {
	return func(c *config, v string) error {
		if v != "" && !isLoopback(v) {
			return fmt.Errorf("%q is not a loopback address (127.0.0.1:PORT, [::1]:PORT or localhost:PORT)", v)
		}
		*field(c) = v
		return nil
	}
}

func nonEmpty(field func(*config) *string) func(*config, string) error {
	return func(c *config, v string) error {
		if strings.TrimSpace(v) == "" {
			return errors.New("must not be empty")
		}
		*field(c) = v
		return nil
	}
}

func oneOf(field func(*config) *string, allowed ...string) func(*config, string) error {
	return func(c *config, v string) error {
		for _, a := range allowed {
			if v == a {
				*field(c) = v
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(nonEmptyOnly(allowed), ", "))
	}
}

func nonEmptyOnly(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func urlValue(field func(*config) *string) func(*config, string) error {
	return func(c *config, v string) error {
		if v == "" {
			return nil
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%q is not an http(s) URL", v)
		}
		*field(c) = strings.TrimSuffix(v, "/")
		return nil
	}
}

// duration parses Go durations and whole days ("90d").
func duration(field func(*config) *time.Duration) func(*config, string) error {
	return func(c *config, v string) error {
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		if d <= 0 {
			return fmt.Errorf("%q must be positive", v)
		}
		*field(c) = d
		return nil
	}
}

func parseDuration(v string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration (like 15m, 24h or 90d)", v)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (like 15m, 24h or 90d)", v)
	}
	return d, nil
}

func positive(field func(*config) *int) func(*config, string) error {
	return func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a positive whole number", v)
		}
		*field(c) = n
		return nil
	}
}

func list(field func(*config) *[]string) func(*config, string) error {
	return func(c *config, v string) error {
		*field(c) = splitList(v)
		return nil
	}
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func origins(field func(*config) *[]string) func(*config, string) error {
	return func(c *config, v string) error {
		var out []string
		for _, o := range splitList(v) {
			u, err := url.Parse(o)
			if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
				return fmt.Errorf("%q is not an origin like https://app.example.com", o)
			}
			out = append(out, u.Scheme+"://"+u.Host)
		}
		*field(c) = out
		return nil
	}
}

func styles(c *config, v string) error {
	for _, s := range splitList(v) {
		known := false
		for _, a := range allStyles {
			known = known || s == a
		}
		if !known {
			return fmt.Errorf("unknown style %q (known: %s)", s, strings.Join(allStyles, ", "))
		}
		c.Styles = append(c.Styles, s)
	}
	return nil
}
