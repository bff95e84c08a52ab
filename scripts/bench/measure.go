package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// 100 on every Linux pushreg runs on.
const clockTick = 10 * time.Millisecond

// procStat returns a process's own CPU time (utime+stime) and that of its
// children it has waited for (cutime+cstime), and its parent's PID.
func procStat(pid int) (self, children time.Duration, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name, in parentheses, may hold spaces; the fields after
	// it are space-separated: state ppid ... utime(14) stime cutime cstime.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	n := func(k int) int64 { v, _ := strconv.ParseInt(f[k], 10, 64); return v }
	// f[0] is field 3 (state), so field k is f[k-3].
	ppid = int(n(4 - 3))
	self = time.Duration(n(14-3)+n(15-3)) * clockTick
	children = time.Duration(n(16-3)+n(17-3)) * clockTick
	return self, children, ppid, nil
}

// procCPU is one process's CPU time, all its threads.
func procCPU(pid int) (time.Duration, error) {
	self, _, _, err := procStat(pid)
	return self, err
}

// treeCPU is the CPU time of a process, of its live descendants and of the
// children it has reaped (a PostgreSQL postmaster reaps its backends).
func treeCPU(root int) (time.Duration, error) {
	self, reaped, _, err := procStat(root)
	if err != nil {
		return 0, err
	}
	total := self + reaped
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	cpu := map[int]time.Duration{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		s, c, pp, err := procStat(pid)
		if err != nil {
			continue
		}
		parent[pid], cpu[pid] = pp, s+c
	}
	for pid, d := range cpu {
		for p := parent[pid]; p > 1; p = parent[p] {
			if p == root {
				total += d
				break
			}
		}
	}
	return total, nil
}

// metrics are the values read from pushreg's /metrics, summed over labels.
type metrics map[string]float64

// scrape reads base/metrics in the Prometheus text format.
func scrape(base string) (metrics, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (metrics, error) {
	m := metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			// Keep the labelled series too: pushes by outcome.
			m[name] += v
			name = name[:j]
		}
		m[name] += v
	}
	return m, sc.Err()
}

func metricsCPU(base string) (time.Duration, error) {
	m, err := scrape(base)
	if err != nil {
		return 0, err
	}
	v, ok := m["process_cpu_seconds_total"]
	if !ok {
		return 0, fmt.Errorf("%s/metrics has no process_cpu_seconds_total", base)
	}
	return time.Duration(v * float64(time.Second)), nil
}

// machine describes where the bench ran.
type machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
}

func thisMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// loadAverage is the one-minute load average, to show how busy the
// machine was besides the bench; empty off Linux.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// selfCPU is this process's CPU time (the load generator and the FCM
// double).
func selfCPU() time.Duration {
	d, _ := procCPU(os.Getpid())
	return d
}
