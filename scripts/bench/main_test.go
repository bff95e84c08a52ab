package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string // empty: accepted
	}{
		{args: []string{"--scenarios", "floor-http,floor-store,native-refresh"}},
		{args: []string{"--pprof-addr", "127.0.0.1:6060"}},
		{args: []string{"--scenarios", "push-1000", "--push-devices", "1000"}},
		{args: []string{"--scenarios", "floor-nothing"}, wantErr: "unknown scenario"},
		{args: []string{"--scale", "1000,100000"}},
		{args: []string{"--scale", "100000,1000"}, wantErr: "--scale"},
		{args: []string{"--scale", "1k"}, wantErr: "--scale"},
		{args: []string{"--url", "http://127.0.0.1:8080", "--admin-username", "a", "--admin-password", "b",
			"--pprof-addr", "127.0.0.1:6060"}, wantErr: "--pprof-addr do not apply"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := parseFlags(tt.args, io.Discard)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got error %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// Every name --scenarios accepts must select a scenario that runs, or the
// bench would silently measure nothing.
func TestScenarioNamesMatchScenarios(t *testing.T) {
	b := &bench{o: options{concurrency: 8}}
	var built []string
	for _, s := range b.scenarios() {
		built = append(built, s.name)
	}
	for _, name := range scenarioNames() {
		if !slices.Contains(built, name) {
			t.Errorf("scenario %q is accepted by --scenarios but never built (built: %v)", name, built)
		}
	}
}

// The ratio table compares each scenario's CPU at the largest size with
// the smallest, store CPU included when measured apart.
func TestRatios(t *testing.T) {
	store := 300.0
	got := ratios([]result{
		{Name: "native-refresh", Size: 1000, ServiceCPUus: 500, PerSec: 400},
		{Name: "login", Size: 1000, ServiceCPUus: 40000},
		{Name: "native-refresh", Size: 100000, ServiceCPUus: 600, StoreCPUus: &store, PerSec: 300},
	})
	if len(got) != 1 || got[0].Name != "native-refresh" || got[0].Small != 1000 || got[0].Large != 100000 ||
		got[0].CPURatio != 1.8 || got[0].LargeCPU != 900 {
		t.Errorf("ratios = %+v, want native-refresh 500 → 900 µs, 1.8×, and login left out (no large run)", got)
	}
	if r := ratios([]result{{Name: "x", ServiceCPUus: 1}}); r != nil {
		t.Errorf("ratios of one size = %v, want none", r)
	}
}
