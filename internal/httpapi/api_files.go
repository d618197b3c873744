package httpapi

import (
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/files"
)

// FileRoutes returns the APIDeps.Routes hook for encrypted files
// (/api/v1/files): opaque blobs the clients encrypted, uploaded raw (not
// JSON, so not under MaxJSONBody: the service caps them at FILE_MAX_BYTES
// while streaming them to disk) and downloaded by whoever may read the
// channel they were shared in. Devices are admitted; the channel's rules
// decide (a device may use its own channel).
func FileRoutes(svc *files.Service, log *slog.Logger) RouteFunc {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(mux *http.ServeMux, _, anyone func(APIHandler) http.Handler) {
		f := &fileAPI{svc: svc, log: log}
		mux.Handle("POST "+APIPrefix+"/files", anyone(f.upload))
		mux.Handle("GET "+APIPrefix+"/files/{id}", anyone(f.download))
	}
}

type fileAPI struct {
	svc *files.Service
	log *slog.Logger
}

// minUploadRate is the slowest upload given time beyond the gateway's
// per-request deadline: a 100 MiB file at 256 KiB/s gets 400 s more, while
// a client trickling a body still cannot hold a handler forever.
const minUploadRate = 256 << 10

func (f *fileAPI) upload(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/octet-stream" {
			WriteError(w, r, f.log, unhidra.Errorf(unhidra.EINVALID, "Content-Type must be application/octet-stream"))
			return
		}
	}
	if r.ContentLength > f.svc.MaxBytes() {
		WriteError(w, r, f.log, unhidra.Errorf(unhidra.ETOOLARGE, "file is larger than %d bytes (FILE_MAX_BYTES)", f.svc.MaxBytes()))
		return
	}
	if r.ContentLength > 0 {
		extra := time.Duration(r.ContentLength/minUploadRate) * time.Second
		rc := http.NewResponseController(w)
		now := time.Now()
		// The gateway's deadlines are for JSON requests; errors are
		// ignored where the connection cannot set them (tests' recorders).
		_ = rc.SetReadDeadline(now.Add(30*time.Second + extra))
		_ = rc.SetWriteDeadline(now.Add(60*time.Second + extra))
	}
	file, err := f.svc.Upload(r.Context(), who, r.URL.Query().Get("channel"), r.Body)
	if err != nil {
		WriteError(w, r, f.log, err)
		return
	}
	WriteJSON(w, http.StatusCreated, file)
}

func (f *fileAPI) download(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	file, blob, err := f.svc.Open(r.Context(), who, r.PathValue("id"))
	if err != nil {
		WriteError(w, r, f.log, err)
		return
	}
	defer blob.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", "attachment")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "private, no-cache")
	h.Set("ETag", strconv.Quote(file.SHA256))
	// ServeContent sets Content-Length and answers Range and
	// If-None-Match requests from the same bytes.
	http.ServeContent(w, r, "", file.CreatedAt, blob)
}
