package ml

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	bodies := []string{`{"a":1}`, `{"text":"héllo ✓"}`, strings.Repeat("x", 70000)}
	for _, b := range bodies {
		if err := WriteFrame(&buf, []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range bodies {
		got, err := ReadFrame(&buf, 0)
		if err != nil || string(got) != want {
			t.Fatalf("read %.40q, %v; want %.40q", got, err, want)
		}
	}
	if _, err := ReadFrame(&buf, 0); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestReadFrameRefusals(t *testing.T) {
	hdr := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"length 2^31", hdr(1 << 31), ErrFrameTooLarge},
		{"length 2^32-1", hdr(^uint32(0)), ErrFrameTooLarge},
		{"one over 10 MiB", hdr(MaxFrame + 1), ErrFrameTooLarge},
		{"zero length", hdr(0), ErrEmptyFrame},
		{"short header", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"short body", append(hdr(10), `{"a"`...), io.ErrUnexpectedEOF},
		{"header only", hdr(10), io.ErrUnexpectedEOF},
		{"not UTF-8", append(hdr(3), 0xff, 0xfe, 0xfd), ErrNotUTF8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(c.in), 0)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	// A smaller limit is honoured.
	if _, err := ReadFrame(bytes.NewReader(append(hdr(5), "12345"...)), 4); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("limit 4, frame 5: %v", err)
	}
	// The stream stays in sync after a body that is not UTF-8.
	in := append(append(hdr(1), 0xff), append(hdr(2), "{}"...)...)
	r := bytes.NewReader(in)
	if _, err := ReadFrame(r, 0); !errors.Is(err, ErrNotUTF8) {
		t.Fatal(err)
	}
	if b, err := ReadFrame(r, 0); err != nil || string(b) != "{}" {
		t.Fatalf("next frame: %q %v", b, err)
	}
}

func TestWriteFrameRefusals(t *testing.T) {
	if err := WriteFrame(io.Discard, nil); !errors.Is(err, ErrEmptyFrame) {
		t.Fatalf("empty: %v", err)
	}
	if err := WriteFrame(io.Discard, make([]byte, MaxFrame+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("too large: %v", err)
	}
}

func TestDecodeResponse(t *testing.T) {
	good := []string{
		`{"request_id":"a","result":{"x":1},"processing_time_ms":0.5}`,
		`{"request_id":"a","error":{"code":"bad_request","message":"m"},"processing_time_ms":0}`,
		`{"request_id":null,"error":{"code":"invalid_json","message":"m"},"processing_time_ms":0}`,
	}
	for _, g := range good {
		if _, err := DecodeResponse([]byte(g)); err != nil {
			t.Errorf("%s: %v", g, err)
		}
	}
	bad := []string{
		``, `null`, `[]`, `"x"`, `{`, `{"request_id":"a"}`,
		`{"request_id":"a","result":{},"error":{"code":"x","message":"y"}}`,
		`{"request_id":null,"result":{}}`,
		`{"request_id":"a","result":null}`,
		`{"request_id":"a","result":{}} {"again":1}`,
		`{"request_id":"a","result":{},"processing_time_ms":-1}`,
		`{"request_id":7,"result":{}}`,
	}
	for _, b := range bad {
		var pe *ProtocolError
		if _, err := DecodeResponse([]byte(b)); !errors.As(err, &pe) {
			t.Errorf("%q: %v, want a protocol error", b, err)
		}
	}
	// A worker's long error text is clipped before it reaches a log.
	r, err := DecodeResponse([]byte(`{"request_id":"a","error":{"code":"x","message":"` + strings.Repeat("m", 5000) + `"}}`))
	if err != nil || len(r.Error.Message) > 210 {
		t.Fatalf("long message: %d bytes, %v", len(r.Error.Message), err)
	}
}

func TestDecodeScores(t *testing.T) {
	if _, err := DecodeScores([]byte(`{"model":"anomaly","scores":[{"score":1,"anomaly":false,"label":"normal"}]}`), 2); err == nil {
		t.Fatal("one score for two readings accepted")
	}
	r, err := DecodeScores([]byte(`{"model":"anomaly","version":"v","scores":[{"score":null,"anomaly":false,"label":"invalid"},{"score":9.5,"anomaly":true,"label":"anomaly"}]}`), 2)
	if err != nil || r.Scores[0].Score != nil || !r.Scores[1].Anomaly || *r.Scores[1].Score != 9.5 {
		t.Fatalf("%+v %v", r, err)
	}
}

func TestSplitCommand(t *testing.T) {
	cases := map[string][]string{
		`/usr/bin/python3 scripts/inference_worker.py`: {"/usr/bin/python3", "scripts/inference_worker.py"},
		`  a   b	c `:                            {"a", "b", "c"},
		`python3 'my dir/w.py' --x="a b" \"q\"`: {"python3", "my dir/w.py", `--x=a b`, `"q"`},
		`a"b"'c'd`:                              {"abcd"},
		`"a \" \\ \$ \n"`:                       {`a " \ $ \n`},
		`''`:                                    {""},
		``:                                      nil,
	}
	for in, want := range cases {
		got, err := SplitCommand(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("SplitCommand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{`a 'b`, `a "b`, `a \`} {
		if _, err := SplitCommand(in); err == nil {
			t.Errorf("SplitCommand(%q) accepted", in)
		}
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(binary.BigEndian.AppendUint32(nil, 2), []byte("{}"))
	f.Add(binary.BigEndian.AppendUint32(nil, 1<<31), []byte{})
	f.Add([]byte{0, 0, 0}, []byte("x"))
	f.Fuzz(func(t *testing.T, hdr, body []byte) {
		in := append(append([]byte{}, hdr...), body...)
		got, err := ReadFrame(bytes.NewReader(in), 1<<16)
		if err != nil {
			return
		}
		// What was read is exactly the announced body, and writes back.
		if len(in) < 4 || int(binary.BigEndian.Uint32(in)) != len(got) || !bytes.Equal(in[4:4+len(got)], got) {
			t.Fatalf("read %d bytes not matching the frame", len(got))
		}
		var out bytes.Buffer
		if err := WriteFrame(&out, got); err != nil || !bytes.Equal(out.Bytes(), in[:4+len(got)]) {
			t.Fatalf("round trip differs: %v", err)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte(`{"request_id":"a","result":{"scores":[]},"processing_time_ms":1}`))
	f.Add([]byte(`{"request_id":null,"error":{"code":"x","message":"y"}}`))
	f.Add([]byte(`{"request_id":"a","result":{"model":"m","scores":[{"score":1e308,"anomaly":true}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeResponse(b)
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("error of another kind: %v", err)
			}
			return
		}
		if (r.Error == nil) == (len(r.Result) == 0) {
			t.Fatal("accepted a response without exactly one of result and error")
		}
		if r.Error == nil && r.RequestID == nil {
			t.Fatal("accepted a result without a request id")
		}
		if r.Error == nil {
			_, _ = DecodeScores(r.Result, 1)
		}
	})
}

func FuzzSplitCommand(f *testing.F) {
	f.Add(`/usr/bin/python3 scripts/inference_worker.py --test-models`)
	f.Add(`a 'b c' "d \" e" f\ g`)
	f.Fuzz(func(t *testing.T, s string) {
		words, err := SplitCommand(s)
		if err != nil {
			return
		}
		// Quoting every word again gives the same words back.
		var q []string
		for _, w := range words {
			q = append(q, "'"+strings.ReplaceAll(w, "'", `'\''`)+"'")
		}
		again, err := SplitCommand(strings.Join(q, " "))
		if err != nil || !slices.Equal(again, words) {
			t.Fatalf("%q → %q → %q (%v)", s, words, again, err)
		}
	})
}
