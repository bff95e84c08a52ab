package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are argon2id's cost parameters.
type PasswordParams struct {
	MemoryKiB   uint32
	Iterations  uint32
	Parallelism uint8
}

// OWASPParams is OWASP's recommended argon2id configuration
// (m=19 MiB, t=2, p=1).
var OWASPParams = PasswordParams{MemoryKiB: 19 * 1024, Iterations: 2, Parallelism: 1}

// hashPassword returns a PHC string: $argon2id$v=19$m=..,t=..,p=..$salt$hash.
func hashPassword(password string, p PasswordParams) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	sum := argon2.IDKey([]byte(password), salt, p.Iterations, p.MemoryKiB, p.Parallelism, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		p.MemoryKiB, p.Iterations, p.Parallelism, b64.EncodeToString(salt), b64.EncodeToString(sum))
}

// checkPassword reports whether password matches the PHC hash, in time
// that does not depend on where they differ.
func checkPassword(password, phc string) (bool, error) {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("auth: unknown password hash format")
	}
	var p PasswordParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Iterations, &p.Parallelism); err != nil {
		return false, fmt.Errorf("auth: password hash parameters: %w", err)
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err := errors.Join(err1, err2); err != nil {
		return false, fmt.Errorf("auth: password hash: %w", err)
	}
	// A corrupt stored hash must be an error: argon2 panics on an empty
	// key length, and absurd costs would let one row stall a login.
	if len(salt) < 8 || len(want) < 16 || len(want) > 64 ||
		p.MemoryKiB < 8 || p.MemoryKiB > 1<<21 || p.Iterations < 1 || p.Iterations > 16 || p.Parallelism < 1 {
		return false, errors.New("auth: password hash out of bounds")
	}
	got := argon2.IDKey([]byte(password), salt, p.Iterations, p.MemoryKiB, p.Parallelism, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
