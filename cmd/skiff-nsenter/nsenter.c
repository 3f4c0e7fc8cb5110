//go:build linux

// The pre-runtime stage: see main.go and package oci/nsenter. It runs
// from the C start-up code, before the Go runtime, and never returns to
// Go: it ends in execveat of the binary it was handed, or in _exit.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int sync_fd = -1;

// report writes one message to the sync fd; a failed write is ignored (the
// parent then sees the fd close instead).
static void report(const char *msg) {
	if (sync_fd < 0)
		return;
	ssize_t n = write(sync_fd, msg, strlen(msg));
	(void)n;
}

__attribute__((noreturn)) static void die(const char *what) {
	int err = errno;
	char msg[512];
	snprintf(msg, sizeof msg,
		 "{\"type\":\"error\",\"error\":\"skiff-nsenter: %s: %s\"}",
		 what, strerror(err));
	report(msg);
	// Also on stderr, for a parent that does not read the sync fd.
	fprintf(stderr, "skiff-nsenter: %s: %s\n", what, strerror(err));
	_exit(1);
}

static int env_int(const char *name, int def) {
	const char *v = getenv(name);
	if (v == NULL || *v == '\0')
		return def;
	char *end;
	long n = strtol(v, &end, 10);
	if (*end != '\0' || n < 0 || n > 0x7fffffff) {
		errno = EINVAL;
		die(name);
	}
	return (int)n;
}

// mirror waits for child and ends this process the way the child ended.
__attribute__((noreturn)) static void mirror(pid_t child) {
	int status;
	for (;;) {
		pid_t w = waitpid(child, &status, 0);
		if (w == child)
			break;
		if (w < 0 && errno != EINTR)
			_exit(127);
	}
	if (WIFEXITED(status))
		_exit(WEXITSTATUS(status));
	int sig = WTERMSIG(status);
	// Die of the same signal, without a core dump of this stage.
	struct rlimit no_core = {0, 0};
	setrlimit(RLIMIT_CORE, &no_core);
	signal(sig, SIG_DFL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	kill(getpid(), sig);
	_exit(128 + sig);
}

// run_target execs the binary handed over as EnvExecFD with this
// process's argv, minus the stage's own variables.
__attribute__((noreturn)) static void run_target(int exec_fd, char **argv) {
	unsetenv("_SKIFF_NSENTER_USERNS_FD");
	unsetenv("_SKIFF_NSENTER_UNSHARE");
	unsetenv("_SKIFF_NSENTER_SYNC_FD");
	unsetenv("_SKIFF_NSENTER_EXEC_FD");
	// The target inherits no fd of this stage's.
	fcntl(exec_fd, F_SETFD, FD_CLOEXEC);
	syscall(SYS_execveat, exec_fd, "", argv, environ, AT_EMPTY_PATH);
	die("execveat");
}

// pod_init is a pod's init, PID 1 of the PID namespace its containers
// share: it reaps every process that ends in the namespace (orphans are
// reparented to it) and exits 0 on SIGTERM or SIGINT, as a pause process
// does. Every signal is blocked and taken with sigwaitinfo, so no handler
// runs; a signal the kernel does not queue for an init (SIG_DFL from inside
// the namespace) is dropped as it would be for pause.
__attribute__((noreturn)) static void pod_init(void) {
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	// Nothing of whoever started it: no fd but stdio, which is /dev/null.
	syscall(SYS_close_range, 3, ~0U, 0);
	if (chdir("/") < 0)
		_exit(127);
	// Its name in ps and /proc/1/comm, as its argv[0] is.
	prctl(PR_SET_NAME, "skiff-pod-init", 0, 0, 0);
	for (;;) {
		// Every child that has ended, before waiting for the next signal:
		// SIGCHLD is not queued once per child.
		while (waitpid(-1, NULL, WNOHANG | __WALL) > 0)
			;
		int sig = sigwaitinfo(&all, NULL);
		if (sig == SIGTERM || sig == SIGINT)
			_exit(0);
	}
}

// glibc passes argc, argv and envp to constructors.
__attribute__((constructor)) static void skiff_nsenter(int argc, char **argv, char **envp) {
	(void)argc;
	(void)envp;
	int init = getenv("_SKIFF_NSENTER_POD_INIT") != NULL;
	if (getenv("_SKIFF_NSENTER_USERNS_FD") == NULL) {
		if (init)
			pod_init(); // started in its new PID namespace already
		return; // run by hand: main prints the usage
	}
	sync_fd = env_int("_SKIFF_NSENTER_SYNC_FD", -1);
	int userns = env_int("_SKIFF_NSENTER_USERNS_FD", -1);
	int flags = env_int("_SKIFF_NSENTER_UNSHARE", 0);
	int exec_fd = env_int("_SKIFF_NSENTER_EXEC_FD", -1);
	if (flags & CLONE_NEWUSER) {
		errno = EINVAL;
		die("CLONE_NEWUSER in the unshare flags");
	}
	if (init && !(flags & CLONE_NEWPID)) {
		errno = EINVAL;
		die("a pod init without CLONE_NEWPID in the unshare flags");
	}
	if (exec_fd < 0 && !init) {
		errno = EBADF;
		die("no binary to run (_SKIFF_NSENTER_EXEC_FD)");
	}

	if (setns(userns, CLONE_NEWUSER) < 0)
		die("setns");
	close(userns);
	// setns keeps the host credentials, which the namespace does not map;
	// become its root.
	if (setresgid(0, 0, 0) < 0)
		die("setresgid(0)");
	if (setgroups(0, NULL) < 0)
		die("setgroups");
	if (setresuid(0, 0, 0) < 0)
		die("setresuid(0)");
	if (flags != 0 && unshare(flags) < 0)
		die("unshare");
	if (!(flags & CLONE_NEWPID))
		run_target(exec_fd, argv);

	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		// PID 1 of the new namespace. Killed with this stage until it
		// changes credentials.
		prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		if (init)
			pod_init();
		run_target(exec_fd, argv);
	}
	char msg[64];
	snprintf(msg, sizeof msg, "{\"type\":\"pid\",\"pid\":%d}", (int)child);
	report(msg);
	// This stage holds nothing of the container's: no stdio, no sync
	// socket (its end must close with the child), no signals but SIGKILL.
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
	}
	syscall(SYS_close_range, 3, ~0U, 0);
	mirror(child);
}
