package client

// This file holds the encrypted files' REST calls (/api/v1/files) on the
// gateway's address: raw uploads and downloads, and the end-to-end
// encrypted forms that encrypt while uploading and verify before
// decrypting (client/e2ee/attachment).

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/unhidra/unhidra/client/e2ee/attachment"
)

// FileInfo is the server's record of an upload.
type FileInfo struct {
	ID        string    `json:"id"`
	Channel   string    `json:"channel"`
	SHA256    string    `json:"sha256"` // hex of the stored bytes
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"created_at"`
}

// apiURL is the REST address of path on the gateway Options.URL names.
func (c *Client) apiURL(path string) (*url.URL, error) {
	u, err := url.Parse(c.opts.URL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	u.Path, u.RawQuery, u.Fragment = "/api/v1"+path, "", ""
	return u, nil
}

func (c *Client) restRequest(ctx context.Context, method string, u *url.URL, body io.Reader) (*http.Response, error) {
	return c.restRequestType(ctx, method, u, body, "application/octet-stream")
}

// restRequestType is restRequest with the body's content type.
func (c *Client) restRequestType(ctx context.Context, method string, u *url.URL, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	if tok == "" {
		tok = c.opts.APIKey
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	for k, vs := range c.opts.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, restError(resp)
	}
	return resp, nil
}

// restError reads the REST API's error body into a *ServerError.
func restError(resp *http.Response) error {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e); err != nil || e.Error.Code == "" {
		return &ServerError{Code: "http_" + fmt.Sprint(resp.StatusCode), Message: resp.Status}
	}
	return &ServerError{Code: e.Error.Code, Message: e.Error.Message}
}

// Upload streams body to the server as a file shared in channel (the
// caller must be allowed to post there). body is sent as is: use
// UploadEncrypted in an end-to-end encrypted channel. A file over the
// server's FILE_MAX_BYTES fails with a ServerError "too_large".
func (c *Client) Upload(ctx context.Context, channel string, body io.Reader) (FileInfo, error) {
	u, err := c.apiURL("/files")
	if err != nil {
		return FileInfo{}, err
	}
	u.RawQuery = url.Values{"channel": {channel}}.Encode()
	resp, err := c.restRequest(ctx, http.MethodPost, u, body)
	if err != nil {
		return FileInfo{}, err
	}
	defer resp.Body.Close()
	var fi FileInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&fi); err != nil {
		return FileInfo{}, fmt.Errorf("client: upload answer: %w", err)
	}
	return fi, nil
}

// Download streams file id's stored bytes; the caller closes the reader.
func (c *Client) Download(ctx context.Context, id string) (io.ReadCloser, error) {
	if id == "" || strings.ContainsAny(id, "/?#%") {
		return nil, errors.New("client: bad file id")
	}
	u, err := c.apiURL("/files/" + id)
	if err != nil {
		return nil, err
	}
	resp, err := c.restRequest(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// UploadEncrypted encrypts src while uploading it to channel (nothing is
// buffered: the ciphertext is streamed as it is made) and returns the
// attachment's Info, with the server's file id, to send inside the e2ee
// message. It checks that the server stored the bytes it hashed.
func (c *Client) UploadEncrypted(ctx context.Context, channel string, src io.Reader) (attachment.Info, error) {
	pr, pw := io.Pipe()
	type result struct {
		info attachment.Info
		err  error
	}
	enc := make(chan result, 1)
	go func() {
		info, err := attachment.Encrypt(pw, src)
		pw.CloseWithError(err)
		enc <- result{info, err}
	}()
	fi, err := c.Upload(ctx, channel, pr)
	// Unblock the encryption when the upload ended early.
	pr.CloseWithError(errors.New("client: upload ended"))
	r := <-enc
	if err != nil {
		return attachment.Info{}, err
	}
	if r.err != nil {
		return attachment.Info{}, r.err
	}
	if fi.SHA256 != hex.EncodeToString(r.info.SHA256[:]) {
		return attachment.Info{}, fmt.Errorf("client: the server stored other bytes than were sent (sha256 %s)", fi.SHA256)
	}
	r.info.ID = fi.ID
	return r.info, nil
}

// DownloadDecrypted downloads info's file to a temporary file, verifies
// its hash and only then writes the plaintext to dst (attachment.Decrypt):
// a changed ciphertext yields attachment.ErrHashMismatch and no plaintext.
// The temporary file (ciphertext only) is removed before it returns.
func (c *Client) DownloadDecrypted(ctx context.Context, info attachment.Info, dst io.Writer) error {
	body, err := c.Download(ctx, info.ID)
	if err != nil {
		return err
	}
	defer body.Close()
	tmp, err := os.CreateTemp("", "unhidra-attachment-*")
	if err != nil {
		return err
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	if _, err := io.Copy(tmp, body); err != nil {
		return fmt.Errorf("client: download: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return attachment.Decrypt(dst, tmp, info)
}
