package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// A --scale run measures every scenario at each store size in turn, in
// one run, and reports how each scenario's CPU per operation grows with
// the data: a registry's cost per request must not depend on how many
// devices it holds. Between sizes the filler grows the store through the
// API, as a migrating team and its apps would: users with one device each
// through the import route, then one live session per user (a login) and
// one ended session (a login, then a logout).

// fillerPassword signs the filler users in. Their stored hash is an
// argon2id PHC string at the smallest cost argon2 allows, so that seeding
// hundreds of thousands of sessions spends microseconds, not an
// OWASP-cost hash, per login (pushreg checks a hash with the parameters
// it carries, and rehashes only bcrypt ones).
const fillerPassword = "filler-password"

// importBatch is how many lines one filling import request carries.
const importBatch = 10_000

// filler grows the store to each size of a --scale run.
type filler struct {
	b    *bench
	hash string
	// users is how many filler users exist, each with one device, one live
	// and one ended session.
	users   int
	elapsed struct{ importing, sessions time.Duration }
}

func newFiller(b *bench) *filler {
	return &filler{b: b, hash: cheapHash(fillerPassword)}
}

// cheapHash is an argon2id PHC string of password at m=8 KiB, t=1, p=1.
func cheapHash(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	sum := argon2.IDKey([]byte(password), salt, 1, 8, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=8,t=1,p=1$%s$%s", argon2.Version, b64.EncodeToString(salt), b64.EncodeToString(sum))
}

func (f *filler) name(i int) string { return fmt.Sprintf("fill-%s-%d", f.b.run, i) }

// importLines is the NDJSON of filler users from..to-1, one device each.
func (f *filler) importLines(from, to int) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := from; i < to; i++ {
		dev := fmt.Sprintf("fd-%s-%d", f.b.run, i)
		enc.Encode(map[string]any{"username": f.name(i), "password_hash": f.hash,
			"devices": []map[string]string{{"device_id": dev, "fcm_token": fcmToken(dev), "platform": "android"}}})
	}
	return buf.Bytes()
}

// grow brings the filler to n users, each with a device, a live session
// and an ended one.
func (f *filler) grow(ctx context.Context, n int) error {
	if n <= f.users {
		return nil
	}
	from := f.users
	start := time.Now()
	for lo := from; lo < n; lo += importBatch {
		hi := min(lo+importBatch, n)
		if err := importUsers(ctx, f.b, f.importLines(lo, hi), hi-lo); err != nil {
			return err
		}
		f.b.progress.statusf("filling: imported %d of %d users, %v", hi, n, time.Since(start).Round(time.Second))
	}
	f.elapsed.importing += time.Since(start)
	f.b.progress.logf("filling: imported %d users with a device each in %v", n-from, time.Since(start).Round(100*time.Millisecond))

	start = time.Now()
	var done atomic.Int64
	stop := f.b.progress.every(2*time.Second, func() {
		f.b.progress.statusf("filling: sessions of %d of %d users, %v", done.Load(), n-from, time.Since(start).Round(time.Second))
	})
	err := parallel(ctx, n-from, max(f.b.o.concurrency, 2*runtime.NumCPU()), func(ctx context.Context, i int) error {
		u := &user{name: f.name(from + i), password: fillerPassword}
		for _, end := range []bool{false, true} {
			a := nativeLogin(ctx, f.b.client, u, "", "")
			if a.status != http.StatusOK {
				return fmt.Errorf("login of %s: %s", u.name, a)
			}
			if end {
				if a := f.b.client.do(ctx, "POST", "/v1/auth/logout", bearer(field(a.body, "access_token")), "", nil); a.status != http.StatusNoContent {
					return fmt.Errorf("logout of %s: %s", u.name, a)
				}
			}
		}
		done.Add(1)
		return nil
	})
	stop()
	if err != nil {
		return err
	}
	f.elapsed.sessions += time.Since(start)
	f.b.progress.logf("filling: %d live and %d ended sessions in %v", n-from, n-from, time.Since(start).Round(100*time.Millisecond))
	f.users = n
	return nil
}

// importReport is the import route's answer.
type importReport struct {
	UsersCreated int `json:"users_created"`
	UsersUpdated int `json:"users_updated"`
	DevicesBound int `json:"devices_bound"`
	Errors       []struct {
		Line  int    `json:"line"`
		Error string `json:"error"`
	} `json:"errors"`
}

// importUsers posts NDJSON lines to the import route as the admin and
// checks that every line landed.
func importUsers(ctx context.Context, b *bench, lines []byte, n int) error {
	h, err := b.admin.bearer(ctx)
	if err != nil {
		return err
	}
	a := b.client.do(ctx, "POST", "/v1/admin/import", h, "application/x-ndjson", lines)
	if a.status != http.StatusOK {
		return fmt.Errorf("import: %s", a)
	}
	var rep importReport
	if err := json.Unmarshal(a.body, &rep); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if len(rep.Errors) > 0 || rep.UsersCreated+rep.UsersUpdated != n || rep.DevicesBound != n {
		return fmt.Errorf("import of %d lines: %+v", n, rep)
	}
	return nil
}

// scaleScenarios are the scenarios a --scale run adds: the Kecak check, a
// Kecak refresh whose new FCM token another user's device holds, an
// admin's page of a user's devices, and an import of 10,000 lines.
func (b *bench) scaleScenarios() []scenario {
	c := b.o.concurrency
	var imported atomic.Int64
	return []scenario{
		{name: "check-token", about: "GET CheckTokenApi with a Kecak token", op: func() func(context.Context, int) outcome {
			own := newOwned(c, len(b.kecak))
			return func(ctx context.Context, w int) outcome {
				d := b.kecak[max(own.pick(w), 0)]
				return outcome{a: b.client.do(ctx, http.MethodGet, kecakCheck, map[string]string{"Authorization": d.token}, "", nil)}
			}
		}()},
		{name: "kecak-refresh-move", about: "Kecak refresh with the FCM token another user's device holds (the token moves)",
			workers: max(len(b.kecak)/3, 1),
			op: func() func(context.Context, int) outcome {
				// Worker w owns a ring of three devices of three users: each
				// refresh takes the token the next device holds, which is
				// never the one the mover's own token names, so every
				// refresh moves a token between users.
				k := len(b.kecak) / 3
				turn := make([]int, c)
				return func(ctx context.Context, w int) outcome {
					if w >= k {
						return outcome{a: answer{err: fmt.Errorf("no ring of devices for worker %d", w)}}
					}
					ring := [3]*kecakDevice{b.kecak[w], b.kecak[w+k], b.kecak[w+2*k]}
					if ring[0].user == ring[1].user || ring[1].user == ring[2].user || ring[0].user == ring[2].user {
						return outcome{a: answer{err: fmt.Errorf("worker %d's ring has two devices of one user", w)}}
					}
					t := turn[w]
					turn[w]++
					return outcome{a: ring[t%3].refreshWith(ctx, b.client, ring[(t+1)%3].fcm)}
				}
			}()},
		{name: "admin-devices", about: "GET /v1/admin/users/{id}/devices, an admin's first page of a user's devices",
			op: func(ctx context.Context, w int) outcome {
				h, err := b.admin.bearer(ctx)
				if err != nil {
					return outcome{a: answer{err: err}}
				}
				return outcome{a: b.client.do(ctx, http.MethodGet, "/v1/admin/users/"+b.users[w%len(b.users)].id+"/devices", h, "", nil)}
			}},
		// One at a time: an import is a long request of its own.
		{name: "import-10k", about: "POST /v1/admin/import of 10,000 new users with a device each", units: "lines", workers: 1,
			op: func(ctx context.Context, w int) outcome {
				from := int(imported.Add(importBatch)) - importBatch
				var buf bytes.Buffer
				enc := json.NewEncoder(&buf)
				for i := from; i < from+importBatch; i++ {
					dev := fmt.Sprintf("imp-%s-%d", b.run, i)
					enc.Encode(map[string]any{"username": fmt.Sprintf("imp-%s-%d", b.run, i),
						"devices": []map[string]string{{"device_id": dev, "fcm_token": fcmToken(dev)}}})
				}
				start := time.Now()
				err := importUsers(ctx, b, buf.Bytes(), importBatch)
				a := answer{status: http.StatusOK, dur: time.Since(start)}
				if err != nil {
					a = answer{err: err, dur: time.Since(start)}
				}
				return outcome{a: a, msgs: importBatch}
			}},
	}
}

// refreshWith is a Kecak refresh that binds fcm, whoever holds it.
func (d *kecakDevice) refreshWith(ctx context.Context, c *client, fcm string) answer {
	a := c.json(ctx, "PUT", kecakRefresh, map[string]string{"Authorization": d.token, "Referer": c.base + "/"},
		map[string]string{"device_id": d.deviceID, "fcm_token": fcm})
	if a.status == http.StatusOK {
		if tok := field(a.body, "token"); tok != "" {
			d.token, d.fcm = tok, fcm
		}
	}
	return a
}

// ratio compares a scenario's CPU per operation at the largest size with
// the smallest.
type ratio struct {
	Name      string  `json:"name"`
	Small     int     `json:"small_size"`
	Large     int     `json:"large_size"`
	SmallCPU  float64 `json:"small_cpu_us_per_op"`
	LargeCPU  float64 `json:"large_cpu_us_per_op"`
	CPURatio  float64 `json:"cpu_ratio"`
	SmallRate float64 `json:"small_requests_per_second"`
	LargeRate float64 `json:"large_requests_per_second"`
}

// ratios pairs each scenario's results at the smallest and largest sizes.
func ratios(results []result) []ratio {
	if len(results) == 0 {
		return nil
	}
	small, large := results[0].Size, results[0].Size
	for _, r := range results {
		small, large = min(small, r.Size), max(large, r.Size)
	}
	if small == large {
		return nil
	}
	at := map[int]map[string]result{}
	var names []string
	for _, r := range results {
		if at[r.Size] == nil {
			at[r.Size] = map[string]result{}
		}
		if r.Size == small {
			names = append(names, r.Name)
		}
		at[r.Size][r.Name] = r
	}
	var out []ratio
	for _, n := range names {
		s, l := at[small][n], at[large][n]
		if _, ok := at[large][n]; !ok {
			continue
		}
		out = append(out, ratio{Name: n, Small: small, Large: large, SmallCPU: s.cpuPerOp(), LargeCPU: l.cpuPerOp(),
			CPURatio: l.cpuPerOp() / s.cpuPerOp(), SmallRate: s.PerSec, LargeRate: l.PerSec})
	}
	return out
}

// cpuPerOp is the CPU an operation cost the service and, when measured
// apart, its store.
func (r result) cpuPerOp() float64 {
	if r.StoreCPUus != nil {
		return r.ServiceCPUus + *r.StoreCPUus
	}
	return r.ServiceCPUus
}

func writeRatios(w io.Writer, rs []ratio) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nCPU per operation, %d filler users (each a device, a live and an ended session) against %d:\n\n", rs[0].Large, rs[0].Small)
	rows := [][]string{{"scenario", fmt.Sprintf("CPU/op at %d", rs[0].Small), fmt.Sprintf("CPU/op at %d", rs[0].Large),
		"ratio", fmt.Sprintf("req/s at %d", rs[0].Small), fmt.Sprintf("req/s at %d", rs[0].Large)}}
	for _, r := range rs {
		rows = append(rows, []string{r.Name, us(r.SmallCPU), us(r.LargeCPU), fmt.Sprintf("%.2f×", r.CPURatio),
			fmt.Sprintf("%.0f", r.SmallRate), fmt.Sprintf("%.0f", r.LargeRate)})
	}
	writeTable(w, rows)
}
