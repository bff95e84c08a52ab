package handlers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pushreg/pushreg/auth"
)

// Limits of POST /v1/admin/import.
const (
	importPath = "/v1/admin/import"
	// ImportBodyLimit is the largest import body; the global 1 MiB limit
	// does not apply to the route.
	ImportBodyLimit = 256 << 20
	// ImportLineLimit is the longest line of an import; a longer line is a
	// line error, and the lines after it are read as usual.
	ImportLineLimit = 1 << 20
	// ImportTimeout bounds an import's work, and the reading of its body
	// and writing of its answer, in place of the 15 s every other request
	// gets: a large import streams for minutes.
	ImportTimeout = 30 * time.Minute
)

// importRoute is the admin import, which is no member of the /v1 group:
// the group's 15 s timeout would cut a large import short, and a timeout
// can only be shortened by a middleware nested under it.
func (s *server) importRoute(e *echo.Echo) {
	e.POST(importPath, s.importUsers, withTimeout(ImportTimeout), renderWith(renderProblemJSON),
		s.authenticate(true), requireAdmin(""))
}

type importLineJSON struct {
	Username     string             `json:"username"`
	Email        *string            `json:"email"`
	PasswordHash string             `json:"password_hash"`
	Roles        []string           `json:"roles"`
	Devices      []importDeviceJSON `json:"devices"`
}

type importDeviceJSON struct {
	DeviceID   string `json:"device_id"`
	FCMToken   string `json:"fcm_token"`
	Platform   string `json:"platform"`
	LastSeenAt string `json:"last_seen_at"`
}

type importErrorJSON struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

type importResponse struct {
	UsersCreated  int               `json:"users_created"`
	UsersUpdated  int               `json:"users_updated"`
	DevicesBound  int               `json:"devices_bound"`
	Errors        []importErrorJSON `json:"errors"`
	ErrorsOmitted int               `json:"errors_omitted"`
}

var errImportTooLarge = &apiError{p: problem{Status: http.StatusRequestEntityTooLarge, Title: "Request Entity Too Large",
	Code: "body_too_large", Detail: "an import body may be at most 256 MiB"}}

// importUsers streams an NDJSON body, one user a line, into auth.Import.
func (s *server) importUsers(c echo.Context) error {
	if mediaType(c) != "application/x-ndjson" {
		return &apiError{p: problem{Status: http.StatusUnsupportedMediaType, Title: "Unsupported Media Type",
			Code: "unsupported_media_type", Detail: "Content-Type must be application/x-ndjson"}}
	}
	req := c.Request()
	if req.ContentLength > ImportBodyLimit {
		return errImportTooLarge
	}
	// The server's 30 s read and write deadlines are for requests that
	// fit in memory; an import may take until its own bound.
	rc := http.NewResponseController(c.Response())
	deadline := time.Now().Add(ImportTimeout)
	_ = rc.SetReadDeadline(deadline) // not every writer supports it; the tests' does
	_ = rc.SetWriteDeadline(deadline)

	body := http.MaxBytesReader(c.Response(), req.Body, ImportBodyLimit)
	lines := newLineReader(body)
	opts := auth.ImportOptions{AdminID: currentPrincipal(c).userID(), Validate: c.QueryParam("validate") == "true"}
	res, err := s.auth.Import(req.Context(), opts, lines.next)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return errImportTooLarge
	case errors.Is(err, errBodyRead):
		// The client stopped sending (or its connection broke): its
		// fault, not the server's, whatever landed before.
		return &apiError{p: problem{Status: http.StatusBadRequest, Title: "Bad Request", Code: "invalid_request",
			Detail: "the request body could not be read to its end; the lines before the failure were imported"}}
	case err != nil:
		return err
	}
	out := importResponse{UsersCreated: res.UsersCreated, UsersUpdated: res.UsersUpdated, DevicesBound: res.DevicesBound,
		Errors: make([]importErrorJSON, len(res.Errors)), ErrorsOmitted: res.ErrorsOmitted}
	for i, e := range res.Errors {
		out.Errors[i] = importErrorJSON{Line: e.Line, Error: e.Message}
	}
	return c.JSON(http.StatusOK, out)
}

// errBodyRead is a failure to read the import body.
var errBodyRead = errors.New("reading the import body")

// lineReader reads an import body line by line, never holding more than
// one line (of at most ImportLineLimit bytes) in memory.
type lineReader struct {
	r *bufio.Reader
	n int
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, ImportLineLimit+1)}
}

// next returns the next non-blank line as a user, or the line's error;
// io.EOF at the end of the body.
func (lr *lineReader) next() (auth.ImportLine, error) {
	for {
		line, err := lr.r.ReadSlice('\n')
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
			return auth.ImportLine{}, fmt.Errorf("%w: %w", errBodyRead, err)
		}
		if len(line) == 0 && err != nil {
			return auth.ImportLine{}, err
		}
		lr.n++
		if errors.Is(err, bufio.ErrBufferFull) {
			if err := lr.skipLine(); err != nil && !errors.Is(err, io.EOF) {
				return auth.ImportLine{}, fmt.Errorf("%w: %w", errBodyRead, err)
			}
			return auth.ImportLine{Number: lr.n, Err: fmt.Errorf("%w: longer than %d bytes", auth.ErrImportLineTooLong, ImportLineLimit)}, nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			if err != nil {
				return auth.ImportLine{}, err
			}
			continue // blank lines are allowed, and counted
		}
		u, perr := parseImportLine(line)
		return auth.ImportLine{Number: lr.n, User: u, Err: perr}, nil
	}
}

// skipLine reads past the rest of a line too long to hold.
func (lr *lineReader) skipLine() error {
	for {
		_, err := lr.r.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
}

// parseImportLine decodes one line strictly (unknown fields are errors),
// with errors that name the field and never quote a value.
func parseImportLine(line []byte) (auth.ImportUser, error) {
	var l importLineJSON
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return auth.ImportUser{}, lineJSONError(err)
	}
	if dec.More() {
		return auth.ImportUser{}, &auth.InvalidInputError{Field: "line", Reason: "must hold one JSON object"}
	}
	u := auth.ImportUser{Username: l.Username, Email: l.Email, PasswordHash: l.PasswordHash, Roles: l.Roles}
	for i, d := range l.Devices {
		dev := auth.ImportDevice{DeviceID: d.DeviceID, FCMToken: d.FCMToken, Platform: d.Platform}
		if d.LastSeenAt != "" {
			t, err := time.Parse(time.RFC3339, d.LastSeenAt)
			if err != nil {
				return auth.ImportUser{}, &auth.InvalidInputError{Field: fmt.Sprintf("devices[%d].last_seen_at", i),
					Reason: "must be an RFC 3339 time"}
			}
			dev.LastSeenAt = t
		}
		u.Devices = append(u.Devices, dev)
	}
	return u, nil
}

var fieldName = regexp.MustCompile(`^"[A-Za-z0-9_]{1,40}"$`)

func lineJSONError(err error) error {
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return &auth.InvalidInputError{Field: te.Field, Reason: "must be a " + jsonKind(te.Type.Kind().String())}
	case errors.As(err, &te):
		return &auth.InvalidInputError{Field: "line", Reason: "must be a JSON object"}
	}
	// encoding/json says `json: unknown field "name"`. The name is said
	// only when it looks like a field name: a value pasted as a key (a
	// hash, a token) is not echoed.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if fieldName.MatchString(name) {
			return &auth.InvalidInputError{Field: "line", Reason: "unknown field " + name}
		}
		return &auth.InvalidInputError{Field: "line", Reason: "unknown field"}
	}
	return &auth.InvalidInputError{Field: "line", Reason: "is not valid JSON"}
}
