package main

// "pushreg import FILE" streams an NDJSON file to POST /v1/admin/import.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// cliImportAnswer is the import route's answer.
type cliImportAnswer struct {
	UsersCreated int `json:"users_created"`
	UsersUpdated int `json:"users_updated"`
	DevicesBound int `json:"devices_bound"`
	Errors       []struct {
		Line  int    `json:"line"`
		Error string `json:"error"`
	} `json:"errors"`
	ErrorsOmitted int `json:"errors_omitted"`
}

func defineImport(fs *flag.FlagSet) func(context.Context, *cliSession) error {
	validate := fs.Bool("validate", false, "validate every FCM token with Firebase (a rejected token is a line error; unreachable Firebase binds it unverified)")
	return func(ctx context.Context, s *cliSession) error {
		file := s.operands[0]
		in, size := s.in, int64(-1)
		if file != "-" {
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			in, size = f, st.Size()
		}
		path := "/v1/admin/import"
		if *validate {
			path += "?validate=true"
		}
		pr := &progressReader{r: in, total: size, w: s.errOut, every: 250 * time.Millisecond}
		var res cliImportAnswer
		err := s.api.send(ctx, "POST", path, "application/x-ndjson", pr, size, &res)
		pr.report(true)
		if err != nil {
			return err
		}
		if s.json {
			return s.printJSON(res)
		}
		failed := len(res.Errors) + res.ErrorsOmitted
		fmt.Fprintf(s.out, "%d users created, %d updated, %d devices bound, %d line errors\n",
			res.UsersCreated, res.UsersUpdated, res.DevicesBound, failed)
		if len(res.Errors) > 0 {
			rows := make([][]string, len(res.Errors))
			for i, e := range res.Errors {
				rows[i] = []string{strconv.Itoa(e.Line), e.Error}
			}
			if err := s.table([]string{"LINE", "ERROR"}, rows); err != nil {
				return err
			}
		}
		if res.ErrorsOmitted > 0 {
			fmt.Fprintf(s.out, "(%d more line errors not listed)\n", res.ErrorsOmitted)
		}
		if failed > 0 {
			// A script migrating users learns that some did not land.
			return fmt.Errorf("%d lines were not imported (or not wholly: see their errors)", failed)
		}
		return nil
	}
}

// progressReader counts what the request has read of the file, and says
// so on w at most once per every.
type progressReader struct {
	r            io.Reader
	total        int64 // -1: unknown (stdin)
	w            io.Writer
	every        time.Duration
	sent, lines  int64
	lastByte     byte
	last         time.Time
	lastWasFinal bool
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.sent += int64(n)
	p.lines += int64(bytes.Count(b[:n], []byte{'\n'}))
	if n > 0 {
		p.lastByte = b[n-1]
	}
	p.report(false)
	return n, err
}

// report writes the progress line, overwriting the previous one; final
// ends it.
func (p *progressReader) report(final bool) {
	if p.lastWasFinal || !final && time.Since(p.last) < p.every {
		return
	}
	p.last = time.Now()
	of := ""
	if p.total >= 0 {
		of = " of " + mib(p.total)
	}
	end := ""
	if final {
		end, p.lastWasFinal = "\n", true
	}
	lines := p.lines
	if p.sent > 0 && p.lastByte != '\n' {
		lines++ // the line being sent, or a last one without its newline
	}
	fmt.Fprintf(p.w, "\rimport: %s%s sent, %d lines%s", mib(p.sent), of, lines, end)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
