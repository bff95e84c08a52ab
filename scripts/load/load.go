// Package load drives pushreg's HTTP API as mobile apps do: native logins
// and rotating refreshes, Kecak refreshes that bind new FCM tokens. It
// records what each client saw succeed, so the fault tests and the soak
// can show that nothing a client was told had succeeded was lost.
//
// It speaks HTTP only and never imports the service, so it works against
// a pushreg in the same process, in a child process or elsewhere.
package load

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// The Kecak Mobile routes.
const (
	KecakLogin   = "/web/json/plugin/com.kinnara.kecakplugins.mobileapi.LoginApi/service"
	KecakCheck   = "/web/json/plugin/com.kinnara.kecakplugins.mobileapi.CheckTokenApi/service"
	KecakRefresh = "/web/json/plugin/com.kinnara.kecakplugins.mobileapi.RefreshTokenApi/service"
)

// Answer is one request as the client saw it.
type Answer struct {
	Op       string // "login", "refresh", "kecak_login", "kecak_refresh", ...
	Status   int    // 0 when no answer came (Err says why)
	Err      error
	Start    time.Time
	Duration time.Duration
	Body     []byte
	// Credential is the token or password the request presented, so a
	// test can look for it in the service's logs.
	Credential string
}

func (a Answer) String() string {
	if a.Status == 0 {
		return fmt.Sprintf("%s: no answer after %v: %v", a.Op, a.Duration.Round(time.Millisecond), a.Err)
	}
	body := a.Body
	if len(body) > 200 {
		body = body[:200]
	}
	return fmt.Sprintf("%s: %d after %v: %s", a.Op, a.Status, a.Duration.Round(time.Millisecond), body)
}

// Retryable reports whether the request may be repeated as it was: the
// store or Firebase was unavailable, or no answer came.
func (a Answer) Retryable() bool {
	return a.Status == 0 || a.Status == http.StatusServiceUnavailable
}

// Client sends requests to one pushreg and counts the answers.
type Client struct {
	base string
	host string
	http *http.Client
	// Stats counts every answer by operation and status.
	Stats *Stats
	// OnAnswer, if set, sees every answer; it must be safe for concurrent
	// use.
	OnAnswer func(Answer)
}

// NewClient returns a client of the pushreg at baseURL (such as
// http://127.0.0.1:8080) whose requests give up after timeout.
func NewClient(baseURL string, timeout time.Duration) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("load: base URL %q: not an absolute URL", baseURL)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Keep a connection per worker: a long run would otherwise churn
	// through ephemeral ports.
	tr.MaxIdleConnsPerHost = 256
	return &Client{
		base:  strings.TrimSuffix(baseURL, "/"),
		host:  u.Host,
		http:  &http.Client{Timeout: timeout, Transport: tr},
		Stats: NewStats(),
	}, nil
}

// URL returns the base URL.
func (c *Client) URL() string { return c.base }

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Do sends one request; body is JSON-encoded unless it is url.Values
// (a form) or nil. A request that got no answer has Status 0.
func (c *Client) Do(ctx context.Context, op, method, path string, header map[string]string, body any) Answer {
	var r io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case url.Values:
		r, ctype = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return Answer{Op: op, Err: err}
		}
		r, ctype = bytes.NewReader(j), "application/json"
	}
	a := Answer{Op: op, Start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		a.Err = err
		return a
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err == nil {
		a.Body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		a.Status = resp.StatusCode
	}
	if err != nil {
		a.Status, a.Err = 0, err
	}
	a.Duration = time.Since(a.Start)
	c.Stats.Add(a)
	if c.OnAnswer != nil {
		c.OnAnswer(a)
	}
	return a
}

func (c *Client) referer() string { return "http://" + c.host + "/" }

// field reads a string field of a JSON object answer.
func field(body []byte, name string) string {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	s, _ := m[name].(string)
	return s
}

// ErrUnexpected marks an answer no fault explains: neither success nor a
// retryable failure.
var ErrUnexpected = errors.New("unexpected answer")

func unexpected(a Answer) error { return fmt.Errorf("%w: %s", ErrUnexpected, a) }

// Admin is the bootstrap admin, signed in again when its access token
// expires.
type Admin struct {
	c                  *Client
	username, password string
	mu                 sync.Mutex
	token              string
}

// NewAdmin returns the admin with these credentials; it signs in at first
// use.
func NewAdmin(c *Client, username, password string) *Admin {
	return &Admin{c: c, username: username, password: password}
}

func (ad *Admin) do(ctx context.Context, op, method, path string, body any) (Answer, error) {
	for range 2 {
		ad.mu.Lock()
		if ad.token == "" {
			a := ad.c.Do(ctx, "admin_login", "POST", "/v1/auth/login", nil,
				map[string]string{"username": ad.username, "password": ad.password})
			if a.Status != http.StatusOK {
				ad.mu.Unlock()
				return a, fmt.Errorf("load: admin login: %s", a)
			}
			ad.token = field(a.Body, "access_token")
		}
		tok := ad.token
		ad.mu.Unlock()
		a := ad.c.Do(ctx, op, method, path, map[string]string{"Authorization": "Bearer " + tok}, body)
		if a.Status != http.StatusUnauthorized {
			return a, nil
		}
		ad.mu.Lock()
		if ad.token == tok {
			ad.token = ""
		}
		ad.mu.Unlock()
	}
	return Answer{}, errors.New("load: the admin's fresh access token was refused")
}

// CreateUser creates a user and returns its ID.
func (ad *Admin) CreateUser(ctx context.Context, username, password string) (string, error) {
	a, err := ad.do(ctx, "admin_create_user", "POST", "/v1/admin/users",
		map[string]string{"username": username, "password": password})
	if err != nil {
		return "", err
	}
	if a.Status != http.StatusCreated {
		return "", fmt.Errorf("load: create user %s: %s", username, a)
	}
	return field(a.Body, "id"), nil
}

// Device is a device as the admin API lists it.
type Device struct {
	DeviceID    string `json:"device_id"`
	FCMToken    string `json:"fcm_token"`
	TokenStatus string `json:"token_status"`
	SessionID   string `json:"session_id"`
}

// Devices lists every device of a user, keyed by device ID.
func (ad *Admin) Devices(ctx context.Context, userID string) (map[string]Device, error) {
	out := map[string]Device{}
	cursor := ""
	for {
		path := "/v1/admin/users/" + url.PathEscape(userID) + "/devices?limit=200"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		a, err := ad.do(ctx, "admin_devices", "GET", path, nil)
		if err != nil {
			return nil, err
		}
		if a.Status != http.StatusOK {
			return nil, fmt.Errorf("load: devices of %s: %s", userID, a)
		}
		var page struct {
			Devices    []Device `json:"devices"`
			NextCursor string   `json:"next_cursor"`
		}
		if err := json.Unmarshal(a.Body, &page); err != nil {
			return nil, fmt.Errorf("load: devices of %s: %w", userID, err)
		}
		for _, d := range page.Devices {
			out[d.DeviceID] = d
		}
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
}

// Kind is the refresh style of a Chain.
type Kind int

const (
	// Native refreshes rotate a refresh token at POST /v1/auth/token.
	Native Kind = iota
	// Kecak refreshes retire the Kecak token at RefreshTokenApi, always
	// with the device and its FCM token.
	Kecak
)

func (k Kind) String() string {
	if k == Kecak {
		return "kecak"
	}
	return "native"
}

// Chain is one app installation: a session on its own device, refreshed
// again and again, sometimes with a new FCM token. It remembers the last
// credential and binding it saw succeed, and repeats a request whose
// answer was a 503 or never came, as an app does.
//
// The credential a retry presents is always the last one seen succeed, so
// it is either current or, if the lost attempt did move it on, the
// previous one, which the service answers as a duplicate inside its grace
// window.
type Chain struct {
	Name     string
	Kind     Kind
	UserID   string
	Username string
	DeviceID string
	// FreshTokenOnRetry makes a retry of a bind carry a newer FCM token, as
	// an app whose token rotated while the request failed would.
	FreshTokenOnRetry bool

	mu        sync.Mutex
	sessionID string
	token     string   // the last credential seen succeed
	fcm       string   // the FCM token of the last binding seen succeed
	unseen    []string // FCM tokens sent since then without a success
	pending   *attempt
	seq       int
	ok        int
}

type attempt struct {
	fcm  string
	bind bool // send the device fields (always, for Kecak)
}

// NewChain returns a chain that signs in as username on device deviceID.
func NewChain(name string, kind Kind, userID, username, deviceID string) *Chain {
	return &Chain{Name: name, Kind: kind, UserID: userID, Username: username, DeviceID: deviceID}
}

func (ch *Chain) nextFCM() string {
	ch.seq++
	return fmt.Sprintf("fcm:%s-%d", ch.Name, ch.seq)
}

// SignIn starts the chain's session, bound to its device with a first FCM
// token. A retryable failure is returned as is, to be tried again.
func (ch *Chain) SignIn(ctx context.Context, c *Client, password string) (Answer, error) {
	ch.mu.Lock()
	if ch.pending == nil {
		ch.pending = &attempt{fcm: ch.nextFCM(), bind: true}
	}
	at := *ch.pending
	at.bind = true
	ch.mu.Unlock()
	var a Answer
	var token, sid string
	switch ch.Kind {
	case Kecak:
		a = c.Do(ctx, "kecak_login", "POST", KecakLogin, map[string]string{
			"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(ch.Username+":"+password)),
			"Referer":       c.referer()}, map[string]string{"device_id": ch.DeviceID, "fcm_token": at.fcm})
		token = field(a.Body, "token")
		sid = Claim(token, "sid")
	default:
		a = c.Do(ctx, "login", "POST", "/v1/auth/login", nil, map[string]string{
			"username": ch.Username, "password": password, "device_id": ch.DeviceID, "fcm_token": at.fcm})
		token, sid = field(a.Body, "refresh_token"), field(a.Body, "session_id")
	}
	a.Credential = password
	return a, ch.settle(a, at, token, sid)
}

// Step refreshes once: the pending attempt again if the last one failed,
// otherwise a new one, binding a new FCM token when newToken is set.
// It returns an error wrapping ErrUnexpected for an answer that is
// neither a success nor retryable.
func (ch *Chain) Step(ctx context.Context, c *Client, newToken bool) (Answer, error) {
	ch.mu.Lock()
	if ch.token == "" {
		ch.mu.Unlock()
		return Answer{}, fmt.Errorf("load: chain %s has not signed in", ch.Name)
	}
	switch {
	case ch.pending == nil && newToken:
		ch.pending = &attempt{fcm: ch.nextFCM(), bind: true}
	case ch.pending == nil:
		ch.pending = &attempt{fcm: ch.fcm, bind: ch.Kind == Kecak}
	case ch.pending.bind && ch.FreshTokenOnRetry:
		ch.pending = &attempt{fcm: ch.nextFCM(), bind: true}
	}
	at := *ch.pending
	ch.mu.Unlock()
	return ch.try(ctx, c, at)
}

// try sends at with the last credential seen succeed and records the
// outcome.
func (ch *Chain) try(ctx context.Context, c *Client, at attempt) (Answer, error) {
	ch.mu.Lock()
	token := ch.token
	ch.mu.Unlock()
	a := ch.send(ctx, c, token, at)
	next := field(a.Body, "token")
	if ch.Kind == Native {
		next = field(a.Body, "refresh_token")
	}
	return a, ch.settle(a, at, next, "")
}

func (ch *Chain) send(ctx context.Context, c *Client, token string, at attempt) Answer {
	var a Answer
	switch ch.Kind {
	case Kecak:
		a = c.Do(ctx, "kecak_refresh", "PUT", KecakRefresh,
			map[string]string{"Authorization": token, "Referer": c.referer()},
			map[string]string{"device_id": ch.DeviceID, "fcm_token": at.fcm})
	default:
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}
		if at.bind {
			form.Set("device_id", ch.DeviceID)
			form.Set("fcm_token", at.fcm)
		}
		op := "refresh"
		if at.bind {
			op = "refresh_bind"
		}
		a = c.Do(ctx, op, "POST", "/v1/auth/token", nil, form)
	}
	a.Credential = token
	return a
}

// settle records the outcome of an attempt.
func (ch *Chain) settle(a Answer, at attempt, token, sid string) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	switch {
	case a.Status == http.StatusOK && token != "":
		ch.token, ch.pending, ch.unseen = token, nil, nil
		if at.bind {
			ch.fcm = at.fcm
		}
		if sid != "" {
			ch.sessionID = sid
		}
		ch.ok++
		return nil
	case a.Retryable():
		if at.bind && at.fcm != ch.fcm && !contains(ch.unseen, at.fcm) {
			ch.unseen = append(ch.unseen, at.fcm)
		}
		return nil
	}
	return fmt.Errorf("load: chain %s: %w", ch.Name, unexpected(a))
}

// Pending reports whether the last attempt has not been seen succeed.
func (ch *Chain) Pending() bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.pending != nil
}

// Successes reports how many attempts the chain saw succeed.
func (ch *Chain) Successes() int {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.ok
}

// State is what a chain saw succeed last.
type State struct {
	SessionID string
	// Credential is the last refresh or Kecak token seen succeed.
	Credential string
	// FCMToken is the token of the last binding seen succeed.
	FCMToken string
	// Unseen are the FCM tokens of attempts sent since, whose answers were
	// failures or never came: the service may have bound any of them
	// before the failure (it binds the device before it moves the
	// credential).
	Unseen []string
}

// State returns what the chain saw succeed last.
func (ch *Chain) State() State {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return State{SessionID: ch.sessionID, Credential: ch.token, FCMToken: ch.fcm, Unseen: append([]string(nil), ch.unseen...)}
}

// CheckDevice reports an error unless the chain's device holds the FCM
// token of the last binding the chain saw succeed, or of an attempt sent
// after it whose answer the chain did not see.
func (ch *Chain) CheckDevice(devices map[string]Device) error {
	st := ch.State()
	d, ok := devices[ch.DeviceID]
	if !ok {
		return fmt.Errorf("load: chain %s: device %s, bound with %s, is missing", ch.Name, ch.DeviceID, st.FCMToken)
	}
	if d.FCMToken == st.FCMToken {
		if st.SessionID != "" && d.SessionID != st.SessionID {
			return fmt.Errorf("load: chain %s: device %s names session %s, want %s, the chain's", ch.Name, ch.DeviceID, d.SessionID, st.SessionID)
		}
		return nil
	}
	if contains(st.Unseen, d.FCMToken) {
		return nil
	}
	return fmt.Errorf("load: chain %s: device %s holds %q (%s), want %q, the last token bound successfully, or one of %q sent after it",
		ch.Name, ch.DeviceID, d.FCMToken, d.TokenStatus, st.FCMToken, st.Unseen)
}

// Verify shows that the last credential the chain saw succeed still works:
// a Kecak token is accepted by CheckTokenApi, whose session names the FCM
// token last bound (or one sent after it, unanswered), and the credential
// refreshes again, with the last binding seen succeed. The refresh moves
// the chain on.
func (ch *Chain) Verify(ctx context.Context, c *Client) error {
	st := ch.State()
	if ch.Kind == Kecak {
		a := c.Do(ctx, "kecak_check", "GET", KecakCheck, map[string]string{"Authorization": st.Credential}, nil)
		a.Credential = st.Credential
		var check struct {
			Valid    bool   `json:"valid"`
			FCMToken string `json:"fcm_token"`
		}
		if a.Status != http.StatusOK || json.Unmarshal(a.Body, &check) != nil || !check.Valid {
			return fmt.Errorf("load: chain %s: its last Kecak token is refused: %s", ch.Name, a)
		}
		if check.FCMToken != st.FCMToken && !contains(st.Unseen, check.FCMToken) {
			return fmt.Errorf("load: chain %s: its session names FCM token %q, want %q, the last bound successfully, or one of %q sent after it",
				ch.Name, check.FCMToken, st.FCMToken, st.Unseen)
		}
	}
	at := attempt{fcm: st.FCMToken, bind: ch.Kind == Kecak}
	ch.mu.Lock()
	ch.pending = &at
	ch.mu.Unlock()
	a, err := ch.try(ctx, c, at)
	if err == nil && a.Status != http.StatusOK {
		err = fmt.Errorf("load: chain %s: its last credential does not refresh: %s", ch.Name, a)
	}
	return err
}

// Logins signs one user in again and again, natively, each time on a new
// device with a new FCM token, as fresh installs do. A login whose answer
// was a 503 or never came is repeated as it was.
type Logins struct {
	Name     string
	UserID   string
	Username string
	// Devices, when positive, makes the logins take turns on that many
	// device IDs, so that a long run keeps the user's device count (and
	// its limit's evictions) out of the picture.
	Devices int

	mu      sync.Mutex
	seq     int
	pending *Login
	last    map[string]Login    // by device: the last login seen succeed
	unseen  map[string][]string // by device: FCM tokens sent since, unanswered
	ok      int
}

// Login is one login: its device and FCM token, and, once seen succeed,
// its session and refresh token.
type Login struct {
	DeviceID, FCMToken      string
	SessionID, RefreshToken string
}

// NewLogins returns a login worker for a user.
func NewLogins(name, userID, username string, devices int) *Logins {
	return &Logins{Name: name, UserID: userID, Username: username, Devices: devices,
		last: map[string]Login{}, unseen: map[string][]string{}}
}

// Step logs in once (or repeats the login that failed). It returns an
// error wrapping ErrUnexpected for an answer that is neither a success
// nor retryable.
func (l *Logins) Step(ctx context.Context, c *Client, password string) (Answer, error) {
	l.mu.Lock()
	if l.pending == nil {
		l.seq++
		dev := l.seq
		if l.Devices > 0 {
			dev = l.seq % l.Devices
		}
		l.pending = &Login{DeviceID: fmt.Sprintf("%s-dev-%d", l.Name, dev), FCMToken: fmt.Sprintf("fcm:%s-%d", l.Name, l.seq)}
	}
	at := *l.pending
	l.mu.Unlock()
	a := c.Do(ctx, "login", "POST", "/v1/auth/login", nil, map[string]string{
		"username": l.Username, "password": password, "device_id": at.DeviceID, "fcm_token": at.FCMToken})
	a.Credential = password
	at.SessionID, at.RefreshToken = field(a.Body, "session_id"), field(a.Body, "refresh_token")
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case a.Status == http.StatusOK && at.SessionID != "":
		l.last[at.DeviceID], l.pending = at, nil
		delete(l.unseen, at.DeviceID)
		l.ok++
		return a, nil
	case a.Retryable():
		if u := l.unseen[at.DeviceID]; !contains(u, at.FCMToken) {
			l.unseen[at.DeviceID] = append(u, at.FCMToken)
		}
		return a, nil
	}
	return a, fmt.Errorf("load: logins %s: %w", l.Name, unexpected(a))
}

// Pending reports whether the last login has not been seen succeed.
func (l *Logins) Pending() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending != nil
}

// Successes reports how many logins were seen succeed.
func (l *Logins) Successes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok
}

// Seen returns the last login seen succeed on each device.
func (l *Logins) Seen() []Login {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Login, 0, len(l.last))
	for _, lg := range l.last {
		out = append(out, lg)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DeviceID < out[j].DeviceID })
	return out
}

// CheckDevices reports an error for every device whose last login seen
// succeed is not what the device holds: its FCM token and session, or the
// FCM token of a later login whose answer was not seen.
func (l *Logins) CheckDevices(devices map[string]Device) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for dev, lg := range l.last {
		d, ok := devices[dev]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("load: logins %s: device %s, bound at login, is missing", l.Name, dev))
		case d.FCMToken == lg.FCMToken && d.SessionID == lg.SessionID:
		case contains(l.unseen[dev], d.FCMToken):
		default:
			errs = append(errs, fmt.Errorf("load: logins %s: device %s holds %q for session %s, want %q for session %s (or one of %q)",
				l.Name, dev, d.FCMToken, d.SessionID, lg.FCMToken, lg.SessionID, l.unseen[dev]))
		}
	}
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Claim reads a string claim of a JWT without verifying it; the service
// that issued the token is the one checking it.
func Claim(jwt, name string) string {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	return field(b, name)
}

// Stats counts answers by operation and status.
type Stats struct {
	mu sync.Mutex
	m  map[statKey]*statCount
}

type statKey struct {
	op     string
	status int
}

type statCount struct {
	n        int64
	sum, max time.Duration
}

// NewStats returns empty counters.
func NewStats() *Stats { return &Stats{m: map[statKey]*statCount{}} }

// Add counts an answer.
func (s *Stats) Add(a Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := statKey{a.Op, a.Status}
	c := s.m[k]
	if c == nil {
		c = &statCount{}
		s.m[k] = c
	}
	c.n++
	c.sum += a.Duration
	c.max = max(c.max, a.Duration)
}

// Row is the count of one operation's answers with one status.
type Row struct {
	Op        string
	Status    int // 0: no answer
	N         int64
	Mean, Max time.Duration
}

// Rows returns the counts, by operation then status.
func (s *Stats) Rows() []Row {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows := make([]Row, 0, len(s.m))
	for k, c := range s.m {
		rows = append(rows, Row{Op: k.op, Status: k.status, N: c.n, Mean: c.sum / time.Duration(c.n), Max: c.max})
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Op != rows[j].Op {
			return rows[i].Op < rows[j].Op
		}
		return rows[i].Status < rows[j].Status
	})
	return rows
}

// ByStatus totals the answers of every operation by status.
func (s *Stats) ByStatus() map[int]int64 {
	out := map[int]int64{}
	for _, r := range s.Rows() {
		out[r.Status] += r.N
	}
	return out
}

// String renders the counts on one line: "refresh 200×120 (mean 4ms, max
// 30ms) 503×3 (…); …".
func (s *Stats) String() string {
	var b strings.Builder
	op := ""
	for _, r := range s.Rows() {
		if r.Op != op {
			if op != "" {
				b.WriteString("; ")
			}
			b.WriteString(r.Op)
			op = r.Op
		}
		status := fmt.Sprint(r.Status)
		if r.Status == 0 {
			status = "none"
		}
		fmt.Fprintf(&b, " %s×%d (mean %v, max %v)", status, r.N, r.Mean.Round(time.Millisecond), r.Max.Round(time.Millisecond))
	}
	return b.String()
}

// Drive calls step again and again, pausing between calls and backing off
// (up to a second) after retryable failures, until stop is closed; then it
// goes on only while pending reports an attempt not yet seen succeed,
// until ctx is done. It returns the first unexpected answer's error, or
// ctx's error if the drain did not finish.
func Drive(ctx context.Context, stop <-chan struct{}, pause time.Duration,
	step func(context.Context) (Answer, error), pending func() bool) error {
	backoff := pause
	for {
		select {
		case <-stop:
			if !pending() {
				return nil
			}
		default:
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		a, err := step(ctx)
		if err != nil {
			return err
		}
		wait := pause
		if a.Retryable() {
			backoff = min(max(2*backoff, 50*time.Millisecond), time.Second)
			wait = backoff
		} else {
			backoff = pause
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}
