package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	// The SQLite driver FerretDB itself uses, for a second connection to
	// its files.
	_ "modernc.org/sqlite"
)

// What FerretDB v1.24's SQLite backend (internal/backends/sqlite) names
// and queries.
const (
	// sqliteMetadataTable lists a database's collections and their tables.
	sqliteMetadataTable = "_ferretdb_collections"
	// sqliteIDExpr is what FerretDB compares when it pushes a filter that
	// is exactly {_id: <string or ObjectID>} down to SQL, and when it
	// updates or deletes documents by _id (metadata.IDColumn): `WHERE
	// _ferretdb_sjson->'$._id' = ?`. Its own _id index is on
	// _ferretdb_sjson->"_id", an expression SQLite does not match with
	// this one, so without an index on exactly this text every such
	// statement scans the table.
	sqliteIDExpr = `_ferretdb_sjson->'$._id'`
	// sqliteBusyTimeout is how long, in milliseconds, a statement waits
	// for FerretDB's connections to release the database (FerretDB's own
	// default).
	sqliteBusyTimeout = 10000
)

// What FerretDB v1.24's PostgreSQL backend (internal/backends/postgresql)
// names and queries.
const (
	// pgMetadataTable, in each database's schema, holds a document per
	// collection, naming its table.
	pgMetadataTable = "_ferretdb_database_metadata"
	// pgIDIndexDef indexes what FerretDB's pushed-down {_id: v} filter
	// compares, `_jsonb->$1 @> $2` with $1 = '_id': PostgreSQL matches the
	// expression once it plans with the values, and a btree index (such
	// as FerretDB's own on _jsonb->'_id') cannot serve @>.
	pgIDIndexDef = `USING gin ((_jsonb->'_id') jsonb_path_ops)`
)

// idIndexPrefix starts the name of the index added to a table; the name
// ends with the table's name on SQLite, with its OID on PostgreSQL (where
// a table's name may already take the whole 63 bytes a name can have).
// On SQLite FerretDB names its indexes "<table>_<index>", and a table's
// name begins as its collection's does, never with "$"; on PostgreSQL its
// index names all end with "_idx". So no index of FerretDB's can have
// this name.
const idIndexPrefix = "$pushreg_id_"

// databaseName is FerretDB's rule for database names
// (backends.validateDatabaseName).
var databaseName = regexp.MustCompile("^[a-zA-Z0-9_-]{1,63}$")

// EnsureIDIndexes gives every existing collection of database dbName the
// index FerretDB needs to find a document by _id without scanning the
// collection. It is idempotent and safe while the server runs. FerretDB
// does not know of these indexes: it lists indexes from its own metadata,
// so listIndexes does not show them and they cannot clash with its index
// commands. A dropped collection loses its index with its table, and a
// collection created later gets one the next time this runs.
//
// On SQLite, the index is on the expression FerretDB compares to find,
// update and delete by _id. On PostgreSQL, FerretDB updates and deletes
// through its own _id index, but finds by jsonb containment, which only a
// GIN index serves; and only in a plan made for the statement's values: a
// prepared statement of FerretDB's that PostgreSQL already planned
// generically (after five runs, with no index to prefer) keeps scanning
// until its connection is replaced, so this belongs at start-up.
func (s *Server) EnsureIDIndexes(ctx context.Context, dbName string) error {
	// The name becomes a file name or a schema's: FerretDB's own rule
	// keeps it to one harmless path element.
	if !databaseName.MatchString(dbName) {
		return fmt.Errorf("embedded: id indexes: bad database name %q", dbName)
	}
	if s.pgURL != "" {
		return ensurePostgreSQLIDIndexes(ctx, s.pgURL, dbName)
	}
	return ensureSQLiteIDIndexes(ctx, s.dir, dbName)
}

func ensureSQLiteIDIndexes(ctx context.Context, dir, dbName string) error {
	path := filepath.Join(dir, dbName+".sqlite")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		// FerretDB creates the file with the database's first collection.
		return nil
	}
	// mode=rw: never create a file FerretDB has not. BEGIN IMMEDIATE
	// takes the write lock up front, waiting out FerretDB's writers, so a
	// table seen in a transaction cannot be dropped before its index is
	// made.
	q := url.Values{}
	q.Set("mode", "rw")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout))
	q.Set("_txlock", "immediate")
	uri := (&url.URL{Scheme: "file", Path: path, OmitHost: true, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", uri)
	if err != nil {
		return fmt.Errorf("embedded: id indexes on %s: %w", dbName, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	tables, err := sqliteTables(ctx, db)
	if err != nil {
		return fmt.Errorf("embedded: id indexes on %s: %w", dbName, err)
	}
	for _, table := range tables {
		if err := ensureSQLiteIDIndex(ctx, db, table); err != nil {
			return fmt.Errorf("embedded: id index on %s.%s: %w", dbName, table, err)
		}
	}
	return nil
}

// sqliteTables returns the tables of FerretDB's collections.
func sqliteTables(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SELECT table_name FROM "+sqliteQuote(sqliteMetadataTable))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		tables = append(tables, t)
	}
	return tables, rows.Err()
}

// ensureSQLiteIDIndex indexes one table, unless FerretDB dropped it since
// the tables were listed.
func ensureSQLiteIDIndex(ctx context.Context, db *sql.DB, table string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	err = tx.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", table).Scan(&n)
	if err != nil || n == 0 {
		return err
	}
	_, err = tx.ExecContext(ctx, fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)",
		sqliteQuote(idIndexPrefix+table), sqliteQuote(table), sqliteIDExpr))
	if err != nil {
		return err
	}
	return tx.Commit()
}

// sqliteQuote quotes an identifier: FerretDB's table names come from
// collection names, which may hold any character but "$" and NUL.
func sqliteQuote(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

func ensurePostgreSQLIDIndexes(ctx context.Context, pgURL, dbName string) error {
	// A pool, as FerretDB opens one: the URL may carry pool settings.
	conn, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		return fmt.Errorf("embedded: id indexes on %s: %w", dbName, err)
	}
	defer conn.Close()

	// The schema and its metadata table appear with the first collection.
	var meta *uint32
	err = conn.QueryRow(ctx, "SELECT to_regclass($1)::oid", pgx.Identifier{dbName, pgMetadataTable}.Sanitize()).Scan(&meta)
	if err != nil || meta == nil {
		return wrapIDIndexErr(dbName, err)
	}
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT _jsonb->>'table' FROM %s", pgx.Identifier{dbName, pgMetadataTable}.Sanitize()))
	if err != nil {
		return wrapIDIndexErr(dbName, err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return wrapIDIndexErr(dbName, err)
	}
	for _, table := range tables {
		if err := ensurePostgreSQLIDIndex(ctx, conn, dbName, table); err != nil {
			return fmt.Errorf("embedded: id index on %s.%s: %w", dbName, table, err)
		}
	}
	return nil
}

// ensurePostgreSQLIDIndex indexes one table, unless FerretDB dropped it
// since the tables were listed. CREATE INDEX blocks the table's writes
// while it builds (CONCURRENTLY would leave an invalid index behind on
// failure, which IF NOT EXISTS then takes for done).
func ensurePostgreSQLIDIndex(ctx context.Context, conn *pgxpool.Pool, dbName, table string) error {
	qualified := pgx.Identifier{dbName, table}.Sanitize()
	var oid *uint32
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1)::oid", qualified).Scan(&oid); err != nil || oid == nil {
		return err
	}
	name := pgx.Identifier{fmt.Sprintf("%s%d", idIndexPrefix, *oid)}.Sanitize()
	_, err := conn.Exec(ctx, fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s %s", name, qualified, pgIDIndexDef))
	const undefinedTable = "42P01"
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == undefinedTable {
		return nil
	}
	return err
}

func wrapIDIndexErr(dbName string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("embedded: id indexes on %s: %w", dbName, err)
}
