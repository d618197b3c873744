package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/config"
)

func TestConfigFromMapsTheProcessConfiguration(t *testing.T) {
	serverCfg, _ := testTLS(t)
	dir := t.TempDir()
	cert := serverCfg.Certificates[0]
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)

	c := &config.Config{BindAddr: "127.0.0.1", GatewayPort: 9000, AllowedOrigins: []string{"https://a.test"},
		RateLimitIPPerMin: 60, MaxConnsPerUser: 10, ShutdownTimeout: 3 * time.Second, TLSCertFile: certFile, TLSKeyFile: keyFile}
	got, err := ConfigFrom(c)
	if err != nil {
		t.Fatal(err)
	}
	if got.Addr != "127.0.0.1:9000" || got.RateLimitIPPerMinute != 60 || got.MaxConnsPerUser != 10 || got.ShutdownTimeout != 3*time.Second || len(got.AllowedOrigins) != 1 {
		t.Errorf("got %+v", got)
	}
	if got.TLS == nil || got.TLS.MinVersion != tls.VersionTLS12 || len(got.TLS.Certificates) != 1 {
		t.Errorf("TLS = %+v", got.TLS)
	}
	c.TLSKeyFile = filepath.Join(dir, "missing.pem")
	if _, err := ConfigFrom(c); err == nil {
		t.Error("a missing key file was accepted")
	}
}
