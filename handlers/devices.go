package handlers

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pushreg/pushreg/registry"
)

// deviceJSON is a device on the wire.
type deviceJSON struct {
	DeviceID         string     `json:"device_id"`
	Platform         string     `json:"platform,omitempty"`
	FCMToken         string     `json:"fcm_token,omitempty"`
	TokenStatus      string     `json:"token_status"`
	TokenValidatedAt *time.Time `json:"token_validated_at,omitempty"`
	TokenUpdatedAt   time.Time  `json:"token_updated_at"`
	LastSeenAt       time.Time  `json:"last_seen_at"`
	CreatedAt        time.Time  `json:"created_at"`
	SessionID        string     `json:"session_id,omitempty"`
}

func toDeviceJSON(d registry.Device) deviceJSON {
	out := deviceJSON{DeviceID: d.DeviceID, Platform: d.Platform, FCMToken: d.FCMToken,
		TokenStatus: string(d.TokenStatus), TokenUpdatedAt: d.TokenUpdatedAt, LastSeenAt: d.LastSeenAt,
		CreatedAt: d.CreatedAt, SessionID: d.SessionID}
	if !d.TokenValidatedAt.IsZero() {
		t := d.TokenValidatedAt
		out.TokenValidatedAt = &t
	}
	return out
}

type deviceList struct {
	Devices    []deviceJSON `json:"devices"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

// listDevices answers a page of a user's devices.
func (s *server) listDevices(c echo.Context, userID string) error {
	q, err := deviceQuery(c, userID)
	if err != nil {
		return err
	}
	devices, next, err := s.devices.List(c.Request().Context(), q)
	if err != nil {
		return err
	}
	out := deviceList{Devices: make([]deviceJSON, len(devices)), NextCursor: next}
	for i, d := range devices {
		out.Devices[i] = toDeviceJSON(d)
	}
	noStore(c) // FCM tokens are push addresses: no cache may keep them
	return c.JSON(http.StatusOK, out)
}

// deviceQuery reads ?status=, ?platform=, ?cursor= and ?limit=. A filter
// value no device can have is refused rather than answered with an empty
// page, so a typo ("vaild") is not mistaken for "no such devices".
func deviceQuery(c echo.Context, userID string) (registry.DeviceQuery, error) {
	limit, err := pageLimit(c)
	if err != nil {
		return registry.DeviceQuery{}, err
	}
	status := registry.TokenStatus(c.QueryParam("status"))
	switch status {
	case "", registry.TokenValid, registry.TokenUnverified, registry.TokenInvalid, registry.TokenStale, registry.TokenUnbound:
	default:
		return registry.DeviceQuery{}, errorf(http.StatusBadRequest, "invalid_request",
			"status: must be valid, unverified, invalid, stale or unbound")
	}
	platform := c.QueryParam("platform")
	switch platform { // the platforms auth.DeviceRequest accepts
	case "", "android", "ios", "web":
	default:
		return registry.DeviceQuery{}, errorf(http.StatusBadRequest, "invalid_request", "platform: must be android, ios or web")
	}
	return registry.DeviceQuery{UserID: userID, Status: status, Platform: platform,
		Cursor: c.QueryParam("cursor"), Limit: limit}, nil
}

// pageLimit reads ?limit= (1-200, default 50).
func pageLimit(c echo.Context) (int, error) {
	v := c.QueryParam("limit")
	if v == "" {
		return 50, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 200 {
		return 0, errorf(http.StatusBadRequest, "invalid_request", "limit: must be a whole number from 1 to 200")
	}
	return n, nil
}

func (s *server) myDevices(c echo.Context) error {
	return s.listDevices(c, currentPrincipal(c).userID())
}

// deleteMyDevice removes one of the caller's devices and ends the session
// bound to it.
func (s *server) deleteMyDevice(c echo.Context) error {
	p := currentPrincipal(c)
	if err := s.auth.RemoveDevice(c.Request().Context(), p.userID(), c.Param("device_id"), p.actor()); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
