package push_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushreg/pushreg/push"
	"github.com/pushreg/pushreg/push/fcmtest"
)

// serviceAccountFile writes a service-account credentials file with a fresh
// key. Nothing uses it to sign here: New only loads it.
func serviceAccountFile(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "from-the-file",
		"private_key_id": "test-key",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   "pushreg@from-the-file.iam.gserviceaccount.com",
		"client_id":      "1",
		"token_uri":      "http://127.0.0.1:1/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestNewModes(t *testing.T) {
	t.Parallel()
	creds := serviceAccountFile(t)
	tests := []struct {
		name        string
		cfg         push.Config
		wantMode    push.Mode
		wantProject string
		wantErr     error // nil: success
	}{
		{name: "nothing", cfg: push.Config{}, wantMode: push.ModeFormatOnly},
		{name: "project alone", cfg: push.Config{ProjectID: "p"}, wantMode: push.ModeFormatOnly},
		{name: "endpoint", cfg: push.Config{Endpoint: "http://127.0.0.1:9/v1"}, wantMode: push.ModeEndpoint, wantProject: push.DefaultEndpointProject},
		{name: "endpoint and project", cfg: push.Config{Endpoint: "http://127.0.0.1:9/v1/", ProjectID: "p"}, wantMode: push.ModeEndpoint, wantProject: "p"},
		{name: "credentials file", cfg: push.Config{CredentialsFile: creds, ProjectID: "p"}, wantMode: push.ModeFirebase, wantProject: "p"},
		{name: "application credentials", cfg: push.Config{GoogleApplicationCredentials: creds, ProjectID: "p"}, wantMode: push.ModeFirebase, wantProject: "p"},
		// GOOGLE_APPLICATION_CREDENTIALS is often set machine-wide; an
		// explicit endpoint wins over it.
		{name: "endpoint over application credentials", cfg: push.Config{Endpoint: "http://127.0.0.1:9/v1", GoogleApplicationCredentials: creds}, wantMode: push.ModeEndpoint, wantProject: push.DefaultEndpointProject},
		{name: "endpoint and credentials file", cfg: push.Config{Endpoint: "http://127.0.0.1:9/v1", CredentialsFile: creds, ProjectID: "p"}, wantErr: push.ErrConfig},
		{name: "credentials without project", cfg: push.Config{CredentialsFile: creds}, wantErr: push.ErrConfig},
		{name: "endpoint not a URL", cfg: push.Config{Endpoint: "127.0.0.1:9"}, wantErr: push.ErrConfig},
		{name: "negative timeout", cfg: push.Config{ValidateTimeout: -1}, wantErr: push.ErrConfig},
		{name: "negative attempts", cfg: push.Config{MaxAttempts: -1}, wantErr: push.ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := push.New(context.Background(), tt.cfg)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("New error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if c.Mode() != tt.wantMode || c.ProjectID() != tt.wantProject {
				t.Errorf("New = mode %q project %q, want %q %q", c.Mode(), c.ProjectID(), tt.wantMode, tt.wantProject)
			}
		})
	}
}

// TestNewEndpointOnly checks that a Client given nothing but the double's
// endpoint works with it.
func TestNewEndpointOnly(t *testing.T) {
	t.Parallel()
	srv := fcmtest.New(t)
	c, err := push.New(context.Background(), push.Config{Endpoint: srv.Endpoint()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if got, err := c.Validate(context.Background(), token(1)); err != nil || !got.Verified {
		t.Errorf("Validate = %+v, %v; want verified", got, err)
	}
}

func TestNewMissingCredentials(t *testing.T) {
	t.Parallel()
	_, err := push.New(context.Background(), push.Config{
		CredentialsFile: filepath.Join(t.TempDir(), "missing.json"),
		ProjectID:       "p",
	})
	if err == nil {
		t.Fatal("New with a missing credentials file succeeded")
	}
}

// Format-only mode is the development default, so it is said once, at
// info: a fresh start logs no warning.
func TestNewFormatOnlySaysSoOnce(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	c, err := push.New(context.Background(), push.Config{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for range 3 {
		if _, err := c.Validate(context.Background(), token(1)); err != nil {
			t.Fatalf("Validate: %v", err)
		}
	}
	if n := strings.Count(buf.String(), "level=INFO"); n != 1 || strings.Contains(buf.String(), "level=WARN") {
		t.Errorf("logged %d info lines (want 1) or a warning:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "shape only") {
		t.Errorf("the log does not say validation is format-only:\n%s", buf.String())
	}
}
