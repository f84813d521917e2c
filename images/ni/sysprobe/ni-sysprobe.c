/*
 * ni-sysprobe: a diagnostic tool of the NI image.  It makes a few system calls
 * that an NI task has no business making and prints, per probe, "ok" or the
 * errno name it got, e.g.
 *
 *     # ctr -n nirunner tasks exec --exec-id probe ni-factory /sbin/ni-sysprobe
 *     getpid ok
 *     ptrace EPERM
 *     ...
 *
 * so that one can see whether the task's seccomp filter (supervisor config
 * taskSeccomp) is in force.  Some probes would succeed in a task without the
 * filter (ptrace, unshare-user, personality, io_uring, keyctl); others need
 * capabilities an NI task never has (mount, bpf, kexec_load), so they fail
 * with EPERM either way.  getpid is the control: it must always work.
 *
 * Every probe is harmless even where it succeeds: the ones that change the
 * calling process run in a forked child, and mount and kexec_load get
 * arguments that a privileged caller would see refused with EINVAL or ENODEV
 * after the permission check.
 *
 * Usage: ni-sysprobe [PROBE...]   (no argument: every probe, in this order)
 * Exit status: 0 when every named probe ran, 2 for an unknown probe name.
 *
 * Build: gcc -static -Os -o ni-sysprobe ni-sysprobe.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/kexec.h>
#include <linux/keyctl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Each probe returns 0 on success or an errno value. */
typedef int (*probe_fn)(void);

static int result(long ret) { return ret < 0 ? errno : 0; }

static int p_getpid(void) { return result(syscall(SYS_getpid)); }

static int p_ptrace(void) { return result(ptrace(PTRACE_TRACEME, 0, NULL, NULL)); }

static int p_unshare_user(void) { return result(unshare(CLONE_NEWUSER)); }

static int p_personality(void) { return result(syscall(SYS_personality, PER_LINUX)); }

static int p_io_uring(void)
{
	struct io_uring_params params;
	memset(&params, 0, sizeof(params));
	long fd = syscall(SYS_io_uring_setup, 1, &params);
	if (fd >= 0)
		close((int)fd);
	return result(fd);
}

static int p_keyctl(void)
{
	return result(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
}

static int p_mount(void)
{
	/* no such file system type: ENODEV for a caller who may mount at all */
	return result(mount("none", "/tmp", "nirunner-probe-none", MS_RDONLY, NULL));
}

static int p_bpf(void)
{
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = 4;
	attr.value_size = 4;
	attr.max_entries = 1;
	long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
	if (fd >= 0)
		close((int)fd);
	return result(fd);
}

static int p_kexec_load(void)
{
	/* an architecture no kernel has: EINVAL for a caller with CAP_SYS_BOOT */
	return result(syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0x7fff0000UL));
}

struct probe {
	const char *name;
	probe_fn fn;
	int in_child;   /* it changes the caller: run it in a child that exits at once */
};

static const struct probe probes[] = {
	{"getpid", p_getpid, 0},
	{"ptrace", p_ptrace, 1},
	{"unshare-user", p_unshare_user, 1},
	{"personality", p_personality, 1},
	{"io_uring", p_io_uring, 0},
	{"keyctl", p_keyctl, 0},
	{"mount", p_mount, 0},
	{"bpf", p_bpf, 0},
	{"kexec_load", p_kexec_load, 0},
};
#define N_PROBES (sizeof(probes) / sizeof(probes[0]))

#define NOT_RUN (-1)   /* fork or wait failed */
#define KILLED (-2)    /* the child died of a signal */

/* The child reports its errno as its exit status (errno values are < 256). */
static int run_in_child(probe_fn fn)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(fn());
	if (pid < 0)
		return NOT_RUN;
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return NOT_RUN;
	return WIFEXITED(status) ? WEXITSTATUS(status) : KILLED;
}

static void run(const struct probe *p)
{
	int err = p->in_child ? run_in_child(p->fn) : p->fn();
	if (err == 0) {
		printf("%s ok\n", p->name);
	} else if (err == NOT_RUN || err == KILLED) {
		printf("%s %s\n", p->name, err == NOT_RUN ? "not-run" : "killed");
	} else {
		const char *name = strerrorname_np(err);
		if (name)
			printf("%s %s\n", p->name, name);
		else
			printf("%s errno-%d\n", p->name, err);
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		for (size_t i = 0; i < N_PROBES; i++)
			run(&probes[i]);
		return 0;
	}
	for (int a = 1; a < argc; a++) {
		size_t i = 0;
		while (i < N_PROBES && strcmp(probes[i].name, argv[a]) != 0)
			i++;
		if (i == N_PROBES) {
			fprintf(stderr, "ni-sysprobe: unknown probe %s (known:", argv[a]);
			for (size_t k = 0; k < N_PROBES; k++)
				fprintf(stderr, " %s", probes[k].name);
			fprintf(stderr, ")\n");
			return 2;
		}
		run(&probes[i]);
	}
	return 0;
}
