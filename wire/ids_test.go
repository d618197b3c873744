package wire

import (
	"strings"
	"testing"
)

func TestDeviceIDRules(t *testing.T) {
	for id, want := range map[string]bool{
		"gh-1": true, "GH_1.a": true, strings.Repeat("a", MaxDeviceIDLen): true,
		"": false, strings.Repeat("a", MaxDeviceIDLen+1): false, ".hidden": false, "-x": false,
		"a/b": false, "a b": false, "a+": false, "a#": false, "dév": false, "a:b": false,
	} {
		if got := ValidDeviceID(id); got != want {
			t.Errorf("ValidDeviceID(%q) = %v, want %v", id, got, want)
		}
	}
	if id, ok := DeviceOfChannel(DeviceChannel("gh-1")); !ok || id != "gh-1" {
		t.Errorf("DeviceOfChannel(DeviceChannel(gh-1)) = %q %v", id, ok)
	}
	for _, ch := range []string{"device:", "general", "devices:x"} {
		if _, ok := DeviceOfChannel(ch); ok {
			t.Errorf("DeviceOfChannel(%q) says it is a device channel", ch)
		}
	}
}

// FuzzDeviceIDRules: every valid device id makes a valid channel id, and
// its channel gives the id back (one length limit for both).
func FuzzDeviceIDRules(f *testing.F) {
	f.Add("gh-1")
	f.Add(strings.Repeat("z", MaxDeviceIDLen))
	f.Fuzz(func(t *testing.T, id string) {
		if !ValidDeviceID(id) {
			return
		}
		ch := DeviceChannel(id)
		if !ValidChannelID(ch) {
			t.Fatalf("device %q has an invalid channel id %q", id, ch)
		}
		if back, ok := DeviceOfChannel(ch); !ok || back != id {
			t.Fatalf("DeviceOfChannel(%q) = %q %v", ch, back, ok)
		}
	})
}
