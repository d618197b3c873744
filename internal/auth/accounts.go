package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/netip"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/wire"
)

// RegisterInput is a self-registration.
type RegisterInput struct {
	Username    string
	Password    string
	DisplayName string
	IP          netip.Addr
}

// Register creates an account according to the registration mode: open
// (verified at once), approval (unverified until an admin verifies) or
// closed (forbidden).
func (s *Service) Register(ctx context.Context, in RegisterInput) (User, error) {
	if s.cfg.Registration == "closed" {
		// Whatever was typed as the name is only hashed (typedName).
		s.emit(ctx, Event{Action: ActionRegister, Actor: typedName(in.Username), IP: ipString(in.IP), Outcome: "failure", Reason: "registration is closed"})
		return User{}, unhidra.Errorf(unhidra.EFORBIDDEN, "registration is closed")
	}
	u, err := s.newUser(ctx, in.Username, in.Password, in.DisplayName)
	if err != nil {
		return User{}, err
	}
	u.Verified = s.cfg.Registration == "open"
	if err := s.store.CreateUser(ctx, u); err != nil {
		return User{}, err
	}
	s.emit(ctx, Event{Action: ActionRegister, Actor: userPrincipal(u.Username), Target: u.Username, IP: ipString(in.IP)})
	return u, nil
}

// newUser validates and hashes; it checks the name is free before hashing so
// a taken name costs no hash (the insert still decides races).
func (s *Service) newUser(ctx context.Context, username, password, displayName string) (User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return User{}, err
	}
	if err := CheckPassword(password); err != nil {
		return User{}, err
	}
	dn, err := checkDisplayName(displayName)
	if err != nil {
		return User{}, err
	}
	if dn == "" {
		dn = name
	}
	if _, err := s.store.User(ctx, name); err == nil {
		return User{}, unhidra.Errorf(unhidra.ECONFLICT, "username is taken")
	} else if unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		return User{}, err
	}
	h, err := s.hash(ctx, password)
	if err != nil {
		return User{}, err
	}
	return User{Username: name, DisplayName: dn, Roles: []string{}, PasswordHash: h, CreatedAt: s.cfg.Now()}, nil
}

// CreateUserInput is an account created by an operator.
type CreateUserInput struct {
	Username string
	Password string
	Admin    bool
}

// CreateUser creates a verified account (the command line and bootstrap).
func (s *Service) CreateUser(ctx context.Context, in CreateUserInput) (User, error) {
	u, err := s.newUser(ctx, in.Username, in.Password, "")
	if err != nil {
		return User{}, err
	}
	u.Verified = true
	if in.Admin {
		u.Roles = []string{unhidra.RoleAdmin}
	}
	if err := s.store.CreateUser(ctx, u); err != nil {
		return User{}, err
	}
	s.emit(ctx, Event{Action: ActionUserCreate, Actor: Operator.Principal, Target: u.Username})
	return u, nil
}

// EnsureAdmin creates the user "admin" (role admin, verified) when there is
// no user at all. password may be empty: one is generated. It reports
// whether the account was created and the password it got.
func (s *Service) EnsureAdmin(ctx context.Context, password string) (created bool, pw string, err error) {
	if audit.SourceOf(ctx).Transport == "" {
		ctx = audit.WithSource(ctx, audit.Source{Transport: audit.TransportSystem})
	}
	n, err := s.store.CountUsers(ctx)
	if err != nil || n > 0 {
		return false, "", err
	}
	if password == "" {
		password = GeneratePassword()
	}
	if _, err := s.CreateUser(ctx, CreateUserInput{Username: "admin", Password: password, Admin: true}); err != nil {
		if unhidra.ErrorCode(err) == unhidra.ECONFLICT {
			return false, "", nil // another process won the race
		}
		return false, "", err
	}
	return true, password, nil
}

// GeneratePassword returns a random 128-bit password in base64url.
func GeneratePassword() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Me returns the caller's account.
func (s *Service) Me(ctx context.Context, who unhidra.Identity) (User, error) {
	if err := requireUser(who); err != nil {
		return User{}, err
	}
	return s.store.User(ctx, who.Principal.ID)
}

// UpdateMe changes the caller's display name.
func (s *Service) UpdateMe(ctx context.Context, who unhidra.Identity, displayName string) (User, error) {
	if err := requireUser(who); err != nil {
		return User{}, err
	}
	dn, err := checkDisplayName(displayName)
	if err != nil {
		return User{}, err
	}
	if dn == "" {
		return User{}, unhidra.Errorf(unhidra.EINVALID, "display name must not be empty")
	}
	return s.store.SetDisplayName(ctx, who.Principal.ID, dn, s.cfg.Now())
}

// ChangePassword checks the current password, stores the new one and ends
// every other session of the user. The caller holds a session, so wrong
// current passwords count against that session alone (like a device
// cookie's): strangers who locked the account's untrusted logins do not stop
// its owner from changing the password.
func (s *Service) ChangePassword(ctx context.Context, who unhidra.Identity, current, next string) error {
	if err := requireUser(who); err != nil {
		return err
	}
	if len(current) == 0 || len(current) > MaxPasswordLen {
		return unhidra.Errorf(unhidra.EINVALID, "current password must be 1 to %d bytes", MaxPasswordLen)
	}
	if err := CheckPassword(next); err != nil {
		return err
	}
	name := who.Principal.ID
	done, wait, ok := s.trusted.Reserve("session:" + who.SessionID)
	if !ok {
		s.emit(ctx, Event{Action: ActionPasswordChange, Actor: who.Principal, Target: name, Outcome: "failure", Reason: "too many failed attempts in this session"})
		return &unhidra.Error{Code: unhidra.ERATELIMITED, Message: "too many failed attempts in this session, try again later", RetryAfter: retryAfter(wait)}
	}
	u, err := s.store.User(ctx, name)
	if err != nil {
		done(false)
		return err
	}
	match, _, err := s.verify(ctx, u.PasswordHash, current)
	if err != nil {
		done(false)
		return err
	}
	done(!match)
	if !match {
		s.emit(ctx, Event{Action: ActionPasswordChange, Actor: who.Principal, Target: name, Outcome: "failure", Reason: "wrong current password"})
		return unhidra.Errorf(unhidra.EFORBIDDEN, "current password is wrong")
	}
	h, err := s.hash(ctx, next)
	if err != nil {
		return err
	}
	revoked, err := s.store.ChangePassword(ctx, name, h, who.SessionID, s.cfg.Now())
	if err != nil {
		return err
	}
	s.sessions.revokeUser(name, who.SessionID)
	for _, sid := range revoked {
		s.sessions.revoke(sid)
	}
	s.publish(ctx, broker.Revocation{Kind: broker.RevokeUserExcept, ID: name, Except: who.SessionID})
	s.emit(ctx, Event{Action: ActionPasswordChange, Actor: who.Principal, Target: name})
	return nil
}

// SetPassword replaces a user's password as an operator and ends every
// session of the user.
func (s *Service) SetPassword(ctx context.Context, who unhidra.Identity, username, password string) error {
	if err := requireAdmin(who); err != nil {
		s.refusedAdmin(ctx, ActionPasswordChange, who, username, err)
		return err
	}
	name, err := NormalizeUsername(username)
	if err != nil {
		return err
	}
	if err := CheckPassword(password); err != nil {
		return err
	}
	if _, err := s.store.User(ctx, name); err != nil {
		return err
	}
	h, err := s.hash(ctx, password)
	if err != nil {
		return err
	}
	revoked, err := s.store.ChangePassword(ctx, name, h, "", s.cfg.Now())
	if err != nil {
		return err
	}
	s.sessions.revokeUser(name, "")
	for _, sid := range revoked {
		s.sessions.revoke(sid)
	}
	s.publish(ctx, broker.Revocation{Kind: broker.RevokeUser, ID: name})
	s.emit(ctx, Event{Action: ActionPasswordChange, Actor: who.Principal, Target: name})
	return nil
}

// User returns an account by name (for other services; no authorization).
func (s *Service) User(ctx context.Context, username string) (User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return User{}, unhidra.Errorf(unhidra.ENOTFOUND, "user not found")
	}
	return s.store.User(ctx, name)
}

// UserActive reports whether the account exists and is not disabled.
func (s *Service) UserActive(ctx context.Context, username string) (bool, error) {
	u, err := s.User(ctx, username)
	if unhidra.ErrorCode(err) == unhidra.ENOTFOUND {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !u.Disabled, nil
}

// Users lists every account (administrators only).
func (s *Service) Users(ctx context.Context, who unhidra.Identity) ([]User, error) {
	if err := requireAdmin(who); err != nil {
		return nil, err
	}
	return s.store.Users(ctx)
}

// VerifyUser marks an account verified (administrators only).
func (s *Service) VerifyUser(ctx context.Context, who unhidra.Identity, username string) (User, error) {
	if err := requireAdmin(who); err != nil {
		s.refusedAdmin(ctx, ActionUserVerify, who, username, err)
		return User{}, err
	}
	name, err := NormalizeUsername(username)
	if err != nil {
		return User{}, unhidra.Errorf(unhidra.ENOTFOUND, "user not found")
	}
	if err := s.store.SetVerified(ctx, name, s.cfg.Now()); err != nil {
		return User{}, err
	}
	s.emit(ctx, Event{Action: ActionUserVerify, Actor: who.Principal, Target: name})
	return s.store.User(ctx, name)
}

// DisableUser disables an account and ends all its sessions (administrators
// only; an administrator cannot disable themself).
func (s *Service) DisableUser(ctx context.Context, who unhidra.Identity, username string) (User, error) {
	if err := requireAdmin(who); err != nil {
		s.refusedAdmin(ctx, ActionUserDisable, who, username, err)
		return User{}, err
	}
	name, err := NormalizeUsername(username)
	if err != nil {
		return User{}, unhidra.Errorf(unhidra.ENOTFOUND, "user not found")
	}
	if who.Principal.Kind == wire.KindUser && who.Principal.ID == name {
		return User{}, unhidra.Errorf(unhidra.EINVALID, "administrators cannot disable their own account")
	}
	if _, err := s.store.DisableUser(ctx, name, s.cfg.Now()); err != nil {
		return User{}, err
	}
	s.sessions.revokeUser(name, "")
	s.publish(ctx, broker.Revocation{Kind: broker.RevokeUser, ID: name})
	s.emit(ctx, Event{Action: ActionUserDisable, Actor: who.Principal, Target: name})
	return s.store.User(ctx, name)
}

// refusedAdmin records an administration of an account refused to a caller
// who is not an administrator (an audit event with outcome failure). The
// target is the name as given when it is a valid username, else its short
// hash: the caller typed it.
func (s *Service) refusedAdmin(ctx context.Context, action string, who unhidra.Identity, username string, err error) {
	target, nerr := NormalizeUsername(username)
	if nerr != nil {
		target = typedName(username).ID
	}
	s.emit(ctx, Event{Action: action, Actor: who.Principal, Target: target, Outcome: "failure", Reason: unhidra.ErrorMessage(err)})
}
