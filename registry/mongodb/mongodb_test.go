package mongodb_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/pushreg/pushreg/registry/mongodb"
)

func TestWrapClassifiesStoreErrors(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		unavailable bool
		duplicate   bool
	}{
		// The FerretDB messages are ones its v1.24 SQLite handler answered
		// while the store stopped under load (TestFaultStoreStopsMidLoad):
		// pushreg once answered them with 500.
		{"FerretDB SQLite rolled back at shutdown",
			mongo.CommandError{Code: 1, Name: "InternalError", Message: "[msg_findandmodify.go:196 handler.(*Handler).findAndModifyDocument] [db.go:167 fsql.(*DB).InTransaction] sql: transaction has already been committed or rolled back"},
			true, false},
		{"FerretDB SQLite query cancelled at shutdown",
			mongo.CommandError{Code: 1, Name: "InternalError", Message: "[msg_findandmodify.go:137 handler.(*Handler).findAndModifyDocument] [collection.go:94 sqlite.(*collection).Query] context canceled"},
			true, false},
		{"FerretDB PostgreSQL shut down",
			mongo.CommandError{Code: 1, Name: "InternalError", Message: "FATAL: terminating connection due to administrator command (SQLSTATE 57P01)"},
			true, false},
		{"FerretDB insert on a closed database",
			mongo.WriteException{WriteErrors: []mongo.WriteError{{Code: 1, Message: "sql: database is closed"}}},
			true, false},
		{"MongoDB stepping down", mongo.CommandError{Code: 189, Name: "PrimarySteppedDown"}, true, false},
		{"deadline", fmt.Errorf("find: %w", context.DeadlineExceeded), true, false},
		{"duplicate key",
			mongo.WriteException{WriteErrors: []mongo.WriteError{{Code: 11000, Message: "E11000 duplicate key error"}}},
			false, true},
		// An internal error that is no interruption is a fault to see, not
		// to retry.
		{"other internal error", mongo.CommandError{Code: 1, Name: "InternalError", Message: "unexpected type"}, false, false},
		{"bad query", mongo.CommandError{Code: 2, Name: "BadValue", Message: "unknown operator: $foo"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mongodb.Wrap(tt.err)
			if got := errors.Is(err, mongodb.ErrUnavailable); got != tt.unavailable {
				t.Errorf("Wrap(%v) is ErrUnavailable: %v, want %v", tt.err, got, tt.unavailable)
			}
			if got := errors.Is(err, mongodb.ErrDuplicate); got != tt.duplicate {
				t.Errorf("Wrap(%v) is ErrDuplicate: %v, want %v", tt.err, got, tt.duplicate)
			}
			if !strings.Contains(err.Error(), tt.err.Error()) {
				t.Errorf("Wrap(%v) = %v, lost the driver's error", tt.err, err)
			}
		})
	}
}
