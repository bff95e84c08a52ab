package push_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"firebase.google.com/go/v4/messaging"

	"github.com/pushreg/pushreg/push"
)

func TestCheckTokenShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		token   string
		wantErr string // a part of the message; "" for no error
	}{
		{"real shape", "cX9Lm1s_Q-ek:APA91bF1x7Yq-abc_DEF.123", ""},
		{"one char", "a", ""},
		{"longest", strings.Repeat("a", push.MaxTokenLength), ""},
		{"empty", "", "empty"},
		{"too long", strings.Repeat("a", push.MaxTokenLength+1), "longer than 4096"},
		{"space", "abc def", "position 3"},
		{"slash", "/abc", "position 0"},
		{"plus", "abc+", "position 3"},
		{"newline at end", "abc\n", "position 3"},
		{"non-ASCII", "abé", "position 2"},
		{"NUL", "a\x00", "position 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := push.CheckTokenShape(tt.token)
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("CheckTokenShape = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, push.ErrTokenMalformed) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CheckTokenShape = %v, want ErrTokenMalformed saying %q", err, tt.wantErr)
			}
			if len(tt.token) > 1 && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error %q quotes the token", err)
			}
		})
	}
}

func TestCheckMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		msg     *push.Message
		wantErr string // a part of the message; "" for no error
	}{
		{"data", &push.Message{Data: map[string]string{"k": "v"}}, ""},
		{"notification", &push.Message{Notification: &messaging.Notification{Title: "hi"}}, ""},
		{"android only", &push.Message{Android: &messaging.AndroidConfig{Priority: "high"}}, ""},
		// The push ID pushreg adds takes 47 of FCM's 4,096 bytes.
		{"exactly 4096 with the push ID", &push.Message{Data: map[string]string{"ab": strings.Repeat("v", 4094-47)}}, ""},
		{"collapse_key is allowed", &push.Message{Data: map[string]string{"collapse_key": "v"}}, ""},
		{"googled without dot", &push.Message{Data: map[string]string{"googled": "v"}}, ""},
		{"nil", nil, "empty message"},
		{"empty", &push.Message{}, "empty message"},
		{"only FCM options", &push.Message{FCMOptions: &messaging.FCMOptions{AnalyticsLabel: "x"}}, "empty message"},
		{"4097 with the push ID", &push.Message{Data: map[string]string{"ab": strings.Repeat("v", 4095-47)}}, "4097 bytes"},
		{"the push ID's key", &push.Message{Data: map[string]string{push.PushIDKey: "mine"}}, "reserved"},
		{"many keys over", manyKeys(300), "with the push ID, more than 4096"},
		{"from", &push.Message{Data: map[string]string{"from": "v"}}, `"from" is reserved`},
		{"notification key", &push.Message{Data: map[string]string{"notification": "v"}}, "reserved"},
		{"message_type", &push.Message{Data: map[string]string{"message_type": "v"}}, "reserved"},
		{"google.", &push.Message{Data: map[string]string{"google.c.a.e": "1"}}, "reserved prefix"},
		{"gcm.", &push.Message{Data: map[string]string{"gcm.n.e": "1"}}, "reserved prefix"},
		{"empty key", &push.Message{Data: map[string]string{"": "v"}}, "empty data key"},
		{"bad UTF-8", &push.Message{Data: map[string]string{"k": "\xff"}}, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := push.CheckMessage(tt.msg)
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("CheckMessage = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, push.ErrPayloadInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CheckMessage = %v, want ErrPayloadInvalid saying %q", err, tt.wantErr)
			}
		})
	}
}

// manyKeys returns a message of n distinct keys of 16 bytes, each with a
// value of 8 bytes.
func manyKeys(n int) *push.Message {
	m := &push.Message{Data: make(map[string]string, n)}
	for i := range n {
		m.Data[fmt.Sprintf("key-%012d", i)] = "vvvvvvvv"
	}
	return m
}
