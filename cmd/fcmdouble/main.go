// Command fcmdouble serves push/fcmtest, the project's FCM HTTP v1 double,
// so that pushes can be tried on one machine without Firebase:
//
//	go run ./cmd/fcmdouble --addr 127.0.0.1:9099 [--latency 20ms]
//
// Its first line is the PUSHREG_FCM_ENDPOINT to start pushreg with. Every
// message it receives is logged (tokens by a short prefix only) and listed,
// newest first, at GET /messages. It listens on loopback addresses only.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/pushreg/pushreg/push/fcmtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fcmdouble:", err)
		os.Exit(1)
	}
}

// run serves the double until ctx is cancelled.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fcmdouble", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("addr", "127.0.0.1:9099", "loopback address to listen on")
	latency := fs.Duration("latency", 0, "how long each request waits before its answer, as FCM's round trip would")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: fcmdouble [--addr 127.0.0.1:9099] [--latency 20ms]")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *latency < 0 {
		return fmt.Errorf("--latency %v: must not be negative", *latency)
	}
	srv, err := fcmtest.NewServer(*addr)
	if err != nil {
		return err
	}
	defer srv.Close()
	srv.SetLatency(*latency)
	log := slog.New(slog.NewTextHandler(stderr, nil))
	srv.Observe(func(r fcmtest.Request) { logRequest(log, r) })

	fmt.Fprintf(stdout, "PUSHREG_FCM_ENDPOINT=%s\n", srv.Endpoint())
	log.Info("FCM double listening", "project", srv.ProjectID(), "messages", srv.URL()+"/messages", "latency", latency.String())
	<-ctx.Done()
	log.Info("stopped")
	return nil
}

// logRequest logs one request: what it was and what the double answered.
func logRequest(log *slog.Logger, r fcmtest.Request) {
	kind := "message"
	if r.ValidateOnly {
		kind = "dry run (token validation)"
	}
	var msg struct {
		Notification struct {
			Title string `json:"title"`
		} `json:"notification"`
	}
	_ = json.Unmarshal(r.Message, &msg)
	attrs := []any{"token", fcmtest.TokenPrefix(r.Token), "answer", string(r.Answer), "status", r.Status}
	if msg.Notification.Title != "" {
		attrs = append(attrs, "title", msg.Notification.Title)
	}
	if len(r.Data) > 0 {
		attrs = append(attrs, "data_keys", len(r.Data))
	}
	log.Info(kind, attrs...)
}
