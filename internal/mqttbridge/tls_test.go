package mqttbridge_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/unhidra/unhidra/internal/config"
	"github.com/unhidra/unhidra/internal/mqttbridge"
)

type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pemPath string
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := filepath.Join(t.TempDir(), name+".pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pemPath: p}
}

func (ca *testCA) serverCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// TestTLSListener: with a certificate the TLS listener serves MQTT; a
// client trusting the right CA connects and publishes, one trusting another
// CA refuses the server.
func TestTLSListener(t *testing.T) {
	ca := newCA(t, "unhidra-test-ca")
	other := newCA(t, "other-ca")
	h := newHarness(t, harnessOpts{cfg: mqttbridge.Config{TLS: &tls.Config{Certificates: []tls.Certificate{ca.serverCert(t)}}}})
	if h.srv.TLSAddr() == "" {
		t.Fatal("no TLS listener")
	}
	connect := func(pool *x509.CertPool) error {
		opts := pahov3.NewClientOptions().AddBroker("ssl://" + h.srv.TLSAddr()).SetClientID("tls").
			SetUsername("d1").SetPassword(h.keys["d1"]).SetTLSConfig(&tls.Config{RootCAs: pool}).
			SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
		c := pahov3.NewClient(opts)
		tok := c.Connect()
		tok.WaitTimeout(10 * time.Second)
		if tok.Error() != nil {
			return tok.Error()
		}
		defer c.Disconnect(50)
		p := c.Publish("unhidra/devices/d1/telemetry", 1, false, `{"tls":true}`)
		p.WaitTimeout(10 * time.Second)
		return p.Error()
	}
	if err := connect(ca.pool()); err != nil {
		t.Fatalf("client trusting the CA: %v", err)
	}
	if n := h.count(`SELECT COUNT(*) FROM telemetry WHERE data = '{"tls":true}'`); n != 1 {
		t.Fatalf("%d points stored over TLS", n)
	}
	err := connect(other.pool())
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("client trusting another CA: %v, want a certificate error", err)
	}

	if p, err := exec.LookPath("mosquitto_pub"); err == nil {
		host, port, _ := net.SplitHostPort(h.srv.TLSAddr())
		out, err := exec.Command(p, "-h", host, "-p", port, "--cafile", ca.pemPath, "-u", "d1", "-P", h.keys["d1"],
			"-q", "1", "-t", "unhidra/devices/d1/telemetry", "-m", `{"tls":"mosquitto"}`).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub over TLS: %v %s", err, out)
		}
		out, err = exec.Command(p, "-h", host, "-p", port, "--cafile", other.pemPath, "-u", "d1", "-P", h.keys["d1"],
			"-t", "unhidra/devices/d1/telemetry", "-m", `{}`).CombinedOutput()
		if err == nil {
			t.Fatalf("mosquitto_pub trusting another CA connected: %s", out)
		}
	}
	// The plain listener keeps working beside it.
	c := dialRaw(t, h.srv.Addr())
	if code := c.connack(t, connectPkt(4, "plain", "d2", h.keys["d2"], 30, nil)); code != 0 {
		t.Fatalf("plain listener: 0x%02x", code)
	}
}

func TestConfigFromLoadsTheCertificate(t *testing.T) {
	ca := newCA(t, "cfg-ca")
	cert := ca.serverCert(t)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)

	c, err := config.Load(nil, func(k string) string {
		return map[string]string{"MQTT_PORT": "0", "MQTT_TLS_PORT": "0", "TLS_CERT_FILE": certPath, "TLS_KEY_FILE": keyPath}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	mc, err := mqttbridge.ConfigFrom(c)
	if err != nil || mc.TLS == nil || len(mc.TLS.Certificates) != 1 || mc.BindAddr != "127.0.0.1" {
		t.Fatalf("ConfigFrom: %+v %v", mc, err)
	}
	c.TLSKeyFile = filepath.Join(dir, "missing.pem")
	if _, err := mqttbridge.ConfigFrom(c); err == nil {
		t.Fatal("a missing key file was accepted")
	}
	c.TLSCertFile, c.TLSKeyFile = "", ""
	if mc, err := mqttbridge.ConfigFrom(c); err != nil || mc.TLS != nil {
		t.Fatalf("without a certificate: %+v %v", mc, err)
	}
}
