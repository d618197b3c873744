package ml

// The framing of SPEC §8, both directions: a 4-byte big-endian length, then
// that many bytes of UTF-8 JSON (one object). The length is checked before
// anything is allocated, so a peer that announces 2^31 bytes costs nothing.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// MaxFrame is the largest frame body either side accepts (10 MiB).
const MaxFrame = 10 << 20

// ErrFrameTooLarge is returned by ReadFrame for a length over the limit and
// by WriteFrame for a body over it. The stream cannot be resynchronised
// after it: the connection must be closed.
var ErrFrameTooLarge = errors.New("ml: frame too large")

// ErrEmptyFrame is returned by ReadFrame for a frame of length 0 (no JSON
// object is empty).
var ErrEmptyFrame = errors.New("ml: empty frame")

// ErrNotUTF8 is returned by ReadFrame for a body that is not valid UTF-8.
// The stream stays in sync: the next frame can be read.
var ErrNotUTF8 = errors.New("ml: frame is not UTF-8")

// ReadFrame reads one frame of at most max bytes (MaxFrame when max <= 0)
// and returns its body. A stream that ends mid-frame gives
// io.ErrUnexpectedEOF; one that ends between frames io.EOF.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	if max <= 0 || max > MaxFrame {
		max = MaxFrame
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	switch {
	case n == 0:
		return nil, ErrEmptyFrame
	case uint64(n) > uint64(max):
		return nil, fmt.Errorf("%w: %d bytes announced, at most %d", ErrFrameTooLarge, n, max)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if !utf8.Valid(body) {
		return nil, ErrNotUTF8
	}
	return body, nil
}

// AppendFrame appends body framed (length, then body) to dst.
func AppendFrame(dst, body []byte) ([]byte, error) {
	if len(body) == 0 {
		return dst, ErrEmptyFrame
	}
	if len(body) > MaxFrame {
		return dst, fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooLarge, len(body), MaxFrame)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...), nil
}

// WriteFrame writes body as one frame, in one Write.
func WriteFrame(w io.Writer, body []byte) error {
	b, err := AppendFrame(make([]byte, 0, 4+len(body)), body)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
