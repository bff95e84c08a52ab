package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	mongooptions "go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/push/fcmtest"
	"github.com/pushreg/pushreg/registry/embedded"
)

// target is the pushreg under test and what was started for it.
type target struct {
	url           string
	adminUser     string
	adminPassword string
	store         string // what the store is, for the report
	// fcm is the double pushreg sends to; nil with --url.
	fcm *fcmtest.Server
	// cpu reads the service's CPU time; storeCPU the store's (nil when
	// the store is not measured apart).
	cpu      func() (time.Duration, error)
	storeCPU func() (time.Duration, error)
	// exited is closed if the pushreg started here ends early.
	exited  <-chan struct{}
	closers []func()
}

func (t *target) close() {
	for i := len(t.closers) - 1; i >= 0; i-- {
		t.closers[i]()
	}
	t.closers = nil
}

// startTarget starts pushreg (or uses the one at --url) and returns once it
// is ready.
func startTarget(ctx context.Context, o options, p *progress) (*target, error) {
	if o.url != "" {
		t := &target{url: strings.TrimSuffix(o.url, "/"), adminUser: o.adminUser, adminPassword: o.adminPassword,
			store: "the store of the pushreg at " + o.url}
		t.cpu = func() (time.Duration, error) { return metricsCPU(t.url) }
		if o.storePID > 0 {
			t.storeCPU = func() (time.Duration, error) { return treeCPU(o.storePID) }
		}
		return t, waitReady(ctx, t.url, nil, time.Minute)
	}
	t := &target{adminUser: "bench-admin", adminPassword: randomHex(16)}
	ok := false
	defer func() {
		if !ok {
			t.close()
		}
	}()
	dir, err := os.MkdirTemp("", "pushreg-bench-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		p.logf("keeping %s", dir)
	} else {
		t.closers = append(t.closers, func() { os.RemoveAll(dir) })
	}

	bin := o.bin
	if bin == "" {
		bin = filepath.Join(dir, "pushreg")
		p.logf("building pushreg")
		if err := build(ctx, bin); err != nil {
			return nil, err
		}
	}

	fcm, err := fcmtest.NewServer("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fcm.SetRecord(false) // memory stays flat; Stats still count
	t.fcm = fcm
	t.closers = append(t.closers, fcm.Close)

	// A database of its own: an earlier run's data (and admin, whose
	// password was another) stays out of this one.
	database := "bench_" + randomHex(4)
	env := []string{
		"PUSHREG_ADDR=127.0.0.1:0",
		"PUSHREG_MONGODB_DATABASE=" + database,
		"PUSHREG_DATA_DIR=" + dir,
		"PUSHREG_FCM_ENDPOINT=" + fcm.Endpoint(),
		"PUSHREG_LOG_FORMAT=json",
		"PUSHREG_LOG_LEVEL=info",
		"PUSHREG_ADMIN_USERNAME=" + t.adminUser,
		"PUSHREG_ADMIN_PASSWORD=" + t.adminPassword,
		// The sweeper would add round trips of its own to a scenario.
		"PUSHREG_SWEEP_INTERVAL=1000h",
		// The push users hold up to 1,000 devices (their plans say so too).
		"PUSHREG_MAX_DEVICES_PER_USER=" + strconv.Itoa(max(100, maxOf(o.pushDevices))),
	}
	if o.pprofAddr != "" {
		env = append(env, "PUSHREG_PPROF_ADDR="+o.pprofAddr)
	}
	switch {
	case o.mongoURI != "":
		env = append(env, "PUSHREG_MONGODB_URI="+o.mongoURI)
		t.store = "MongoDB at " + redact(o.mongoURI)
		if !o.keep {
			t.closers = append(t.closers, func() { dropDatabase(o.mongoURI, database, p) })
		}
	case o.storeProcess:
		uri, pid, stop, err := startStoreProcess(ctx, filepath.Join(dir, "db"), o.postgresURL, o.storeProfile)
		if err != nil {
			return nil, err
		}
		t.closers = append(t.closers, stop)
		if o.postgresURL != "" && !o.keep {
			// SQLite's files go with the directory; PostgreSQL's schema not.
			t.closers = append(t.closers, func() { dropDatabase(uri, database, p) })
		}
		env = append(env, "PUSHREG_MONGODB_URI="+uri)
		t.storeCPU = func() (time.Duration, error) { return treeCPU(pid) }
		t.store = "embedded FerretDB v1 on SQLite, in a process of its own"
		if o.postgresURL != "" {
			t.store = "embedded FerretDB v1 on PostgreSQL (" + redact(o.postgresURL) + "), FerretDB in a process of its own"
		}
	case o.postgresURL != "":
		env = append(env, "PUSHREG_FERRETDB_POSTGRES_URL="+o.postgresURL)
		t.store = "embedded FerretDB v1 (in pushreg's process) on PostgreSQL (" + redact(o.postgresURL) + ")"
	default:
		t.store = "embedded FerretDB v1 on SQLite (in pushreg's process)"
	}
	if o.storePID > 0 {
		own := t.storeCPU
		t.storeCPU = func() (time.Duration, error) {
			d, err := treeCPU(o.storePID)
			if err != nil || own == nil {
				return d, err
			}
			d2, err := own()
			return d + d2, err
		}
	}

	logFile, err := os.Create(filepath.Join(dir, "pushreg.log"))
	if err != nil {
		return nil, err
	}
	t.closers = append(t.closers, func() { logFile.Close() })
	proc, err := startPushreg(ctx, bin, env, logFile)
	if err != nil {
		return nil, fmt.Errorf("%w (its log: %s)", err, logFile.Name())
	}
	t.closers = append(t.closers, func() {
		if err := proc.stop(30 * time.Second); err != nil {
			p.logf("stopping pushreg: %v", err)
		}
	})
	t.url, t.exited = proc.url, proc.exited
	t.cpu = func() (time.Duration, error) { return procCPU(proc.cmd.Process.Pid) }
	p.logf("pushreg (pid %d) at %s on %s; FCM double at %s with %v latency",
		proc.cmd.Process.Pid, t.url, t.store, fcm.URL(), o.fcmLatency)
	if err := waitReady(ctx, t.url, t.exited, 2*time.Minute); err != nil {
		return nil, fmt.Errorf("%w (its log: %s)", err, logFile.Name())
	}
	ok = true
	return t, nil
}

// dropDatabase removes the run's database once pushreg has stopped.
func dropDatabase(uri, name string, p *progress) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := mongo.Connect(mongooptions.Client().ApplyURI(uri).SetServerSelectionTimeout(10 * time.Second))
	if err == nil {
		err = client.Database(name).Drop(ctx)
		client.Disconnect(ctx)
	}
	if err != nil {
		p.logf("dropping database %s: %v", name, err)
	}
}

func maxOf(ns []int) int {
	m := 0
	for _, n := range ns {
		m = max(m, n)
	}
	return m
}

// redact hides a URL's password.
func redact(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	userinfo, host, ok := strings.Cut(rest, "@")
	if !ok {
		return u
	}
	user, _, hasPass := strings.Cut(userinfo, ":")
	if hasPass {
		user += ":xxx"
	}
	return scheme + "://" + user + "@" + host
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// build compiles ./cmd/pushreg of the module this command is run in.
func build(ctx context.Context, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/pushreg/pushreg/cmd/pushreg")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/pushreg: %w\n%s", err, b)
	}
	return nil
}

// process is a pushreg running as a child process.
type process struct {
	cmd    *exec.Cmd
	url    string
	exited chan struct{}
}

// startPushreg runs bin with env (over a copy of this environment without
// pushreg's own variables) and waits for its "pushreg listening" log line.
// Its logs go to logFile.
func startPushreg(ctx context.Context, bin string, env []string, logFile io.Writer) (*process, error) {
	cmd := exec.Command(bin)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stderr = logFile
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		// Every line is read, so pushreg never blocks on its log; the
		// listening line gives the address.
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			logFile.Write(append(line, '\n'))
			var l struct{ Msg, Addr string }
			if json.Unmarshal(line, &l) == nil && l.Msg == "pushreg listening" {
				select {
				case addr <- l.Addr:
				default:
				}
			}
		}
		io.Copy(io.Discard, out)
	}()
	go func() { cmd.Wait(); close(p.exited) }()
	select {
	case a := <-addr:
		p.url = "http://" + a
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("pushreg exited at start: %v", cmd.ProcessState)
	case <-time.After(2 * time.Minute):
	case <-ctx.Done():
	}
	p.kill()
	return nil, errors.New("pushreg did not start listening")
}

func (p *process) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// stop sends SIGTERM and waits up to timeout for the process to end.
func (p *process) stop(timeout time.Duration) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		<-p.exited
		return nil
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("pushreg did not stop within %v of SIGTERM", timeout)
	}
}

// cleanEnv is this process's environment without pushreg's variables, so
// that the developer's own settings do not leak into the measurement.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PUSHREG_") || strings.HasPrefix(kv, "GOOGLE_APPLICATION_CREDENTIALS=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// waitReady polls GET /readyz until it answers 200.
func waitReady(ctx context.Context, base string, exited <-chan struct{}, within time.Duration) error {
	deadline := time.Now().Add(within)
	last := ""
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s/readyz not ready within %v: %s", base, within, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errors.New("pushreg exited before it was ready")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// The store process: this program run again with storeChildEnv set to the
// data directory. It prints the store's URI on its first line and serves
// until its standard input closes (so it never outlives the bench) or it
// is signalled.
const (
	storeChildEnv         = "PUSHREG_BENCH_STORE_DIR"
	storeChildPostgresEnv = "PUSHREG_BENCH_STORE_POSTGRES_URL"
	storeChildProfileEnv  = "PUSHREG_BENCH_STORE_CPUPROFILE"
)

func serveStore(dir, postgresURL, cpuprofile string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	srv, err := embedded.Start(ctx, embedded.Config{Dir: dir, PostgreSQLURL: postgresURL})
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Println(srv.URI())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	<-ctx.Done()
	return nil
}

func startStoreProcess(ctx context.Context, dir, postgresURL, cpuprofile string) (uri string, pid int, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return "", 0, nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), storeChildEnv+"="+dir, storeChildPostgresEnv+"="+postgresURL, storeChildProfileEnv+"="+cpuprofile)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", 0, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			stdin.Close()
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		})
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		io.Copy(io.Discard, out)
	}()
	select {
	case l, ok := <-line:
		if ok && strings.HasPrefix(l, "mongodb://") {
			return l, cmd.Process.Pid, stop, nil
		}
		err = fmt.Errorf("store process: unexpected first line %q", l)
	case <-time.After(time.Minute):
		err = errors.New("store process did not start within a minute")
	case <-ctx.Done():
		err = ctx.Err()
	}
	stop()
	return "", 0, nil, err
}
