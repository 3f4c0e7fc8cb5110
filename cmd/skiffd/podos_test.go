package main

import (
	"errors"
	"reflect"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/sandbox"
)

func TestPodUserNS(t *testing.T) {
	kubeletRange := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 65536, Length: 65536}}
	for _, tc := range []struct {
		name    string
		opts    *runtimeapi.NamespaceOption
		want    *sandbox.UserNS
		wantErr bool
	}{
		{name: "no namespace options"},
		{name: "no user namespace options", opts: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD}},
		{name: "node", opts: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}}},
		{
			name: "pod",
			opts: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER, UsernsOptions: &runtimeapi.UserNamespace{
				Mode: runtimeapi.NamespaceMode_POD, Uids: kubeletRange,
				Gids: []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 131072, Length: 65536}},
			}},
			want: &sandbox.UserNS{UIDs: []sandbox.IDMap{{ContainerID: 0, HostID: 65536, Size: 65536}}, GIDs: []sandbox.IDMap{{ContainerID: 0, HostID: 131072, Size: 65536}}},
		},
		{
			// Checking the mappings is package sandbox's business.
			name: "pod without mappings",
			opts: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}},
			want: &sandbox.UserNS{UIDs: []sandbox.IDMap{}, GIDs: []sandbox.IDMap{}},
		},
		{name: "container", opts: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}}, wantErr: true},
		{name: "target", opts: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}}, wantErr: true},
		{
			name: "pod with host PID",
			opts: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE, UsernsOptions: &runtimeapi.UserNamespace{
				Mode: runtimeapi.NamespaceMode_POD, Uids: kubeletRange, Gids: kubeletRange,
			}},
			wantErr: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := podUserNS(tc.opts)
			if tc.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("podUserNS = %v, %v; want invalid argument", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("podUserNS = %+v, want %+v", got, tc.want)
			}
		})
	}
}
