package daemon

import (
	"encoding/json"

	"github.com/skiffcri/skiff/shim"
)

// warmCreateDecoding decodes a typical container's create request once and
// throws it away. encoding/json builds its decoder for each struct type the
// first time it meets one, and a spec reaches dozens: in a new shim the
// first create's request took 1.3 ms to decode against 0.1 ms warm. A shim
// starts while its pod's network is set up (CNI ADD, tens of ms, which the
// pod's first create waits for anyway), so the decoders are built then.
func warmCreateDecoding() {
	var req shim.CreateRequest
	_ = json.Unmarshal([]byte(warmCreateRequest), &req)
}

// warmCreateRequest has every part of a spec skiffd sends for a container:
// TestWarmCreateRequest checks that it decodes and reaches them.
const warmCreateRequest = `{"id":"warm","logPath":"/var/log/pods/ns_p_u/c/0.log","stateDir":"/run/skiff/containers/warm","rootfs":"/rootfs",
"spec":{"ociVersion":"1.2.0",
"process":{"terminal":false,"user":{"uid":0,"gid":0,"umask":18,"additionalGids":[0,10]},"args":["sh","-c","true"],
"env":["PATH=/usr/bin:/bin","HOSTNAME=p"],"cwd":"/",
"capabilities":{"bounding":["CAP_CHOWN"],"effective":["CAP_CHOWN"],"permitted":["CAP_CHOWN"],"inheritable":[],"ambient":[]},
"rlimits":[{"type":"RLIMIT_NOFILE","hard":1048576,"soft":1048576}],"noNewPrivileges":true,"oomScoreAdj":1000,
"apparmorProfile":"","selinuxLabel":""},
"root":{"path":"/rootfs","readonly":false},"hostname":"p",
"mounts":[{"destination":"/proc","type":"proc","source":"proc","options":["nosuid","noexec","nodev"]},
{"destination":"/etc/hosts","type":"bind","source":"/var/lib/skiff/pods/p/hosts","options":["rbind","rprivate","rw"],
"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"gidMappings":[{"containerID":0,"hostID":100000,"size":65536}]}],
"hooks":{"prestart":[{"path":"/bin/true","args":["true"],"env":["A=B"],"timeout":5}],"createRuntime":[],"createContainer":[],"startContainer":[],"poststart":[],"poststop":[]},
"annotations":{"io.kubernetes.cri.container-type":"container"},
"linux":{"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"gidMappings":[{"containerID":0,"hostID":100000,"size":65536}],
"sysctl":{"net.ipv4.ip_unprivileged_port_start":"0"},
"resources":{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}],
"memory":{"limit":67108864,"reservation":0,"swap":67108864,"disableOOMKiller":false,"useHierarchy":true},
"cpu":{"shares":1024,"quota":100000,"period":100000,"realtimeRuntime":0,"realtimePeriod":0,"cpus":"0-1","mems":"0"},
"pids":{"limit":1024},"blockIO":{"weight":100},"hugepageLimits":[{"pageSize":"2MB","limit":0}],
"network":{"classID":1,"priorities":[{"name":"eth0","priority":1}]},"rdma":{"mlx":{"hcaHandles":1,"hcaObjects":1}},"unified":{"memory.high":"max"}},
"cgroupsPath":"/kubepods/besteffort/podu/warm",
"namespaces":[{"type":"pid"},{"type":"network","path":"/run/skiff/pods/p/net"},{"type":"ipc","path":"/run/skiff/pods/p/ipc"},
{"type":"uts","path":"/run/skiff/pods/p/uts"},{"type":"mount"},{"type":"cgroup"}],
"devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229,"fileMode":438,"uid":0,"gid":0}],
"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"architectures":["SCMP_ARCH_X86_64"],"flags":[],
"syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW","errnoRet":1,"args":[{"index":0,"value":1,"valueTwo":0,"op":"SCMP_CMP_EQ"}]}]},
"rootfsPropagation":"rprivate","maskedPaths":["/proc/kcore"],"readonlyPaths":["/proc/sys"],"mountLabel":"",
"intelRdt":{"closID":"x"},"personality":{"domain":"LINUX"},"timeOffsets":{"monotonic":{"secs":0,"nanosecs":0}}}},
"stdin":false,"stdinOnce":false,"tty":false}`
