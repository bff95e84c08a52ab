package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
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

// Bounds on the cost of an imported bcrypt hash. Below 4 is not bcrypt;
// above 14 (about a second per check on a server core) one user's login
// would hold a hash slot for seconds.
const (
	minBcryptCost = bcrypt.MinCost
	maxBcryptCost = 14
)

// maxImportMemoryKiB bounds the memory of an imported argon2id hash more
// tightly than a stored one: every login of the user spends it, two per
// core at once, and the memory limit is sized for OWASP's 19 MiB.
const maxImportMemoryKiB = 256 * 1024

// errUnknownHash is a stored hash in no format pushreg checks.
var errUnknownHash = errors.New("auth: unknown password hash format")

// hashPassword returns a PHC string: $argon2id$v=19$m=..,t=..,p=..$salt$hash.
func hashPassword(password string, p PasswordParams) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	sum := argon2.IDKey([]byte(password), salt, p.Iterations, p.MemoryKiB, p.Parallelism, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		p.MemoryKiB, p.Iterations, p.Parallelism, b64.EncodeToString(salt), b64.EncodeToString(sum))
}

// argon2Hash is a parsed argon2id PHC string.
type argon2Hash struct {
	params     PasswordParams
	salt, want []byte
}

// parseArgon2 parses and bounds-checks an argon2id PHC string. A corrupt
// hash must be an error: argon2 panics on an empty key length, and absurd
// costs would let one row stall a login.
func parseArgon2(phc string) (argon2Hash, error) {
	var h argon2Hash
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return h, errUnknownHash
	}
	if parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return h, errors.New("auth: password hash: unsupported argon2 version")
	}
	p := &h.params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Iterations, &p.Parallelism); err != nil {
		return h, fmt.Errorf("auth: password hash parameters: %w", err)
	}
	b64 := base64.RawStdEncoding
	var err1, err2 error
	h.salt, err1 = b64.DecodeString(parts[4])
	h.want, err2 = b64.DecodeString(parts[5])
	if err := errors.Join(err1, err2); err != nil {
		return h, fmt.Errorf("auth: password hash: %w", err)
	}
	if len(h.salt) < 8 || len(h.want) < 16 || len(h.want) > 64 ||
		p.MemoryKiB < 8 || p.MemoryKiB > 1<<21 || p.Iterations < 1 || p.Iterations > 16 || p.Parallelism < 1 {
		return h, errors.New("auth: password hash out of bounds")
	}
	return h, nil
}

// isBcrypt reports whether hash claims to be bcrypt, in the variants
// other backends store: $2a$ (most), $2b$ (OpenBSD, Node) and $2y$ (PHP).
func isBcrypt(hash string) bool {
	return strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$")
}

// checkBcryptHash checks a bcrypt hash's shape and bounds its cost.
func checkBcryptHash(hash string) error {
	if len(hash) != 60 {
		return errors.New("auth: bcrypt hash: not 60 characters")
	}
	cost, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		return fmt.Errorf("auth: bcrypt hash: %w", err)
	}
	if cost < minBcryptCost || cost > maxBcryptCost {
		return errors.New("auth: bcrypt hash: cost out of bounds")
	}
	return nil
}

// validatePasswordHash accepts the hashes a user may be imported with: an
// argon2id PHC string as pushreg writes, or a bcrypt hash, within the
// bounds a login will check. Its error never quotes the hash.
func validatePasswordHash(hash string) error {
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		h, err := parseArgon2(hash)
		if err != nil || h.params.MemoryKiB > maxImportMemoryKiB {
			return invalid("password_hash", "is not a valid argon2id PHC string within bounds (m at most 256 MiB, t 1-16)")
		}
	case isBcrypt(hash):
		if err := checkBcryptHash(hash); err != nil {
			return invalid("password_hash", fmt.Sprintf("is not a valid bcrypt hash of cost %d-%d", minBcryptCost, maxBcryptCost))
		}
	default:
		return invalid("password_hash", "must be argon2id ($argon2id$…) or bcrypt ($2a$, $2b$, $2y$)")
	}
	return nil
}

// checkPassword reports whether password matches the stored hash (argon2id
// PHC, or bcrypt from an import), in time that does not depend on where
// they differ. An empty hash is errUnknownHash: the caller decides what a
// user without a password means.
func checkPassword(password, hash string) (bool, error) {
	if isBcrypt(hash) {
		return checkBcrypt(password, hash)
	}
	h, err := parseArgon2(hash)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), h.salt, h.params.Iterations, h.params.MemoryKiB, h.params.Parallelism, uint32(len(h.want)))
	return subtle.ConstantTimeCompare(got, h.want) == 1, nil
}

// checkBcrypt checks an imported bcrypt hash. bcrypt reads at most 72
// bytes of the password, as the backends that wrote the hash did, so a
// longer password matches as it did there.
func checkBcrypt(password, hash string) (bool, error) {
	if err := checkBcryptHash(hash); err != nil {
		return false, err
	}
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return false, nil
	}
	return false, fmt.Errorf("auth: bcrypt hash: %w", err)
}

// needsRehash reports whether a hash that just checked should be replaced
// by an argon2id hash of the service's parameters: bcrypt hashes, which
// come from imports, are replaced at their user's first login.
func needsRehash(hash string) bool { return isBcrypt(hash) }
