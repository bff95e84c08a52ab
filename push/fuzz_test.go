package push

import (
	"errors"
	"testing"
)

// FuzzCheckTokenShape: whatever it accepts has the token alphabet and length.
func FuzzCheckTokenShape(f *testing.F) {
	for _, s := range []string{"", "abc:APA91b-_.", "a b", "\x00", "ü", string(make([]byte, MaxTokenLength+1))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := CheckTokenShape(s)
		if err != nil {
			if !errors.Is(err, ErrTokenMalformed) {
				t.Fatalf("error %v does not wrap ErrTokenMalformed", err)
			}
			return
		}
		if len(s) == 0 || len(s) > MaxTokenLength {
			t.Fatalf("accepted a token of length %d", len(s))
		}
		for i := 0; i < len(s); i++ {
			if !tokenByte(s[i]) {
				t.Fatalf("accepted byte %q at %d", s[i], i)
			}
		}
	})
}
