package ml

// The messages of SPEC §8 and of the shipped worker's models. A request is
// {request_id, model_id, data}; a response {request_id, result?, error?,
// processing_time_ms}. The default model, "anomaly", scores readings:
// data {readings:[{device, metric, value, ts?}]}, result {model, version,
// scores:[{score, anomaly, label}]}, one score per reading in order.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
)

// DefaultModel is the model the bridge asks for: the shipped worker's
// streaming anomaly scorer.
const DefaultModel = "anomaly"

// Request is one request frame.
type Request struct {
	RequestID string `json:"request_id"`
	ModelID   string `json:"model_id,omitempty"`
	Data      any    `json:"data"`
}

// Response is one response frame. Exactly one of Result and Error is set
// in a well-formed response.
type Response struct {
	RequestID        *string         `json:"request_id"`
	Result           json.RawMessage `json:"result,omitempty"`
	Error            *WorkerError    `json:"error,omitempty"`
	ProcessingTimeMS float64         `json:"processing_time_ms"`
}

// WorkerError is the error a worker answers with.
type WorkerError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *WorkerError) Error() string { return "ml worker: " + e.Code + ": " + e.Message }

// ProtocolError is a response that breaks the protocol: not JSON, not an
// object, the wrong request id, neither result nor error, the wrong number
// of scores. The connection it came on is closed.
type ProtocolError struct{ Reason string }

func (e *ProtocolError) Error() string { return "ml worker broke the protocol: " + e.Reason }

// DecodeResponse parses a response body strictly enough to trust it: a
// JSON object with a string request_id (null only for a frame-level error)
// and exactly one of result and error.
func DecodeResponse(body []byte) (Response, error) {
	var r Response
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&r); err != nil {
		return Response{}, &ProtocolError{"response is not a JSON object: " + clip(err.Error())}
	}
	if dec.More() {
		return Response{}, &ProtocolError{"response has data after its object"}
	}
	hasResult := len(r.Result) > 0 && !bytes.Equal(r.Result, []byte("null"))
	switch {
	case hasResult && r.Error != nil:
		return Response{}, &ProtocolError{"response has both result and error"}
	case !hasResult && r.Error == nil:
		return Response{}, &ProtocolError{"response has neither result nor error"}
	case r.Error == nil && r.RequestID == nil:
		return Response{}, &ProtocolError{"result without a request_id"}
	case math.IsNaN(r.ProcessingTimeMS) || r.ProcessingTimeMS < 0:
		return Response{}, &ProtocolError{"bad processing_time_ms"}
	}
	if r.Error != nil {
		r.Error.Code, r.Error.Message = clip(r.Error.Code), clip(r.Error.Message)
	}
	return r, nil
}

// clip bounds a worker-supplied string before it reaches a log or an error.
func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// Reading is one numeric metric of one telemetry point, as the anomaly
// model takes it.
type Reading struct {
	Device string  `json:"device"`
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	TS     string  `json:"ts,omitempty"`
}

// ScoreRequest is the data of an anomaly request.
type ScoreRequest struct {
	Readings []Reading `json:"readings"`
}

// Score is the model's answer for one reading. Score is nil for an
// invalid reading.
type Score struct {
	Score   *float64 `json:"score"`
	Anomaly bool     `json:"anomaly"`
	Label   string   `json:"label"`
}

// ScoreResult is the result of an anomaly request.
type ScoreResult struct {
	Model   string  `json:"model"`
	Version string  `json:"version"`
	Scores  []Score `json:"scores"`
}

// MaxReadings is the most readings the worker takes in one request.
const MaxReadings = 10000

// DecodeScores parses an anomaly result for n readings.
func DecodeScores(result json.RawMessage, n int) (ScoreResult, error) {
	var r ScoreResult
	if err := json.Unmarshal(result, &r); err != nil {
		return ScoreResult{}, &ProtocolError{"result is not a score result: " + clip(err.Error())}
	}
	if len(r.Scores) != n {
		return ScoreResult{}, &ProtocolError{fmt.Sprintf("%d scores for %d readings", len(r.Scores), n)}
	}
	r.Model, r.Version = clip(r.Model), clip(r.Version)
	return r, nil
}
