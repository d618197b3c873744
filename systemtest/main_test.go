package systemtest

import (
	"os"
	"testing"

	"github.com/unhidra/unhidra/internal/e2etest"
)

// TestMain fails the suite if any test password, token or key appears in
// the children's captured logs.
func TestMain(m *testing.M) {
	os.Exit(e2etest.CheckLogs(m.Run()))
}
