package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/files"
)

var _ files.Store = (*FileStore)(nil)

// FileStore keeps the encrypted files' upload rows (files.Store).
type FileStore struct{ db *DB }

// NewFileStore returns the file store on db.
func NewFileStore(db *DB) *FileStore { return &FileStore{db: db} }

// PutFile implements files.Store.
func (s *FileStore) PutFile(ctx context.Context, f files.File) error {
	// A transaction so the row is synced (db.Tx) before the upload is acknowledged.
	return Err(s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO files (id, channel_id, uploader_kind, uploader_id, sha256, size, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, f.ID, f.Channel, f.Uploader.Kind, f.Uploader.ID, f.SHA256, f.Size, Time(f.CreatedAt))
		return err
	}))
}

// GetFile implements files.Store.
func (s *FileStore) GetFile(ctx context.Context, id string) (files.File, error) {
	var f files.File
	var at string
	err := s.db.Reader().QueryRowContext(ctx, `SELECT id, channel_id, uploader_kind, uploader_id, sha256, size, created_at FROM files WHERE id = ?`, id).
		Scan(&f.ID, &f.Channel, &f.Uploader.Kind, &f.Uploader.ID, &f.SHA256, &f.Size, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return files.File{}, unhidra.Errorf(unhidra.ENOTFOUND, "no such file")
	}
	if err != nil {
		return files.File{}, Err(err)
	}
	if f.CreatedAt, err = ParseTime(at); err != nil {
		return files.File{}, err
	}
	return f, nil
}
