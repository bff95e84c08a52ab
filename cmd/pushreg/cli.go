package main

// The admin command line: "pushreg users|devices|sessions|apps …" talks to
// a running pushreg over its HTTP admin API, as any other client would.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// cliCommand is one "pushreg GROUP VERB" command.
type cliCommand struct {
	group, verb, args, summary string
	// define registers the command's own flags and returns what runs it
	// once they are parsed.
	define func(fs *flag.FlagSet) func(ctx context.Context, s *cliSession) error
	// operands is how many arguments the command takes besides flags.
	operands int
	// timeout replaces the default --timeout (30s) for a long command.
	timeout time.Duration
}

// cliCommands lists the admin commands.
func cliCommands() []cliCommand {
	return []cliCommand{
		{"users", "create", "--user NAME --user-password PASSWORD [--email E] [--roles user,admin]", "create a user", defineUsersCreate, 0, 0},
		{"users", "list", "[--prefix P] [--limit N] [--cursor C] [--all]", "list users in username order", defineUsersList, 0, 0},
		{"devices", "list", "--user NAME [--status S] [--platform P] [--limit N] [--cursor C] [--all]", "list a user's devices, most recently seen first", defineDevicesList, 0, 0},
		{"devices", "revoke", "--user NAME --device ID", "remove a device and revoke its session", defineDevicesRevoke, 0, 0},
		{"sessions", "revoke", "--user NAME", "revoke every session of a user and unbind their devices' tokens", defineSessionsRevoke, 0, 0},
		{"apps", "create", "--name NAME --scopes push:send,devices:read", "create an app; its secret is shown once", defineAppsCreate, 0, 0},
		{"import", "", "[--validate] FILE", "import users and their devices from an NDJSON file (- reads stdin)", defineImport, 1, 35 * time.Minute},
	}
}

// isCLICommand reports whether the first argument names an admin command
// group rather than the server.
func isCLICommand(name string) bool {
	for _, c := range cliCommands() {
		if c.group == name {
			return true
		}
	}
	return false
}

// runCLI runs one admin command. Its output goes to stdout; an error is
// returned as one line for main to print.
func runCLI(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	group := args[0]
	var verbs []string
	for _, c := range cliCommands() {
		if c.group == group && c.verb == "" {
			// A command of one word ("pushreg import FILE").
			return c.run(ctx, args[1:], getenv, stdout, stderr)
		}
		if c.group == group {
			verbs = append(verbs, c.verb)
		}
	}
	if len(args) < 2 {
		return fmt.Errorf("%s: a command is required (%s; see pushreg %s -h)", group, strings.Join(verbs, ", "), group)
	}
	if args[1] == "-h" || args[1] == "--help" || args[1] == "help" {
		cliUsage(stdout, group)
		return nil
	}
	for _, c := range cliCommands() {
		if c.group == group && c.verb == args[1] {
			return c.run(ctx, args[2:], getenv, stdout, stderr)
		}
	}
	return fmt.Errorf("%s: unknown command %q (%s)", group, args[1], strings.Join(verbs, ", "))
}

func cliUsage(w io.Writer, group string) {
	fmt.Fprintln(w, "Usage:")
	for _, c := range cliCommands() {
		if c.group == group || group == "" {
			fmt.Fprintf(w, "  pushreg %s %s\n      %s\n", c.name(), c.args, c.summary)
		}
	}
	fmt.Fprintln(w, "Every command takes --url, --token or --username/--password, and --json; -h lists them.")
}

// connection is how a command reaches pushreg and proves it is an admin.
type connection struct {
	url, token, username, password string
	timeout                        time.Duration
	json                           bool
}

func (conn *connection) register(fs *flag.FlagSet) {
	// Defaults from the environment are applied after parsing, so that -h
	// never prints a token or a password.
	fs.StringVar(&conn.url, "url", "", "pushreg's base URL (env PUSHREG_URL, default http://127.0.0.1:8080)")
	fs.StringVar(&conn.token, "token", "", "an admin access token (env PUSHREG_TOKEN)")
	fs.StringVar(&conn.username, "username", "", "admin username to log in with, instead of --token (env PUSHREG_ADMIN_USERNAME)")
	fs.StringVar(&conn.password, "password", "", "admin password (env PUSHREG_ADMIN_PASSWORD)")
	fs.DurationVar(&conn.timeout, "timeout", 30*time.Second, "how long one request may take")
	fs.BoolVar(&conn.json, "json", false, "print JSON instead of a table")
}

func (conn *connection) fromEnv(getenv func(string) string) {
	fallback := func(v *string, env, def string) {
		if *v == "" {
			*v = getenv(env)
		}
		if *v == "" {
			*v = def
		}
	}
	fallback(&conn.url, "PUSHREG_URL", "http://127.0.0.1:8080")
	fallback(&conn.token, "PUSHREG_TOKEN", "")
	fallback(&conn.username, "PUSHREG_ADMIN_USERNAME", "")
	fallback(&conn.password, "PUSHREG_ADMIN_PASSWORD", "")
	conn.url = strings.TrimRight(conn.url, "/")
}

// name is the command as typed: "users create", "import".
func (c cliCommand) name() string { return strings.TrimSpace(c.group + " " + c.verb) }

func (c cliCommand) run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	name := c.name()
	fs := flag.NewFlagSet("pushreg "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned as one line
	var conn connection
	conn.register(fs)
	if c.timeout > 0 {
		conn.timeout = c.timeout
		fs.Lookup("timeout").DefValue = c.timeout.String()
	}
	action := c.define(fs)
	// Operands may come before, between or after the flags.
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(stdout, "Usage: pushreg %s %s\n  %s\n", name, c.args, c.summary)
				fs.SetOutput(stdout)
				fs.PrintDefaults()
				return nil
			}
			return fmt.Errorf("%s: %v (see pushreg %s -h)", name, err, name)
		}
		if fs.NArg() == 0 {
			break
		}
		operands = append(operands, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(operands) > c.operands {
		return fmt.Errorf("%s: unexpected argument %q (see pushreg %s -h)", name, operands[c.operands], name)
	}
	if len(operands) < c.operands {
		return fmt.Errorf("%s: %s is required (see pushreg %s -h)", name, c.args, name)
	}
	conn.fromEnv(getenv)
	if conn.token == "" && (conn.username == "" || conn.password == "") {
		return fmt.Errorf("%s: no credentials: give --token (PUSHREG_TOKEN) or --username and --password (PUSHREG_ADMIN_USERNAME, PUSHREG_ADMIN_PASSWORD)", name)
	}
	s := &cliSession{api: &adminClient{http: &http.Client{Timeout: conn.timeout}, base: conn.url, token: conn.token},
		out: stdout, errOut: stderr, in: os.Stdin, json: conn.json, operands: operands}
	if conn.token == "" {
		if err := s.api.login(ctx, conn.username, conn.password); err != nil {
			return fmt.Errorf("%s: log in as %s: %w", name, conn.username, err)
		}
		// The session exists for this command only.
		defer s.api.logout(context.WithoutCancel(ctx))
	}
	if err := action(ctx, s); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// cliSession is what a command works with once its flags are parsed.
type cliSession struct {
	api    *adminClient
	out    io.Writer
	errOut io.Writer
	in     io.Reader
	json   bool
	// operands are the command's arguments other than flags.
	operands []string
}

// printJSON writes v indented.
func (s *cliSession) printJSON(v any) error {
	enc := json.NewEncoder(s.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes rows aligned in columns.
func (s *cliSession) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(s.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		for i := range r {
			if r[i] == "" {
				r[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// adminClient calls pushreg's HTTP API.
type adminClient struct {
	http  *http.Client
	base  string
	token string
	// loggedIn says token came from a login this client should end.
	loggedIn bool
}

// httpError is an answer other than 2xx, described by the server's detail.
type httpError struct {
	status int
	detail string
}

func (e *httpError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.detail, e.status) }

// do sends a request with a JSON body (unless nil) and decodes a JSON
// answer into out (unless nil).
func (c *adminClient) do(ctx context.Context, method, path string, body, out any) error {
	if body == nil {
		return c.send(ctx, method, path, "", nil, -1, out)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return c.send(ctx, method, path, "application/json", bytes.NewReader(b), int64(len(b)), out)
}

// send sends a request whose body (unless nil) is read from rd, size bytes
// long (-1: unknown, sent chunked), and decodes a JSON answer into out
// (unless nil).
func (c *adminClient) send(ctx context.Context, method, path, ctype string, rd io.Reader, size int64, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("bad --url %q: %w", c.base, err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
		req.ContentLength = size
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is said once, below
		}
		return fmt.Errorf("cannot reach pushreg at %s: %v", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading the answer from %s: %v", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		return &httpError{status: resp.StatusCode, detail: problemDetail(resp.StatusCode, b)}
	}
	if out == nil || len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: unexpected answer: %v", method, path, err)
	}
	return nil
}

// problemDetail is the one-line explanation in an error answer: the
// problem+json detail, an OAuth error_description, or the status text.
func problemDetail(status int, body []byte) string {
	var p struct {
		Detail           string `json:"detail"`
		Title            string `json:"title"`
		ErrorDescription string `json:"error_description"`
	}
	_ = json.Unmarshal(body, &p)
	detail := p.Detail
	if detail == "" {
		detail = p.ErrorDescription
	}
	if detail == "" {
		detail = p.Title
	}
	if detail == "" {
		detail = http.StatusText(status)
	}
	return strings.Join(strings.Fields(detail), " ")
}

func (c *adminClient) login(ctx context.Context, username, password string) error {
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := c.do(ctx, "POST", "/v1/auth/login", map[string]string{"username": username, "password": password}, &tok); err != nil {
		return err
	}
	if tok.AccessToken == "" {
		return errors.New("the login answer holds no access token")
	}
	c.token, c.loggedIn = tok.AccessToken, true
	return nil
}

// logout ends the session login started; it is best effort, since the
// command's work is done either way.
func (c *adminClient) logout(ctx context.Context) {
	if c.loggedIn {
		_ = c.do(ctx, "POST", "/v1/auth/logout", nil, nil)
	}
}

// cliUser is a user as the admin API returns it.
type cliUser struct {
	ID          string     `json:"id"`
	Username    string     `json:"username"`
	Email       string     `json:"email"`
	Roles       []string   `json:"roles"`
	Disabled    bool       `json:"disabled"`
	CreatedAt   time.Time  `json:"created_at"`
	LastLoginAt *time.Time `json:"last_login_at"`
}

// userID resolves a username through the exact lookup.
func (c *adminClient) userID(ctx context.Context, name string) (string, error) {
	if name == "" {
		return "", errors.New("--user is required")
	}
	var page struct {
		Users []cliUser `json:"users"`
	}
	err := c.do(ctx, "GET", "/v1/admin/users?username="+url.QueryEscape(name), nil, &page)
	var he *httpError
	if errors.As(err, &he) && he.status == http.StatusNotFound || err == nil && len(page.Users) == 0 {
		return "", fmt.Errorf("user %q not found", name)
	}
	if err != nil {
		return "", err
	}
	return page.Users[0].ID, nil
}

// page is one page of a list, its items kept as the server sent them so
// that --json prints every field.
type page struct {
	items []json.RawMessage
	next  string
}

// listing pages through path (which has a query string), starting at
// cursor, and following next_cursor when all is set.
func (c *adminClient) listing(ctx context.Context, path, field, cursor string, all bool) (page, error) {
	var out page
	for {
		p := path
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		var raw map[string]json.RawMessage
		if err := c.do(ctx, "GET", p, nil, &raw); err != nil {
			return out, err
		}
		var items []json.RawMessage
		if err := json.Unmarshal(raw[field], &items); err != nil {
			return out, fmt.Errorf("unexpected answer: no %s list", field)
		}
		out.items = append(out.items, items...)
		out.next = ""
		if n, ok := raw["next_cursor"]; ok {
			_ = json.Unmarshal(n, &out.next)
		}
		if !all || out.next == "" {
			return out, nil
		}
		cursor = out.next
	}
}

// printPage prints a list as JSON or as a table of rows made by row.
func printPage[T any](s *cliSession, field string, p page, header []string, row func(T) []string) error {
	if s.json {
		body := map[string]any{field: p.items}
		if p.next != "" {
			body["next_cursor"] = p.next
		}
		if p.items == nil {
			body[field] = []any{}
		}
		return s.printJSON(body)
	}
	rows := make([][]string, 0, len(p.items))
	for _, raw := range p.items {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("unexpected answer: %v", err)
		}
		rows = append(rows, row(v))
	}
	if err := s.table(header, rows); err != nil {
		return err
	}
	if p.next != "" {
		fmt.Fprintf(s.errOut, "more: add --cursor %s, or --all\n", p.next)
	}
	return nil
}

// pageFlags are the flags of a list command.
type pageFlags struct {
	limit  int
	cursor string
	all    bool
}

func (pf *pageFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&pf.limit, "limit", 50, "items per page (1-200)")
	fs.StringVar(&pf.cursor, "cursor", "", "continue after a previous page")
	fs.BoolVar(&pf.all, "all", false, "follow the pages to the end")
}

func (pf *pageFlags) query(v url.Values) string {
	v.Set("limit", fmt.Sprint(pf.limit))
	return v.Encode()
}

func cliTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func userHeader() []string {
	return []string{"ID", "USERNAME", "EMAIL", "ROLES", "DISABLED", "CREATED", "LAST LOGIN"}
}

func userRow(u cliUser) []string {
	last := ""
	if u.LastLoginAt != nil {
		last = cliTime(*u.LastLoginAt)
	}
	return []string{u.ID, u.Username, u.Email, strings.Join(u.Roles, ","), fmt.Sprint(u.Disabled), cliTime(u.CreatedAt), last}
}

func defineUsersCreate(fs *flag.FlagSet) func(context.Context, *cliSession) error {
	name := fs.String("user", "", "the new user's username")
	password := fs.String("user-password", "", "the new user's password (8-256 characters)")
	email := fs.String("email", "", "the new user's email")
	roles := fs.String("roles", "", "comma-separated roles: user, admin (default user)")
	return func(ctx context.Context, s *cliSession) error {
		if *name == "" || *password == "" {
			return errors.New("--user and --user-password are required")
		}
		body := map[string]any{"username": *name, "password": *password, "email": *email}
		if *roles != "" {
			body["roles"] = splitList(*roles)
		}
		var raw json.RawMessage
		if err := s.api.do(ctx, "POST", "/v1/admin/users", body, &raw); err != nil {
			return err
		}
		if s.json {
			return s.printJSON(raw)
		}
		return printPage(s, "users", page{items: []json.RawMessage{raw}}, userHeader(), userRow)
	}
}

func defineUsersList(fs *flag.FlagSet) func(context.Context, *cliSession) error {
	var pf pageFlags
	pf.register(fs)
	prefix := fs.String("prefix", "", "only usernames starting with this (case-insensitive)")
	return func(ctx context.Context, s *cliSession) error {
		q := url.Values{}
		if *prefix != "" {
			q.Set("prefix", *prefix)
		}
		p, err := s.api.listing(ctx, "/v1/admin/users?"+pf.query(q), "users", pf.cursor, pf.all)
		if err != nil {
			return err
		}
		return printPage(s, "users", p, userHeader(), userRow)
	}
}

// cliDevice is a device as the admin API returns it.
type cliDevice struct {
	DeviceID         string     `json:"device_id"`
	Platform         string     `json:"platform"`
	TokenStatus      string     `json:"token_status"`
	TokenValidatedAt *time.Time `json:"token_validated_at"`
	TokenUpdatedAt   time.Time  `json:"token_updated_at"`
	LastSeenAt       time.Time  `json:"last_seen_at"`
	CreatedAt        time.Time  `json:"created_at"`
	SessionID        string     `json:"session_id"`
}

func defineDevicesList(fs *flag.FlagSet) func(context.Context, *cliSession) error {
	var pf pageFlags
	pf.register(fs)
	user := fs.String("user", "", "the user's username")
	status := fs.String("status", "", "only tokens in this status: valid, unverified, invalid, stale, unbound")
	platform := fs.String("platform", "", "only this platform: android, ios, web")
	return func(ctx context.Context, s *cliSession) error {
		id, err := s.api.userID(ctx, *user)
		if err != nil {
			return err
		}
		q := url.Values{}
		if *status != "" {
			q.Set("status", *status)
		}
		if *platform != "" {
			q.Set("platform", *platform)
		}
		p, err := s.api.listing(ctx, "/v1/admin/users/"+url.PathEscape(id)+"/devices?"+pf.query(q), "devices", pf.cursor, pf.all)
		if err != nil {
			return err
		}
		// The table leaves FCM tokens out; --json has them.
		return printPage(s, "devices", p,
			[]string{"DEVICE", "PLATFORM", "STATUS", "LAST SEEN", "TOKEN UPDATED", "VALIDATED", "CREATED", "SESSION"},
			func(d cliDevice) []string {
				validated := ""
				if d.TokenValidatedAt != nil {
					validated = cliTime(*d.TokenValidatedAt)
				}
				return []string{d.DeviceID, d.Platform, d.TokenStatus, cliTime(d.LastSeenAt), cliTime(d.TokenUpdatedAt),
					validated, cliTime(d.CreatedAt), d.SessionID}
			})
	}
}

func defineDevicesRevoke(fs *flag.FlagSet) func(context.Context, *cliSession) error {
	user := fs.String("user", "", "the user's username")
	device := fs.String("device", "", "the device ID")
	return func(ctx context.Context, s *cliSession) error {
		if *device == "" {
			return errors.New("--device is required")
		}
		id, err := s.api.userID(ctx, *user)
		if err != nil {
			return err
		}
		path := "/v1/admin/users/" + url.PathEscape(id) + "/devices/" + url.PathEscape(*device)
		if err := s.api.do(ctx, "DELETE", path, nil, nil); err != nil {
			var he *httpError
			if errors.As(err, &he) && he.status == http.StatusNotFound {
				return fmt.Errorf("user %s has no device %q", *user, *device)
			}
			return err
		}
		if s.json {
			return s.printJSON(map[string]any{"user_id": id, "username": *user, "device_id": *device, "removed": true})
		}
		_, err = fmt.Fprintf(s.out, "removed device %s of %s and revoked its session\n", *device, *user)
		return err
	}
}

func defineSessionsRevoke(fs *flag.FlagSet) func(context.Context, *cliSession) error {
	user := fs.String("user", "", "the user's username")
	return func(ctx context.Context, s *cliSession) error {
		id, err := s.api.userID(ctx, *user)
		if err != nil {
			return err
		}
		var res struct {
			Revoked int `json:"revoked"`
		}
		if err := s.api.do(ctx, "DELETE", "/v1/admin/users/"+url.PathEscape(id)+"/sessions", nil, &res); err != nil {
			return err
		}
		if s.json {
			return s.printJSON(map[string]any{"user_id": id, "username": *user, "revoked": res.Revoked})
		}
		noun := "sessions"
		if res.Revoked == 1 {
			noun = "session"
		}
		_, err = fmt.Fprintf(s.out, "revoked %d %s of %s; their devices' tokens are unbound\n", res.Revoked, noun, *user)
		return err
	}
}

func defineAppsCreate(fs *flag.FlagSet) func(context.Context, *cliSession) error {
	name := fs.String("name", "", "the app's name")
	scopes := fs.String("scopes", "", "comma-separated scopes: push:send, devices:read, mcs")
	return func(ctx context.Context, s *cliSession) error {
		if *name == "" || *scopes == "" {
			return errors.New("--name and --scopes are required")
		}
		var app struct {
			AppID     string   `json:"app_id"`
			AppSecret string   `json:"app_secret"`
			Name      string   `json:"name"`
			Scopes    []string `json:"scopes"`
		}
		if err := s.api.do(ctx, "POST", "/v1/admin/apps", map[string]any{"name": *name, "scopes": splitList(*scopes)}, &app); err != nil {
			return err
		}
		if s.json {
			return s.printJSON(app)
		}
		fmt.Fprintln(s.errOut, "store the secret now: it is not shown again")
		return s.table([]string{"APP ID", "NAME", "SCOPES", "SECRET"},
			[][]string{{app.AppID, app.Name, strings.Join(app.Scopes, ","), app.AppSecret}})
	}
}
