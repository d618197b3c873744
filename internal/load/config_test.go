package load

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func joined(errs []error) string {
	s := make([]string, len(errs))
	for i, e := range errs {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	okWS := WSConfig{Conns: 10, Channels: 2, Publishers: 2, Rate: 10, Size: 128, Duration: time.Second, SrcIPs: 1}
	okMQTT := MQTTConfig{Devices: 1, QoS: 1, Duration: time.Second, Size: 128}
	okLogin := LoginConfig{Concurrency: 1, Duration: time.Second, SrcIPs: 1}
	okDevsim := DevsimConfig{Devices: 1, Transport: "ws", Interval: time.Second, Report: time.Second, AdminPass: "x"}
	for _, tc := range []struct {
		name string
		errs []error
		want []string // each must be reported; none: valid
	}{
		{"a sound ws run is valid", okWS.Validate(), nil},
		{"a sound mqtt run is valid", okMQTT.Validate(), nil},
		{"a sound login run is valid", okLogin.Validate(), nil},
		{"a sound fleet is valid", okDevsim.Validate(), nil},
		{"ws: more publishers than connections, a negative rate, Centrifugo spawned and too many source addresses",
			func() []error {
				c := okWS
				c.Publishers, c.Rate, c.Centrifugo, c.Spawn, c.SrcIPs = 11, -1, true, true, 251
				return c.Validate()
			}(),
			[]string{"0 ≤ --publishers ≤ --conns", "--rate must be ≥ 0", "--centrifugo needs --centrifugo-secret", "--spawn starts unhidra", "--src-ips at most 250"}},
		{"mqtt: QoS 2 and a tiny payload",
			func() []error { c := okMQTT; c.QoS, c.Size = 2, 10; return c.Validate() }(),
			[]string{"--qos must be 0 or 1", "64 ≤ --size ≤ 61440"}},
		{"login: no concurrency",
			func() []error { c := okLogin; c.Concurrency = 0; return c.Validate() }(),
			[]string{"needs --concurrency ≥ 1"}},
		{"devsim: no devices, an unknown transport, no keys and a spike probability above 1",
			func() []error {
				c := okDevsim
				c.Devices, c.Transport, c.AdminPass, c.SpikeProb = 0, "carrier-pigeon", "", 2
				return c.Validate()
			}(),
			[]string{"--devices must be between", `--transport "carrier-pigeon"`, "--spike-prob must be between 0 and 1", "needs --keys-file, --admin-token or --admin-password"}},
		{"devsim: --cleanup with --keys-file",
			func() []error { c := okDevsim; c.KeysFile, c.Cleanup = "fleet.keys", true; return c.Validate() }(),
			[]string{"--cleanup revokes only the devices devsim provisions"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.want) == 0 {
				if tc.errs != nil {
					t.Fatalf("problems %q, want none", joined(tc.errs))
				}
				return
			}
			if len(tc.errs) != len(tc.want) {
				t.Errorf("%d problems (%q), want %d", len(tc.errs), joined(tc.errs), len(tc.want))
			}
			for _, w := range tc.want {
				if !strings.Contains(joined(tc.errs), w) {
					t.Errorf("problems %q lack %q", joined(tc.errs), w)
				}
			}
		})
	}
}

// The keys devsim --save-keys writes are what --keys-file reads, and only
// their owner can read the file.
func TestSavedKeysReadBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.keys")
	devs := []Device{{ID: "dev-1", Key: "unhidra_dk_abc"}, {ID: "dev.2", Key: "unhidra_dk_DEF-123"}}
	if err := saveKeys(path, devs); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keys file mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	got, err := ReadKeysFile(path)
	if err != nil || len(got) != 2 || got[0] != devs[0] || got[1] != devs[1] {
		t.Fatalf("ReadKeysFile = %+v, %v; want %+v", got, err, devs)
	}
	if err := os.WriteFile(path, []byte("# fleet\n\ndev-1,unhidra_dk_abc\nbroken line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeysFile(path); err == nil || !strings.Contains(err.Error(), ":4:") {
		t.Errorf("a bad line: %v, want an error naming line 4", err)
	}
}
