package httpapi_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/files"
	"github.com/unhidra/unhidra/internal/httpapi"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/openapitest"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/wire"
)

const fileCap = 1024

// newFilesAPI serves the files routes on a real chat service and SQLite,
// with a private channel of alice and bob; it returns the server, the
// channel and the blob directory.
func newFilesAPI(t *testing.T) (*httptest.Server, string, string) {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	st, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	svc := chat.NewService(st, inmem.NewBroker(), chat.Options{})
	alice := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "alice"}}
	ch, _, err := svc.CreateChannel(ctx, alice, chat.CreateChannel{Name: "vault", Kind: "private", Members: []string{"bob"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "files")
	fsvc, err := files.NewService(files.Deps{Store: sqlite.NewFileStore(db), Access: svc, Dir: dir, MaxBytes: fileCap})
	if err != nil {
		t.Fatal(err)
	}
	auth := apiFakeAuth{
		"tok-alice": alice,
		"tok-bob":   {Principal: wire.Principal{Kind: wire.KindUser, ID: "bob"}},
		"tok-carol": {Principal: wire.Principal{Kind: wire.KindUser, ID: "carol"}},
	}
	srv := httptest.NewServer(httpapi.NewAPI(httpapi.APIDeps{Chat: svc, Users: auth, Routes: httpapi.FileRoutes(fsvc, nil)}))
	t.Cleanup(func() {
		srv.Close()
		svc.Wait()
		st.Close()
		db.Close()
	})
	return srv, ch.ID, dir
}

// fileCall sends a raw body (nil: none), checks the exchange against the
// OpenAPI document and records it in c when c is not nil.
func fileCall(t *testing.T, c *contract, base, method, path, token string, body io.Reader, want int) ([]byte, http.Header) {
	t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = io.ReadAll(body)
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	got, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Errorf("%s %s: got %d %s, want %d", method, path, res.StatusCode, got, want)
	}
	if c != nil && res.Header.Get("Content-Type") == "application/json" {
		openapitest.Check(t, req, nil, res, got)
	}
	if c != nil {
		if op, err := openapitest.Operation(method, path); err == nil {
			c.seen[op] = true
		}
	}
	return got, res.Header
}

func exerciseFileRoutes(t *testing.T, c *contract) {
	srv, ch, _ := newFilesAPI(t)
	p := httpapi.APIPrefix + "/files"
	var f files.File
	b, _ := fileCall(t, c, srv.URL, "POST", p+"?channel="+ch, "tok-alice", strings.NewReader("ciphertext"), 201)
	decodeInto(t, b, &f)
	fileCall(t, c, srv.URL, "POST", p+"?channel="+ch, "tok-carol", strings.NewReader("x"), 403)
	fileCall(t, c, srv.URL, "POST", p+"?channel="+ch, "", strings.NewReader("x"), 401)
	fileCall(t, c, srv.URL, "POST", p+"?channel="+ch, "tok-alice", bytes.NewReader(make([]byte, fileCap+1)), 413)
	fileCall(t, c, srv.URL, "GET", p+"/"+f.ID, "tok-bob", nil, 200)
	fileCall(t, c, srv.URL, "GET", p+"/"+f.ID, "tok-carol", nil, 403)
	fileCall(t, c, srv.URL, "GET", p+"/"+f.ID, "", nil, 401)
}

func TestFilesRoutes(t *testing.T) {
	srv, ch, dir := newFilesAPI(t)
	p := httpapi.APIPrefix + "/files"
	body := []byte("opaque client ciphertext")
	var f1, f2 files.File
	b, _ := fileCall(t, nil, srv.URL, "POST", p+"?channel="+ch, "tok-alice", bytes.NewReader(body), 201)
	decodeInto(t, b, &f1)
	b, _ = fileCall(t, nil, srv.URL, "POST", p+"?channel="+ch, "tok-bob", bytes.NewReader(body), 201)
	decodeInto(t, b, &f2)

	t.Run("the same bytes twice are two uploads of one blob", func(t *testing.T) {
		if f1.ID == f2.ID || f1.SHA256 != f2.SHA256 || f1.Size != int64(len(body)) {
			t.Errorf("uploads %+v and %+v", f1, f2)
		}
		if n := countFiles(t, dir); n != 1 {
			t.Errorf("%d files in the blob dir, want 1", n)
		}
	})
	t.Run("a member downloads the bytes with their length and hash", func(t *testing.T) {
		got, h := fileCall(t, nil, srv.URL, "GET", p+"/"+f1.ID, "tok-bob", nil, 200)
		if !bytes.Equal(got, body) || h.Get("ETag") != `"`+f1.SHA256+`"` || h.Get("Content-Length") != "24" {
			t.Errorf("got %q with ETag %s and length %s", got, h.Get("ETag"), h.Get("Content-Length"))
		}
	})
	t.Run("an unknown id and a forbidden one answer the same", func(t *testing.T) {
		a, _ := fileCall(t, nil, srv.URL, "GET", p+"/"+f1.ID, "tok-carol", nil, 403)
		b, _ := fileCall(t, nil, srv.URL, "GET", p+"/01JAAAAAAAAAAAAAAAAAAAAAAA", "tok-alice", nil, 403)
		if !bytes.Equal(a, b) {
			t.Errorf("forbidden %s, unknown %s: they differ", a, b)
		}
	})
	t.Run("a body over the cap is too large and leaves no temp file", func(t *testing.T) {
		// Chunked (no Content-Length), so the service meets the cap while writing.
		pr, pw := io.Pipe()
		go func() {
			pw.Write(make([]byte, fileCap+1))
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", srv.URL+p+"?channel="+ch, pr)
		req.Header.Set("Authorization", "Bearer tok-alice")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d, want 413", res.StatusCode)
		}
		if n := countFiles(t, dir); n != 1 {
			t.Errorf("%d files in the blob dir, want the 1 blob", n)
		}
	})
	t.Run("a JSON content type is refused", func(t *testing.T) {
		req, _ := http.NewRequest("POST", srv.URL+p+"?channel="+ch, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer tok-alice")
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d, want 400", res.StatusCode)
		}
	})
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
