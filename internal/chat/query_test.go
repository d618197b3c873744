package chat_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
)

func TestSanitizeQuery(t *testing.T) {
	tests := []struct {
		name, in, want string
		invalid        bool
	}{
		{"words are quoted and ANDed", "hello world", `"hello" "world"`, false},
		{"a trailing star makes a prefix", "rock*", `"rock"*`, false},
		{"quotes are doubled inside a term", `say"hi`, `"say""hi"`, false},
		{"operators are plain words", "a OR b NOT c", `"a" "OR" "b" "NOT" "c"`, false},
		{"NEAR( is a plain word", "NEAR(a", `"NEAR(a"`, false},
		{"column filters are plain text", "text:x", `"text:x"`, false},
		{"punctuation-only terms are dropped", `hello " * ( -`, `"hello"`, false},
		{"control characters split terms", "a\x00b\tc", `"a" "b" "c"`, false},
		{"only punctuation is invalid", `" * ( )`, "", true},
		{"blank is invalid", "   ", "", true},
		{"invalid UTF-8 is invalid", "a\xff", "", true},
		{"over 256 bytes is invalid", strings.Repeat("a", 257), "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chat.SanitizeQuery(tc.in)
			if tc.invalid {
				if unhidra.ErrorCode(err) != unhidra.EINVALID {
					t.Errorf("SanitizeQuery(%q) = %q, %v; want invalid", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("SanitizeQuery(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
	many := strings.Repeat("w ", 40)
	got, err := chat.SanitizeQuery(many)
	if err != nil || strings.Count(got, `"w"`) != chat.MaxQueryTerms {
		t.Errorf("40 terms → %q, want %d terms", got, chat.MaxQueryTerms)
	}
}

// FuzzSanitizeQuery checks the shape of every sanitized query: a sequence
// of quoted FTS5 strings (quotes doubled inside), each optionally followed
// by '*', separated by single spaces. The sqlite package fuzzes the same
// output against a real FTS5 table.
func FuzzSanitizeQuery(f *testing.F) {
	for _, s := range []string{"hello", `"`, "*", "NEAR(", `a"b*`, "x OR y", "\x00", "é*", "(((", "a:b ^c -d +e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := chat.SanitizeQuery(in)
		if err != nil {
			if unhidra.ErrorCode(err) != unhidra.EINVALID {
				t.Fatalf("SanitizeQuery(%q) error %v is not invalid", in, err)
			}
			return
		}
		if !utf8.ValidString(out) {
			t.Fatalf("output %q is not UTF-8", out)
		}
		terms := 0
		for i := 0; i < len(out); {
			if out[i] != '"' {
				t.Fatalf("output %q: term at %d does not start with a quote", out, i)
			}
			i++
			for {
				if i >= len(out) {
					t.Fatalf("output %q: unterminated string", out)
				}
				if out[i] == '"' {
					if i+1 < len(out) && out[i+1] == '"' {
						i += 2
						continue
					}
					i++
					break
				}
				if out[i] < 0x20 || out[i] == 0x7f {
					t.Fatalf("output %q: control byte inside a term", out)
				}
				i++
			}
			terms++
			if i < len(out) && out[i] == '*' {
				i++
			}
			if i < len(out) {
				if out[i] != ' ' {
					t.Fatalf("output %q: terms not separated by one space at %d", out, i)
				}
				i++
			}
		}
		if terms < 1 || terms > chat.MaxQueryTerms {
			t.Fatalf("output %q has %d terms", out, terms)
		}
	})
}

func TestParsePage(t *testing.T) {
	tests := []struct {
		name, before, after, limit string
		want                       chat.Page
		invalid                    bool
	}{
		{"defaults", "", "", "", chat.Page{Limit: chat.DefaultPageLimit}, false},
		{"before and limit", "10", "", "5", chat.Page{Before: 10, Limit: 5}, false},
		{"after", "", "3", "", chat.Page{After: 3, Forward: true, Limit: chat.DefaultPageLimit}, false},
		{"after 0 reads from the first message on", "", "0", "", chat.Page{Forward: true, Limit: chat.DefaultPageLimit}, false},
		{"a range", "10", "3", "200", chat.Page{Before: 10, After: 3, Forward: true, Limit: 200}, false},
		{"limit 201 is invalid", "", "", "201", chat.Page{}, true},
		{"limit 0 is invalid", "", "", "0", chat.Page{}, true},
		{"a negative offset is invalid", "-1", "", "", chat.Page{}, true},
		{"a plus sign is invalid", "+1", "", "", chat.Page{}, true},
		{"hex is invalid", "0x10", "", "", chat.Page{}, true},
		{"an empty range is invalid", "4", "3", "", chat.Page{}, true},
		{"overflow is invalid", "99999999999999999999", "", "", chat.Page{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chat.ParsePage(tc.before, tc.after, tc.limit)
			if tc.invalid {
				if unhidra.ErrorCode(err) != unhidra.EINVALID {
					t.Errorf("ParsePage = %+v, %v; want invalid", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ParsePage = %+v, %v; want %+v", got, err, tc.want)
			}
			wantAsc := tc.after != "" && tc.before == ""
			if got.Ascending() != wantAsc {
				t.Errorf("Ascending() = %v, want %v (oldest first exactly when after is given alone)", got.Ascending(), wantAsc)
			}
		})
	}
}

func FuzzParsePage(f *testing.F) {
	f.Add("", "", "")
	f.Add("10", "2", "50")
	f.Add("-1", "+3", "201")
	f.Add("9223372036854775807", "0", "1")
	f.Fuzz(func(t *testing.T, before, after, limit string) {
		p, err := chat.ParsePage(before, after, limit)
		if err != nil {
			if unhidra.ErrorCode(err) != unhidra.EINVALID {
				t.Fatalf("error %v is not invalid", err)
			}
			return
		}
		if p.Limit < 1 || p.Limit > chat.MaxPageLimit || p.Before < 0 || p.After < 0 {
			t.Fatalf("accepted out-of-range page %+v", p)
		}
		if p.Before > 0 && p.After > 0 && p.Before <= p.After+1 {
			t.Fatalf("accepted an empty range %+v", p)
		}
	})
}

func TestValidateName(t *testing.T) {
	for _, bad := range []string{"", "   ", "a\nb", "a\u2028b", strings.Repeat("x", chat.MaxNameRunes+1), "\xff"} {
		if _, err := chat.ValidateName(bad); unhidra.ErrorCode(err) != unhidra.EINVALID {
			t.Errorf("ValidateName(%q) = %v, want invalid", bad, err)
		}
	}
	if got, err := chat.ValidateName("  Équipe 🚀  "); err != nil || got != "Équipe 🚀" {
		t.Errorf("ValidateName = %q, %v", got, err)
	}
}
