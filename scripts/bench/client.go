package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The Kecak Mobile routes.
const (
	kecakLogin   = "/web/json/plugin/com.kinnara.kecakplugins.mobileapi.LoginApi/service"
	kecakRefresh = "/web/json/plugin/com.kinnara.kecakplugins.mobileapi.RefreshTokenApi/service"
	kecakCheck   = "/web/json/plugin/com.kinnara.kecakplugins.mobileapi.CheckTokenApi/service"
)

// client sends requests to pushreg over keep-alive connections.
type client struct {
	base string
	http *http.Client
}

func newClient(base string, concurrency int) *client {
	tr := &http.Transport{
		MaxIdleConns:        4 * concurrency,
		MaxIdleConnsPerHost: 4 * concurrency,
		IdleConnTimeout:     90 * time.Second,
	}
	return &client{base: base, http: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}
}

func (c *client) close() { c.http.CloseIdleConnections() }

// answer is one request as the client saw it.
type answer struct {
	status int // 0 when no answer came
	body   []byte
	err    error
	dur    time.Duration
}

func (a answer) ok() bool { return a.status >= 200 && a.status < 300 }

func (a answer) String() string {
	if a.status == 0 {
		return fmt.Sprintf("no answer: %v", a.err)
	}
	b := a.body
	if len(b) > 300 {
		b = b[:300]
	}
	return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(b))
}

// do sends one request; the body is sent as ctype.
func (c *client) do(ctx context.Context, method, path string, header map[string]string, ctype string, body []byte) answer {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return answer{err: err}
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{err: err, dur: time.Since(start)}
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return answer{status: resp.StatusCode, body: b, err: err, dur: time.Since(start)}
}

func (c *client) json(ctx context.Context, method, path string, header map[string]string, v any) answer {
	b, err := json.Marshal(v)
	if err != nil {
		return answer{err: err}
	}
	return c.do(ctx, method, path, header, "application/json", b)
}

// field returns a string field of a JSON object body.
func field(body []byte, name string) string {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	s, _ := m[name].(string)
	return s
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// fcmToken returns a registration token of the real shape (about 160
// characters), distinct per name.
func fcmToken(name string) string {
	return name + ":APA91b" + strings.Repeat("Xy-_9", 30)
}

// admin holds an admin's access token, signing in again before it expires.
type admin struct {
	c          *client
	user, pass string

	mu    sync.Mutex
	token string
	at    time.Time
}

func (ad *admin) bearer(ctx context.Context) (map[string]string, error) {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	if ad.token == "" || time.Since(ad.at) > 5*time.Minute {
		a := ad.c.json(ctx, "POST", "/v1/auth/login", nil, map[string]string{"username": ad.user, "password": ad.pass})
		if a.status != http.StatusOK {
			return nil, fmt.Errorf("admin login: %s", a)
		}
		ad.token, ad.at = field(a.body, "access_token"), time.Now()
	}
	return bearer(ad.token), nil
}

// createUser creates a user whose plan allows devices devices.
func (ad *admin) createUser(ctx context.Context, username, password string, devices int) (string, error) {
	h, err := ad.bearer(ctx)
	if err != nil {
		return "", err
	}
	a := ad.c.json(ctx, "POST", "/v1/admin/users", h, map[string]any{"username": username, "password": password,
		"plan": map[string]any{"name": "bench", "device_count": devices}})
	if a.status != http.StatusCreated {
		return "", fmt.Errorf("create user %s: %s", username, a)
	}
	return field(a.body, "id"), nil
}

// createApp creates an app with push:send and returns its credentials.
func (ad *admin) createApp(ctx context.Context, name string) (id, secret string, err error) {
	h, err := ad.bearer(ctx)
	if err != nil {
		return "", "", err
	}
	a := ad.c.json(ctx, "POST", "/v1/admin/apps", h, map[string]any{"name": name, "scopes": []string{"push:send"}})
	if a.status != http.StatusCreated {
		return "", "", fmt.Errorf("create app: %s", a)
	}
	return field(a.body, "app_id"), field(a.body, "app_secret"), nil
}

// appToken returns a client-credentials access token for an app.
func appToken(ctx context.Context, c *client, id, secret string) (string, error) {
	a := c.do(ctx, "POST", "/v1/auth/token", map[string]string{"Authorization": basicAuth(id, secret)},
		"application/x-www-form-urlencoded", []byte(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	if a.status != http.StatusOK {
		return "", fmt.Errorf("client credentials: %s", a)
	}
	return field(a.body, "access_token"), nil
}

// user is a seeded user.
type user struct {
	id, name, password string
}

// kecakDevice is a Kecak session on one device: a chain of tokens.
type kecakDevice struct {
	user     *user
	deviceID string
	fcm      string
	token    string
	n        int // FCM tokens sent so far, to make new ones
}

func (d *kecakDevice) signIn(ctx context.Context, c *client) answer {
	a := c.json(ctx, "POST", kecakLogin, map[string]string{"Authorization": basicAuth(d.user.name, d.user.password),
		"Referer": c.base + "/"}, map[string]string{"device_id": d.deviceID, "fcm_token": d.fcm})
	if a.status == http.StatusOK {
		d.token = field(a.body, "token")
	}
	return a
}

// refresh presents the chain's token with the bound FCM token, or a new
// one; the answer's token is presented next.
func (d *kecakDevice) refresh(ctx context.Context, c *client, newFCM bool) answer {
	fcm := d.fcm
	if newFCM {
		d.n++
		fcm = fcmToken(fmt.Sprintf("%s-%d", d.deviceID, d.n))
	}
	return d.refreshWith(ctx, c, fcm)
}

// nativeDevice is a native session on one device: a rotating chain of
// refresh tokens.
type nativeDevice struct {
	user     *user
	deviceID string
	fcm      string
	refresh  string
}

func nativeLogin(ctx context.Context, c *client, u *user, deviceID, fcm string) answer {
	body := map[string]string{"username": u.name, "password": u.password}
	if deviceID != "" {
		body["device_id"], body["fcm_token"], body["platform"] = deviceID, fcm, "android"
	}
	return c.json(ctx, "POST", "/v1/auth/login", nil, body)
}

func (d *nativeDevice) signIn(ctx context.Context, c *client) answer {
	a := nativeLogin(ctx, c, d.user, d.deviceID, d.fcm)
	if a.status == http.StatusOK {
		d.refresh = field(a.body, "refresh_token")
	}
	return a
}

func (d *nativeDevice) rotate(ctx context.Context, c *client) answer {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {d.refresh}}
	a := c.do(ctx, "POST", "/v1/auth/token", nil, "application/x-www-form-urlencoded", []byte(form.Encode()))
	if a.status == http.StatusOK {
		if rt := field(a.body, "refresh_token"); rt != "" {
			d.refresh = rt
		}
	}
	return a
}

// parallel runs f(0..n-1) on workers goroutines and returns the first
// error.
func parallel(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(workers, n) {
		wg.Go(func() {
			for i := range jobs {
				if err := f(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
