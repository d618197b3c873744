package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
)

// TLSConfig builds the TLS configuration for a connection: the system roots
// plus the PEM certificates in caFile (when given). Certificate verification
// stays on unless insecure is true, in which case a warning is logged.
func TLSConfig(caFile string, insecure bool, log *slog.Logger) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pemData, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate found", caFile)
		}
		cfg.RootCAs = pool
	}
	if insecure {
		if log != nil {
			log.Warn("TLS certificate verification is OFF (insecure-skip-verify): the connection can be intercepted; use a CA file instead")
		}
		cfg.InsecureSkipVerify = true
	}
	return cfg, nil
}

// certError reports whether err is a TLS certificate verification failure,
// and returns an explanation for people.
func certError(err error) (string, bool) {
	var (
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
		verify   *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknown):
		return "the server's certificate is signed by an authority this client does not trust (give the signing CA with CA_FILE / Options.CAFile)", true
	case errors.As(err, &hostname):
		return fmt.Sprintf("the server's certificate is not valid for this host: %v", hostname), true
	case errors.As(err, &invalid):
		return fmt.Sprintf("the server's certificate is invalid: %v", invalid), true
	case errors.As(err, &verify):
		return fmt.Sprintf("the server's certificate failed verification: %v", verify.Err), true
	}
	return "", false
}
