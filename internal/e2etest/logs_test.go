package e2etest

import "testing"

// The suites' log check fails a passing run when a registered secret is in
// any captured log, and leaves a failing run failed.
func TestCheckLogsFailsARunThatLeakedASecret(t *testing.T) {
	logs := CaptureLogs()
	pw := Secret("password", "a long test password")
	if got := CheckLogs(0); got != 0 {
		t.Fatalf("CheckLogs with clean logs = %d, want 0", got)
	}
	if Secret("short", "pw") != "pw" {
		t.Fatal("Secret does not return its argument")
	}
	logs.Write([]byte(`{"msg":"login failed","password":"` + pw + `"}`))
	if got := CheckLogs(0); got != 1 {
		t.Errorf("CheckLogs with a leaked password = %d, want 1", got)
	}
	if got := CheckLogs(3); got != 3 {
		t.Errorf("CheckLogs of a failed run = %d, want its code 3", got)
	}
	// Leave the package's own run clean.
	suite.mu.Lock()
	suite.logs, suite.secrets = nil, nil
	suite.mu.Unlock()
}
