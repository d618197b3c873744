package browsertest

import (
	"bytes"
	"context"
	"fmt"
	"image"
	_ "image/png"
	"net/http"
	"net/http/httptest"
	"strings"
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

// The page's uncaught exceptions, CSP violations and console errors are
// recorded, with Eval working meanwhile; a thrown Eval is not one of them.
func TestErrorsRecordsWhatThePageReports(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/app.js":
			w.Header().Set("Content-Type", "text/javascript")
			w.Write([]byte(`window.ready = true; setTimeout(() => { throw new Error("boom-uncaught") }, 0);`))
		default:
			w.Header().Set("Content-Security-Policy", "script-src 'self'")
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(`<!doctype html><title>t</title><script src="/app.js"></script><script>window.inline = 1</script>`))
		}
	}))
	defer srv.Close()
	b := Open(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b.WaitFor(t, ctx, "window.ready === true", "true")
	if _, err := b.Eval(ctx, `(() => { throw new Error("thrown-in-eval") })()`); err == nil || !strings.Contains(err.Error(), "thrown-in-eval") {
		t.Fatalf("Eval of a throw: err %v", err)
	}
	b.Eval(ctx, `console.error("said-in-console"), 1`)
	b.WaitFor(t, ctx, "window.inline === undefined", "true")
	want := map[string]string{"exception": "boom-uncaught", "console": "said-in-console", "csp": "Content Security Policy"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		missing := ""
		for kind, text := range want {
			found := false
			for _, e := range b.Errors() {
				found = found || (e.Kind == kind && strings.Contains(e.Text, text))
			}
			if !found {
				missing = kind
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s error recorded; got %v", missing, b.Errors())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, e := range b.Errors() {
		if strings.Contains(e.Text, "thrown-in-eval") {
			t.Errorf("an Eval's own exception was recorded as the page's: %v", e)
		}
	}
}

// Screenshot returns a PNG of the viewport SetViewport sets.
func TestScreenshotIsAPNGOfTheViewport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(`<!doctype html><meta name="viewport" content="width=device-width, initial-scale=1"><title>t</title><p>hello</p>`))
	}))
	defer srv.Close()
	b := Open(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b.WaitFor(t, ctx, "document.readyState", `"complete"`)
	for _, size := range [][2]int{{1280, 800}, {360, 740}} {
		if err := b.SetViewport(ctx, size[0], size[1]); err != nil {
			t.Fatal(err)
		}
		b.WaitFor(t, ctx, "innerWidth + 'x' + innerHeight", fmt.Sprintf(`"%dx%d"`, size[0], size[1]))
		png, err := b.Screenshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cfg, format, err := image.DecodeConfig(bytes.NewReader(png))
		if err != nil || format != "png" {
			t.Fatalf("screenshot: format %q, err %v", format, err)
		}
		if cfg.Width != size[0] || cfg.Height != size[1] {
			t.Errorf("screenshot is %dx%d, want %dx%d", cfg.Width, cfg.Height, size[0], size[1])
		}
	}
}
