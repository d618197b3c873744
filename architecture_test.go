package unhidra_test

import (
	"bufio"
	"bytes"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/unhidra/unhidra"

// The layers of the import graph (README, Architecture).
var (
	domain     = []string{"internal/auth", "internal/chat", "internal/device", "internal/presence", "internal/audit"}
	transports = []string{"internal/gateway", "internal/httpapi", "internal/mqttbridge"}
	adapters   = []string{"internal/sqlite", "internal/inmem", "internal/platform"}
)

// goFiles returns the repository's Go files outside tests and testdata,
// by package directory.
func goFiles(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			out[filepath.ToSlash(filepath.Dir(path))] = append(out[filepath.ToSlash(filepath.Dir(path))], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// imports returns the module-internal imports of the package in dir
// (outside its tests), relative to the module root.
func imports(t *testing.T, files []string) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	out := map[string]bool{}
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range af.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if p == module {
				out["."] = true
			} else if rel, ok := strings.CutPrefix(p, module+"/"); ok {
				out[rel] = true
			}
		}
	}
	return out
}

// within reports whether pkg is one of roots or below one.
func within(pkg string, roots []string) bool {
	for _, r := range roots {
		if pkg == r || strings.HasPrefix(pkg, r+"/") {
			return true
		}
	}
	return false
}

// The import graph keeps its layers: the domain imports no adapter,
// transport or configuration; device depends on neither chat nor auth; no
// transport imports another.
func TestImportGraphKeepsItsLayers(t *testing.T) {
	files := goFiles(t)
	for _, must := range append(append([]string{}, domain...), transports...) {
		if len(files[must]) == 0 {
			t.Fatalf("no package %s: the layer lists are out of date", must)
		}
	}
	var bad []string
	for pkg, fs := range files {
		for im := range imports(t, fs) {
			switch {
			case within(pkg, domain) && (within(im, adapters) || within(im, transports) || im == "internal/config"):
				bad = append(bad, pkg+" (domain) imports "+im)
			case pkg == "internal/device" && (im == "internal/chat" || im == "internal/auth"):
				bad = append(bad, "internal/device imports "+im)
			case within(pkg, transports) && within(im, transports) && !within(im, []string{pkg}):
				bad = append(bad, pkg+" (transport) imports "+im)
			}
		}
	}
	sort.Strings(bad)
	for _, b := range bad {
		t.Error(b)
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		n++
	}
	return n
}

// No Go file outside tests is over 700 lines, and the command is a thin
// layer over the packages: cmd/unhidra under 1,600 lines outside tests.
func TestFilesStayReadable(t *testing.T) {
	const maxFile, maxCmd = 700, 1600
	cmd := 0
	for pkg, fs := range goFiles(t) {
		for _, f := range fs {
			n := countLines(t, f)
			if n > maxFile {
				t.Errorf("%s has %d lines (at most %d outside tests)", f, n, maxFile)
			}
			if pkg == "cmd/unhidra" {
				cmd += n
			}
		}
	}
	if cmd == 0 || cmd >= maxCmd {
		t.Errorf("cmd/unhidra has %d lines outside tests, want under %d", cmd, maxCmd)
	}
	t.Logf("cmd/unhidra: %d lines outside tests", cmd)
}
