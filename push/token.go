package push

import "fmt"

// MaxTokenLength is the longest registration token CheckTokenShape accepts.
// FCM documents no length; real tokens run to about 160–200 characters, so
// 4096 leaves room for growth while keeping garbage out of the database.
const MaxTokenLength = 4096

// CheckTokenShape reports whether token looks like an FCM registration token:
// 1 to MaxTokenLength characters, each an ASCII letter or digit, or one of
// "-", "_", ":" and "." (real tokens read "<instance-id>:APA91b..."). The error
// wraps ErrTokenMalformed and says what is wrong and where, never quoting the
// token, which is a credential to reach a device.
func CheckTokenShape(token string) error {
	switch {
	case token == "":
		return fmt.Errorf("%w: empty", ErrTokenMalformed)
	case len(token) > MaxTokenLength:
		return fmt.Errorf("%w: %d bytes long, longer than %d", ErrTokenMalformed, len(token), MaxTokenLength)
	}
	// Bytes, not runes: any non-ASCII byte is already wrong, and positions in
	// bytes are what a caller can use to find it.
	for i := 0; i < len(token); i++ {
		if !tokenByte(token[i]) {
			return fmt.Errorf("%w: character not allowed at position %d", ErrTokenMalformed, i)
		}
	}
	return nil
}

func tokenByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	case b == '-', b == '_', b == ':', b == '.':
		return true
	}
	return false
}
