package platform

import (
	"path/filepath"

	"github.com/unhidra/unhidra/internal/files"
	"github.com/unhidra/unhidra/internal/httpapi"
)

// FilesDir is where the encrypted files' blobs are kept: the files
// directory of the data dir.
func FilesDir(dataDir string) string { return filepath.Join(dataDir, "files") }

// fileRoutes are the encrypted files' REST routes (/api/v1/files…): the
// files service on the backend's file store, with the chat service
// deciding who may upload to and download from a channel.
func (a *Node) fileRoutes() httpapi.RouteFunc {
	log := a.log.With("server", "api")
	svc, err := files.NewService(files.Deps{
		Store:    a.backend.Files,
		Access:   a.chatSvc,
		Dir:      FilesDir(a.cfg.DataDir),
		MaxBytes: int64(a.cfg.FileMaxBytes),
		Log:      log,
	})
	if err != nil {
		// The data dir was writable at start (Config.CheckWritable); a
		// node without files still serves everything else.
		log.Error("encrypted files are unavailable", "err", err)
		return nil
	}
	return httpapi.FileRoutes(svc, log)
}
