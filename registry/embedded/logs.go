package embedded

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// quietEndSessions wraps the handler FerretDB logs to, lowering to debug
// exactly two known warnings that healthy use produces:
//
//   - the answer "no such command: 'endSessions'". The Go driver sends
//     endSessions from Client.Disconnect whenever it used a session (there
//     is no option to stop it), FerretDB v1 does not implement the command,
//     and it logs every failed command at warn, as two records: a header,
//     then the message. So every clean shutdown warned.
//   - "Failed to set deadline: … use of closed network connection": when a
//     connection ends, FerretDB v1's clientconn closes it and cancels its
//     context at once, and a goroutine that picks the cancellation sets a
//     deadline on the already closed connection (a race, on any connection).
//
// Any other failed command still reaches h at warn, header and message
// both, as does any other warning.
func quietEndSessions(h slog.Handler) slog.Handler {
	return &endSessionsFilter{h: h, st: &filterState{}}
}

type endSessionsFilter struct {
	h  slog.Handler
	st *filterState
}

// filterState holds a response header until the message after it shows
// whether the pair is the endSessions refusal. FerretDB logs the two back
// to back from the connection's goroutine, on the connection's logger.
type filterState struct {
	mu     sync.Mutex
	header *slog.Record
}

const (
	responseHeader  = "Response header: "
	responseMessage = "Response message:"
	endSessionsErr  = `"errmsg": "no such command: 'endSessions'"`
	setDeadline     = "Failed to set deadline: "
	closedConn      = "use of closed network connection"
)

func (f *endSessionsFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return f.h.Enabled(ctx, l)
}

func (f *endSessionsFilter) Handle(ctx context.Context, r slog.Record) error {
	f.st.mu.Lock()
	held := f.st.header
	f.st.header = nil
	if r.Level == slog.LevelWarn && strings.HasPrefix(r.Message, responseHeader) {
		c := r.Clone()
		f.st.header = &c
		f.st.mu.Unlock()
		return f.flush(ctx, held)
	}
	f.st.mu.Unlock()
	if r.Level == slog.LevelWarn && strings.HasPrefix(r.Message, setDeadline) && strings.HasSuffix(r.Message, closedConn) {
		r.Level = slog.LevelDebug
	}
	if held != nil && strings.HasPrefix(r.Message, responseMessage) && strings.Contains(r.Message, endSessionsErr) {
		held.Level, r.Level = slog.LevelDebug, slog.LevelDebug
	}
	if err := f.flush(ctx, held); err != nil {
		return err
	}
	if !f.h.Enabled(ctx, r.Level) {
		return nil
	}
	return f.h.Handle(ctx, r)
}

func (f *endSessionsFilter) flush(ctx context.Context, r *slog.Record) error {
	if r == nil || !f.h.Enabled(ctx, r.Level) {
		return nil
	}
	return f.h.Handle(ctx, *r)
}

func (f *endSessionsFilter) WithAttrs(as []slog.Attr) slog.Handler {
	return &endSessionsFilter{h: f.h.WithAttrs(as), st: &filterState{}}
}

func (f *endSessionsFilter) WithGroup(name string) slog.Handler {
	return &endSessionsFilter{h: f.h.WithGroup(name), st: &filterState{}}
}
