package auth

import (
	"regexp"
	"strings"
	"testing"
)

var usernameShape = regexp.MustCompile(`^[a-z0-9._-]{3,32}$`)

func TestUsernamesAreNormalizedAndChecked(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice", "alice"},
		{"Alice", "alice"},
		{"a.b_c-d", "a.b_c-d"},
		{"ABC", "abc"},
		{"ab", ""},
		{strings.Repeat("a", 33), ""},
		{"ali ce", ""},
		{"alice\x00", ""},
		{"alice\r\n", ""},
		{"álice", ""},
		{"ALİCE", ""}, // Turkish dotted capital I is not ASCII
	}
	for _, tt := range tests {
		t.Run(strings.ToValidUTF8(tt.in, "?"), func(t *testing.T) {
			got, err := NormalizeUsername(tt.in)
			if (err == nil) != (tt.want != "") || got != tt.want {
				t.Fatalf("NormalizeUsername(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzNormalizeUsername(f *testing.F) {
	for _, s := range []string{"alice", "Alice", "a\x00b", "ÄBC", "..."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeUsername(s)
		if err != nil {
			return
		}
		if !usernameShape.MatchString(got) || got != strings.ToLower(s) {
			t.Fatalf("NormalizeUsername(%q) = %q", s, got)
		}
	})
}

func FuzzCheckDisplayName(f *testing.F) {
	f.Add("Alice A.")
	f.Add("a\u0007b")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := checkDisplayName(s)
		if err != nil {
			return
		}
		if strings.ContainsFunc(got, func(r rune) bool { return r < 0x20 || r == 0x7f }) || len([]rune(got)) > MaxDisplayNameLen {
			t.Fatalf("checkDisplayName(%q) = %q", s, got)
		}
	})
}
