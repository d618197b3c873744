package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits of the client frame envelope.
const (
	// MaxFrameIDBytes bounds the raw JSON of a frame's "id" (string or number).
	MaxFrameIDBytes = 64
	// MaxTokenBytes bounds the token of a refresh frame.
	MaxTokenBytes = 8 << 10
	// MaxCommandIDLen bounds a command id in a device frame (device ids:
	// MaxDeviceIDLen).
	MaxCommandIDLen = 128
)

// Command result statuses.
const (
	CommandOK    = "ok"
	CommandError = "error"
)

// Error codes a FrameError carries (the same strings as the root package's
// error codes, which wire cannot import).
const (
	CodeInvalid  = "invalid"
	CodeTooLarge = "too_large"
)

// FrameError is why a client frame was refused. Code is "invalid" or
// "too_large"; Message is safe to send back in an error frame.
type FrameError struct {
	Code    string
	Message string
}

func (e *FrameError) Error() string { return e.Code + ": " + e.Message }

func invalidf(format string, args ...any) *FrameError {
	return &FrameError{Code: CodeInvalid, Message: fmt.Sprintf(format, args...)}
}

func tooLargef(format string, args ...any) *FrameError {
	return &FrameError{Code: CodeTooLarge, Message: fmt.Sprintf(format, args...)}
}

// ClientFrame is a decoded and validated client → server frame (docs/protocol.md#client-frames).
// Which fields are meaningful depends on Type:
//
//	subscribe       Channel, Since
//	unsubscribe     Channel
//	publish         Publish (Channel is Publish.Channel too)
//	typing          Channel
//	presence        Status (online, away, dnd)
//	heartbeat       DeviceID, TS, FreeHeap, Raw (the whole frame, for extra fields)
//	telemetry       Data (an object), TS, Seq
//	command_result  CommandID, Status (ok, error), Result
//	refresh         Token
type ClientFrame struct {
	Type string
	// ID is the frame's "id" exactly as the client sent it (a JSON string or
	// number), to be echoed byte-exact in the reply; nil when absent.
	ID json.RawMessage

	Channel   string
	Since     *int64
	Publish   Publish
	Status    string
	Token     string
	DeviceID  string
	TS        json.RawMessage
	FreeHeap  *int64
	Data      json.RawMessage
	Seq       *int64
	CommandID string
	Result    json.RawMessage
	// Raw is the complete frame as received (heartbeat frames may carry more
	// fields than the ones decoded here). It aliases the decoder's input.
	Raw json.RawMessage
}

// clientEnvelope is every field any client frame may carry.
type clientEnvelope struct {
	Type        *string         `json:"type"`
	ID          json.RawMessage `json:"id"`
	Channel     *string         `json:"channel"`
	Since       json.RawMessage `json:"since"`
	ClientMsgID *string         `json:"client_msg_id"`
	ThreadID    *string         `json:"thread_id"`
	Text        *string         `json:"text"`
	Data        json.RawMessage `json:"data"`
	E2EE        json.RawMessage `json:"e2ee"`
	Status      *string         `json:"status"`
	Token       *string         `json:"token"`
	DeviceID    *string         `json:"device_id"`
	TS          json.RawMessage `json:"ts"`
	FreeHeap    json.RawMessage `json:"free_heap"`
	Seq         json.RawMessage `json:"seq"`
	CommandID   *string         `json:"command_id"`
	Result      json.RawMessage `json:"result"`
}

// DecodeClientFrame decodes and validates one client frame. The input must be
// a single JSON object of at most MaxFrameBytes with a known "type"; the
// fields that type requires must be present and well formed (docs/protocol.md#client-frames).
// Unknown fields are ignored.
//
// On error the returned frame still carries Type and ID when they could be
// read, so the caller can address its error frame; the error is a
// *FrameError.
func DecodeClientFrame(b []byte) (ClientFrame, error) {
	var f ClientFrame
	if len(b) > MaxFrameBytes {
		return f, tooLargef("frame is larger than %d bytes", MaxFrameBytes)
	}
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return f, invalidf("frame must be a JSON object")
	}
	// Depth and Unicode first: encoding/json would accept 10,000 levels and
	// silently replace invalid UTF-8 and lone surrogates with U+FFFD.
	if err := CheckJSONBody(b); err != nil {
		var je *JSONError
		if errors.As(err, &je) && je.Reason != JSONSyntax {
			f.ID = recoverID(b)
			if je.Reason == JSONTooDeep {
				return f, invalidf("frame nests JSON deeper than %d levels", MaxDepth)
			}
			return f, invalidf("frame is not valid UTF-8 or has a lone surrogate escape")
		}
	}
	var env clientEnvelope
	if err := json.Unmarshal(b, &env); err != nil {
		f.ID = recoverID(b)
		return f, invalidf("frame is not valid JSON or has a field of the wrong type")
	}
	if !isNull(env.ID) {
		if err := validID(env.ID); err != nil {
			return f, err
		}
		f.ID = env.ID
	}
	if env.Type == nil {
		return f, invalidf("frame has no type")
	}
	f.Type = *env.Type
	f.Raw = b
	switch f.Type {
	case TypeSubscribe:
		if err := requireChannel(&f, env.Channel); err != nil {
			return f, err
		}
		if !isNull(env.Since) {
			n, err := nonNegInt("since", env.Since)
			if err != nil {
				return f, err
			}
			f.Since = &n
		}
	case TypeUnsubscribe, TypeTyping:
		if err := requireChannel(&f, env.Channel); err != nil {
			return f, err
		}
	case TypePublish:
		if err := decodePublish(&f, &env); err != nil {
			return f, err
		}
	case TypePresence:
		if env.Status == nil {
			return f, invalidf("presence frame needs a status")
		}
		switch *env.Status {
		case StatusOnline, StatusAway, StatusDND:
			f.Status = *env.Status
		default:
			return f, invalidf("status must be online, away or dnd")
		}
	case TypeHeartbeat:
		id, err := boundedID("device_id", env.DeviceID, MaxDeviceIDLen, true)
		if err != nil {
			return f, err
		}
		f.DeviceID = id
		if isNull(env.TS) {
			return f, invalidf("heartbeat frame needs ts")
		}
		if err := validTS(env.TS); err != nil {
			return f, err
		}
		f.TS = env.TS
		if !isNull(env.FreeHeap) {
			n, err := nonNegInt("free_heap", env.FreeHeap)
			if err != nil {
				return f, err
			}
			f.FreeHeap = &n
		}
	case TypeTelemetry:
		if isNull(env.Data) || !isObject(env.Data) {
			return f, invalidf("telemetry frame needs data as a JSON object")
		}
		if len(env.Data) > MaxDataBytes {
			return f, tooLargef("data is larger than %d bytes", MaxDataBytes)
		}
		f.Data = env.Data
		if !isNull(env.TS) {
			if err := validTS(env.TS); err != nil {
				return f, err
			}
			f.TS = env.TS
		}
		if !isNull(env.Seq) {
			n, err := nonNegInt("seq", env.Seq)
			if err != nil {
				return f, err
			}
			f.Seq = &n
		}
	case TypeCommandResult:
		id, err := boundedID("command_id", env.CommandID, MaxCommandIDLen, true)
		if err != nil {
			return f, err
		}
		f.CommandID = id
		if env.Status == nil || (*env.Status != CommandOK && *env.Status != CommandError) {
			return f, invalidf("command_result status must be ok or error")
		}
		f.Status = *env.Status
		if !isNull(env.Result) {
			if len(env.Result) > MaxDataBytes {
				return f, tooLargef("result is larger than %d bytes", MaxDataBytes)
			}
			f.Result = env.Result
		}
	case TypeRefresh:
		if env.Token == nil || *env.Token == "" {
			return f, invalidf("refresh frame needs a token")
		}
		if len(*env.Token) > MaxTokenBytes {
			return f, invalidf("token is too long")
		}
		f.Token = *env.Token
	default:
		return f, invalidf("unknown frame type")
	}
	return f, nil
}

func decodePublish(f *ClientFrame, env *clientEnvelope) error {
	if err := requireChannel(f, env.Channel); err != nil {
		return err
	}
	p := Publish{Channel: f.Channel}
	if env.ClientMsgID != nil {
		id, err := boundedID("client_msg_id", env.ClientMsgID, MaxClientMsgIDLen, false)
		if err != nil {
			return err
		}
		p.ClientMsgID = id
	}
	if env.ThreadID != nil && *env.ThreadID != "" {
		if !ValidChannelID(*env.ThreadID) {
			return invalidf("thread_id is not a valid message id")
		}
		p.ThreadID = *env.ThreadID
	}
	n := 0
	if env.Text != nil {
		n++
		if len(*env.Text) > MaxTextBytes {
			return tooLargef("text is larger than %d bytes", MaxTextBytes)
		}
		if *env.Text == "" {
			return invalidf("text must not be empty")
		}
		t := *env.Text
		p.Text = &t
	}
	if !isNull(env.Data) {
		n++
		if len(env.Data) > MaxDataBytes {
			return tooLargef("data is larger than %d bytes", MaxDataBytes)
		}
		p.Data = env.Data
	}
	if !isNull(env.E2EE) {
		n++
		if !isObject(env.E2EE) {
			return invalidf("e2ee must be a JSON object")
		}
		if len(env.E2EE) > MaxDataBytes {
			return tooLargef("e2ee is larger than %d bytes", MaxDataBytes)
		}
		p.E2EE = env.E2EE
	}
	if n != 1 {
		return invalidf("publish needs exactly one of text, data and e2ee")
	}
	f.Publish = p
	return nil
}

func requireChannel(f *ClientFrame, ch *string) error {
	if ch == nil || *ch == "" {
		return invalidf("frame needs a channel")
	}
	if !ValidChannelID(*ch) {
		return invalidf("channel is not a valid channel id")
	}
	f.Channel = *ch
	return nil
}

// ValidChannelID reports whether s can be a channel (or message) id: 1 to
// MaxChannelIDLen bytes of [A-Za-z0-9._:@-]. Device channels are
// "device:<device_id>".
func ValidChannelID(s string) bool {
	if len(s) == 0 || len(s) > MaxChannelIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '@', c == '-':
		default:
			return false
		}
	}
	return true
}

// boundedID checks an identifier field: printable UTF-8 without control
// characters, at most max bytes, non-empty when required.
func boundedID(name string, v *string, max int, required bool) (string, error) {
	if v == nil || *v == "" {
		if required {
			return "", invalidf("frame needs %s", name)
		}
		return "", nil
	}
	s := *v
	if len(s) > max {
		return "", invalidf("%s is longer than %d bytes", name, max)
	}
	if !utf8.ValidString(s) {
		return "", invalidf("%s is not valid UTF-8", name)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", invalidf("%s has a control character", name)
		}
	}
	return s, nil
}

// recoverID returns the frame's id for the error reply to a refused frame,
// or nil when there is no valid one.
func recoverID(b []byte) json.RawMessage {
	var idOnly struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(b, &idOnly) != nil {
		// Nested past encoding/json's own limit, or otherwise broken
		// below the top level: look at the top-level members only.
		idOnly.ID = topLevelMember(b, "id")
	}
	if !isNull(idOnly.ID) && validID(idOnly.ID) == nil {
		return idOnly.ID
	}
	return nil
}

// topLevelMember returns the raw value of the last member of the JSON object
// b whose key matches name as encoding/json matches field names (case
// folded), without decoding the other values; nil when b is not an object
// whose members up to the end can be delimited.
func topLevelMember(b []byte, name string) json.RawMessage {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil
	}
	var found json.RawMessage
	for i = skipSpace(b, i+1); i < len(b) && b[i] != '}'; {
		if b[i] != '"' {
			return nil
		}
		end, _ := scanJSONString(b, i+1)
		if end >= len(b) {
			return nil
		}
		var key string
		keyOK := json.Unmarshal(b[i:end+1], &key) == nil
		i = skipSpace(b, end+1)
		if i >= len(b) || b[i] != ':' {
			return nil
		}
		start := skipSpace(b, i+1)
		i = skipValue(b, start)
		if i <= start || i > len(b) {
			return nil
		}
		if keyOK && strings.EqualFold(key, name) {
			found = b[start:i]
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return found
}

// skipValue returns the index just past the JSON value starting at b[i]
// (strings and brackets delimited, scalars up to the next delimiter).
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		end, _ := scanJSONString(b, i+1)
		return end + 1
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			case '"':
				i, _ = scanJSONString(b, i+1)
			}
		}
		return len(b) + 1
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return i
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// validID accepts a JSON string or number of bounded length whose text is
// valid Unicode (it is echoed byte-exact).
func validID(raw json.RawMessage) error {
	if len(raw) > MaxFrameIDBytes {
		return invalidf("id is longer than %d bytes", MaxFrameIDBytes)
	}
	if len(raw) == 0 || CheckJSON(raw) != nil {
		return invalidf("id must be a string or a number")
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return invalidf("id must be a string or a number")
		}
	case c == '-' || (c >= '0' && c <= '9'):
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			return invalidf("id must be a string or a number")
		}
	default:
		return invalidf("id must be a string or a number")
	}
	return nil
}

// validTS accepts a timestamp as a JSON number (Unix time) or string (RFC 3339).
func validTS(raw json.RawMessage) error {
	if len(raw) > 64 {
		return invalidf("ts is too long")
	}
	switch c := raw[0]; {
	case c == '"', c == '-' || (c >= '0' && c <= '9'):
		return nil
	default:
		return invalidf("ts must be a number or a string")
	}
}

func nonNegInt(name string, raw json.RawMessage) (int64, error) {
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil || n < 0 {
		return 0, invalidf("%s must be a non-negative integer", name)
	}
	return n, nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func isObject(raw json.RawMessage) bool {
	return len(raw) > 0 && raw[0] == '{'
}
