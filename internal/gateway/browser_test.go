package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/browsertest"
)

// page tries to open a socket with the given URL and token and resolves to
// the first frame's type, or how the attempt failed.
const page = `<!doctype html><title>ws</title><script>
window.tryWS = (url, tok) => new Promise(resolve => {
  const ws = new WebSocket(url, ["unhidra.v1", "bearer." + tok]);
  ws.onmessage = e => { resolve(JSON.parse(e.data).type + ":" + ws.protocol); ws.close(); };
  ws.onerror = () => resolve("error");
  ws.onclose = e => resolve("closed:" + e.code);
});
</script>`

func servePage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html")
	w.Write([]byte(page))
}

// WS-5: cross-site WebSocket hijacking in a real browser: a page from another
// origin cannot open a socket; the app's own page can.
func TestBrowserCrossSiteWebSocketHijackingIsRefused(t *testing.T) {
	browsertest.Require(t)
	e := newEnv(t, func(_ *Config, d *Deps) { d.Web = http.HandlerFunc(servePage) })
	tok := e.user("alice", "s1", time.Hour)
	evil := httptest.NewServer(http.HandlerFunc(servePage))
	defer evil.Close()
	wsURL := strconv.Quote(e.url)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	own := browsertest.Open(t, "http://"+e.srv.Addr()+"/")
	own.WaitFor(t, ctx, "typeof window.tryWS", `"function"`)
	got, err := own.Eval(ctx, "tryWS("+wsURL+", "+strconv.Quote(tok)+")")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `"welcome:unhidra.v1"` {
		t.Errorf("the app's own page: %s, want welcome over unhidra.v1", got)
	}

	other := browsertest.Open(t, evil.URL+"/")
	other.WaitFor(t, ctx, "typeof window.tryWS", `"function"`)
	before := counterValue(t, e.srv.met.refused.WithLabelValues("origin"))
	got, err = other.Eval(ctx, "tryWS("+wsURL+", "+strconv.Quote(tok)+")")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) == `"welcome:unhidra.v1"` {
		t.Fatalf("a page from %s opened a socket to the gateway", evil.URL)
	}
	if after := counterValue(t, e.srv.met.refused.WithLabelValues("origin")); after != before+1 {
		t.Errorf("origin refusals went from %v to %v, want one more", before, after)
	}
}
