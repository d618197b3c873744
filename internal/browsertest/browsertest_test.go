package browsertest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestEvalReadsPageState(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(`<!doctype html><title>t</title><script>window.answer = 6 * 7;</script>`))
	}))
	defer srv.Close()
	b := Open(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got := b.WaitFor(t, ctx, "window.answer", "42"); string(got) != "42" {
		t.Fatalf("got %s, want 42", got)
	}
	v, err := b.Eval(ctx, "Promise.resolve(location.origin)")
	if err != nil {
		t.Fatal(err)
	}
	if want := `"` + srv.URL + `"`; string(v) != want {
		t.Fatalf("origin: got %s, want %s", v, want)
	}
}
