// Package fcmtest is a test double for the FCM HTTP v1 API.
//
// It speaks POST /v1/projects/{project}/messages:send and answers the way
// Firebase Cloud Messaging does, error bodies included (a google.rpc.Status
// carrying a google.firebase.fcm.v1.FcmError detail), so that the real Firebase
// Admin SDK, pointed at it with option.WithEndpoint(srv.Endpoint()) and
// option.WithoutAuthentication(), parses its answers exactly as it parses
// Google's: messaging.IsUnregistered, IsSenderIDMismatch, IsQuotaExceeded,
// IsUnavailable, IsInternal and IsInvalidArgument all recognise them.
//
// Every token succeeds unless told otherwise. Behaviour is programmed per token
// (SetTokenError, SetTokenSequence) or for the whole server (SetDown,
// SetLatency, SetRetryAfter), and everything received is recorded (Requests,
// Stats, Observe, and GET /messages, newest first). A Server is safe for
// concurrent use.
//
// The double checks no credentials, as the Firebase emulators do not.
package fcmtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultProjectID is the project a Server answers for. It is the project
// push uses in its endpoint mode when none is configured, so that a Client
// given nothing but Endpoint() works against the double.
const DefaultProjectID = "pushreg-dev"

// DefaultRetryAfter is the Retry-After a QUOTA_EXCEEDED answer carries until
// SetRetryAfter changes it. It is short so that a client honouring it for real
// does not stall a test.
const DefaultRetryAfter = time.Second

// DryRunMessageID is the message id FCM returns for a validate_only request,
// after "projects/{project}/messages/".
const DryRunMessageID = "fake_message_id"

// Code is an FCM v1 error code (the errorCode of an FcmError detail), or OK.
type Code string

// The answers a Server can be told to give. Each error code comes with the
// HTTP status and google.rpc status FCM uses for it.
const (
	// OK answers 200 with a message name.
	OK Code = "OK"
	// Unregistered answers 404 NOT_FOUND: the app instance is gone.
	Unregistered Code = "UNREGISTERED"
	// InvalidArgument answers 400 INVALID_ARGUMENT about the registration
	// token, as FCM does for a token it never issued.
	InvalidArgument Code = "INVALID_ARGUMENT"
	// SenderIDMismatch answers 403 PERMISSION_DENIED: the token belongs to
	// another sender.
	SenderIDMismatch Code = "SENDER_ID_MISMATCH"
	// QuotaExceeded answers 429 RESOURCE_EXHAUSTED with a Retry-After header.
	QuotaExceeded Code = "QUOTA_EXCEEDED"
	// Unavailable answers 503 UNAVAILABLE.
	Unavailable Code = "UNAVAILABLE"
	// Internal answers 500 INTERNAL.
	Internal Code = "INTERNAL"
	// ThirdPartyAuthError answers 401 UNAUTHENTICATED: APNs or Web Push
	// refused the project's credentials.
	ThirdPartyAuthError Code = "THIRD_PARTY_AUTH_ERROR"
)

// answer is how FCM words one error code on the wire.
type answer struct {
	status  int
	rpc     string
	message string
	field   string // the google.rpc.BadRequest field violation, if any
}

func answerFor(c Code) (answer, bool) {
	switch c {
	case Unregistered:
		return answer{http.StatusNotFound, "NOT_FOUND", "Requested entity was not found.", ""}, true
	case InvalidArgument:
		return answer{http.StatusBadRequest, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token", "message.token"}, true
	case SenderIDMismatch:
		return answer{http.StatusForbidden, "PERMISSION_DENIED", "SenderId mismatch", ""}, true
	case QuotaExceeded:
		return answer{http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "Quota exceeded for sending messages.", ""}, true
	case Unavailable:
		return answer{http.StatusServiceUnavailable, "UNAVAILABLE", "The service is currently unavailable.", ""}, true
	case Internal:
		return answer{http.StatusInternalServerError, "INTERNAL", "Internal error encountered.", ""}, true
	case ThirdPartyAuthError:
		return answer{http.StatusUnauthorized, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service", ""}, true
	}
	return answer{}, false
}

// mustProgrammable panics on a code the Server cannot be told to answer with:
// a typo in a test should fail loudly, not answer with an empty status.
func mustProgrammable(c Code) {
	if _, ok := answerFor(c); !ok && c != OK {
		panic(fmt.Sprintf("fcmtest: code %q cannot be programmed", c))
	}
}

// Request is one request the Server received, as recorded.
type Request struct {
	// Project is the project named in the URL.
	Project string
	// Token is message.token; empty for a topic or condition message.
	Token string
	// ValidateOnly reports whether the request was a dry run.
	ValidateOnly bool
	// Data is message.data.
	Data map[string]string
	// Message is message as received, undecoded.
	Message json.RawMessage
	// Answer is what the Server answered: OK, a programmable Code, or
	// WrongProject or InvalidMessage.
	Answer Code
	// Status is the HTTP status the Server answered with.
	Status int
	// Time is when the request arrived.
	Time time.Time
}

// Stats counts what the Server has seen since it started or was last Reset.
type Stats struct {
	// Requests counts every request to the send endpoint, answered or not.
	Requests int
	// Sent counts successful non-dry-run sends.
	Sent int
	// DryRuns counts successful validate_only requests.
	DryRuns int
	// Failed counts requests answered with an error.
	Failed int
	// MaxInFlight is the most requests the Server was handling at once.
	MaxInFlight int
}

// Server is a running FCM test double.
type Server struct {
	srv     *httptest.Server
	project string
	done    chan struct{} // closed by Close so slow handlers return at once
	once    sync.Once

	mu         sync.Mutex
	fixed      map[string]Code   // per-token answer, after any sequence runs out
	sequences  map[string][]Code // per-token answers still to give, in order
	down       bool
	latency    time.Duration
	retryAfter time.Duration // on QUOTA_EXCEEDED answers
	retry503   time.Duration // on UNAVAILABLE answers
	noRecord   bool
	observe    func(Request)
	requests   []Request
	arrived    chan struct{} // closed and replaced at every arrival
	stats      Stats
	inFlight   int
	nextID     uint64
}

// New starts a Server on a loopback port for the length of a test and closes
// it in t.Cleanup.
func New(t testing.TB) *Server {
	t.Helper()
	s := newServer(DefaultProjectID)
	s.srv = httptest.NewServer(s.handler())
	t.Cleanup(s.Close)
	return s
}

// NewServer starts a Server outside of a test, for programs such as
// scripts/bench, listening on addr ("127.0.0.1:0" when empty). The address
// must be a loopback one: the double is never meant to be reachable from
// another machine. The caller must Close it.
func NewServer(addr string) (*Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fcmtest: listen %s: %w", addr, err)
	}
	s := newServer(DefaultProjectID)
	s.srv = httptest.NewUnstartedServer(s.handler())
	s.srv.Listener.Close()
	s.srv.Listener = l
	s.srv.Start()
	return s, nil
}

func newServer(project string) *Server {
	return &Server{
		project:    project,
		done:       make(chan struct{}),
		fixed:      make(map[string]Code),
		sequences:  make(map[string][]Code),
		retryAfter: DefaultRetryAfter,
		arrived:    make(chan struct{}),
	}
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("fcmtest: address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("fcmtest: address %q is not a loopback address", addr)
}

// Close stops the Server. Requests still waiting out their latency are
// answered 503 at once rather than holding Close up. Close may be called more
// than once.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.done)
		s.srv.Close()
	})
}

// URL returns the Server's base URL, such as http://127.0.0.1:1234.
func (s *Server) URL() string { return s.srv.URL }

// Endpoint returns the base URL to give the Admin SDK through
// option.WithEndpoint: URL followed by /v1, as FCM's own endpoint is.
func (s *Server) Endpoint() string { return s.srv.URL + "/v1" }

// ProjectID returns the project the Server answers for. A request for any
// other project is refused with 403 PERMISSION_DENIED and no FcmError detail,
// as FCM refuses credentials of one project sending for another.
func (s *Server) ProjectID() string { return s.project }

// SetTokenError makes every later request for token answer with code, once any
// sequence set for the token has run out. SetTokenError(token, OK) restores
// success.
func (s *Server) SetTokenError(token string, code Code) {
	mustProgrammable(code)
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == OK {
		delete(s.fixed, token)
		return
	}
	s.fixed[token] = code
}

// SetTokenSequence makes the next len(codes) requests for token answer with
// codes in order (replacing any sequence not yet used up); after that the token
// answers as SetTokenError said, or with success.
func (s *Server) SetTokenSequence(token string, codes ...Code) {
	for _, c := range codes {
		mustProgrammable(c)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sequences[token] = append([]Code(nil), codes...)
}

// SetDown makes every request answer 503 UNAVAILABLE while down is true,
// whatever was programmed for its token. Mind that the SDK retries a 503 by
// itself, up to 4 times over about 7 seconds, unless told by
// SetUnavailableRetryAfter to wait more than 2 minutes.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// SetLatency makes every request wait d before it is answered. A request whose
// client gives up meanwhile is dropped without an answer, so slow answers never
// hold up the client's deadline or the Server's Close.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetRetryAfter sets the Retry-After header of QUOTA_EXCEEDED answers, in
// whole seconds rounded up; zero or less leaves the header out.
func (s *Server) SetRetryAfter(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retryAfter = d
}

// SetUnavailableRetryAfter sets the Retry-After header of UNAVAILABLE
// answers, which have none until then; zero or less leaves it out again. The
// SDK waits that long before retrying a 503 itself, and does not retry at all
// past 2 minutes.
func (s *Server) SetUnavailableRetryAfter(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retry503 = d
}

// WaitRequests blocks until the Server has received at least n requests,
// counted as they arrive (before any latency), or until ctx is done.
func (s *Server) WaitRequests(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		got, arrived := s.stats.Requests, s.arrived
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return fmt.Errorf("fcmtest: %d of %d requests arrived: %w", got, n, ctx.Err())
		}
	}
}

// SetRecord turns the record of requests on (the default) or off. A
// long-running program such as a benchmark turns it off so that memory stays
// flat; Stats still counts.
func (s *Server) SetRecord(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noRecord = !on
}

// Reset forgets all programmed behaviour, the record and the counters, and
// turns recording back on.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fixed = make(map[string]Code)
	s.sequences = make(map[string][]Code)
	s.down = false
	s.latency = 0
	s.retryAfter = DefaultRetryAfter
	s.retry503 = 0
	s.noRecord = false
	s.requests = nil
	s.stats = Stats{}
}

// Requests returns a copy of every request recorded so far, in the order they
// were answered.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		out[i] = r.clone()
	}
	return out
}

// RequestsFor returns a copy of the recorded requests for token.
func (s *Server) RequestsFor(token string) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for _, r := range s.requests {
		if r.Token == token {
			out = append(out, r.clone())
		}
	}
	return out
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (r Request) clone() Request {
	c := r
	if r.Data != nil {
		c.Data = make(map[string]string, len(r.Data))
		for k, v := range r.Data {
			c.Data[k] = v
		}
	}
	c.Message = append(json.RawMessage(nil), r.Message...)
	return c
}

// Observe makes f be called with every request the Server answers, as it
// answers it (outside the Server's lock, so f may call the Server), even
// while recording is off. A program such as cmd/fcmdouble logs them so.
func (s *Server) Observe(f func(Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observe = f
}

// TokenPrefix is the start of an FCM token, enough to tell devices apart in
// a log or a listing without showing the device's whole push address.
func TokenPrefix(token string) string {
	const n = 12
	if len(token) <= n {
		return token
	}
	return token[:n] + "…"
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/projects/{project}/{method}", s.serveSend)
	mux.HandleFunc("GET /messages", s.serveMessages)
	return mux
}

// listedMessage is one request as GET /messages lists it.
type listedMessage struct {
	Time         time.Time                  `json:"time"`
	Project      string                     `json:"project"`
	Token        string                     `json:"token"` // TokenPrefix
	ValidateOnly bool                       `json:"validate_only"`
	Answer       Code                       `json:"answer"`
	Status       int                        `json:"status"`
	Message      map[string]json.RawMessage `json:"message,omitempty"`
}

// serveMessages lists the recorded requests, newest first, so that a
// developer pointing pushreg at the double sees what arrived. A token is
// shown by its prefix only, in message.token too.
func (s *Server) serveMessages(w http.ResponseWriter, r *http.Request) {
	reqs := s.Requests()
	out := make([]listedMessage, 0, len(reqs))
	for i := len(reqs) - 1; i >= 0; i-- {
		q := reqs[i]
		m := listedMessage{Time: q.Time, Project: q.Project, Token: TokenPrefix(q.Token), ValidateOnly: q.ValidateOnly,
			Answer: q.Answer, Status: q.Status}
		if json.Unmarshal(q.Message, &m.Message) == nil {
			if _, ok := m.Message["token"]; ok {
				m.Message["token"], _ = json.Marshal(m.Token)
			}
		}
		out = append(out, m)
	}
	// Indented: a developer reads this with curl.
	b, err := json.MarshalIndent(map[string]any{"messages": out}, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Write(append(b, '\n'))
}

// sendRequest is the body of messages:send.
type sendRequest struct {
	ValidateOnly bool            `json:"validate_only"`
	Message      json.RawMessage `json:"message"`
}

// target is the part of a message the double looks at.
type target struct {
	Token     string            `json:"token"`
	Topic     string            `json:"topic"`
	Condition string            `json:"condition"`
	Data      map[string]string `json:"data"`
}

func (s *Server) serveSend(w http.ResponseWriter, r *http.Request) {
	// The method is part of the last path segment ("messages:send"), which
	// ServeMux patterns cannot split, hence the check here.
	if r.PathValue("method") != "messages:send" {
		writeStatus(w, http.StatusNotFound, "NOT_FOUND", "Method not found.", nil)
		return
	}
	arrived := time.Now()
	s.enter()
	defer s.leave()

	if !s.wait(r) {
		// The client gave up or the Server is closing: nobody reads an answer.
		writeStatus(w, http.StatusServiceUnavailable, "UNAVAILABLE", "The service is currently unavailable.", nil)
		return
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	var req sendRequest
	var msg target
	if err := json.Unmarshal(body, &req); err != nil || len(req.Message) == 0 || json.Unmarshal(req.Message, &msg) != nil {
		rec := Request{Project: r.PathValue("project"), Time: arrived, Answer: InvalidMessage, Status: http.StatusBadRequest}
		s.record(rec)
		s.notify(rec)
		writeStatus(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid JSON payload received.", nil)
		return
	}

	rec := Request{
		Project:      r.PathValue("project"),
		Token:        msg.Token,
		ValidateOnly: req.ValidateOnly,
		Data:         msg.Data,
		Message:      req.Message,
		Time:         arrived,
	}
	s.respond(w, rec, msg)
}

// reply is one answer, decided under the lock and written outside it.
type reply struct {
	code       Code
	status     int
	name       string // the message name, on success
	rpc        string
	message    string
	details    []any
	retryAfter time.Duration
}

// respond decides the answer, records it, and writes it.
func (s *Server) respond(w http.ResponseWriter, rec Request, msg target) {
	s.mu.Lock()
	rep := s.decideLocked(rec, msg)
	rec.Answer, rec.Status = rep.code, rep.status
	s.recordLocked(rec)
	s.mu.Unlock()
	s.notify(rec)

	if rep.status == http.StatusOK {
		writeJSON(w, http.StatusOK, map[string]string{"name": rep.name})
		return
	}
	if rep.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(rep.retryAfter.Seconds()))))
	}
	writeStatus(w, rep.status, rep.rpc, rep.message, rep.details)
}

// Answers that are not programmable, recorded in Request.Answer.
const (
	// WrongProject is the answer to a request for a project other than
	// ProjectID: 403 PERMISSION_DENIED without an FcmError detail.
	WrongProject Code = "WRONG_PROJECT"
	// InvalidMessage is the answer to a data payload FCM refuses whatever the
	// token (a reserved key, or more than 4096 bytes): 400 INVALID_ARGUMENT
	// with a field violation on message.data.
	InvalidMessage Code = "INVALID_MESSAGE"
)

func (s *Server) decideLocked(rec Request, msg target) reply {
	if rec.Project != s.project {
		return reply{
			code:   WrongProject,
			status: http.StatusForbidden,
			rpc:    "PERMISSION_DENIED",
			message: fmt.Sprintf("Permission 'cloudmessaging.messages.create' denied on resource "+
				"'//cloudresourcemanager.googleapis.com/projects/%s' (or it may not exist).", rec.Project),
		}
	}
	code := s.codeLocked(rec.Token)
	if code == OK {
		if problem := messageProblem(msg); problem != "" {
			return reply{
				code:    InvalidMessage,
				status:  http.StatusBadRequest,
				rpc:     "INVALID_ARGUMENT",
				message: "Invalid value at 'message.data': " + problem,
				details: []any{fcmDetail(InvalidArgument), badRequest("message.data", problem)},
			}
		}
		s.nextID++
		id := fmt.Sprintf("0:%d%%fcmtest", s.nextID)
		if rec.ValidateOnly {
			id = DryRunMessageID
		}
		return reply{code: OK, status: http.StatusOK, name: fmt.Sprintf("projects/%s/messages/%s", rec.Project, id)}
	}
	a, _ := answerFor(code)
	rep := reply{code: code, status: a.status, rpc: a.rpc, message: a.message, details: []any{fcmDetail(code)}}
	if a.field != "" {
		rep.details = append(rep.details, badRequest(a.field, a.message))
	}
	switch code {
	case QuotaExceeded:
		rep.retryAfter = s.retryAfter
	case Unavailable:
		rep.retryAfter = s.retry503
	}
	return rep
}

// codeLocked returns the programmed answer for token, using up one step of its
// sequence if it has one.
func (s *Server) codeLocked(token string) Code {
	if s.down {
		return Unavailable
	}
	if seq := s.sequences[token]; len(seq) > 0 {
		s.sequences[token] = seq[1:]
		return seq[0]
	}
	if c, ok := s.fixed[token]; ok {
		return c
	}
	return OK
}

// messageProblem reports, as FCM would, a data payload FCM refuses whatever
// the token: a reserved key or more than 4096 bytes.
func messageProblem(msg target) string {
	size := 0
	for k, v := range msg.Data {
		size += len(k) + len(v)
		switch {
		case k == "from" || k == "notification" || k == "message_type":
			return fmt.Sprintf("reserved key %q", k)
		case strings.HasPrefix(k, "google.") || strings.HasPrefix(k, "gcm."):
			return fmt.Sprintf("reserved key prefix in %q", k)
		}
	}
	if size > 4096 {
		return fmt.Sprintf("data payload of %d bytes exceeds 4096", size)
	}
	return ""
}

// wait holds the request for the configured latency. It reports false when the
// client went away or the Server is closing first.
func (s *Server) wait(r *http.Request) bool {
	s.mu.Lock()
	d := s.latency
	s.mu.Unlock()
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.done:
		return false
	}
}

func (s *Server) enter() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	close(s.arrived)
	s.arrived = make(chan struct{})
	s.inFlight++
	if s.inFlight > s.stats.MaxInFlight {
		s.stats.MaxInFlight = s.inFlight
	}
}

func (s *Server) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight--
}

// notify passes rec to the Observe function, if any.
func (s *Server) notify(rec Request) {
	s.mu.Lock()
	f := s.observe
	s.mu.Unlock()
	if f != nil {
		f(rec.clone())
	}
}

func (s *Server) record(rec Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordLocked(rec)
}

func (s *Server) recordLocked(rec Request) {
	switch {
	case rec.Status != http.StatusOK:
		s.stats.Failed++
	case rec.ValidateOnly:
		s.stats.DryRuns++
	default:
		s.stats.Sent++
	}
	if !s.noRecord {
		s.requests = append(s.requests, rec)
	}
}

func fcmDetail(c Code) map[string]any {
	return map[string]any{
		"@type":     "type.googleapis.com/google.firebase.fcm.v1.FcmError",
		"errorCode": string(c),
	}
}

func badRequest(field, description string) map[string]any {
	return map[string]any{
		"@type": "type.googleapis.com/google.rpc.BadRequest",
		"fieldViolations": []map[string]string{
			{"field": field, "description": description},
		},
	}
}

// writeStatus writes a google.rpc.Status error body, the shape every Google
// API, FCM included, answers errors with.
func writeStatus(w http.ResponseWriter, status int, rpc, message string, details []any) {
	body := map[string]any{
		"code":    status,
		"message": message,
		"status":  rpc,
	}
	if len(details) > 0 {
		body["details"] = details
	}
	writeJSON(w, status, map[string]any{"error": body})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only maps of strings are marshalled here; failing is a bug.
		panic(errors.Join(errors.New("fcmtest: marshal answer"), err))
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	w.Write(b)
}
