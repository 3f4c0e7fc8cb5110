package daemon

import (
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"a", true},
		{"0abc_def.g+h-i", true},
		{"Z" + strings.Repeat("x", 127), true},
		{"Z" + strings.Repeat("x", 128), false},
		{"", false},
		{"-abc", false},
		{".hidden", false},
		{"_x", false},
		{"a/b", false},
		{"..", false},
		{"a b", false},
		{"a\x00", false},
		{"é", false},
	} {
		if got := validID(tc.id); got != tc.want {
			t.Errorf("validID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}
