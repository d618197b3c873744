package wire

import "strings"

// Identifier rules: the one home of each, shared by every package and
// transport.

const (
	// DeviceKeyPrefix starts every device API key.
	DeviceKeyPrefix = "unhidra_dk_"
	// RefreshTokenPrefix starts every refresh token.
	RefreshTokenPrefix = "unhidra_rt_"
	// DeviceChannelPrefix starts the id of a device's channel:
	// "device:<device id>".
	DeviceChannelPrefix = "device:"
	// MaxDeviceIDLen bounds a device id (so a device channel id is well
	// within MaxChannelIDLen).
	MaxDeviceIDLen = 64
)

// ValidDeviceID reports whether s can be a device id: 1 to MaxDeviceIDLen
// bytes of [A-Za-z0-9._-], not starting with '.' or '-'. Ids compare
// without regard to letter case.
func ValidDeviceID(s string) bool {
	if len(s) == 0 || len(s) > MaxDeviceIDLen || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// DeviceChannel returns the id of device deviceID's channel.
func DeviceChannel(deviceID string) string { return DeviceChannelPrefix + deviceID }

// DeviceOfChannel returns the device id of a device channel id, and whether
// channel is one.
func DeviceOfChannel(channel string) (string, bool) {
	id, ok := strings.CutPrefix(channel, DeviceChannelPrefix)
	return id, ok && id != ""
}
