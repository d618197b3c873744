package redact

import (
	"strings"
	"testing"
)

func TestCredentialShapesNeverSurvive(t *testing.T) {
	secrets := []string{
		"unhidra_dk_4fQ9zX2kq0Lm8VbA1cD3eF5gH7",
		"unhidra_rt_AbCdEf0123456789-_xyz",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl",
	}
	for _, s := range secrets {
		for _, f := range []struct {
			name string
			fn   func(string) string
		}{{"Name", Name}, {"Scrub", Scrub}, {"Secret", Secret}} {
			for _, in := range []string{s, "user " + s + " refused", `{"username":"` + s + `"}`} {
				got := f.fn(in)
				if strings.Contains(got, s[len(s)-8:]) || strings.Contains(got, s) {
					t.Errorf("%s(%q) = %q keeps the secret", f.name, in, got)
				}
				if !strings.Contains(got, "redacted:") {
					t.Errorf("%s(%q) = %q has no redacted marker", f.name, in, got)
				}
			}
		}
	}
}

func TestHashIsStableAndShort(t *testing.T) {
	a, b := Hash("unhidra_dk_x"), Hash("unhidra_dk_x")
	if a != b || len(a) != len("redacted:")+8 {
		t.Fatalf("Hash = %q, %q", a, b)
	}
	if Hash("unhidra_dk_y") == a {
		t.Fatal("two secrets share a hash")
	}
}

func TestNameKeepsOrdinaryNamesAndBoundsLength(t *testing.T) {
	if got := Name("alice"); got != "alice" {
		t.Errorf("Name(alice) = %q", got)
	}
	long := strings.Repeat("é", 100)
	got := Name(long)
	if len(got) > MaxName+len("…") || !strings.HasSuffix(got, "…") {
		t.Errorf("Name(long) = %d bytes %q", len(got), got)
	}
	if got := Name("a\xffb"); got != "a\uFFFDb" {
		t.Errorf("Name(invalid) = %q", got)
	}
	if Secret("hunter2") == "hunter2" || Secret("") != "" {
		t.Error("Secret must hash a password and keep empty empty")
	}
	if Scrub("plain words") != "plain words" {
		t.Error("Scrub changed a line without credentials")
	}
}

func FuzzScrub(f *testing.F) {
	f.Add("unhidra_dk_abc eyJa.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		out := Scrub(s)
		if strings.Contains(out, "unhidra_dk_") && !strings.Contains(Scrub(out), "redacted:") {
			t.Fatalf("Scrub(%q) left a key: %q", s, out)
		}
		for _, m := range credential.FindAllString(out, -1) {
			if len(m) > len("unhidra_dk_") {
				t.Fatalf("Scrub(%q) = %q still holds %q", s, out, m)
			}
		}
	})
}
