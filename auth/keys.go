package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Key is one verification key, and a signing key when Private is set.
type Key struct {
	ID      string
	Public  crypto.PublicKey
	Private crypto.Signer
	method  jwt.SigningMethod
}

// KeySet holds the keys that verify pushreg's JWTs; the first private key
// signs. Listing the old key after a new one rotates keys without logging
// anyone out.
type KeySet struct {
	signer *Key
	byID   map[string]*Key
	order  []*Key
	// macKeys authenticate refresh tokens; the first mints.
	macKeys [][]byte
}

// NewKeySet builds a key set; one key must be private.
func NewKeySet(keys ...*Key) (*KeySet, error) {
	ks := &KeySet{byID: map[string]*Key{}}
	for _, k := range keys {
		if err := k.complete(); err != nil {
			return nil, err
		}
		if _, dup := ks.byID[k.ID]; dup {
			continue
		}
		ks.byID[k.ID] = k
		ks.order = append(ks.order, k)
		if ks.signer == nil && k.Private != nil {
			ks.signer = k
		}
	}
	if ks.signer == nil {
		return nil, errors.New("auth: no private signing key")
	}
	// Refresh tokens carry a MAC so a forged token can never trigger reuse
	// detection. Its keys derive from the private keys, so every instance
	// sharing the keys file agrees on them, and a rotated-out private key
	// still listed keeps its refresh tokens valid: the signer's key mints,
	// every private key's verifies.
	for _, k := range append([]*Key{ks.signer}, ks.order...) {
		if k.Private == nil || (k != ks.signer && k.ID == ks.signer.ID) {
			continue
		}
		der, err := x509.MarshalPKCS8PrivateKey(k.Private)
		if err != nil {
			return nil, fmt.Errorf("auth: key %s: %w", k.ID, err)
		}
		mk, err := hkdf.Key(sha256.New, der, nil, "pushreg refresh token mac", 32)
		if err != nil {
			return nil, err
		}
		ks.macKeys = append(ks.macKeys, mk)
	}
	return ks, nil
}

func (k *Key) complete() error {
	if k.Public == nil && k.Private != nil {
		k.Public = k.Private.Public()
	}
	switch pub := k.Public.(type) {
	case ed25519.PublicKey:
		k.method = jwt.SigningMethodEdDSA
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return errors.New("auth: only P-256 EC keys are supported")
		}
		k.method = jwt.SigningMethodES256
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return errors.New("auth: RSA keys must have at least 2048 bits")
		}
		k.method = jwt.SigningMethodRS256
	default:
		return fmt.Errorf("auth: unsupported key type %T", k.Public)
	}
	if k.ID == "" {
		k.ID = thumbprint(k.Public)
	}
	return nil
}

// GenerateKey makes a fresh Ed25519 signing key.
func GenerateKey() (*Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Key{Private: priv}, nil
}

// LoadOrGenerateKeys reads the comma-separated keys files (JWK Sets or PEM),
// or, with none given, the key in dir, generating it on first use.
func LoadOrGenerateKeys(files, dir string) (*KeySet, error) {
	if files != "" {
		var keys []*Key
		for _, f := range strings.Split(files, ",") {
			ks, err := readKeyFile(strings.TrimSpace(f))
			if err != nil {
				return nil, err
			}
			keys = append(keys, ks...)
		}
		return NewKeySet(keys...)
	}
	path := filepath.Join(dir, "jwt-signing-key.pem")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		k, err := GenerateKey()
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k.Private)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("auth: key directory: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("auth: write key: %w", err)
		}
		werr := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := errors.Join(werr, f.Close()); err != nil {
			return nil, fmt.Errorf("auth: write key: %w", err)
		}
	}
	keys, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	return NewKeySet(keys...)
}

func readKeyFile(path string) ([]*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: keys file: %w", err)
	}
	var keys []*Key
	if strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
		keys, err = parseJWKS(data)
	} else {
		keys, err = parsePEM(data)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: keys file %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("auth: keys file %s holds no key", path)
	}
	return keys, nil
}

func parsePEM(data []byte) ([]*Key, error) {
	var keys []*Key
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return keys, nil
		}
		switch block.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			signer, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("unsupported private key %T", k)
			}
			keys = append(keys, &Key{Private: signer})
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			keys = append(keys, &Key{Private: k})
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			keys = append(keys, &Key{Public: k})
		default:
			return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
		}
	}
}

// jwk is the subset of RFC 7517/8037 fields pushreg reads and writes.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	D   string `json:"d,omitempty"`
}

func parseJWKS(data []byte) ([]*Key, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	var keys []*Key
	for i, j := range set.Keys {
		k, err := j.key()
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func (j jwk) key() (*Key, error) {
	b64 := base64.RawURLEncoding
	switch {
	case j.Kty == "OKP" && j.Crv == "Ed25519":
		x, err := b64.DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 x")
		}
		k := &Key{ID: j.Kid, Public: ed25519.PublicKey(x)}
		if j.D != "" {
			d, err := b64.DecodeString(j.D)
			if err != nil || len(d) != ed25519.SeedSize {
				return nil, errors.New("bad Ed25519 d")
			}
			k.Private = ed25519.NewKeyFromSeed(d)
		}
		return k, nil
	case j.Kty == "EC" && j.Crv == "P-256":
		x, errX := b64.DecodeString(j.X)
		y, errY := b64.DecodeString(j.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return nil, errors.New("bad EC coordinates")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("bad EC key: %w", err)
		}
		k := &Key{ID: j.Kid, Public: pub}
		if j.D != "" {
			d, err := b64.DecodeString(j.D)
			if err != nil {
				return nil, errors.New("bad EC d")
			}
			priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
			if err != nil || !priv.PublicKey.Equal(pub) {
				return nil, errors.New("bad EC d: not the private key of x, y")
			}
			k.Private = priv
		}
		return k, nil
	case j.Kty == "RSA" && j.D == "":
		n, errN := b64.DecodeString(j.N)
		e, errE := b64.DecodeString(j.E)
		if errN != nil || errE != nil {
			return nil, errors.New("bad RSA modulus or exponent")
		}
		return &Key{ID: j.Kid, Public: &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}}, nil
	}
	return nil, fmt.Errorf("unsupported JWK kty %q crv %q (RSA private keys: use PEM)", j.Kty, j.Crv)
}

func publicJWK(k *Key) jwk {
	b64 := base64.RawURLEncoding
	j := jwk{Kid: k.ID, Use: "sig", Alg: k.method.Alg()}
	switch pub := k.Public.(type) {
	case ed25519.PublicKey:
		j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64.EncodeToString(pub)
	case *ecdsa.PublicKey:
		j.Kty, j.Crv = "EC", "P-256"
		if b, err := pub.Bytes(); err == nil && len(b) == 65 { // 0x04 | x | y
			j.X, j.Y = b64.EncodeToString(b[1:33]), b64.EncodeToString(b[33:])
		}
	case *rsa.PublicKey:
		j.Kty = "RSA"
		j.N = b64.EncodeToString(pub.N.Bytes())
		j.E = b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
	}
	return j
}

// thumbprint is the RFC 7638 JWK thumbprint, used as the key ID.
func thumbprint(pub crypto.PublicKey) string {
	j := publicJWK(&Key{Public: pub, method: jwt.SigningMethodEdDSA})
	var canonical string
	switch j.Kty {
	case "OKP":
		canonical = fmt.Sprintf(`{"crv":%q,"kty":"OKP","x":%q}`, j.Crv, j.X)
	case "EC":
		canonical = fmt.Sprintf(`{"crv":%q,"kty":"EC","x":%q,"y":%q}`, j.Crv, j.X, j.Y)
	case "RSA":
		canonical = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, j.E, j.N)
	}
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// JWKS returns the public keys as a JWK Set document.
func (ks *KeySet) JWKS() []byte {
	set := struct {
		Keys []jwk `json:"keys"`
	}{}
	for _, k := range ks.order {
		set.Keys = append(set.Keys, publicJWK(k))
	}
	b, _ := json.Marshal(set)
	return b
}
