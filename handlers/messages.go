package handlers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"firebase.google.com/go/v4/messaging"
	"github.com/labstack/echo/v4"

	"github.com/pushreg/pushreg/auth"
	"github.com/pushreg/pushreg/push"
)

// Pusher delivers messages to users' devices; *push.Deliverer is one.
type Pusher interface {
	Deliver(ctx context.Context, userID string, msg *push.Message, dryRun bool) (push.Report, error)
	DeliverMany(ctx context.Context, userIDs []string, msg *push.Message, dryRun bool) ([]push.Report, error)
}

// noPusher is the Pusher of a server built without one: it refuses what
// FCM would refuse, and everything else as not configured.
type noPusher struct{}

func (noPusher) Deliver(_ context.Context, _ string, msg *push.Message, _ bool) (push.Report, error) {
	if err := push.CheckMessage(msg); err != nil {
		return push.Report{}, err
	}
	return push.Report{}, push.ErrNotConfigured
}

func (noPusher) DeliverMany(_ context.Context, _ []string, msg *push.Message, _ bool) ([]push.Report, error) {
	if err := push.CheckMessage(msg); err != nil {
		return nil, err
	}
	return nil, push.ErrNotConfigured
}

// headerIdempotencyKey names the request header that makes a send safe to
// retry; headerReplayed marks an answer replayed from an earlier request.
const (
	headerIdempotencyKey = "Idempotency-Key"
	headerReplayed       = "Idempotent-Replayed"
	maxIdempotencyKey    = 255
	// recordTimeout bounds storing or releasing an idempotency record.
	recordTimeout = 5 * time.Second
)

func (s *server) messageRoutes(g *echo.Group) {
	send := []echo.MiddlewareFunc{s.authenticate(true), requireAdmin(auth.ScopePushSend)}
	g.POST("/users/:user_id/messages", s.sendToUser, send...)
	g.POST("/messages", s.sendToUsers, send...)
}

// notificationJSON is FCM's notification.
type notificationJSON struct {
	Title string `json:"title"`
	Body  string `json:"body"`
	Image string `json:"image"`
}

// messageJSON is an FCM v1 message without its target. The platform
// options are decoded by the Firebase SDK's own types, whose JSON is FCM's.
type messageJSON struct {
	Notification *notificationJSON        `json:"notification"`
	Data         dataJSON                 `json:"data"`
	Android      *messaging.AndroidConfig `json:"android"`
	APNS         *messaging.APNSConfig    `json:"apns"`
	Webpush      *messaging.WebpushConfig `json:"webpush"`
	FCMOptions   *messaging.FCMOptions    `json:"fcm_options"`
	DryRun       bool                     `json:"dry_run"`
}

func (m *messageJSON) message() *push.Message {
	msg := &push.Message{Data: m.Data, Android: m.Android, APNS: m.APNS, Webpush: m.Webpush, FCMOptions: m.FCMOptions}
	if n := m.Notification; n != nil {
		msg.Notification = &messaging.Notification{Title: n.Title, Body: n.Body, ImageURL: n.Image}
	}
	return msg
}

type bulkMessageJSON struct {
	messageJSON
	UserIDs []string `json:"user_ids"`
}

// dataJSON is FCM's data: string values only. FCM refuses any other value,
// so decoding refuses it too, naming the key, rather than turning 3 into
// "3" behind the sender's back.
type dataJSON map[string]string

func (d *dataJSON) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := make(dataJSON, len(raw))
	for k, v := range raw {
		var s string
		if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
			return &fieldError{field: "data." + k, reason: "must be a string (FCM data values are strings: encode numbers and objects as text)"}
		}
		out[k] = s
	}
	*d = out
	return nil
}

// fieldError is a decoding failure that names the field at fault.
type fieldError struct{ field, reason string }

func (e *fieldError) Error() string { return e.field + ": " + e.reason }

// readMessage reads the whole body, which the idempotency key's request
// hash covers, and decodes it strictly: an unknown field is a mistake in a
// message that would otherwise go out without it.
func readMessage(c echo.Context, v any) ([]byte, error) {
	if mediaType(c) != echo.MIMEApplicationJSON {
		return nil, &apiError{p: problem{Status: http.StatusUnsupportedMediaType, Title: "Unsupported Media Type",
			Code: "unsupported_media_type", Detail: "Content-Type must be application/json"}}
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return nil, he // the body limit
		}
		return nil, errorf(http.StatusBadRequest, "invalid_request", "the body could not be read")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	var fe *fieldError
	switch {
	case errors.As(err, &fe):
		return nil, errorf(http.StatusBadRequest, "invalid_request", fe.Error())
	case err != nil && strings.HasPrefix(err.Error(), "json: unknown field "):
		return nil, errorf(http.StatusBadRequest, "invalid_request", strings.TrimPrefix(err.Error(), "json: "))
	case err != nil:
		return nil, jsonError(err)
	case dec.More():
		return nil, errorf(http.StatusBadRequest, "invalid_request", "the body must hold one JSON value")
	}
	return body, nil
}

type errorJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type deviceResultJSON struct {
	DeviceID  string     `json:"device_id"`
	MessageID string     `json:"message_id,omitempty"`
	Error     *errorJSON `json:"error,omitempty"`
	Attempts  int        `json:"attempts,omitempty"`
	Pruned    bool       `json:"pruned,omitempty"`
}

// deliveryJSON is one user's delivery report.
type deliveryJSON struct {
	UserID string `json:"user_id"`
	// PushID is in every message's data (push.PushIDKey), for apps to drop
	// a message FCM delivers twice.
	PushID  string             `json:"push_id,omitempty"`
	DryRun  bool               `json:"dry_run,omitempty"`
	Error   *errorJSON         `json:"error,omitempty"`
	Devices int                `json:"devices"`
	Sent    int                `json:"sent"`
	Failed  int                `json:"failed"`
	Pruned  int                `json:"pruned"`
	Results []deviceResultJSON `json:"results"`
}

func toDeliveryJSON(r push.Report, dryRun bool) deliveryJSON {
	out := deliveryJSON{UserID: r.UserID, PushID: r.PushID, DryRun: dryRun, Devices: r.Devices, Sent: r.Sent, Failed: r.Failed,
		Pruned: r.Pruned, Results: make([]deviceResultJSON, len(r.Results))}
	if r.Err != nil {
		out.Error = &errorJSON{Code: "not_found", Message: "no such user"}
	}
	for i, d := range r.Results {
		res := deviceResultJSON{DeviceID: d.DeviceID, MessageID: d.MessageID, Pruned: d.Pruned}
		if d.Code != "" {
			res.Error = &errorJSON{Code: d.Code, Message: d.Message}
			res.Attempts = d.Attempts
		}
		out.Results[i] = res
	}
	return out
}

type bulkDeliveryJSON struct {
	Devices int            `json:"devices"`
	Sent    int            `json:"sent"`
	Failed  int            `json:"failed"`
	Pruned  int            `json:"pruned"`
	Results []deliveryJSON `json:"results"`
}

// sendToUser sends a message to every pushable device of one user.
func (s *server) sendToUser(c echo.Context) error {
	var req messageJSON
	body, err := readMessage(c, &req)
	if err != nil {
		return err
	}
	msg := req.message()
	if err := push.CheckMessage(msg); err != nil {
		return err
	}
	return s.idempotent(c, body, func(ctx context.Context) (any, error) {
		rep, err := s.cfg.Push.Deliver(ctx, c.Param("user_id"), msg, req.DryRun)
		if err != nil {
			return nil, err
		}
		return toDeliveryJSON(rep, req.DryRun), nil
	})
}

// sendToUsers sends a message to every pushable device of up to
// push.MaxUsers users. An unknown user gets a report with an error; the
// others are sent to.
func (s *server) sendToUsers(c echo.Context) error {
	var req bulkMessageJSON
	body, err := readMessage(c, &req)
	if err != nil {
		return err
	}
	if n := len(req.UserIDs); n == 0 || n > push.MaxUsers {
		return errorf(http.StatusBadRequest, "invalid_request", fmt.Sprintf("user_ids: must list 1 to %d user IDs, not %d", push.MaxUsers, n))
	}
	for _, id := range req.UserIDs {
		if id == "" {
			return errorf(http.StatusBadRequest, "invalid_request", "user_ids: must not hold an empty ID")
		}
	}
	msg := req.message()
	if err := push.CheckMessage(msg); err != nil {
		return err
	}
	return s.idempotent(c, body, func(ctx context.Context) (any, error) {
		reps, err := s.cfg.Push.DeliverMany(ctx, req.UserIDs, msg, req.DryRun)
		if err != nil {
			return nil, err
		}
		out := bulkDeliveryJSON{Results: make([]deliveryJSON, len(reps))}
		for i, r := range reps {
			out.Results[i] = toDeliveryJSON(r, req.DryRun)
			out.Devices, out.Sent, out.Failed, out.Pruned = out.Devices+r.Devices, out.Sent+r.Sent, out.Failed+r.Failed, out.Pruned+r.Pruned
		}
		return out, nil
	})
}

// idempotent runs a send and answers 200 with its result. With an
// Idempotency-Key header, the same key from the same principal within
// registry.IdempotencyTTL replays the stored answer instead of sending
// again; a different request under the key is 422, and a request while
// the first one still runs is 409. Only a 200 is remembered: after an error
// the key is released, so the client may retry with it.
//
// The send runs on a context detached from the client's connection, bounded
// by the request timeout: a client that gives up and retries with its key
// gets the whole result, never a half-sent one.
func (s *server) idempotent(c echo.Context, body []byte, run func(context.Context) (any, error)) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), s.cfg.RequestTimeout)
	defer cancel()
	key := c.Request().Header.Get(headerIdempotencyKey)
	if key == "" {
		out, err := run(ctx)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
	if !validIdempotencyKey(key) {
		return errorf(http.StatusBadRequest, "invalid_request",
			fmt.Sprintf("%s: must be 1 to %d printable ASCII characters", headerIdempotencyKey, maxIdempotencyKey))
	}

	// The lease outlives the request's own bound and the recording after
	// it, so a pending record is only ever taken over from a request that
	// died.
	claim, err := s.devices.ClaimIdempotencyKey(ctx, currentPrincipal(c).actor(), key, requestHash(c, body),
		s.cfg.RequestTimeout+time.Minute)
	if err != nil {
		return err
	}
	if r := claim.Replay; r != nil {
		c.Response().Header().Set(headerReplayed, "true")
		return c.JSONBlob(r.Status, r.Body)
	}
	out, err := run(ctx)
	// The outcome is recorded even when the send used up the request's
	// time: an unrecorded send could be repeated once the lease ends.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer rcancel()
	if err != nil {
		if rerr := s.devices.ReleaseIdempotencyKey(rctx, claim); rerr != nil {
			logger(c, s.log).Warn("releasing an idempotency key failed; it stays busy until its lease ends", "error", rerr.Error())
		}
		return err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	if err := s.devices.CompleteIdempotencyKey(rctx, claim, http.StatusOK, b); err != nil {
		// The send happened: answer it. A retry with the key may send
		// again once the lease ends, which is worth an operator's look.
		logger(c, s.log).Error("storing an idempotent response failed", "error", err.Error())
	}
	return c.JSONBlob(http.StatusOK, b)
}

func validIdempotencyKey(k string) bool {
	if k == "" || len(k) > maxIdempotencyKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// requestHash identifies a request for its idempotency key: method, path
// and body, byte for byte. Only this hash is stored, never the body.
func requestHash(c echo.Context, body []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", c.Request().Method, c.Request().URL.EscapedPath())
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}
