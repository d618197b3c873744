package load

// The devices a run uses: provisioned through the auth API, or read from a
// keys file of id,key lines (which devsim --save-keys writes).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
)

// Device is a provisioned device: its id and API key.
type Device struct{ ID, Key string }

// ReadKeysFile reads id,key lines (blank lines and # comments skipped).
func ReadKeysFile(path string) ([]Device, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Device
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		d, ok, err := parseKeyLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if ok {
			out = append(out, d)
		}
	}
	return out, sc.Err()
}

// parseKeyLine parses one "id,key" line; ok is false for blank and comment
// lines. The key itself never appears in an error.
func parseKeyLine(line string) (d Device, ok bool, err error) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return d, false, nil
	}
	id, key, found := strings.Cut(line, ",")
	id, key = strings.TrimSpace(id), strings.TrimSpace(key)
	if !found || id == "" || key == "" {
		return d, false, errors.New("want id,key")
	}
	if len(id) > 128 || len(key) > 256 || strings.ContainsAny(id, "/+#\x00") {
		return d, false, errors.New("bad device id or key")
	}
	for _, r := range key {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return d, false, errors.New("a key has only [A-Za-z0-9_-]")
		}
	}
	return Device{ID: id, Key: key}, true, nil
}

// provisionDevices creates n devices through the auth API. On an error it
// also returns the devices it did create, so that they can be removed.
func provisionDevices(ctx context.Context, api *apiClient, token, prefix string, n int) ([]Device, error) {
	out := make([]Device, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			id, key, err := api.createDevice(ctx, token, fmt.Sprintf("%s-%d", prefix, i))
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			out[i] = Device{ID: id, Key: key}
		}(i)
	}
	wg.Wait()
	made := out[:0]
	for _, d := range out {
		if d.ID != "" {
			made = append(made, d)
		}
	}
	if err, _ := firstErr.Load().(error); err != nil {
		return made, err
	}
	return made, nil
}

// saveKeys writes the devices as id,key lines to a new file of mode 0600.
func saveKeys(path string, devices []Device) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	for _, d := range devices {
		fmt.Fprintf(f, "%s,%s\n", d.ID, d.Key)
	}
	return f.Close()
}
