package e2e

import (
	"slices"
	"testing"
)

func TestSplitRule(t *testing.T) {
	for _, tc := range []struct {
		rule string
		want []string
	}{
		{`POSTROUTING -s 10.98.0.2/32 -j CNI-abc`, []string{"POSTROUTING", "-s", "10.98.0.2/32", "-j", "CNI-abc"}},
		{`POSTROUTING -s 10.98.0.2/32 -m comment --comment "name: \"skiff-e2e\" id: \"0123\"" -j CNI-abc`,
			[]string{"POSTROUTING", "-s", "10.98.0.2/32", "-m", "comment", "--comment", `name: "skiff-e2e" id: "0123"`, "-j", "CNI-abc"}},
		{`X -m comment --comment ""`, []string{"X", "-m", "comment", "--comment", ""}},
	} {
		if got := splitRule(tc.rule); !slices.Equal(got, tc.want) {
			t.Errorf("splitRule(%q) = %q, want %q", tc.rule, got, tc.want)
		}
	}
}

func TestMentionsNet(t *testing.T) {
	for _, tc := range []struct {
		rule string
		want bool
	}{
		{`-A POSTROUTING -s 10.98.0.2/32 -m comment --comment "name: \"skiff-e2e\" id: \"0123\"" -j CNI-abc`, true},
		{`-A POSTROUTING -m comment --comment "name: \"skiff-e2e-fail\" id: \"0123\"" -j CNI-abc`, false},
		{`-A CNI-HOSTPORT-DNAT -m comment --comment "dnat name: \"skiff-e2e\" id: \"0123\"" -j CNI-DN-x`, true},
		{`-A POSTROUTING -s 10.99.0.2/32 -j MASQUERADE`, false},
	} {
		if got := mentionsNet(tc.rule, "skiff-e2e"); got != tc.want {
			t.Errorf("mentionsNet(%q) = %v, want %v", tc.rule, got, tc.want)
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/tmp/a\040b\011c`); got != "/tmp/a b\tc" {
		t.Errorf("unescapeMountinfo = %q", got)
	}
}
