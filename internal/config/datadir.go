package config

// The data dir: the development secret kept there and the check that it
// can be written.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// EnsureDevSecret fills JWTSecret in development when none is configured: it
// reads the secret kept in the data dir, or generates 32 random bytes and keeps
// them there (mode 0600). It reports whether a new secret was generated.
// In production it does nothing (Validate refuses the missing secret).
func (c *Config) EnsureDevSecret(randRead func([]byte) (int, error)) (generated bool, err error) {
	if c.JWTSecret != "" || c.Production() {
		return false, nil
	}
	path := filepath.Join(c.DataDir, "jwt_secret")
	if b, err := os.ReadFile(path); err == nil {
		if s := strings.TrimSpace(string(b)); len(s) >= MinSecretLen {
			c.JWTSecret = s
			c.JWTSecretGenerated = true
			return false, nil
		}
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return false, cannotWrite(c.DataDir, err)
	}
	raw := make([]byte, 32)
	if _, err := randRead(raw); err != nil {
		return false, err
	}
	s := fmt.Sprintf("%x", raw)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return false, cannotWrite(c.DataDir, err)
	}
	c.JWTSecret = s
	c.JWTSecretGenerated = true
	return true, nil
}

// CheckWritable makes sure the data dir (created if missing, mode 0700) and
// the SQLite database's directory and file can be written, without writing
// anything that stays: serve calls it once its ports are open and before it
// keeps a secret or opens the database. The error says "cannot write <dir>".
func (c *Config) CheckWritable() error {
	dirs := []string{c.DataDir}
	db := c.SQLitePath()
	if db != "" {
		if d := filepath.Dir(db); filepath.Clean(d) != filepath.Clean(c.DataDir) {
			dirs = append(dirs, d)
		}
	}
	for _, dir := range dirs {
		if err := probeDir(dir); err != nil {
			return err
		}
	}
	if db != "" {
		// An existing database must be writable too (opened for writing,
		// not written).
		f, err := os.OpenFile(db, os.O_WRONLY, 0)
		switch {
		case err == nil:
			f.Close()
		case errors.Is(err, os.ErrNotExist):
		default:
			return cannotWrite(db, err)
		}
	}
	return nil
}

// probeDir creates dir if needed and writes and removes a file in it.
func probeDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return cannotWrite(dir, err)
	}
	f, err := os.CreateTemp(dir, ".unhidra-write-check-*")
	if err != nil {
		return cannotWrite(dir, err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return cannotWrite(dir, err)
	}
	return nil
}

// cannotWrite names the path and the reason, without Go's operation prefix
// repeating the path.
func cannotWrite(path string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("cannot write %s: %w", path, err)
}
