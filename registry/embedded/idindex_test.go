package embedded_test

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry/embedded"
	"github.com/pushreg/pushreg/registry/mongodb"
)

// idIndexPrefix starts the names of EnsureIDIndexes's indexes.
const idIndexPrefix = "$pushreg_id_"

// startSQLite starts a server on SQLite files in a directory of the
// test's own and returns it, that directory and a client.
func startSQLite(t testing.TB) (*embedded.Server, string, *mongo.Client) {
	t.Helper()
	dir := t.TempDir()
	srv, err := embedded.Start(context.Background(), embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	client, err := mongodb.Connect(srv.URI(), mongodb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Disconnect(context.Background()) })
	return srv, dir, client
}

// envPostgreSQLURL names the variable that points the tests that run on
// both backends at a PostgreSQL database (scripts/postgres.sh start).
const envPostgreSQLURL = "PUSHREG_TEST_POSTGRES_URL"

// backends returns the FerretDB backends to test: SQLite, and PostgreSQL
// when envPostgreSQLURL is set.
func backends() []string {
	if os.Getenv(envPostgreSQLURL) != "" {
		return []string{"sqlite", "postgresql"}
	}
	return []string{"sqlite"}
}

// testStore is an embedded server of a test's own on one backend.
type testStore struct {
	srv    *embedded.Server
	client *mongo.Client
	dir    string // SQLite's files
	pgURL  string // or PostgreSQL's database
}

func startStore(t testing.TB, backend string) *testStore {
	t.Helper()
	if backend == "sqlite" {
		srv, dir, client := startSQLite(t)
		return &testStore{srv: srv, client: client, dir: dir}
	}
	s := &testStore{pgURL: os.Getenv(envPostgreSQLURL)}
	var err error
	s.srv, err = embedded.Start(context.Background(), embedded.Config{PostgreSQLURL: s.pgURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.srv.Close)
	s.client, err = mongodb.Connect(s.srv.URI(), mongodb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.client.Disconnect(context.Background()) })
	return s
}

// database returns a database no other test uses (PostgreSQL's outlives
// the server), dropped when the test ends.
func (s *testStore) database(t testing.TB, prefix string) *mongo.Database {
	t.Helper()
	db := s.client.Database(fmt.Sprintf("%s_%s", prefix, bson.NewObjectID().Hex()[16:]))
	t.Cleanup(func() { db.Drop(context.Background()) })
	return db
}

// findOnePlan returns the plan of FerretDB's statement for findOne({_id}).
func (s *testStore) findOnePlan(t *testing.T, coll *mongo.Collection) string {
	t.Helper()
	if s.pgURL == "" {
		return sqlitePlans(t, s.dir, coll.Database().Name(), coll.Name())["findOne"]
	}
	return pgFindOnePlan(t, s.pgURL, coll.Database().Name(), coll.Name())
}

// pgFindOnePlan returns PostgreSQL's plan for FerretDB v1.24's statement
// for findOne({_id: "a"}) (internal/backends/postgresql/query.go), with
// scans disabled: on a table this small a scan is cheaper, and the test is
// whether the index matches the statement, not the planner's costs.
// PostgreSQL plans an EXPLAIN with its parameters' values, as it plans a
// prepared statement's first runs.
func pgFindOnePlan(t *testing.T, pgURL, dbName, coll string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var table string
	err = conn.QueryRow(ctx, fmt.Sprintf(`SELECT _jsonb->>'table' FROM %s WHERE _jsonb->>'_id' = $1`,
		pgx.Identifier{dbName, "_ferretdb_database_metadata"}.Sanitize()), coll).Scan(&table)
	if err != nil {
		t.Fatalf("table of %s: %v", coll, err)
	}
	if _, err := conn.Exec(ctx, "SET enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	var plan string
	q := fmt.Sprintf(`EXPLAIN (FORMAT JSON) SELECT  _jsonb FROM %s WHERE _jsonb->$1 @> $2 LIMIT $3`, pgx.Identifier{dbName, table}.Sanitize())
	if err := conn.QueryRow(ctx, q, "_id", `"a"`, 1).Scan(&plan); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return plan
}

// usesIDIndex reports whether a plan reads through the index
// EnsureIDIndexes adds rather than scanning.
func (s *testStore) usesIDIndex(plan string) bool {
	if s.pgURL == "" {
		return searchesByIDIndex(plan)
	}
	return strings.Contains(plan, "Index Scan") && strings.Contains(plan, idIndexPrefix) && !strings.Contains(plan, "Seq Scan")
}

// idIndexes returns the names of the indexes EnsureIDIndexes made in a
// database.
func (s *testStore) idIndexes(t *testing.T, dbName string) []string {
	t.Helper()
	if s.pgURL == "" {
		return sqliteIndexes(t, s.dir, dbName)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND starts_with(indexname, $2)
		ORDER BY indexname`, dbName, idIndexPrefix)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// plan returns the query plan FerretDB reports, through its explain
// command, for find with filter (and limit, if not 0), as JSON: the plan of
// the very statement FerretDB would run. On SQLite it is made on one of
// FerretDB's connections, which may still hold the schema from before the
// index step (see sqlitePlans).
func plan(t *testing.T, coll *mongo.Collection, filter bson.D, limit int64) string {
	t.Helper()
	find := bson.D{{Key: "find", Value: coll.Name()}, {Key: "filter", Value: filter}}
	if limit != 0 {
		find = append(find, bson.E{Key: "limit", Value: limit})
	}
	var res struct {
		QueryPlanner   bson.Raw `bson:"queryPlanner"`
		FilterPushdown bool     `bson:"filterPushdown"`
	}
	err := coll.Database().RunCommand(context.Background(), bson.D{{Key: "explain", Value: find}}).Decode(&res)
	if err != nil {
		t.Fatalf("explain %v: %v", filter, err)
	}
	if !res.FilterPushdown {
		t.Fatalf("explain %v: filter not pushed down to SQL", filter)
	}
	return res.QueryPlanner.String()
}

// searchesByIDIndex reports whether a plan reads through the _id index
// EnsureIDIndexes adds rather than scanning.
func searchesByIDIndex(plan string) bool {
	return strings.Contains(plan, "SEARCH") && strings.Contains(plan, "USING INDEX "+idIndexPrefix) &&
		!strings.Contains(plan, "SCAN")
}

// ferretStatements are the statements FerretDB v1.24's SQLite backend runs
// by _id (internal/backends/sqlite/collection.go, query.go), with %s for
// the quoted table: a find of exactly {_id: …} without and with a limit
// (findOne), an update and a delete. Copied as text, not built from
// EnsureIDIndexes's constant, so a change on either side shows.
var ferretStatements = map[string]string{
	"find":    `SELECT  _ferretdb_sjson FROM %s WHERE _ferretdb_sjson->'$._id' = ?`,
	"findOne": `SELECT  _ferretdb_sjson FROM %s WHERE _ferretdb_sjson->'$._id' = ? LIMIT ?`,
	"update":  `UPDATE %s SET _ferretdb_sjson = ? WHERE _ferretdb_sjson->'$._id' = ?`,
	"delete":  `DELETE FROM %s WHERE _ferretdb_sjson->'$._id' IN (?, ?)`,
}

// sqlitePlans returns, by statement name, the plan SQLite makes for each
// of ferretStatements on the table of collection coll. It asks on a
// connection of its own: one of FerretDB's opened before the index was
// made plans an EXPLAIN with the schema it had (a real statement notices
// the change and is prepared again).
func sqlitePlans(t *testing.T, dir, dbName, coll string) map[string]string {
	t.Helper()
	db := openSQLite(t, dir, dbName)
	var table string
	if err := db.QueryRow(`SELECT table_name FROM "_ferretdb_collections" WHERE name = ?`, coll).Scan(&table); err != nil {
		t.Fatalf("table of %s: %v", coll, err)
	}
	plans := map[string]string{}
	for name, stmt := range ferretStatements {
		q := "EXPLAIN QUERY PLAN " + fmt.Sprintf(stmt, `"`+table+`"`)
		rows, err := db.Query(q, `"a"`, `"b"`)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		var details []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			details = append(details, detail)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		plans[name] = strings.Join(details, "; ")
	}
	return plans
}

func openSQLite(t *testing.T, dir, dbName string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, dbName+".sqlite")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// sqliteIndexes returns the names of the indexes in a database's SQLite
// file that EnsureIDIndexes made.
func sqliteIndexes(t *testing.T, dir, dbName string) []string {
	t.Helper()
	db := openSQLite(t, dir, dbName)
	rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE ? ESCAPE '\\' ORDER BY name",
		strings.ReplaceAll(idIndexPrefix, "_", `\_`)+"%")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// TestIDIndexTurnsScanIntoSearch: FerretDB's statements by _id scan
// before the index step and search the new index after it; and FerretDB's
// own explain, for string and ObjectID _ids, with a limit (findOne) or
// without, agrees once its connections are new.
func TestIDIndexTurnsScanIntoSearch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, dir, client := startSQLite(t)
	db := client.Database("plans")
	oid := bson.NewObjectID()
	colls := []string{"strings", "Mixed.Case-name", "oids"}
	for _, name := range colls {
		docs := []any{bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "_id", Value: "b"}}}
		if name == "oids" {
			docs = []any{bson.D{{Key: "_id", Value: oid}}, bson.D{{Key: "_id", Value: bson.NewObjectID()}}}
		}
		if _, err := db.Collection(name).InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}
	}

	for _, coll := range colls {
		for stmt, p := range sqlitePlans(t, dir, db.Name(), coll) {
			if !strings.Contains(p, "SCAN") {
				t.Errorf("%s, %s, before the index step: plan %q, want a SCAN", coll, stmt, p)
			}
		}
	}
	if err := srv.EnsureIDIndexes(ctx, db.Name()); err != nil {
		t.Fatal(err)
	}
	for _, coll := range colls {
		for stmt, p := range sqlitePlans(t, dir, db.Name(), coll) {
			if !searchesByIDIndex(p) {
				t.Errorf("%s, %s: plan %q, want a SEARCH using %s…", coll, stmt, p, idIndexPrefix)
			}
		}
	}

	// A server started afresh on the files plans with the index from its
	// first statement.
	srv.Close()
	srv, err := embedded.Start(ctx, embedded.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	client, err = mongodb.Connect(srv.URI(), mongodb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	db = client.Database("plans")
	tests := []struct {
		coll  string
		id    any
		limit int64
	}{
		{"strings", "a", 1},
		{"strings", "missing", 0},
		{"Mixed.Case-name", "b", 1},
		{"oids", oid, 1},
		{"oids", oid, 0},
	}
	for _, tt := range tests {
		if p := plan(t, db.Collection(tt.coll), bson.D{{Key: "_id", Value: tt.id}}, tt.limit); !searchesByIDIndex(p) {
			t.Errorf("explain %s, _id %v, limit %d: plan %q, want a SEARCH using %s…", tt.coll, tt.id, tt.limit, p, idIndexPrefix)
		}
	}
	// The index answers lookups correctly, not just cheaply.
	var got bson.M
	if err := db.Collection("oids").FindOne(ctx, bson.M{"_id": oid}).Decode(&got); err != nil || got["_id"] != oid {
		t.Errorf("findOne by ObjectID: got %v, %v; want the document", got, err)
	}
}

// TestIDIndexBesideFerretDBIndexes: FerretDB's own index commands, and
// writes by _id, work beside the index, which FerretDB never sees.
func TestIDIndexBesideFerretDBIndexes(t *testing.T) {
	t.Parallel()
	for _, backend := range backends() {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			testIDIndexBesideFerretDBIndexes(t, startStore(t, backend))
		})
	}
}

func testIDIndexBesideFerretDBIndexes(t *testing.T, st *testStore) {
	ctx := context.Background()
	srv := st.srv
	db := st.database(t, "beside")
	coll := db.Collection("devices")
	// Enough documents that a planner with statistics (collStats below
	// has FerretDB ANALYZE the table) still prefers an index to a scan.
	docs := []any{bson.M{"_id": "d1", "token": "t1"}}
	for i := range 200 {
		docs = append(docs, bson.M{"_id": fmt.Sprintf("filler-%03d", i), "token": fmt.Sprintf("f%03d", i)})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	if p := st.findOnePlan(t, coll); st.usesIDIndex(p) {
		t.Errorf("before the step: plan %q uses an index that should not exist yet", p)
	}
	if err := srv.EnsureIDIndexes(ctx, db.Name()); err != nil {
		t.Fatal(err)
	}
	if p := st.findOnePlan(t, coll); !st.usesIDIndex(p) {
		t.Errorf("after the step: plan %q, want one through the _id index", p)
	}

	listIndexes := func() []string {
		t.Helper()
		specs, err := coll.Indexes().ListSpecifications(ctx)
		if err != nil {
			t.Fatalf("listIndexes: %v", err)
		}
		var names []string
		for _, s := range specs {
			names = append(names, s.Name)
		}
		slices.Sort(names)
		return names
	}
	if got, want := listIndexes(), []string{"_id_"}; !slices.Equal(got, want) {
		t.Errorf("listIndexes = %v, want %v", got, want)
	}

	unique := mongo.IndexModel{Keys: bson.D{{Key: "token", Value: 1}}, Options: options.Index().SetUnique(true)}
	if _, err := coll.Indexes().CreateOne(ctx, unique); err != nil {
		t.Fatalf("createIndexes: %v", err)
	}
	if got, want := listIndexes(), []string{"_id_", "token_1"}; !slices.Equal(got, want) {
		t.Errorf("listIndexes after createIndexes = %v, want %v", got, want)
	}
	// collStats sizes the indexes FerretDB knows, and only those.
	var stats struct {
		IndexSizes map[string]any `bson:"indexSizes"`
	}
	if err := db.RunCommand(ctx, bson.D{{Key: "collStats", Value: coll.Name()}}).Decode(&stats); err != nil {
		t.Fatalf("collStats: %v", err)
	}
	if got, want := slices.Sorted(maps.Keys(stats.IndexSizes)), []string{"_id_", "token_1"}; !slices.Equal(got, want) {
		t.Errorf("collStats indexSizes for %v, want %v", got, want)
	}
	// Running the step again beside FerretDB's new index changes nothing.
	if err := srv.EnsureIDIndexes(ctx, db.Name()); err != nil {
		t.Fatal(err)
	}

	// FerretDB v1 reports a unique index violated by an update as an
	// InternalError, with or without the _id index, so an update only has
	// to be refused.
	const (
		ok = iota
		duplicate
		refused
	)
	writes := []struct {
		name string
		do   func() error
		want int
	}{
		{"insert", func() error { _, err := coll.InsertOne(ctx, bson.M{"_id": "d2", "token": "t2"}); return err }, ok},
		{"insert with a duplicate _id", func() error { _, err := coll.InsertOne(ctx, bson.M{"_id": "d2", "token": "t9"}); return err }, duplicate},
		{"insert with a duplicate unique field", func() error { _, err := coll.InsertOne(ctx, bson.M{"_id": "d3", "token": "t1"}); return err }, duplicate},
		{"update by _id", func() error {
			res, err := coll.UpdateOne(ctx, bson.M{"_id": "d2"}, bson.M{"$set": bson.M{"token": "t2b"}})
			if err == nil && res.ModifiedCount != 1 {
				err = fmt.Errorf("modified %d documents, want 1", res.ModifiedCount)
			}
			return err
		}, ok},
		{"update by _id to a duplicate unique field", func() error {
			_, err := coll.UpdateOne(ctx, bson.M{"_id": "d2"}, bson.M{"$set": bson.M{"token": "t1"}})
			return err
		}, refused},
		{"replace by _id", func() error {
			res, err := coll.ReplaceOne(ctx, bson.M{"_id": "d1"}, bson.M{"token": "t1b"})
			if err == nil && res.ModifiedCount != 1 {
				err = fmt.Errorf("modified %d documents, want 1", res.ModifiedCount)
			}
			return err
		}, ok},
		{"delete by _id", func() error {
			res, err := coll.DeleteOne(ctx, bson.M{"_id": "d1"})
			if err == nil && res.DeletedCount != 1 {
				err = fmt.Errorf("deleted %d documents, want 1", res.DeletedCount)
			}
			return err
		}, ok},
	}
	for _, w := range writes {
		err := w.do()
		switch {
		case w.want == ok && err != nil:
			t.Errorf("%s: %v", w.name, err)
		case w.want == duplicate && !mongo.IsDuplicateKeyError(err):
			t.Errorf("%s: error %v, want a duplicate key error", w.name, err)
		case w.want == refused && err == nil:
			t.Errorf("%s: succeeded, want an error", w.name)
		}
	}
	var got []bson.M
	cur, err := coll.Find(ctx, bson.M{"_id": bson.M{"$in": []string{"d1", "d2", "d3"}}})
	if err == nil {
		err = cur.All(ctx, &got)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0]["_id"] != "d2" || got[0]["token"] != "t2b" {
		t.Errorf("documents after the writes = %v, want only {_id: d2, token: t2b}", got)
	}

	if err := coll.Indexes().DropOne(ctx, "token_1"); err != nil {
		t.Fatalf("dropIndexes: %v", err)
	}
	if got, want := listIndexes(), []string{"_id_"}; !slices.Equal(got, want) {
		t.Errorf("listIndexes after dropIndexes = %v, want %v", got, want)
	}
	if err := coll.Indexes().DropAll(ctx); err != nil {
		t.Fatalf("dropIndexes *: %v", err)
	}
	if p := st.findOnePlan(t, coll); !st.usesIDIndex(p) {
		t.Errorf("after dropIndexes: plan %q, want a SEARCH using the _id index", p)
	}

	// A dropped collection takes its index with it; recreated, it gets one
	// when the step runs again.
	if err := coll.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := st.idIndexes(t, db.Name()); len(got) != 0 {
		t.Errorf("indexes left after the drop: %v", got)
	}
	if _, err := coll.InsertOne(ctx, bson.M{"_id": "d4"}); err != nil {
		t.Fatal(err)
	}
	if p := st.findOnePlan(t, coll); st.usesIDIndex(p) {
		t.Errorf("recreated, before the step: plan %q searches an index that should not exist", p)
	}
	if err := srv.EnsureIDIndexes(ctx, db.Name()); err != nil {
		t.Fatal(err)
	}
	if p := st.findOnePlan(t, coll); !st.usesIDIndex(p) {
		t.Errorf("recreated, after the step: plan %q, want a SEARCH using the _id index", p)
	}
}

// TestEnsureIDIndexesIdempotent: each run leaves one index per collection,
// whatever ran before; a database with no file yet gets none and is not
// created.
func TestEnsureIDIndexesIdempotent(t *testing.T) {
	t.Parallel()
	for _, backend := range backends() {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			testEnsureIDIndexesIdempotent(t, startStore(t, backend))
		})
	}
}

func testEnsureIDIndexesIdempotent(t *testing.T, st *testStore) {
	ctx := context.Background()
	srv, client := st.srv, st.client
	db := st.database(t, "twice")
	for _, name := range []string{"a", "b", "c"} {
		if err := db.CreateCollection(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	for run := 1; run <= 3; run++ {
		if err := srv.EnsureIDIndexes(ctx, db.Name()); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if got := st.idIndexes(t, db.Name()); len(got) != 3 {
			t.Errorf("run %d: indexes %v, want one on each of 3 collections", run, got)
		}
	}

	if err := srv.EnsureIDIndexes(ctx, "nothing_here"); err != nil {
		t.Errorf("database with no file: %v", err)
	}
	names, err := client.ListDatabaseNames(ctx, bson.M{})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(names, "nothing_here") {
		t.Errorf("databases = %v: the step created one", names)
	}
	for _, bad := range []string{"", "../twice", "a/b", `a\b`} {
		if err := srv.EnsureIDIndexes(ctx, bad); err == nil {
			t.Errorf("database name %q accepted", bad)
		}
	}
}

// BenchmarkFindOneByID measures findOne and updateOne by _id at two sizes,
// without and with the _id index, in one run (compare the ratios, not
// absolute times across runs), on SQLite and, with envPostgreSQLURL, on
// PostgreSQL.
func BenchmarkFindOneByID(b *testing.B) {
	for _, backend := range backends() {
		b.Run(backend, func(b *testing.B) { benchmarkFindOneByID(b, startStore(b, backend)) })
	}
}

func benchmarkFindOneByID(b *testing.B, st *testStore) {
	ctx := context.Background()
	sizes := []int{1000, 20000}
	colls := map[string]*mongo.Collection{}
	key := func(n int, indexed bool) string { return fmt.Sprintf("%d/%t", n, indexed) }
	for _, n := range sizes {
		for _, indexed := range []bool{false, true} {
			db := st.database(b, "bench")
			docs := make([]any, n)
			for i := range docs {
				docs[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("device-%08d", i)},
					{Key: "user", Value: fmt.Sprintf("user-%d", i%100)}, {Key: "token", Value: strings.Repeat("t", 150)}}
			}
			if _, err := db.Collection("devices").InsertMany(ctx, docs); err != nil {
				b.Fatal(err)
			}
			if indexed {
				if err := st.srv.EnsureIDIndexes(ctx, db.Name()); err != nil {
					b.Fatal(err)
				}
			}
			colls[key(n, indexed)] = db.Collection("devices")
		}
	}
	for _, op := range []string{"findOne", "updateOne"} {
		for _, n := range sizes {
			for _, indexed := range []bool{false, true} {
				coll := colls[key(n, indexed)]
				b.Run(fmt.Sprintf("%s/docs=%d/index=%t", op, n, indexed), func(b *testing.B) {
					for i := range b.N {
						id := bson.M{"_id": fmt.Sprintf("device-%08d", (i*7919)%n)}
						var err error
						if op == "findOne" {
							err = coll.FindOne(ctx, id).Err()
						} else {
							_, err = coll.UpdateOne(ctx, id, bson.M{"$set": bson.M{"seen": i}})
						}
						if err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}
