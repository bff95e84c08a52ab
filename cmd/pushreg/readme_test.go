package main

import (
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

// readmeStep is one "$ command" of a README example and what follows it.
type readmeStep struct {
	command string
	want    string
}

// readmeExample returns the indented example block of the README that
// starts with the line first.
func readmeExample(t *testing.T, first string) []readmeStep {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(readme), "\n")
	start := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "    $ "+first) {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("README has no example starting %q", first)
	}
	var steps []readmeStep
	for _, l := range lines[start:] {
		if !strings.HasPrefix(l, "    ") {
			break
		}
		l = strings.TrimPrefix(l, "    ")
		if cmd, ok := strings.CutPrefix(l, "$ "); ok {
			steps = append(steps, readmeStep{command: cmd})
			continue
		}
		steps[len(steps)-1].want += l + "\n"
	}
	return steps
}

// shellWords splits a command line as the shell would for the simple
// quoting the README uses: single quotes, no escapes.
func shellWords(s string) []string {
	var words []string
	var w strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				words = append(words, w.String())
				w.Reset()
			}
			inWord = false
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

var (
	readmeIDs   = regexp.MustCompile(`\b([0-9a-f]{24}|[0-9a-f]{32})\b`) // users' ObjectIDs, session IDs
	readmeTimes = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)
)

// normalizeOutput replaces IDs and times, which differ from run to run,
// by placeholders of the same width, so that a table's alignment is
// still compared.
func normalizeOutput(s string) string {
	s = readmeIDs.ReplaceAllStringFunc(s, func(id string) string { return strings.Repeat("x", len(id)) })
	return readmeTimes.ReplaceAllString(s, "YYYY-MM-DDThh:mm:ssZ")
}

// The admin command line's example in the README is what the CLI prints
// against a running service (IDs and times aside).
func TestREADMECLIExample(t *testing.T) {
	t.Parallel()
	a := newAPI(t, nil)
	env := map[string]string{"PUSHREG_URL": a.url, "PUSHREG_ADMIN_USERNAME": adminName, "PUSHREG_ADMIN_PASSWORD": adminPass}
	steps := readmeExample(t, "export PUSHREG_URL=")
	if len(steps) < 4 {
		t.Fatalf("the example has %d steps", len(steps))
	}
	for _, st := range steps {
		words := shellWords(st.command)
		var got string
		switch {
		case words[0] == "export":
		case len(words) > 2 && words[0] == "go" && words[1] == "run" && words[2] == "./cmd/pushreg":
			out, errOut, err := cliRun(env, words[3:]...)
			got = out + errOut
			if err != nil {
				got += "pushreg: " + err.Error() + "\n"
			}
		case words[0] == "curl":
			got = readmeCurl(t, a, words)
		default:
			t.Fatalf("the test cannot run %q", st.command)
		}
		if normalizeOutput(got) != normalizeOutput(st.want) {
			t.Errorf("$ %s\nprinted:\n%s\nthe README shows:\n%s", st.command, got, st.want)
		}
	}
}

// readmeCurl runs a README curl line: a POST of -d's JSON to a path
// under $PUSHREG_URL, its answer thrown away when the line says so.
func readmeCurl(t *testing.T, a *api, words []string) string {
	t.Helper()
	var path, body string
	quiet := false
	for i, w := range words {
		switch {
		case strings.HasPrefix(w, "$PUSHREG_URL"):
			path = strings.TrimPrefix(w, "$PUSHREG_URL")
		case w == "-d" && i+1 < len(words):
			body = words[i+1]
		case w == ">/dev/null":
			quiet = true
		}
	}
	if path == "" || body == "" {
		t.Fatalf("the test cannot run curl %q", words)
	}
	r := a.do(request{method: "POST", path: path, body: body})
	if r.status != http.StatusOK {
		t.Fatalf("curl %s = %d %s", path, r.status, r.body)
	}
	if quiet {
		return ""
	}
	return string(r.body) + "\n"
}
