package handlers

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pushreg/pushreg/auth"
)

func (s *server) adminRoutes(g *echo.Group) {
	admin := requireAdmin("")
	read := requireAdmin(auth.ScopeDevicesRead)
	g.POST("/users", s.createUser, admin)
	g.GET("/users", s.listUsers, read)
	g.GET("/users/:id", s.getUser, read)
	g.PATCH("/users/:id", s.patchUser, admin)
	g.GET("/users/:id/devices", s.adminDevices, read)
	g.DELETE("/users/:id/devices/:device_id", s.adminDeleteDevice, admin)
	g.DELETE("/users/:id/sessions", s.adminRevokeSessions, admin)
	g.GET("/users/:id/events", s.adminEvents, read)
	g.POST("/apps", s.createApp, admin)
	g.DELETE("/apps/:app_id", s.revokeApp, admin)
	// POST /v1/admin/import is registered by importRoute: it needs a
	// longer timeout and a larger body than this group allows.
}

type planJSON struct {
	Name           string `json:"name"`
	DeviceCount    int    `json:"device_count"`
	DataPointCount int    `json:"data_point_count"`
	EmailCount     int    `json:"email_count"`
}

type userJSON struct {
	ID          string     `json:"id"`
	Username    string     `json:"username"`
	Email       string     `json:"email,omitempty"`
	Roles       []string   `json:"roles"`
	Disabled    bool       `json:"disabled"`
	Nickname    string     `json:"nickname,omitempty"`
	Timezone    string     `json:"timezone,omitempty"`
	Language    string     `json:"language,omitempty"`
	ImageURL    string     `json:"image_url,omitempty"`
	Plan        planJSON   `json:"plan"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	LastLoginAt *time.Time `json:"last_login_at,omitempty"`
}

func toUserJSON(u *auth.User) userJSON {
	out := userJSON{ID: u.ID, Username: u.Username, Email: u.Email, Roles: u.Roles, Disabled: u.Disabled,
		Nickname: u.Profile.Nickname, Timezone: u.Profile.Timezone, Language: u.Profile.Language,
		ImageURL: u.Profile.ImageURL, Plan: planJSON(u.Profile.Plan), CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
	if !u.LastLoginAt.IsZero() {
		t := u.LastLoginAt
		out.LastLoginAt = &t
	}
	return out
}

type createUserRequest struct {
	Username string    `json:"username"`
	Password string    `json:"password"`
	Email    string    `json:"email"`
	Nickname string    `json:"nickname"`
	Roles    []string  `json:"roles"`
	Timezone string    `json:"timezone"`
	Language string    `json:"language"`
	ImageURL string    `json:"image_url"`
	Plan     *planJSON `json:"plan"`
}

func (s *server) createUser(c echo.Context) error {
	var req createUserRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	n := auth.NewUser{Username: req.Username, Password: req.Password, Email: req.Email, Roles: req.Roles,
		Profile: auth.Profile{Nickname: req.Nickname, Timezone: req.Timezone, Language: req.Language, ImageURL: req.ImageURL}}
	if req.Plan != nil {
		n.Profile.Plan = auth.Plan(*req.Plan)
	}
	u, err := s.auth.CreateUser(c.Request().Context(), n, currentPrincipal(c).actor())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toUserJSON(u))
}

type userList struct {
	Users      []userJSON `json:"users"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

// listUsers finds one user by exact ?username=, or pages through users in
// username order, optionally those starting with ?prefix=.
func (s *server) listUsers(c echo.Context) error {
	ctx := c.Request().Context()
	if name := c.QueryParam("username"); name != "" {
		u, err := s.auth.UserByName(ctx, name)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, userList{Users: []userJSON{toUserJSON(u)}})
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	users, next, err := s.auth.Users(ctx, c.QueryParam("prefix"), c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	out := userList{Users: make([]userJSON, len(users)), NextCursor: next}
	for i := range users {
		out.Users[i] = toUserJSON(&users[i])
	}
	return c.JSON(http.StatusOK, out)
}

func (s *server) getUser(c echo.Context) error {
	u, err := s.auth.User(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toUserJSON(u))
}

type patchUserRequest struct {
	Email    *string   `json:"email"`
	Password *string   `json:"password"`
	Roles    *[]string `json:"roles"`
	Disabled *bool     `json:"disabled"`
	Nickname *string   `json:"nickname"`
	Timezone *string   `json:"timezone"`
	Language *string   `json:"language"`
	ImageURL *string   `json:"image_url"`
	Plan     *planJSON `json:"plan"`
	// KeepSessions keeps the user's sessions through a password change.
	KeepSessions bool `json:"keep_sessions"`
}

func (s *server) patchUser(c echo.Context) error {
	var req patchUserRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	p := auth.UserPatch{Email: req.Email, Password: req.Password, Roles: req.Roles, Disabled: req.Disabled,
		Nickname: req.Nickname, Timezone: req.Timezone, Language: req.Language, ImageURL: req.ImageURL,
		KeepSessions: req.KeepSessions}
	if req.Plan != nil {
		plan := auth.Plan(*req.Plan)
		p.Plan = &plan
	}
	u, err := s.auth.UpdateUser(c.Request().Context(), c.Param("id"), p, currentPrincipal(c).actor())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toUserJSON(u))
}

// existingUser makes a route about an unknown user answer 404.
func (s *server) existingUser(c echo.Context) (string, error) {
	u, err := s.auth.User(c.Request().Context(), c.Param("id"))
	if err != nil {
		return "", err
	}
	return u.ID, nil
}

func (s *server) adminDevices(c echo.Context) error {
	id, err := s.existingUser(c)
	if err != nil {
		return err
	}
	return s.listDevices(c, id)
}

func (s *server) adminDeleteDevice(c echo.Context) error {
	id, err := s.existingUser(c)
	if err != nil {
		return err
	}
	if err := s.auth.AdminRemoveDevice(c.Request().Context(), id, c.Param("device_id"), currentPrincipal(c).actor()); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *server) adminRevokeSessions(c echo.Context) error {
	id, err := s.existingUser(c)
	if err != nil {
		return err
	}
	n, err := s.auth.RevokeUserSessions(c.Request().Context(), id, currentPrincipal(c).actor())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]int{"revoked": n})
}

type eventJSON struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Actor     string    `json:"actor,omitempty"`
	DeviceID  string    `json:"device_id,omitempty"`
	SessionID string    `json:"session_id,omitempty"`
	Outcome   string    `json:"outcome,omitempty"`
	At        time.Time `json:"at"`
}

func (s *server) adminEvents(c echo.Context) error {
	id, err := s.existingUser(c)
	if err != nil {
		return err
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	events, next, err := s.auth.AuditTrail(c.Request().Context(), id, c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	out := struct {
		Events     []eventJSON `json:"events"`
		NextCursor string      `json:"next_cursor,omitempty"`
	}{Events: make([]eventJSON, len(events)), NextCursor: next}
	for i, e := range events {
		out.Events[i] = eventJSON{ID: e.ID, Type: e.Type, Actor: e.Actor, DeviceID: e.DeviceID,
			SessionID: e.SessionID, Outcome: e.Outcome, At: e.At}
	}
	return c.JSON(http.StatusOK, out)
}

func (s *server) createApp(c echo.Context) error {
	var req struct {
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	app, secret, err := s.auth.CreateApp(c.Request().Context(), req.Name, req.Scopes)
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(http.StatusCreated, map[string]any{"app_id": app.ID, "app_secret": secret,
		"name": app.Name, "scopes": app.Scopes})
}

func (s *server) revokeApp(c echo.Context) error {
	if err := s.auth.RevokeApp(c.Request().Context(), c.Param("app_id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
