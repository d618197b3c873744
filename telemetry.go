package unhidra

import (
	"encoding/json"
	"time"
)

// TelemetryPoint is one telemetry reading of a device, as stored and as
// GET /api/v1/devices/{id}/telemetry returns it ({ts, data, seq?}).
//
// It lives in the root package because two domain packages speak of it
// without depending on each other: device validates points and reads them
// back (device.TelemetryPoint is this type), and chat's store contract
// carries a point beside the device-channel message that relays it
// (chat.Append.Telemetry), so that both are stored in one transaction.
type TelemetryPoint struct {
	DeviceID   string          `json:"-"`
	TS         time.Time       `json:"ts"`
	Data       json.RawMessage `json:"data"`
	Seq        *int64          `json:"seq,omitempty"`
	ReceivedAt time.Time       `json:"-"`
}
