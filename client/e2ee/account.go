package e2ee

import (
	"fmt"
	"sort"
	"sync"

	"maunium.net/go/mautrix/crypto/goolm/account"
	"maunium.net/go/mautrix/crypto/goolm/session"
	"maunium.net/go/mautrix/id"

	"github.com/unhidra/unhidra/wire/e2eekeys"
)

// MaxOneTimeKeys is how many unused one-time keys an account keeps, as the
// key directory stores at most that many per device. Generating more drops
// the oldest.
const MaxOneTimeKeys = account.MaxOneTimeKeys

// Account is one device's long-term keys: the Curve25519 identity key for
// agreement, the Ed25519 key that signs everything the device publishes,
// and its one-time and fallback prekeys. Safe for concurrent use.
type Account struct {
	user, deviceID string

	mu   sync.Mutex
	acct *account.Account
}

// NewAccount creates fresh identity keys for the device deviceID of user.
func NewAccount(user, deviceID string) (*Account, error) {
	if user == "" || !e2eekeys.ValidID(deviceID) {
		return nil, fmt.Errorf("%w: user %q, device id %q", ErrBadKey, user, deviceID)
	}
	a, err := account.NewAccount()
	if err != nil {
		return nil, fmt.Errorf("e2ee: new account: %w", err)
	}
	return &Account{user: user, deviceID: deviceID, acct: a}, nil
}

// User is the account owner's user name, as the key directory knows it.
func (a *Account) User() string { return a.user }

// DeviceID is the client device this account belongs to.
func (a *Account) DeviceID() string { return a.deviceID }

// Identity returns the device's public identity keys.
func (a *Account) Identity() IdentityKeys {
	a.mu.Lock()
	defer a.mu.Unlock()
	ed, curve, _ := a.acct.IdentityKeys()
	return IdentityKeys{Curve25519: string(curve), Ed25519: string(ed)}
}

// Fingerprint is this device's ed25519 key in groups of four characters,
// the string two people read to each other to verify a device.
func (a *Account) Fingerprint() string { return Fingerprint(a.Identity().Ed25519) }

// Fingerprint formats an ed25519 key (base64) for comparison by people.
func Fingerprint(ed25519B64 string) string {
	var out []byte
	for i := 0; i < len(ed25519B64); i++ {
		if i > 0 && i%4 == 0 {
			out = append(out, ' ')
		}
		out = append(out, ed25519B64[i])
	}
	return string(out)
}

// GenerateOneTimeKeys adds n unpublished one-time keys.
func (a *Account) GenerateOneTimeKeys(n int) error {
	if n < 0 || n > MaxOneTimeKeys {
		return fmt.Errorf("e2ee: %d one-time keys asked for, at most %d kept", n, MaxOneTimeKeys)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.acct.GenOneTimeKeys(uint(n))
}

// GenerateFallbackKey replaces the fallback key, used by senders once the
// directory has run out of one-time keys. The previous one keeps working
// for sessions already under way until ForgetOldFallbackKey.
func (a *Account) GenerateFallbackKey() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.acct.GenFallbackKey()
}

// ForgetOldFallbackKey drops the fallback key replaced by the last
// GenerateFallbackKey, once senders had time to use the new one.
func (a *Account) ForgetOldFallbackKey() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.acct.ForgetOldFallbackKey()
}

// Upload builds the PUT /api/v1/keys/devices/{device_id} body with the
// signed identity and every key not yet published. Call MarkPublished once
// the server answered 200, so the next Upload carries only new keys.
func (a *Account) Upload() (UploadRequest, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ed, curve, _ := a.acct.IdentityKeys()
	req := UploadRequest{
		Identity:    IdentityKeys{Curve25519: string(curve), Ed25519: string(ed)},
		OneTimeKeys: []SignedKey{},
	}
	sig, err := a.acct.Sign(e2eekeys.IdentityMessage(a.user, a.deviceID, string(curve)))
	if err != nil {
		return UploadRequest{}, err
	}
	req.IdentitySignature = string(sig)
	otks, err := a.acct.OneTimeKeys()
	if err != nil {
		return UploadRequest{}, err
	}
	for _, keyID := range sortedKeys(otks) {
		k, err := a.signKey(keyID, otks[keyID])
		if err != nil {
			return UploadRequest{}, err
		}
		req.OneTimeKeys = append(req.OneTimeKeys, k)
	}
	for keyID, key := range a.acct.FallbackKeyUnpublished() {
		k, err := a.signKey(keyID, key)
		if err != nil {
			return UploadRequest{}, err
		}
		req.FallbackKey = &k
	}
	return req, nil
}

func (a *Account) signKey(keyID string, key id.Curve25519) (SignedKey, error) {
	sig, err := a.acct.Sign(e2eekeys.KeyMessage(a.user, a.deviceID, keyID, string(key)))
	if err != nil {
		return SignedKey{}, err
	}
	return SignedKey{ID: keyID, Key: string(key), Signature: string(sig)}, nil
}

func sortedKeys(m map[string]id.Curve25519) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// MarkPublished records that every key returned by Upload is on the server.
func (a *Account) MarkPublished() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.acct.MarkKeysAsPublished()
}

// UnpublishedCount is how many one-time keys the next Upload would carry.
func (a *Account) UnpublishedCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	otks, _ := a.acct.OneTimeKeys()
	return len(otks)
}

// NewOutboundSession starts a 1:1 session with the device of a claimed
// bundle. It refuses the bundle unless the identity signature and the
// signature of the one-time (or fallback) key verify; it does not decide
// whether the identity itself is trusted — compare Fingerprint(b.Identity.Ed25519)
// out of band for that.
func (a *Account) NewOutboundSession(b Bundle) (*Session, error) {
	k, err := VerifyBundle(b)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, err := a.acct.NewOutboundSession(id.Curve25519(b.Identity.Curve25519), id.Curve25519(k.Key))
	if err != nil {
		return nil, fmt.Errorf("e2ee: outbound session: %w", err)
	}
	return newSession(s.(*session.OlmSession), b.Identity.Curve25519), nil
}

// NewInboundSession answers a prekey message (type 0) from the device whose
// identity key is senderKey: it creates the session, decrypts the message
// and removes the one-time key it used, so a replay of the same message
// cannot open a second session with it. Persist the account afterwards.
func (a *Account) NewInboundSession(senderKey string, m OlmMessage) (*Session, []byte, error) {
	if m.Type != MsgPreKey {
		return nil, nil, fmt.Errorf("%w: a session starts with a prekey message (type 0), got type %d", ErrDecrypt, m.Type)
	}
	if err := checkSenderKey(senderKey); err != nil {
		return nil, nil, err
	}
	body, err := canonical(m.Body)
	if err != nil {
		return nil, nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	sk := id.Curve25519(senderKey)
	os, err := a.acct.NewInboundSessionFrom(&sk, body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: inbound session: %v", ErrDecrypt, err)
	}
	s := newSession(os.(*session.OlmSession), senderKey)
	pt, err := s.Decrypt(m)
	if err != nil {
		return nil, nil, err
	}
	if err := a.acct.RemoveOneTimeKeys(os); err != nil {
		return nil, nil, err
	}
	return s, pt, nil
}

func (a *Account) pickle() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.acct.PickleLibOlm()
}

func unpickleAccount(user, deviceID string, p []byte) (*Account, error) {
	acct := &account.Account{}
	if err := acct.UnpickleLibOlm(p); err != nil {
		return nil, fmt.Errorf("e2ee: account: %w", err)
	}
	return &Account{user: user, deviceID: deviceID, acct: acct}, nil
}
