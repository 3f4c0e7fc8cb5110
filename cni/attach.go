package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"

	"github.com/skiffcri/skiff/errdefs"
	"github.com/skiffcri/skiff/internal/atomicfile"
)

// rollbackTimeout bounds the DEL that undoes a failed ADD; it runs on a
// context detached from the caller's, which may already be cancelled.
const rollbackTimeout = 2 * time.Minute

// Result is what Setup learned about the pod's network.
type Result struct {
	// PodIPs are the addresses of the pod's interface, primary first: IPv4
	// before IPv6, so a dual-stack pod reports both.
	PodIPs []netip.Addr
	// IPs are all addresses the plugins reported, with their interfaces.
	IPs []IPConfig
	// Interfaces are all interfaces the plugins reported (host and pod side).
	Interfaces []Interface
	// Raw is the final plugin result in CNI 1.0 form.
	Raw *types100.Result
}

// IPConfig is one address from the result.
type IPConfig struct {
	Address   netip.Prefix
	Gateway   netip.Addr
	Interface string // name of the interface it is on, if known
}

// Interface is one interface from the result.
type Interface struct {
	Name    string
	MAC     string
	Sandbox string // netns path when inside the pod
}

// record is what Setup writes before running ADD: everything DEL needs, so
// that teardown after a daemon restart or a config change uses the very
// configuration and arguments ADD used. libcni's own cache is written only
// after a successful ADD, which would leave an interrupted ADD's IP leaked.
type record struct {
	PodID          string         `json:"podID"`
	IfName         string         `json:"ifName"`
	NetNS          string         `json:"netns"`
	ListBytes      []byte         `json:"list"`
	PluginBytes    [][]byte       `json:"plugins"`
	Args           [][2]string    `json:"args,omitempty"`
	CapabilityArgs map[string]any `json:"capabilityArgs,omitempty"`
}

func recordDir(cacheDir string) string { return filepath.Join(cacheDir, "skiff-attachments") }

func (m *Manager) recordPath(podID, ifName string) string {
	return filepath.Join(recordDir(m.cacheDir), podID+"_"+ifName+".json")
}

func (m *Manager) writeRecord(rec *record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode attachment record of pod %s: %w", rec.PodID, err)
	}
	path := m.recordPath(rec.PodID, rec.IfName)
	// The record must be durable before the plugins allocate anything.
	return atomicfile.Write(path, data, 0o600)
}

func (m *Manager) readRecord(podID, ifName string) (*record, error) {
	data, err := os.ReadFile(m.recordPath(podID, ifName))
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("decode attachment record of pod %s: %w", podID, err)
	}
	return &rec, nil
}

func (m *Manager) removeRecord(podID, ifName string) error {
	err := os.Remove(m.recordPath(podID, ifName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// listFromRecord rebuilds the configuration list ADD used.
func (rec *record) list() (*libcni.NetworkConfigList, error) {
	list, err := libcni.NetworkConfFromBytes(rec.ListBytes)
	if err != nil {
		return nil, err
	}
	list.Plugins = nil
	for _, b := range rec.PluginBytes {
		p, err := libcni.NetworkPluginConfFromBytes(b)
		if err != nil {
			return nil, err
		}
		list.Plugins = append(list.Plugins, p)
	}
	if len(list.Plugins) == 0 {
		return nil, fmt.Errorf("no plugins")
	}
	return list, nil
}

func (rec *record) runtimeConf() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID:    rec.PodID,
		NetNS:          rec.NetNS,
		IfName:         rec.IfName,
		Args:           rec.Args,
		CapabilityArgs: rec.CapabilityArgs,
	}
}

func validate(req *SetupRequest) error {
	if req.PodID == "" {
		return errdefs.InvalidArgument("cni: pod id is required")
	}
	if strings.ContainsAny(req.PodID, "/_") || strings.ContainsAny(req.IfName, "/") {
		return errdefs.InvalidArgument("cni: pod id %q or interface %q has an invalid character", req.PodID, req.IfName)
	}
	if req.IfName == "" {
		req.IfName = DefaultIfName
	}
	return nil
}

// Setup runs CNI ADD for the pod's network namespace. On any failure it runs
// DEL itself before returning, so no IP, interface or port mapping is left
// behind.
func (m *Manager) Setup(ctx context.Context, req SetupRequest) (_ *Result, retErr error) {
	if err := validate(&req); err != nil {
		return nil, err
	}
	if req.NetNS == "" {
		return nil, errdefs.InvalidArgument("cni: pod %s: netns path is required", req.PodID)
	}
	list, err := m.current()
	if err != nil {
		return nil, err
	}
	// A second ADD would fail on the existing interface, and its rollback
	// would then delete the working attachment.
	if _, err := os.Stat(m.recordPath(req.PodID, req.IfName)); err == nil {
		return nil, errdefs.AlreadyExists("cni attachment of pod %s interface %s", req.PodID, req.IfName)
	}
	caps, err := capabilityArgs(req)
	if err != nil {
		return nil, fmt.Errorf("cni: pod %s: %w", req.PodID, err)
	}
	rec := &record{
		PodID:          req.PodID,
		IfName:         req.IfName,
		NetNS:          req.NetNS,
		ListBytes:      list.Bytes,
		Args:           cniArgs(req),
		CapabilityArgs: caps,
	}
	for _, p := range list.Plugins {
		rec.PluginBytes = append(rec.PluginBytes, p.Bytes)
	}
	// Round-trip through JSON so ADD sees exactly what a later DEL will.
	if err := m.writeRecord(rec); err != nil {
		return nil, fmt.Errorf("cni: pod %s: write attachment record: %w", req.PodID, err)
	}
	rec, err = m.readRecord(req.PodID, req.IfName)
	if err != nil {
		return nil, fmt.Errorf("cni: pod %s: %w", req.PodID, err)
	}
	rt := rec.runtimeConf()

	defer func() {
		if retErr == nil {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		if err := m.del(dctx, list, rt); err != nil {
			// Keep the record: a later Teardown or GC retries the DEL.
			retErr = errors.Join(retErr, fmt.Errorf("cni: pod %s: undo failed ADD: %w", req.PodID, err))
			return
		}
		if err := m.removeRecord(req.PodID, req.IfName); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("cni: pod %s: %w", req.PodID, err))
		}
	}()

	res, err := m.cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		return nil, fmt.Errorf("cni: pod %s: add network %q: %w", req.PodID, list.Name, err)
	}
	out, err := convertResult(res, req.IfName)
	if err != nil {
		return nil, fmt.Errorf("cni: pod %s: network %q: %w", req.PodID, list.Name, err)
	}
	return out, nil
}

// Teardown runs CNI DEL for the pod with the configuration and arguments its
// Setup used. It is idempotent: a pod that was never set up, or was already
// torn down, is a no-op. It works after a daemon restart and after the
// configuration directory changed. When the netns is already gone, plugins
// still release IPs and host-side state.
func (m *Manager) Teardown(ctx context.Context, req SetupRequest) error {
	if err := validate(&req); err != nil {
		return err
	}
	rec, err := m.readRecord(req.PodID, req.IfName)
	switch {
	case err == nil:
		return m.teardownRecord(ctx, rec, req.NetNS)
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("cni: pod %s: %w", req.PodID, err)
	}
	// No record of ours: fall back to libcni's cache (attachments made by a
	// runtime version without records).
	atts, err := m.cni.GetCachedAttachments(req.PodID)
	if err != nil {
		return fmt.Errorf("cni: pod %s: read libcni cache: %w", req.PodID, err)
	}
	var errs []error
	for _, a := range atts {
		if a.IfName != req.IfName {
			continue
		}
		list, err := libcni.NetworkConfFromBytes(a.Config)
		if err != nil {
			errs = append(errs, fmt.Errorf("cached config of network %q: %w", a.Network, err))
			continue
		}
		rt := &libcni.RuntimeConf{ContainerID: a.ContainerID, NetNS: delNetNS(a.NetNS, req.NetNS), IfName: a.IfName, Args: a.CniArgs, CapabilityArgs: a.CapabilityArgs}
		if err := m.del(ctx, list, rt); err != nil {
			errs = append(errs, fmt.Errorf("delete network %q: %w", a.Network, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cni: pod %s: %w", req.PodID, err)
	}
	return nil
}

func (m *Manager) teardownRecord(ctx context.Context, rec *record, netns string) error {
	list, err := rec.list()
	if err != nil {
		return fmt.Errorf("cni: pod %s: recorded config: %w", rec.PodID, err)
	}
	rt := rec.runtimeConf()
	rt.NetNS = delNetNS(rec.NetNS, netns)
	if err := m.del(ctx, list, rt); err != nil {
		return fmt.Errorf("cni: pod %s: delete network %q: %w", rec.PodID, list.Name, err)
	}
	if err := m.removeRecord(rec.PodID, rec.IfName); err != nil {
		return fmt.Errorf("cni: pod %s: %w", rec.PodID, err)
	}
	return nil
}

// del runs DEL for the whole list. libcni stops at the first plugin that
// fails, which would leave the state of every plugin before it in the list
// (IP allocation, veth, masquerade rules) behind; so when that happens every
// plugin's DEL is run again, independently, in reverse order. A plugin whose
// binary cannot be found holds no state we could release and is skipped; in
// particular the plugin whose absence made ADD fail never ran.
func (m *Manager) del(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	err := m.cni.DelNetworkList(ctx, list, rt)
	if err == nil {
		return nil
	}
	// The result ADD cached, if any, in the list's version: plugins may
	// need it (prevResult) to find what they created.
	prev, perr := m.cni.GetNetworkListCachedResult(list, rt)
	if perr != nil {
		prev = nil
	}
	var errs []error
	for i := len(list.Plugins) - 1; i >= 0; i-- {
		p := list.Plugins[i]
		path, ferr := invoke.FindInPath(p.Network.Type, m.binDirs)
		if ferr != nil {
			continue
		}
		conf, cerr := pluginConf(list, p, prev, rt)
		if cerr != nil {
			errs = append(errs, fmt.Errorf("plugin %q: %w", p.Network.Type, cerr))
			continue
		}
		args := &invoke.Args{
			Command:     "DEL",
			ContainerID: rt.ContainerID,
			NetNS:       rt.NetNS,
			PluginArgs:  rt.Args,
			IfName:      rt.IfName,
			Path:        strings.Join(m.binDirs, string(os.PathListSeparator)),
		}
		if xerr := invoke.ExecPluginWithoutResult(ctx, path, conf, args, nil); xerr != nil {
			errs = append(errs, fmt.Errorf("plugin %q failed (delete): %w", p.Network.Type, xerr))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// Every plugin is done: drop libcni's cached result, which a list
	// without plugins does and nothing more.
	empty := &libcni.NetworkConfigList{Name: list.Name, CNIVersion: list.CNIVersion}
	return m.cni.DelNetworkList(ctx, empty, rt)
}

// pluginConf builds the stdin of one plugin of list the way libcni does for
// a list: network name and version, prevResult, and the runtimeConfig
// capabilities the plugin declares.
func pluginConf(list *libcni.NetworkConfigList, p *libcni.PluginConfig, prev types.Result, rt *libcni.RuntimeConf) ([]byte, error) {
	inject := map[string]any{"name": list.Name, "cniVersion": list.CNIVersion}
	if prev != nil {
		inject["prevResult"] = prev
	}
	rc := map[string]any{}
	for c, ok := range p.Network.Capabilities {
		if v, have := rt.CapabilityArgs[c]; ok && have {
			rc[c] = v
		}
	}
	if len(rc) > 0 {
		inject["runtimeConfig"] = rc
	}
	conf, err := libcni.InjectConf(p, inject)
	if err != nil {
		return nil, err
	}
	return conf.Bytes, nil
}

// delNetNS picks the netns path for DEL: the caller's if given, else the
// recorded one; empty when it no longer names a namespace, because plugins
// fail on a path that exists but is not a namespace (an unmounted bind
// target), while an empty CNI_NETNS makes them release what they hold on
// the host and skip the pod side.
func delNetNS(recorded, given string) string {
	p := given
	if p == "" {
		p = recorded
	}
	if p == "" {
		return ""
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil || st.Type != unix.NSFS_MAGIC {
		return ""
	}
	return p
}

// Check runs CNI CHECK with the configuration Setup used. Configurations
// older than CNI 0.4.0 have no CHECK and pass; a pod without an attachment
// is NotFound.
func (m *Manager) Check(ctx context.Context, req SetupRequest) error {
	if err := validate(&req); err != nil {
		return err
	}
	rec, err := m.readRecord(req.PodID, req.IfName)
	if errors.Is(err, fs.ErrNotExist) {
		return errdefs.NotFound("cni attachment of pod %s", req.PodID)
	}
	if err != nil {
		return fmt.Errorf("cni: pod %s: %w", req.PodID, err)
	}
	list, err := rec.list()
	if err != nil {
		return fmt.Errorf("cni: pod %s: recorded config: %w", req.PodID, err)
	}
	rt := rec.runtimeConf()
	if req.NetNS != "" {
		rt.NetNS = req.NetNS
	}
	err = m.cni.CheckNetworkList(ctx, list, rt)
	if errors.Is(err, libcni.ErrorCheckNotSupp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cni: pod %s: check network %q: %w", req.PodID, list.Name, err)
	}
	return nil
}

// GC deletes every attachment whose pod is not in validPodIDs (leftovers of
// pods removed while the daemon was down or of failed DELs), then, for
// configurations of CNI 1.1.0 or later, asks the plugins to garbage-collect
// resources of attachments they no longer know about.
func (m *Manager) GC(ctx context.Context, validPodIDs []string) error {
	valid := make(map[string]bool, len(validPodIDs))
	for _, id := range validPodIDs {
		valid[id] = true
	}
	var errs []error
	entries, err := os.ReadDir(recordDir(m.cacheDir))
	if err != nil {
		return fmt.Errorf("cni: gc: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		podID, ifName, ok := strings.Cut(name, "_")
		if !ok || valid[podID] {
			continue
		}
		rec, err := m.readRecord(podID, ifName)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := m.teardownRecord(ctx, rec, ""); err != nil {
			errs = append(errs, err)
		}
	}

	// libcni's cache may still name attachments of pods we hold no record
	// for; DEL them with their cached config.
	atts, err := m.cni.GetCachedAttachments("")
	if err != nil {
		errs = append(errs, fmt.Errorf("cni: gc: read libcni cache: %w", err))
	}
	var validAtts []types.GCAttachment
	for _, a := range atts {
		if valid[a.ContainerID] {
			validAtts = append(validAtts, types.GCAttachment{ContainerID: a.ContainerID, IfName: a.IfName})
			continue
		}
		list, err := libcni.NetworkConfFromBytes(a.Config)
		if err != nil {
			errs = append(errs, fmt.Errorf("cni: gc: cached config of pod %s: %w", a.ContainerID, err))
			continue
		}
		rt := &libcni.RuntimeConf{ContainerID: a.ContainerID, NetNS: delNetNS(a.NetNS, ""), IfName: a.IfName, Args: a.CniArgs, CapabilityArgs: a.CapabilityArgs}
		if err := m.del(ctx, list, rt); err != nil {
			errs = append(errs, fmt.Errorf("cni: gc: delete stale attachment of pod %s: %w", a.ContainerID, err))
		}
	}

	if list, err := m.current(); err == nil {
		// Stale attachments are gone by now, so this only reaches the
		// plugins' own GC (CNI >= 1.1.0; a no-op for older configs).
		if err := m.cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: validAtts}); err != nil {
			errs = append(errs, fmt.Errorf("cni: gc network %q: %w", list.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Status asks the plugins whether they can serve ADD (CNI STATUS, 1.1.0 and
// later); older configurations are ready once loaded.
func (m *Manager) Status(ctx context.Context) error {
	list, err := m.current()
	if err != nil {
		return err
	}
	if err := m.cni.GetStatusNetworkList(ctx, list); err != nil {
		return errdefs.Unavailable("cni network %q not ready: %v", list.Name, err)
	}
	return nil
}

// convertResult turns a plugin result into a Result, choosing the pod IPs
// from the interface named ifName inside the sandbox.
func convertResult(res types.Result, ifName string) (*Result, error) {
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("convert result: %w", err)
	}
	out := &Result{Raw: r}
	for _, i := range r.Interfaces {
		if i == nil {
			continue
		}
		out.Interfaces = append(out.Interfaces, Interface{Name: i.Name, MAC: i.Mac, Sandbox: i.Sandbox})
	}
	var v4, v6 []netip.Addr
	for _, ipc := range r.IPs {
		if ipc == nil {
			continue
		}
		c := IPConfig{Address: prefixOf(ipc.Address), Gateway: addrOf(ipc.Gateway)}
		onPod := true
		if ipc.Interface != nil {
			idx := *ipc.Interface
			if idx < 0 || idx >= len(r.Interfaces) || r.Interfaces[idx] == nil {
				return nil, fmt.Errorf("result names interface %d of %d", idx, len(r.Interfaces))
			}
			iface := r.Interfaces[idx]
			c.Interface = iface.Name
			onPod = iface.Sandbox != "" && iface.Name == ifName
		}
		out.IPs = append(out.IPs, c)
		if !onPod || !c.Address.IsValid() {
			continue
		}
		if a := c.Address.Addr(); a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	out.PodIPs = append(v4, v6...)
	if len(out.PodIPs) == 0 {
		return nil, fmt.Errorf("plugins returned no IP for interface %s", ifName)
	}
	return out, nil
}

func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

func prefixOf(n net.IPNet) netip.Prefix {
	a := addrOf(n.IP)
	if !a.IsValid() {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones)
}
