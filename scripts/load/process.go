package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Build builds the pushreg command into out, with the race detector when
// race is set. It must run inside the module's tree.
func Build(ctx context.Context, out string, race bool) error {
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "github.com/pushreg/pushreg/cmd/pushreg")...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("load: go build: %w\n%s", err, b)
	}
	return nil
}

// Process is a pushreg binary running as a child process.
type Process struct {
	// URL is where it listens, from its "pushreg listening" log line.
	URL    string
	cmd    *exec.Cmd
	exited chan struct{}
	mu     sync.Mutex
	err    error // from Wait
}

// Start runs bin with env added to this process's environment and waits
// (up to a minute) for its "pushreg listening" line; env must ask for
// JSON logs (PUSHREG_LOG_FORMAT=json). Its standard output and error are
// copied to stdout and stderr when they are not nil.
func Start(ctx context.Context, bin string, env []string, stdout, stderr io.Writer) (*Process, error) {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("load: start %s: %w", bin, err)
	}
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if stdout != nil {
				stdout.Write(append(sc.Bytes(), '\n'))
			}
			var line struct{ Msg, Addr string }
			if bytes.Contains(sc.Bytes(), []byte("pushreg listening")) && json.Unmarshal(sc.Bytes(), &line) == nil &&
				line.Msg == "pushreg listening" {
				select {
				case addr <- line.Addr:
				default:
				}
			}
		}
		io.Copy(io.Discard, out)
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.exited)
	}()
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	select {
	case a := <-addr:
		p.URL = "http://" + a
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("load: pushreg exited before listening: %w", p.waitErr())
	case <-t.C:
		err = errors.New("load: pushreg did not start listening within a minute")
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.Kill()
	return nil, err
}

func (p *Process) waitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Pid returns the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Kill sends SIGKILL and waits for the process to end.
func (p *Process) Kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// Stop sends SIGTERM and waits up to timeout for the process to end; it
// returns an error unless it exited 0 in time.
func (p *Process) Stop(timeout time.Duration) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		select {
		case <-p.exited:
			return p.waitErr()
		default:
			return err
		}
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.exited:
		return p.waitErr()
	case <-t.C:
		p.Kill()
		return fmt.Errorf("load: pushreg did not stop within %v of SIGTERM", timeout)
	}
}

// RSS returns a process's resident memory in bytes, from
// /proc/<pid>/status (Linux only).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("load: VmRSS %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("load: no VmRSS in /proc status")
}
