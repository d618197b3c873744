package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/client/e2ee/attachment"
)

// TestE2EEncryptedFiles runs attachments through the real server: one
// member encrypts and uploads, another downloads and decrypts; the blob on
// disk is ciphertext; outsiders, oversized uploads and changed bytes are
// refused.
func TestE2EEncryptedFiles(t *testing.T) {
	const maxBytes = 24 << 20
	s := startStack(t, map[string]string{"FILE_MAX_BYTES": "25165824"})
	alice, _ := s.user(t, "alice")
	bob, _ := s.user(t, "bob")
	carol, _ := s.user(t, "carol")
	ch := s.channel(t, alice, "vault", "private", "bob")
	s.api(t, "POST", "/api/v1/channels/"+ch+"/join", bob, nil)
	sdk := func(tok string) *client.Client {
		c, err := client.New(client.Options{URL: s.wsURL, Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	ca, cb, cc := sdk(alice), sdk(bob), sdk(carol)
	filesDir := filepath.Join(s.dir, "files")

	marker := []byte("the plaintext marker 7f3a9c that must never reach the disk")
	plain := bytes.Repeat(marker, 2000)
	info, err := ca.UploadEncrypted(ctx, ch, bytes.NewReader(plain))
	if err != nil {
		t.Fatalf("upload: %v", err)
	}

	t.Run("another member downloads and decrypts it", func(t *testing.T) {
		var got bytes.Buffer
		if err := cb.DownloadDecrypted(ctx, info, &got); err != nil {
			t.Fatalf("download: %v", err)
		}
		if !bytes.Equal(got.Bytes(), plain) {
			t.Errorf("decrypted %d bytes, want the %d uploaded", got.Len(), len(plain))
		}
	})

	t.Run("the stored blob is not the plaintext", func(t *testing.T) {
		blobs := walkFiles(t, filesDir)
		if len(blobs) != 1 {
			t.Fatalf("blobs on disk: %v, want 1", blobs)
		}
		for _, p := range blobs {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, marker[:16]) || len(b) != len(plain) {
				t.Errorf("blob %s (%d bytes) holds plaintext or the wrong size", p, len(b))
			}
		}
	})

	t.Run("a non-member is forbidden, as for an unknown id", func(t *testing.T) {
		for _, id := range []string{info.ID, "01JAAAAAAAAAAAAAAAAAAAAAAA"} {
			_, err := cc.Download(ctx, id)
			var se *client.ServerError
			if !errors.As(err, &se) || se.Code != "forbidden" {
				t.Errorf("download %s as carol: %v, want forbidden", id, err)
			}
		}
		if _, err := cc.Upload(ctx, ch, strings.NewReader("x")); !isCode(err, "forbidden") {
			t.Errorf("upload as carol: %v, want forbidden", err)
		}
		req, _ := http.NewRequest("GET", s.gwURL+"/api/v1/files/"+info.ID, nil)
		req.Header.Set("Authorization", "Bearer "+carol)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("status %d, want 403", resp.StatusCode)
		}
	})

	t.Run("a flipped ciphertext byte is refused before any plaintext", func(t *testing.T) {
		body, err := cb.Download(ctx, info.ID)
		if err != nil {
			t.Fatal(err)
		}
		ct, err := io.ReadAll(body)
		body.Close()
		if err != nil {
			t.Fatal(err)
		}
		ct[len(ct)/2] ^= 1
		var out bytes.Buffer
		if err := attachment.Decrypt(&out, bytes.NewReader(ct), info); !errors.Is(err, attachment.ErrHashMismatch) || out.Len() != 0 {
			t.Errorf("decrypt of a changed ciphertext: %v and %d bytes out, want ErrHashMismatch and none", err, out.Len())
		}
	})

	t.Run("a 20 MiB file round-trips", func(t *testing.T) {
		big := make([]byte, 20<<20)
		rand.Read(big)
		info, err := ca.UploadEncrypted(ctx, ch, bytes.NewReader(big))
		if err != nil {
			t.Fatalf("upload: %v", err)
		}
		var got bytes.Buffer
		if err := cb.DownloadDecrypted(ctx, info, &got); err != nil {
			t.Fatalf("download: %v", err)
		}
		if !bytes.Equal(got.Bytes(), big) {
			t.Error("the 20 MiB file did not decrypt to what was sent")
		}
	})

	t.Run("over FILE_MAX_BYTES is too_large and leaves nothing", func(t *testing.T) {
		before := walkFiles(t, filesDir)
		// Streamed without a length (the SDK's encrypting upload), so
		// the server finds out while writing.
		_, err := ca.UploadEncrypted(ctx, ch, io.LimitReader(rand.Reader, maxBytes+1))
		if !isCode(err, "too_large") {
			t.Errorf("streamed upload over the cap: %v, want too_large", err)
		}
		// With a Content-Length, refused before a byte is read.
		req, _ := http.NewRequest("POST", s.gwURL+"/api/v1/files?channel="+ch, bytes.NewReader(make([]byte, maxBytes+1)))
		req.Header.Set("Authorization", "Bearer "+alice)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d, want 413", resp.StatusCode)
		}
		after := walkFiles(t, filesDir)
		if len(after) != len(before) {
			t.Errorf("files dir went from %v to %v: a refused upload left something", before, after)
		}
	})
}

func isCode(err error, code string) bool {
	var se *client.ServerError
	return errors.As(err, &se) && se.Code == code
}

// walkFiles lists every regular file under dir (blobs and temp files).
func walkFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
