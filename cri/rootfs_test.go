package cri

import (
	"context"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// optsRootfs records the options of every rootfs Mount.
type optsRootfs struct {
	fakeRootfs
	got map[string]RootfsOptions
}

func (r optsRootfs) Mount(ctx context.Context, id, imageID string, opts RootfsOptions) (string, error) {
	r.got[id] = opts
	return r.fakeRootfs.Mount(ctx, id, imageID, opts)
}

func TestCreateContainerRootfsUserNS(t *testing.T) {
	idmap := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}}
	for _, tc := range []struct {
		name   string
		userns *runtimeapi.UserNamespace
		want   bool // the rootfs is idmapped with the pod's user namespace
	}{
		{name: "no user namespace options", userns: nil},
		{name: "node user namespace", userns: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}},
		{name: "pod user namespace", userns: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: idmap, Gids: idmap}, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			r := optsRootfs{fakeRootfs: e.s.rootfs.(fakeRootfs), got: map[string]RootfsOptions{}}
			e.s.rootfs = r
			podCfg := podConfigFor("userns", runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_POD)
			podCfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = tc.userns
			podID := e.runPod(t, podCfg)
			id := e.createContainer(t, podID, podCfg, ctrConfig("c", nil))
			pod, err := e.s.meta.Pod(podID)
			if err != nil {
				t.Fatal(err)
			}
			want := RootfsOptions{}
			if tc.want {
				if pod.Namespaces.User == "" {
					t.Fatal("the pod has no user namespace")
				}
				want.UserNS = pod.Namespaces.User
			}
			if got := r.got[id]; got != want {
				t.Fatalf("rootfs options = %+v, want %+v", got, want)
			}
		})
	}
}
