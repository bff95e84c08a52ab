package auth

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Revoke implements RFC 7009: a refresh token, an access token or a Kecak
// token ends its session. Tokens that are invalid or already dead are not an error: the
// client's goal (the token no longer works) is met.
func (s *Service) Revoke(ctx context.Context, token string) error {
	var sid string
	if rt, err := s.cfg.Keys.decodeRefresh(token); err == nil {
		p := presented(rt)
		d, err := s.sessions.check(ctx, p, s.checkPolicy())
		if err != nil {
			return s.finishDead(ctx, err, p)
		}
		sid = d.ID
	} else if c, err := s.VerifyAccess(token); err == nil && c.SessionID != "" {
		sid = c.SessionID
	} else if c, err := s.signer.verify(typKecak, stripBearer(token)); err == nil {
		secret, err := decodeSecret(c.ID)
		if err != nil {
			return nil
		}
		p := presented{sessionID: c.SessionID, gen: c.Gen, secret: secret}
		d, err := s.sessions.check(ctx, p, s.checkPolicy())
		if err != nil {
			return s.finishDead(ctx, err, p)
		}
		sid = d.ID
	} else {
		return nil
	}
	return s.RevokeSession(ctx, sid, "revoked by client", "client")
}

// finishDead answers a revocation of a token whose session has ended: the
// client's goal is met, but a revocation that failed half way (the session
// revoked, its devices not yet unbound) is finished, so that a client
// retrying after a 503 leaves no device bound to the session. The token
// is one pushreg minted for that session (its MAC or signature was
// checked), so it may finish the job.
func (s *Service) finishDead(ctx context.Context, err error, p presented) error {
	err = s.auditFailure(ctx, err, p)
	if errors.Is(err, ErrSessionRevoked) || errors.Is(err, ErrTokenReused) || errors.Is(err, ErrTokenExpired) {
		return s.RevokeSession(ctx, p.sessionID, "revoked by client", "client")
	}
	return ignoreDead(err)
}

func ignoreDead(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return nil
}

// Logout ends the session of an access token and unbinds its device's
// FCM token from future pushes.
func (s *Service) Logout(ctx context.Context, c *Claims) error {
	if c.SessionID == "" {
		return fmt.Errorf("auth: logout: %w: app tokens have no session", ErrInvalidToken)
	}
	return s.RevokeSession(ctx, c.SessionID, "logged out", "user:"+c.Subject)
}

// RevokeSession ends one session and unbinds the tokens of the devices it
// bound. Called again after a failure, it finishes what is left: a
// session is marked unbound only once its devices are.
func (s *Service) RevokeSession(ctx context.Context, id, reason, actor string) error {
	d, err := s.sessions.get(ctx, id)
	if err != nil {
		return ignoreDead(err)
	}
	if !d.Revoked {
		if err := s.sessions.revoke(ctx, id, reason, s.cfg.Now()); err != nil {
			return err
		}
		s.cfg.Auditor.Audit(ctx, AuditEvent{UserID: d.UserID, Type: "session_revoked", Actor: actor,
			DeviceID: d.DeviceID, SessionID: d.ID, Outcome: reason})
	}
	return s.unbindEnded(ctx, d, actor)
}

// unbindEnded unbinds the devices of the ended session d, unless that was
// done, and records that it was.
func (s *Service) unbindEnded(ctx context.Context, d *sessionDoc, actor string) error {
	if d.Unbound {
		return nil
	}
	if err := s.cfg.Devices.UnbindSession(ctx, d.UserID, d.ID, actor); err != nil {
		return err
	}
	return s.sessions.markUnbound(ctx, d.ID)
}

// UnbindEndedSessions is the sweeper's repair: it unbinds the devices of
// up to limit sessions that ended (revoked, or past an expiry at now)
// without their devices being unbound, as a revocation interrupted by a
// failure leaves them. It returns how many it finished.
func (s *Service) UnbindEndedSessions(ctx context.Context, now time.Time, limit int) (int, error) {
	ended, err := s.sessions.endedBound(ctx, now, limit)
	if err != nil {
		return 0, err
	}
	for i := range ended {
		if err := s.unbindEnded(ctx, &ended[i], "system"); err != nil {
			return i, err
		}
	}
	return len(ended), nil
}

// RevokeUserSessions ends every session of a user (log out everywhere)
// and unbinds their devices' tokens, as an admin's action on the user's
// audit trail.
func (s *Service) RevokeUserSessions(ctx context.Context, userID, actor string) (int, error) {
	n, err := s.revokeUserSessions(ctx, userID, "revoked by admin", actor)
	if err != nil {
		return n, err
	}
	s.auditAdmin(ctx, userID, "", actor, fmt.Sprintf("every session revoked (%d)", n))
	return n, nil
}

// revokeUserSessions revokes every live session of the user and unbinds
// the devices of every session that ended without that being done: a
// retry after a failure half way finishes the revocation it interrupted.
func (s *Service) revokeUserSessions(ctx context.Context, userID, reason, actor string) (int, error) {
	pending, err := s.sessions.boundOf(ctx, userID)
	if err != nil {
		return 0, err
	}
	revoked := 0
	for i := range pending {
		d := &pending[i]
		if !d.Revoked {
			if err := s.sessions.revoke(ctx, d.ID, reason, s.cfg.Now()); err != nil {
				return revoked, err
			}
			revoked++
		}
		if err := s.unbindEnded(ctx, d, actor); err != nil {
			return revoked, err
		}
	}
	s.cfg.Auditor.Audit(ctx, AuditEvent{UserID: userID, Type: "session_revoked", Actor: actor,
		Outcome: fmt.Sprintf("%s: %d sessions", reason, revoked)})
	return revoked, nil
}

// CreateUser creates an account, as an admin's action on its audit trail.
func (s *Service) CreateUser(ctx context.Context, n NewUser, actor string) (*User, error) {
	u, err := s.users.create(ctx, n)
	if err != nil {
		return nil, err
	}
	s.auditAdmin(ctx, u.ID, "", actor, "user created")
	return u, nil
}

// RemoveDevice revokes the session that bound the device, which unbinds
// its token, then removes the device. A session that bound it in between
// (a refresh racing the removal) is revoked too, so no session is left
// claiming a device that is gone.
func (s *Service) RemoveDevice(ctx context.Context, userID, deviceID, actor string) error {
	sid, err := s.cfg.Devices.DeviceSession(ctx, userID, deviceID)
	if err != nil {
		return err
	}
	if sid != "" {
		if err := s.revokeOn(ctx, sid, deviceID, "device removed", actor); err != nil {
			return err
		}
	}
	last, err := s.cfg.Devices.DeleteDevice(ctx, userID, deviceID, actor)
	if err != nil {
		return err
	}
	if last != "" && last != sid {
		return s.revokeOn(ctx, last, deviceID, "device removed", actor)
	}
	return nil
}

// revokeOn revokes the session sid if it is still on the device: a session
// that has moved to another device since it bound this one (the app was
// reinstalled with a new device ID) lives on there.
func (s *Service) revokeOn(ctx context.Context, sid, deviceID, reason, actor string) error {
	d, err := s.sessions.get(ctx, sid)
	if err != nil {
		return ignoreDead(err)
	}
	if d.DeviceID != deviceID {
		return nil
	}
	return s.RevokeSession(ctx, sid, reason, actor)
}

// AdminRemoveDevice is RemoveDevice by an admin, which the user's audit
// trail shows as an admin's action.
func (s *Service) AdminRemoveDevice(ctx context.Context, userID, deviceID, actor string) error {
	if err := s.RemoveDevice(ctx, userID, deviceID, actor); err != nil {
		return err
	}
	s.auditAdmin(ctx, userID, deviceID, actor, "device removed and its session revoked")
	return nil
}

// auditAdmin puts an admin's change on the user's audit trail.
func (s *Service) auditAdmin(ctx context.Context, userID, deviceID, actor, outcome string) {
	s.cfg.Auditor.Audit(ctx, AuditEvent{UserID: userID, Type: "admin_action", Actor: actor, DeviceID: deviceID, Outcome: outcome})
}

// EnsureAdmin makes sure an admin with this username exists; an existing
// user keeps their password.
func (s *Service) EnsureAdmin(ctx context.Context, username, password string) (*User, bool, error) {
	u, err := s.users.byName(ctx, username)
	if err == nil {
		return u, false, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, false, err
	}
	u, err = s.users.create(ctx, NewUser{Username: username, Password: password, Roles: []string{RoleAdmin, RoleUser}})
	if errors.Is(err, ErrUsernameTaken) {
		// Another instance created it first.
		u, err = s.users.byName(ctx, username)
		return u, false, err
	}
	return u, err == nil, err
}

// User returns one user.
func (s *Service) User(ctx context.Context, id string) (*User, error) { return s.users.byID(ctx, id) }

// ExistingUsers reports which of ids are users, in one query.
func (s *Service) ExistingUsers(ctx context.Context, ids []string) (map[string]bool, error) {
	return s.users.existing(ctx, ids)
}

// UserByName finds a user by username, case-insensitively.
func (s *Service) UserByName(ctx context.Context, username string) (*User, error) {
	return s.users.byName(ctx, username)
}

// Users lists users by username, optionally those starting with prefix.
func (s *Service) Users(ctx context.Context, prefix, cursor string, limit int) ([]User, string, error) {
	return s.users.list(ctx, prefix, cursor, limit)
}

// UpdateUser changes a user. Disabling revokes every session, and so does
// a new password unless p.KeepSessions; new roles reach the user's live
// sessions at once.
func (s *Service) UpdateUser(ctx context.Context, id string, p UserPatch, actor string) (*User, error) {
	return s.updateUser(ctx, id, p, actor, "user updated")
}

func (s *Service) updateUser(ctx context.Context, id string, p UserPatch, actor, outcome string) (*User, error) {
	u, err := s.users.update(ctx, id, p)
	if err != nil {
		return nil, err
	}
	if p.Roles != nil {
		if err := s.sessions.setRoles(ctx, id, u.Roles); err != nil {
			return nil, err
		}
	}
	if p.Disabled != nil && *p.Disabled {
		if _, err := s.revokeUserSessions(ctx, id, "account disabled", actor); err != nil {
			return nil, err
		}
	} else if (p.Password != nil || p.passwordHash != nil) && !p.KeepSessions {
		// A password is changed because it may be known to someone else,
		// who may have signed in with it.
		if _, err := s.revokeUserSessions(ctx, id, "password changed", actor); err != nil {
			return nil, err
		}
	}
	s.auditAdmin(ctx, id, "", actor, outcome)
	return u, nil
}

// CreateApp registers a backend client; the secret is returned only here.
func (s *Service) CreateApp(ctx context.Context, name string, scopes []string) (*App, string, error) {
	return s.apps.create(ctx, name, scopes)
}

// RevokeApp stops an app from authenticating.
func (s *Service) RevokeApp(ctx context.Context, id string) error { return s.apps.revoke(ctx, id) }

// AuthenticateApp checks an app's ID and secret.
func (s *Service) AuthenticateApp(ctx context.Context, id, secret string) (*App, error) {
	return s.apps.authenticate(ctx, id, secret)
}

// ActiveApp returns the app behind a client-credentials token, refusing
// one revoked since the token was issued: app tokens are checked against
// the store, unlike users' short-lived access tokens, because revoking a
// leaked app secret must stop pushes at once.
func (s *Service) ActiveApp(ctx context.Context, id string) (*App, error) {
	return s.apps.active(ctx, id)
}

// AppToken issues an access token for an app (RFC 6749 client credentials)
// carrying the requested scopes, which must be the app's.
func (s *Service) AppToken(app *App, scope string) (string, []string, error) {
	scopes := app.Scopes
	if scope != "" {
		scopes = nil
		for _, sc := range splitScope(scope) {
			if !app.HasScope(sc) {
				return "", nil, invalid("scope", fmt.Sprintf("app does not hold scope %q", sc))
			}
			scopes = append(scopes, sc)
		}
	}
	c := &Claims{RegisteredClaims: s.signer.claimsFor(app.ID, s.cfg.AccessTTL), ClientID: app.ID, Scope: joinScope(scopes)}
	tok, err := s.signer.sign(typAccess, c)
	return tok, scopes, err
}
