package sandbox

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/skiffcri/skiff/errdefs"
)

func TestCheckPodUserNS(t *testing.T) {
	ok := IDMap{ContainerID: 0, HostID: 65536, Size: 65536}
	userns := func(uids, gids []IDMap) *UserNS { return &UserNS{UIDs: uids, GIDs: gids} }
	one := []IDMap{ok}
	for _, tc := range []struct {
		name string
		cfg  PodConfig
		ok   bool
	}{
		{"node's user namespace", PodConfig{}, true},
		{"node's user namespace on the host network", PodConfig{HostNetwork: true, HostIPC: true}, true},
		{"kubelet's first range", PodConfig{UserNS: userns(one, one)}, true},
		{"different UID and GID ranges", PodConfig{UserNS: userns(one, []IDMap{{0, 131072, 65536}})}, true},
		{"one ID", PodConfig{UserNS: userns([]IDMap{{0, 1000, 1}}, []IDMap{{0, 1000, 1}})}, true},
		{"up to the last valid host ID", PodConfig{UserNS: userns([]IDMap{{0, math.MaxUint32 - 65536, 65536}}, one)}, true},
		{"past the last valid host ID", PodConfig{UserNS: userns([]IDMap{{0, math.MaxUint32 - 65535, 65536}}, one)}, false},
		{"overflowing uint32", PodConfig{UserNS: userns(one, []IDMap{{0, math.MaxUint32, 2}})}, false},
		{"no UID mapping", PodConfig{UserNS: userns(nil, one)}, false},
		{"no GID mapping", PodConfig{UserNS: userns(one, nil)}, false},
		{"no mappings at all", PodConfig{UserNS: &UserNS{}}, false},
		{"two UID ranges", PodConfig{UserNS: userns([]IDMap{ok, {65536, 200000, 10}}, one)}, false},
		{"two GID ranges", PodConfig{UserNS: userns(one, []IDMap{ok, {65536, 200000, 10}})}, false},
		{"empty UID range", PodConfig{UserNS: userns([]IDMap{{0, 65536, 0}}, one)}, false},
		{"empty GID range", PodConfig{UserNS: userns(one, []IDMap{{0, 65536, 0}})}, false},
		{"root not mapped", PodConfig{UserNS: userns([]IDMap{{1, 65536, 65536}}, one)}, false},
		{"GID root not mapped", PodConfig{UserNS: userns(one, []IDMap{{1000, 65536, 1}})}, false},
		{"host root as the pod's root", PodConfig{UserNS: userns([]IDMap{{0, 0, 65536}}, one)}, false},
		{"host root group as the pod's root group", PodConfig{UserNS: userns(one, []IDMap{{0, 0, 1}})}, false},
		{"host network", PodConfig{HostNetwork: true, UserNS: userns(one, one)}, false},
		{"host IPC", PodConfig{HostIPC: true, UserNS: userns(one, one)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPodUserNS(tc.cfg)
			if tc.ok {
				if err != nil {
					t.Fatalf("checkPodUserNS = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("checkPodUserNS = %v, want invalid argument", err)
			}
			t.Log(err)
		})
	}
}

// TestUserNamespacesRefusedEarly covers the refusals that come before any
// kernel object is made, so they need no root: nothing is created.
func TestUserNamespacesRefusedEarly(t *testing.T) {
	valid := UserNS{UIDs: []IDMap{{0, 65536, 65536}}, GIDs: []IDMap{{0, 65536, 65536}}}
	for _, tc := range []struct {
		name   string
		create func(dir string) error
		kind   error
	}{
		{"no holder", func(dir string) error {
			_, err := CreateUserNamespaces(context.Background(), filepath.Join(dir, nsDir), NetNS|IPCNS|UTSNS, "pod", valid, "")
			return err
		}, errdefs.ErrFailedPrecondition},
		{"no holder, through CreatePod", func(dir string) error {
			_, err := CreatePod(context.Background(), dir, PodConfig{Hostname: "pod", UserNS: &valid})
			return err
		}, errdefs.ErrFailedPrecondition},
		{"PID namespace", func(dir string) error {
			_, err := CreateUserNamespaces(context.Background(), filepath.Join(dir, nsDir), NetNS|PIDNS, "", valid, "/skiff-shim")
			return err
		}, errdefs.ErrInvalidArgument},
		{"invalid mapping", func(dir string) error {
			_, err := CreateUserNamespaces(context.Background(), filepath.Join(dir, nsDir), NetNS, "", UserNS{UIDs: valid.UIDs}, "/skiff-shim")
			return err
		}, errdefs.ErrInvalidArgument},
		{"host network, through CreatePod", func(dir string) error {
			_, err := CreatePod(context.Background(), dir, PodConfig{HostNetwork: true, UserNS: &valid, NSHolder: "/skiff-shim"})
			return err
		}, errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tc.create(dir); !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want %v", err, tc.kind)
			}
			if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
				t.Errorf("pod dir holds %v (%v), want nothing", entries, err)
			}
		})
	}
}
