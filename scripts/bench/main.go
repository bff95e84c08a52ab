// Command bench measures pushreg's hot paths under concurrent load and
// prints a Markdown table: requests per second, latency percentiles,
// MongoDB round trips per operation and the service's CPU time per
// operation, for each scenario.
//
//	go run ./scripts/bench                          # its own pushreg on the embedded store
//	go run ./scripts/bench --duration 20s --json
//	go run ./scripts/bench --ferretdb-postgres-url "$(scripts/postgres.sh start)"
//	go run ./scripts/bench --mongodb-uri mongodb://127.0.0.1:27017/
//	go run ./scripts/bench --url http://127.0.0.1:8080 --admin-username root --admin-password secret
//
// By default it builds pushreg (go build ./cmd/pushreg), runs it as a
// child process on a fresh data directory, with an FCM double
// (push/fcmtest) answering after --fcm-latency, and reads the service's CPU
// from /proc/<pid>/stat, apart from its own. With --url it drives a pushreg
// that is already running (its own FCM, whatever that is) and reads CPU
// from the service's /metrics (process_cpu_seconds_total).
//
// The scenarios, each run for --duration by --concurrency workers over
// keep-alive connections:
//
//   - floor-http: GET /healthz, what any request costs the service (the
//     HTTP server and the middleware every route has), no store.
//   - floor-store: GET /readyz, the same plus one MongoDB round trip (a
//     ping). A refresh's cost above these floors is its own work.
//   - kecak-refresh-same: Kecak refreshes with the device and FCM token the
//     session is bound to, chained (each answer's token is presented next).
//   - kecak-refresh-new-fcm: the same, with a new FCM token every time
//     (validated by Firebase, bound in the registry).
//   - native-refresh: rotating refresh-token chains on POST /v1/auth/token.
//   - login: POST /v1/auth/login without a device (argon2id at the
//     operators' cost).
//   - push-N: POST /v1/users/{id}/messages as an app with push:send, to a
//     user with N pushable devices (--push-devices).
//   - check-token, kecak-refresh-move, admin-devices, import-10k: the
//     Kecak check, a Kecak refresh taking the FCM token another user's
//     device holds, an admin's page of a user's devices, and an import of
//     10,000 users with a device each.
//
// --scale 1000,100000 runs every scenario at each size in turn, in one
// run: before each size it fills the store to that many extra users, each
// with a device (imported), a live session and an ended one (logins and a
// logout, with a stored hash of argon2's smallest cost), and it reports
// each scenario's CPU per operation at the largest size against the
// smallest. Filling 100,000 users takes several minutes.
//
// Round trips per operation are the growth of pushreg_mongodb_commands_total
// over the scenario divided by its requests; CPU per operation likewise
// with the process's CPU time. When pushreg embeds FerretDB (the default)
// its CPU includes the store's; --store-process runs FerretDB in a process
// of its own, so that the service column is pushreg's alone and the store
// gets a column of its own (--store-pid adds any other process tree, such
// as a PostgreSQL postmaster, to that column).
//
// Seeding, before the scenarios: --users users with --devices devices each,
// every device signed in twice (a Kecak session and a native session, with
// its own device ID each), and --background-devices more native logins
// with devices. Each push-N scenario first creates its user and signs N
// devices in (native logins with device_id and fcm_token), so that the
// scenarios before it run on a store without them. Every login costs an
// argon2id hash (tens of milliseconds of CPU); with the defaults (16×2×2 +
// 111 logins) seeding takes about 20 seconds on two cores, and
// `go run ./scripts/bench --duration 20s` about four minutes in all. The
// FCM double answers at once while seeding.
//
// On the embedded store the store's size matters: FerretDB v1 on SQLite
// pushes no filter but a lone _id down to SQLite and scans the whole
// collection for any other, and on PostgreSQL its pushed-down filters
// cannot use an index, so the cost of a refresh, a login or a push grows
// with the number of sessions and devices (--background-devices shows by
// how much). Seeding a 1,000-device user (--push-devices 1,10,100,1000)
// takes about a minute on PostgreSQL but several minutes on SQLite, where
// every login scans the devices.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	url           string
	adminUser     string
	adminPassword string
	mongoURI      string
	postgresURL   string
	storeProcess  bool
	storePID      int
	storeProfile  string
	pprofAddr     string
	bin           string
	duration      time.Duration
	concurrency   int
	users         int
	devices       int
	background    int
	pushDevices   []int
	scale         []int
	fcmLatency    time.Duration
	scenarios     []string
	json          bool
	keep          bool
}

func main() {
	if dir, ok := os.LookupEnv(storeChildEnv); ok {
		// This is the store process --store-process asked for.
		if err := serveStore(dir, os.Getenv(storeChildPostgresEnv), os.Getenv(storeChildProfileEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "bench store:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err == nil {
		err = run(ctx, o, os.Stdout, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.url, "url", "", "drive the pushreg at this URL instead of starting one")
	fs.StringVar(&o.adminUser, "admin-username", "", "with --url: an admin's username")
	fs.StringVar(&o.adminPassword, "admin-password", "", "with --url: that admin's password")
	fs.StringVar(&o.mongoURI, "mongodb-uri", "", "MongoDB URI for the pushreg started here (default: the embedded store in a temporary directory)")
	fs.StringVar(&o.postgresURL, "ferretdb-postgres-url", "", "run the embedded FerretDB on this PostgreSQL (see scripts/postgres.sh)")
	fs.BoolVar(&o.storeProcess, "store-process", false, "run the embedded FerretDB in a process of its own, so the service's CPU excludes the store's")
	fs.IntVar(&o.storePID, "store-pid", 0, "also measure the CPU of this process and its children (a PostgreSQL postmaster, a mongod)")
	fs.StringVar(&o.storeProfile, "store-cpuprofile", "", "with --store-process: write the store process's CPU profile to this file")
	fs.StringVar(&o.pprofAddr, "pprof-addr", "", "serve the started pushreg's Go profiler on this loopback address (PUSHREG_PPROF_ADDR), to profile it during a scenario")
	fs.StringVar(&o.bin, "bin", "", "run this pushreg binary instead of building ./cmd/pushreg")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long each scenario runs")
	fs.IntVar(&o.concurrency, "concurrency", 8, "concurrent simulated clients")
	fs.IntVar(&o.users, "users", 16, "users seeded for the refresh and login scenarios")
	fs.IntVar(&o.devices, "devices", 2, "devices per seeded user (each with a Kecak and a native session)")
	fs.IntVar(&o.background, "background-devices", 0, "devices signed in first (native logins spread over the users), so the store holds more, older sessions and devices")
	push := fs.String("push-devices", "1,10,100", "comma-separated device counts of the users pushed to (empty: no push scenarios)")
	scale := fs.String("scale", "", "comma-separated store sizes (filler users, each with a device, a live and an ended session) to run every scenario at, in increasing order, e.g. 1000,100000")
	fs.DurationVar(&o.fcmLatency, "fcm-latency", 20*time.Millisecond, "latency of the FCM double (not with --url)")
	scen := fs.String("scenarios", "", "comma-separated scenarios to run (default all): "+strings.Join(scenarioNames(), ", ")+
		", push (all push-N) or push-N")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON instead of Markdown")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (pushreg's log and data)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, f := range strings.Split(*push, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return o, fmt.Errorf("--push-devices: %q is not a positive number", f)
		}
		o.pushDevices = append(o.pushDevices, n)
	}
	for _, f := range strings.Split(*scale, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || (len(o.scale) > 0 && n <= o.scale[len(o.scale)-1]) {
			return o, fmt.Errorf("--scale: %q is not a size larger than the one before it", f)
		}
		o.scale = append(o.scale, n)
	}
	known := map[string]bool{}
	for _, n := range scenarioNames() {
		known[n] = true
	}
	for _, s := range strings.Split(*scen, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !known[s] && s != "push" && !slices.Contains(o.pushDevices, pushDevicesOf(s)) {
			return o, fmt.Errorf("--scenarios: unknown scenario %q (known: %s, push, and push-N for N in --push-devices)",
				s, strings.Join(scenarioNames(), ", "))
		}
		o.scenarios = append(o.scenarios, s)
	}
	switch {
	case o.duration <= 0:
		return o, errors.New("--duration must be positive")
	case o.concurrency < 1:
		return o, errors.New("--concurrency must be at least 1")
	case o.background < 0:
		return o, errors.New("--background-devices must not be negative")
	case o.users < 1 || o.devices < 1:
		return o, errors.New("--users and --devices must be at least 1")
	case o.users*o.devices < o.concurrency:
		// Each worker drives chains of its own: a chain is sequential.
		return o, errors.New("--users × --devices must be at least --concurrency")
	case o.url != "" && (o.adminUser == "" || o.adminPassword == ""):
		return o, errors.New("--url needs --admin-username and --admin-password")
	case o.url != "" && (o.mongoURI != "" || o.postgresURL != "" || o.storeProcess || o.bin != "" || o.pprofAddr != ""):
		return o, errors.New("--url drives a running pushreg: --mongodb-uri, --ferretdb-postgres-url, --store-process, --bin and --pprof-addr do not apply")
	case o.mongoURI != "" && (o.postgresURL != "" || o.storeProcess):
		return o, errors.New("--mongodb-uri names the store: --ferretdb-postgres-url and --store-process do not apply")
	}
	return o, nil
}

// pushDevicesOf returns N of a scenario named push-N, else 0.
func pushDevicesOf(name string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "push-"))
	if err != nil || !strings.HasPrefix(name, "push-") {
		return 0
	}
	return n
}

// wanted reports whether the scenario named name is to run.
func (o options) wanted(name string) bool {
	if len(o.scenarios) == 0 {
		return true
	}
	for _, s := range o.scenarios {
		if s == name || (s == "push" && strings.HasPrefix(name, "push-")) {
			return true
		}
	}
	return false
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	progress := newProgress(stderr)
	tg, err := startTarget(ctx, o, progress)
	if err != nil {
		return err
	}
	defer tg.close()

	b := &bench{o: o, tg: tg, progress: progress, client: newClient(tg.url, o.concurrency)}
	defer b.client.close()
	progress.logf("seeding %d users × %d devices", o.users, o.devices)
	seedStart := time.Now()
	if err := b.seed(ctx); err != nil {
		return fmt.Errorf("seeding: %w", err)
	}
	b.seedTime = time.Since(seedStart)
	progress.logf("seeded in %v", b.seedTime.Round(100*time.Millisecond))
	if tg.fcm != nil {
		tg.fcm.SetLatency(o.fcmLatency)
	}

	rep := b.newReport()
	sizes := o.scale
	if len(sizes) == 0 {
		sizes = []int{0}
	}
	fill := newFiller(b)
	scenarios := b.scenarios()
	for _, size := range sizes {
		if len(o.scale) > 0 {
			progress.logf("filling the store to %d users", size)
			if err := fill.grow(ctx, size); err != nil {
				return fmt.Errorf("filling to %d: %w", size, err)
			}
		}
		for _, sc := range scenarios {
			if !o.wanted(sc.name) {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			res, err := b.runScenario(ctx, sc)
			if err != nil {
				return fmt.Errorf("%s: %w", sc.name, err)
			}
			res.Size = size
			rep.Results = append(rep.Results, res)
		}
	}
	rep.finish(b)
	rep.Fill = fill.elapsed.importing.Seconds()
	rep.FillSessions = fill.elapsed.sessions.Seconds()
	rep.Ratios = ratios(rep.Results)
	if o.json {
		return rep.writeJSON(stdout)
	}
	rep.writeMarkdown(stdout)
	return nil
}
