package cni

import (
	"errors"
	"fmt"
	"io/fs"

	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/skiffcri/skiff/errdefs"
)

// CachedResult is the result of the pod's last successful ADD on ifName
// (DefaultIfName if empty), in CNI 1.0 form, as libcni cached it.
// ErrNotFound when the pod has no attachment or its ADD did not complete.
func (m *Manager) CachedResult(podID, ifName string) (*types100.Result, error) {
	if ifName == "" {
		ifName = DefaultIfName
	}
	rec, err := m.readRecord(podID, ifName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.NotFound("cni attachment of pod %s interface %s", podID, ifName)
	}
	if err != nil {
		return nil, fmt.Errorf("cni: pod %s: %w", podID, err)
	}
	list, err := rec.list()
	if err != nil {
		return nil, fmt.Errorf("cni: pod %s: attachment record: %w", podID, err)
	}
	res, err := m.cni.GetNetworkListCachedResult(list, rec.runtimeConf())
	if err != nil {
		return nil, fmt.Errorf("cni: pod %s: read cached result: %w", podID, err)
	}
	if res == nil {
		return nil, errdefs.NotFound("cni result of pod %s interface %s", podID, ifName)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("cni: pod %s: convert cached result: %w", podID, err)
	}
	return r, nil
}
