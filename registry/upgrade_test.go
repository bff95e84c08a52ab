package registry_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/pushreg/pushreg/registry"
	"github.com/pushreg/pushreg/registry/mongodb"
)

// oldDevice is a device as versions before user_devices stored it.
func oldDevice(user, device, token string, status registry.TokenStatus, seen time.Time) bson.D {
	key := "none:" + user + "/" + device
	if token != "" {
		key = registry.TokenKey(token)
	}
	return bson.D{
		{Key: "_id", Value: user + "/" + device}, {Key: "user_id", Value: user}, {Key: "device_id", Value: device},
		{Key: "platform", Value: "android"}, {Key: "fcm_token", Value: token}, {Key: "token_key", Value: key},
		{Key: "token_status", Value: status}, {Key: "token_validated_at", Value: seen},
		{Key: "token_updated_at", Value: seen}, {Key: "last_seen_at", Value: seen},
		{Key: "created_at", Value: seen.Add(-time.Hour)}, {Key: "session_id", Value: "s-" + user + "-" + device},
	}
}

func TestUpgradeMovesOldDevices(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, w mongodb.Writes) {
		clk := newClock()
		s, db := newStoreWriting(t, registry.Config{Now: clk.Now, Writes: w})
		ctx := context.Background()
		seen := clk.Now().Add(-24 * time.Hour).Truncate(time.Millisecond)
		old := []any{
			oldDevice("alice", "phone", "tok-alice", registry.TokenValid, seen),
			oldDevice("alice", "tablet", "", registry.TokenUnbound, seen),
			oldDevice("bob", "phone", "tok-bob-old", registry.TokenValid, seen),
			oldDevice("carol", "phone", "tok-carol", registry.TokenValid, seen),
			oldDevice("erin", "web", "tok-erin", registry.TokenUnverified, seen),
		}
		if _, err := db.Collection("devices").InsertMany(ctx, old); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Collection("devices").Indexes().CreateOne(ctx, mongo.IndexModel{
			Keys: bson.D{{Key: "token_key", Value: 1}}, Options: options.Index().SetUnique(true).SetName("token_key_unique")}); err != nil {
			t.Fatal(err)
		}
		// Since this version started: bob's phone bound a new token, and
		// carol's token moved to dave's phone. Both win over the old
		// records.
		for _, b := range []registry.Binding{
			{UserID: "bob", DeviceID: "phone", FCMToken: "tok-bob-new", Verified: true},
			{UserID: "dave", DeviceID: "phone", FCMToken: "tok-carol", Verified: true},
		} {
			if _, err := s.Bind(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Upgrade(ctx); err != nil {
			t.Fatal(err)
		}
		// An upgrade stopped before its drop runs again over the same
		// documents: nothing changes.
		if _, err := db.Collection("devices").InsertMany(ctx, old); err != nil {
			t.Fatal(err)
		}
		if err := s.Upgrade(ctx); err != nil {
			t.Fatalf("second Upgrade: %v", err)
		}
		if err := s.Upgrade(ctx); err != nil {
			t.Fatalf("third Upgrade (nothing to do): %v", err)
		}

		for _, tc := range []struct {
			user, device, token string
			status              registry.TokenStatus
		}{
			{"alice", "phone", "tok-alice", registry.TokenValid},
			{"alice", "tablet", "", registry.TokenUnbound},
			{"bob", "phone", "tok-bob-new", registry.TokenValid},
			{"carol", "phone", "", registry.TokenUnbound},
			{"dave", "phone", "tok-carol", registry.TokenValid},
			{"erin", "web", "tok-erin", registry.TokenUnverified},
		} {
			d, err := s.Get(ctx, tc.user, tc.device)
			if err != nil {
				t.Errorf("%s/%s: %v", tc.user, tc.device, err)
				continue
			}
			if d.FCMToken != tc.token || d.TokenStatus != tc.status {
				t.Errorf("%s/%s = token %q %s, want %q %s", tc.user, tc.device, d.FCMToken, d.TokenStatus, tc.token, tc.status)
			}
			if tc.user == "alice" && (!d.LastSeenAt.Equal(seen) || d.SessionID != "s-alice-"+tc.device || d.Platform != "android") {
				t.Errorf("%s/%s = %+v, want its times, session and platform kept", tc.user, tc.device, d)
			}
		}
		devs, _, err := s.List(ctx, registry.DeviceQuery{UserID: "alice", Limit: 10})
		if err != nil || len(devs) != 2 {
			t.Errorf("alice's devices = %d, %v; want 2", len(devs), err)
		}
		names, err := db.ListCollectionNames(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(names, "devices") {
			t.Errorf("the old devices collection is still there: %v", names)
		}
		// The moved devices' tokens have holders: binding one elsewhere
		// moves it.
		res, err := s.Bind(ctx, registry.Binding{UserID: "zed", DeviceID: "x", FCMToken: "tok-alice"})
		if err != nil || len(res.MovedFrom) != 1 || res.MovedFrom[0].UserID != "alice" {
			t.Errorf("binding alice's upgraded token: MovedFrom %+v, %v; want alice's phone", res.MovedFrom, err)
		}
		// The sweeper finds the upgraded unverified token.
		if res, err := s.Sweep(ctx, verdicts{"tok-erin": registry.VerdictValid}, nil); err != nil || res.Verified != 1 {
			t.Errorf("Sweep = %+v, %v; want erin's token verified", res, err)
		}
	})
}
