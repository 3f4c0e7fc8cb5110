package sysctl

import (
	"errors"
	"path"
	"testing"

	"github.com/skiffcri/skiff/errdefs"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		want Namespace // 0: refused
		path string
	}{
		{"net.ipv4.ip_forward", Net, "net/ipv4/ip_forward"},
		{"net/ipv4/conf/eth0.100/rp_filter", Net, "net/ipv4/conf/eth0.100/rp_filter"},
		{"net.ipv4.conf.eth0/100.rp_filter", Net, "net/ipv4/conf/eth0.100/rp_filter"},
		{"kernel.shm_rmid_forced", IPC, "kernel/shm_rmid_forced"},
		{"kernel.msgmax", IPC, "kernel/msgmax"},
		{"kernel.sem", IPC, "kernel/sem"},
		{"kernel.sem_next_id", IPC, "kernel/sem_next_id"},
		{"fs.mqueue.msg_max", IPC, "fs/mqueue/msg_max"},
		{"kernel.domainname", UTS, "kernel/domainname"},
		{"kernel.hostname", 0, ""},
		{"kernel.pid_max", 0, ""},
		{"kernel.semaphore", 0, ""},
		{"vm.overcommit_memory", 0, ""},
		{"net..ipv4", 0, ""},
		{"net.", 0, ""},
		{"net/../../kernel/pid_max", 0, ""},
		// "net.//.kernel.core_pattern" swaps to net/../kernel/core_pattern.
		{"net.//.kernel.core_pattern", 0, ""},
		{"net./.", 0, ""},
		{"", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Classify(tc.name)
			if tc.want == 0 {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("Classify = %v, %v; want invalid argument", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Classify = %v, %v; want %v", got, err, tc.want)
			}
			if p := Path(tc.name); p != tc.path {
				t.Errorf("Path = %q, want %q", p, tc.path)
			}
		})
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"net.ipv4.ip_forward", "net/ipv4/conf/eth0.100/rp_filter", "net.//.kernel.core_pattern", "kernel.shm_rmid_forced"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if _, err := Classify(name); err != nil {
			return
		}
		p := "/" + Path(name)
		if path.Clean(p) != p {
			t.Fatalf("accepted %q maps to /proc/sys%s, not a clean path", name, p)
		}
		for _, prefix := range []string{"/net/", "/kernel/", "/fs/mqueue/"} {
			if len(p) > len(prefix) && p[:len(prefix)] == prefix {
				return
			}
		}
		t.Fatalf("accepted %q maps to /proc/sys%s", name, p)
	})
}
