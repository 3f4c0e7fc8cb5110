package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// serveScript makes busybox httpd serve body as /index.html on addr.
func serveScript(addr, body string) string {
	return fmt.Sprintf("mkdir -p /www && echo %s > /www/index.html && exec httpd -f -p %s -h /www", body, addr)
}

func TestTwoContainersTalkOverLoopback(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	// Containers of this pod share its PID namespace too (the kubelet's
	// shareProcessNamespace), with the runtime's pod init as PID 1.
	podCfg := d.podConfig("loopback")
	podCfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	podID := d.runPodWith(t, podCfg)

	server := d.runContainer(t, podID, podCfg, "server", "sh", "-c", serveScript("127.0.0.1:8080", "hi-from-server"))
	client := d.runContainer(t, podID, podCfg, "client", "sleep", "1000")
	d.waitState(t, server, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	d.waitState(t, client, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)

	// The server may need a moment to listen; the client retries inside.
	resp, err := d.execSync(t, client, 60, "sh", "-c",
		"i=0; while [ $i -lt 100 ]; do wget -q -O - http://127.0.0.1:8080/ && exit 0; i=$((i+1)); sleep 0.2; done; exit 1")
	if err != nil {
		t.Fatalf("ExecSync wget: %v", err)
	}
	if resp.ExitCode != 0 || strings.TrimSpace(string(resp.Stdout)) != "hi-from-server" {
		t.Fatalf("client wget http://127.0.0.1:8080/: exit %d stdout %q stderr %q, want hi-from-server", resp.ExitCode, resp.Stdout, resp.Stderr)
	}

	// The client sees the server's processes in the shared PID namespace.
	resp, err = d.execSync(t, client, 10, "ps", "-o", "pid,args")
	if err != nil {
		t.Fatalf("ExecSync ps: %v", err)
	}
	if !strings.Contains(string(resp.Stdout), "httpd") {
		t.Errorf("ps in the client does not show the server's httpd in the shared PID namespace:\n%s", resp.Stdout)
	}

	// Raw TCP too: busybox nc in one container, the other connects.
	nc := d.runContainer(t, podID, podCfg, "nc", "sh", "-c", "while true; do echo hi-over-nc | nc -l -p 9090; done")
	d.waitState(t, nc, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	resp, err = d.execSync(t, client, 60, "sh", "-c",
		"i=0; while [ $i -lt 100 ]; do r=$(nc -w 2 127.0.0.1 9090 </dev/null) && [ -n \"$r\" ] && echo \"$r\" && exit 0; i=$((i+1)); sleep 0.2; done; exit 1")
	if err != nil {
		t.Fatalf("ExecSync nc: %v", err)
	}
	if resp.ExitCode != 0 || strings.TrimSpace(string(resp.Stdout)) != "hi-over-nc" {
		t.Errorf("client nc 127.0.0.1 9090: exit %d stdout %q stderr %q, want hi-over-nc", resp.ExitCode, resp.Stdout, resp.Stderr)
	}
}

// httpGetRetry fetches url until it answers 200 or the deadline passes.
func httpGetRetry(url string, timeout time.Duration) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return string(b), nil
			}
			err = fmt.Errorf("status %s, read error %v", resp.Status, rerr)
		}
		if time.Now().After(deadline) {
			return "", err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// defaultRouteIP is the host's source address towards the default route,
// or "" when the host has none.
func defaultRouteIP() string {
	out, err := exec.Command("ip", "-4", "route", "get", "192.0.2.1").Output()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "src" {
			if ip := net.ParseIP(f[i+1]); ip != nil && !ip.IsLoopback() {
				return f[i+1]
			}
		}
	}
	return ""
}

// TestHostPort maps host port 38080 to a container's port 80 and reaches it
// from the host. Port mappings are DNAT rules of CNI's portmap plugin in the
// nat OUTPUT and PREROUTING chains for local destination addresses, so the
// host reaches the pod through any of its own addresses: the bridge's
// gateway IP and the default-route IP. 127.0.0.1 additionally needs
// route_localnet on the bridge, which portmap sets when it masquerades
// (snat, the default); Debian's plugins 1.1.1 do, so 127.0.0.1 works on
// this machine. The test logs what it saw there rather than failing, since
// that depends on the plugin version and its snat setting.
func TestHostPort(t *testing.T) {
	const hostPort = 38080
	d := startDaemon(t)
	d.pull(t, busybox)
	podCfg := d.podConfig("hostport")
	podCfg.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: hostPort}}
	podID := d.runPodWith(t, podCfg)
	id := d.runContainer(t, podID, podCfg, "web", "sh", "-c", serveScript("80", "hello-hostport"))
	d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)

	st, err := d.rt.PodSandboxStatus(ctxT(t, 30*time.Second), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	podIP := st.Status.GetNetwork().GetIp()
	if body, err := httpGetRetry("http://"+net.JoinHostPort(podIP, "80")+"/", 30*time.Second); err != nil || strings.TrimSpace(body) != "hello-hostport" {
		t.Fatalf("GET pod IP %s:80 directly: %q, %v", podIP, body, err)
	}

	targets := []string{gatewayIP}
	if ip := defaultRouteIP(); ip != "" {
		targets = append(targets, ip)
	} else {
		t.Log("host has no default route: only the gateway IP is tried")
	}
	for _, ip := range targets {
		url := "http://" + net.JoinHostPort(ip, fmt.Sprint(hostPort)) + "/"
		body, err := httpGetRetry(url, 30*time.Second)
		if err != nil || strings.TrimSpace(body) != "hello-hostport" {
			t.Errorf("GET %s (hostPort): %q, %v; want hello-hostport", url, body, err)
		}
	}
	body, err := httpGetRetry(fmt.Sprintf("http://127.0.0.1:%d/", hostPort), 3*time.Second)
	if err == nil && strings.TrimSpace(body) == "hello-hostport" {
		t.Logf("127.0.0.1:%d reaches the pod too (portmap set route_localnet on the bridge)", hostPort)
	} else {
		t.Logf("127.0.0.1:%d does not reach the pod (%q, %v): portmap did not enable route_localnet here", hostPort, body, err)
	}

	// Stopping the pod removes the mapping: the port no longer answers.
	if _, err := d.rt.StopPodSandbox(ctxT(t, time.Minute), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	for _, r := range natRules(d.netName, podSubnet) {
		if strings.Contains(r, fmt.Sprint(hostPort)) {
			t.Errorf("hostPort rule left after StopPodSandbox: %s", r)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var dialer net.Dialer
	if c, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(gatewayIP, fmt.Sprint(hostPort))); err == nil {
		c.Close()
		t.Errorf("hostPort %d still accepts connections after StopPodSandbox", hostPort)
	}
}

// TestHostNetworkPod runs a pod in the node's network namespace: no CNI
// call, no IP reservation, and its container is in the host's network
// namespace.
func TestHostNetworkPod(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	podCfg := d.podConfig("hostnet")
	podCfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	podID := d.runPodWith(t, podCfg)
	if got := ipReservations(d.ipamDir); len(got) != 0 {
		t.Errorf("a host-network pod reserved IPs: %v", got)
	}
	id := d.runContainer(t, podID, podCfg, "shell", "sleep", "1000")
	d.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	// Same network namespace as this test process (the host's).
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.execSync(t, id, 10, "readlink", "/proc/self/ns/net")
	if err != nil {
		t.Fatalf("ExecSync: %v", err)
	}
	if got := strings.TrimSpace(string(resp.Stdout)); got != host {
		t.Errorf("host-network container is in network namespace %q, want the host's %q", got, host)
	}
}

// TestLoopbackWithoutCNIPlugin runs a pod on a network whose conflist does
// not chain the loopback plugin, as flannel's, Calico's and Cilium's do not:
// the runtime brings lo up itself, so one container reaches another on
// 127.0.0.1.
func TestLoopbackWithoutCNIPlugin(t *testing.T) {
	d := startDaemonWith(t, daemonOptions{conflist: func(d *daemon) string {
		return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}`, d.netName, d.bridge, d.ipamDir, podSubnet)
	}})
	d.pull(t, busybox)
	podID, podCfg := d.runPod(t, "no-lo-plugin")
	server := d.runContainer(t, podID, podCfg, "server", "sh", "-c", serveScript("127.0.0.1:8080", "hi-over-lo"))
	client := d.runContainer(t, podID, podCfg, "client", "sleep", "1000")
	d.waitState(t, server, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	d.waitState(t, client, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)

	resp, err := d.execSync(t, client, 10, "ip", "link", "show", "lo")
	if err != nil {
		t.Fatalf("ExecSync ip link: %v", err)
	}
	if !strings.Contains(string(resp.Stdout), "UP") {
		t.Errorf("lo in the pod is not up:\n%s%s", resp.Stdout, resp.Stderr)
	}
	resp, err = d.execSync(t, client, 60, "sh", "-c",
		"i=0; while [ $i -lt 50 ]; do wget -q -O - http://127.0.0.1:8080/ && exit 0; i=$((i+1)); sleep 0.2; done; exit 1")
	if err != nil {
		t.Fatalf("ExecSync wget: %v", err)
	}
	if resp.ExitCode != 0 || strings.TrimSpace(string(resp.Stdout)) != "hi-over-lo" {
		t.Fatalf("client wget http://127.0.0.1:8080/: exit %d stdout %q stderr %q, want hi-over-lo", resp.ExitCode, resp.Stdout, resp.Stderr)
	}
}
