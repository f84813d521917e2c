/*
 * ni-init: PID 1 of a nirunner network-instance (NI) container.
 *
 * It supervises a fixed set of services, each enabled by the presence of its
 * config file in /etc/nirunner (a read-only bind mount of the NI's config
 * dir).  Crashed services are restarted with exponential backoff; a service
 * that crashes MAX_FAILS times in a row is marked failed until SIGHUP.  On
 * SIGHUP a running service gets SIGHUP too (dnsmasq re-reads its files), unless
 * a file it reads only at start (dnsmasq's nftsets.conf: the ACLs' host names)
 * changed since it started: then it alone is restarted, not the task.  All
 * zombies are reaped, and the supervisor's view is written atomically to
 * /var/lib/nirunner/services.status for the runner to read.
 *
 * Signals are blocked and read from a signalfd inside a poll() loop whose
 * timeout is the nearest timer, so there is no busy waiting and no work in
 * async signal handlers.
 *
 * Test-only environment overrides (the unit tests run this without root and
 * without the image): NI_INIT_CONFIG_DIR, NI_INIT_STATE_DIR, NI_INIT_DNSMASQ,
 * NI_INIT_CHARON (service binaries) and NI_INIT_TIME_SCALE (multiplies every
 * delay, so backoff sequences finish quickly).
 *
 * Build: gcc -static -Os -o ni-init ni-init.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_FAILS 5              /* consecutive crashes before "failed" */
#define BACKOFF_MIN_MS 500LL     /* first restart delay, doubled per crash */
#define BACKOFF_MAX_MS 30000LL
#define STABLE_MS 60000LL        /* up this long: the next crash starts a new series */
#define STOP_GRACE_MS 5000LL     /* SIGTERM -> SIGKILL */
#define NEVER LLONG_MAX

enum state { STOPPED, RUNNING, BACKOFF, FAILED };
static const char *const state_names[] = {"stopped", "running", "backoff", "failed"};

struct service {
	/* fixed description */
	const char *name;
	const char *conf_file;   /* its presence in the config dir enables the service */
	const char *bin;         /* binary; NI_INIT_<NAME> may override it for tests */
	const char *bin_env;
	const char *fixed_arg;   /* extra argv[1], or NULL */
	const char *conf_flag;   /* argv prefix for the config path, or NULL */
	const char *conf_env;    /* env var carrying the config path, or NULL */
	bool hup_on_reload;      /* forward our SIGHUP to it */
	const char *start_file;  /* read at start only: changed at SIGHUP -> restart, or NULL */
	/* runtime state */
	char conf[PATH_MAX];
	char start_path[PATH_MAX];
	struct stat start_stat;  /* start_file as it was when the service started */
	enum state state;
	bool wanted;             /* config present at the last scan */
	bool stopping;           /* we sent SIGTERM, so its exit is not a crash */
	pid_t pid;
	int fails;               /* consecutive crashes */
	int restarts;            /* restarts since boot */
	long long started_at, restart_at, kill_at;   /* CLOCK_MONOTONIC ms */
	char last_exit[32];
};

static struct service services[] = {
	{.name = "dnsmasq", .conf_file = "dnsmasq.conf", .bin = "/usr/sbin/dnsmasq",
	 .bin_env = "NI_INIT_DNSMASQ", .fixed_arg = "--keep-in-foreground",
	 .conf_flag = "--conf-file=", .hup_on_reload = true, .start_file = "nftsets.conf"},
	{.name = "charon", .conf_file = "strongswan.conf", .bin = "/usr/sbin/charon-systemd",
	 .bin_env = "NI_INIT_CHARON", .conf_env = "STRONGSWAN_CONF"},
};
#define N_SERVICES (sizeof(services) / sizeof(services[0]))
#define for_each_service(s) for (struct service *s = services; s < services + N_SERVICES; s++)

static const char *config_dir = "/etc/nirunner";
static const char *state_dir = "/var/lib/nirunner";
static double time_scale = 1.0;
static bool shutting_down;
static long long shutdown_deadline = NEVER;

/* One write() per line, so lines from us and the services never interleave. */
static void logmsg(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n = snprintf(buf, sizeof(buf), "ni-init: ");
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	(void)!write(STDERR_FILENO, buf, n);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static long long scaled(long long ms) { return (long long)(ms * time_scale); }

/* tmp + rename: readers never see a half-written file.  No fsync: the file
 * describes live processes and is worthless after a crash anyway. */
static void write_status(void)
{
	static bool warned;
	char tmp[PATH_MAX], dst[PATH_MAX];
	snprintf(dst, sizeof(dst), "%s/services.status", state_dir);
	snprintf(tmp, sizeof(tmp), "%s/.services.status.tmp", state_dir);
	FILE *f = fopen(tmp, "we");
	if (!f) {   /* state dir missing or read-only: run without a status file */
		if (!warned)
			logmsg("cannot write %s (%s), not writing status", tmp, strerror(errno));
		warned = true;
		return;
	}
	for_each_service(s)
		fprintf(f, "%s %s pid=%d restarts=%d last_exit=%s\n", s->name,
			state_names[s->state], (int)s->pid, s->restarts, s->last_exit);
	if (fclose(f) != 0 || rename(tmp, dst) != 0)
		unlink(tmp);
}

static void start_service(struct service *s, sigset_t *blocked)
{
	pid_t pid = fork();
	if (pid == 0) {
		char conf_arg[PATH_MAX + 32];
		char *argv[4];
		int n = 0;
		/* The signal mask survives exec; daemons must see their signals. */
		sigprocmask(SIG_UNBLOCK, blocked, NULL);
		if (s->conf_env)
			setenv(s->conf_env, s->conf, 1);
		argv[n++] = (char *)s->bin;
		if (s->fixed_arg)
			argv[n++] = (char *)s->fixed_arg;
		if (s->conf_flag) {
			snprintf(conf_arg, sizeof(conf_arg), "%s%s", s->conf_flag, s->conf);
			argv[n++] = conf_arg;
		}
		argv[n] = NULL;
		execv(s->bin, argv);
		logmsg("exec %s failed: %s", s->bin, strerror(errno));
		_exit(127);
	}
	if (pid < 0) {   /* treat like an immediate crash so backoff applies */
		logmsg("%s: fork failed: %s", s->name, strerror(errno));
		s->state = BACKOFF;
		s->restart_at = now_ms() + scaled(BACKOFF_MIN_MS);
		return;
	}
	s->pid = pid;
	s->state = RUNNING;
	s->stopping = false;
	s->started_at = now_ms();
	if (s->start_file && stat(s->start_path, &s->start_stat) != 0)
		memset(&s->start_stat, 0, sizeof(s->start_stat));
	if (s->fails)
		logmsg("%s restarted pid=%d (restart %d)", s->name, (int)pid, s->fails);
	else
		logmsg("%s started pid=%d", s->name, (int)pid);
}

static void service_exited(struct service *s, int status, sigset_t *blocked)
{
	char how[64];
	if (WIFEXITED(status)) {
		snprintf(s->last_exit, sizeof(s->last_exit), "%d", WEXITSTATUS(status));
		snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
	} else {
		const char *sig = sigabbrev_np(WTERMSIG(status));
		snprintf(s->last_exit, sizeof(s->last_exit), "SIG%s", sig ? sig : "UNKNOWN");
		snprintf(how, sizeof(how), "killed by %s", s->last_exit);
	}
	s->pid = 0;
	if (s->stopping || shutting_down) {
		s->stopping = false;
		s->state = STOPPED;
		logmsg("%s %s, stopped", s->name, how);
		/* Config came back while it was stopping: bring it up again. */
		if (s->wanted && !shutting_down)
			start_service(s, blocked);
		return;
	}
	if (now_ms() - s->started_at >= scaled(STABLE_MS))
		s->fails = 0;   /* it had been healthy: a new crash, not a crash loop */
	s->fails++;
	if (s->fails >= MAX_FAILS) {
		s->state = FAILED;
		logmsg("%s %s, failed after %d crashes in a row, not restarting until SIGHUP",
		       s->name, how, s->fails);
		return;
	}
	long long delay = BACKOFF_MIN_MS << (s->fails - 1);
	delay = scaled(delay > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay);
	s->state = BACKOFF;
	s->restart_at = now_ms() + delay;
	logmsg("%s %s, restart %d in %.1fs", s->name, how, s->fails, delay / 1000.0);
}

static void stop_service(struct service *s, const char *why)
{
	s->fails = 0;
	if (s->state == RUNNING && !s->stopping) {
		logmsg("%s %s, stopping pid=%d", s->name, why, (int)s->pid);
		kill(s->pid, SIGTERM);
		s->stopping = true;
		s->kill_at = now_ms() + scaled(STOP_GRACE_MS);
	} else if (s->state == BACKOFF || s->state == FAILED) {
		logmsg("%s %s, was %s, now stopped", s->name, why, state_names[s->state]);
		s->state = STOPPED;
	}
}

/* Whether the service's start-only file differs from what it started with
 * (config files are replaced by rename: a new one has another inode). */
static bool start_file_changed(struct service *s)
{
	struct stat st;
	if (!s->start_file)
		return false;
	if (stat(s->start_path, &st) != 0)
		memset(&st, 0, sizeof(st));
	return st.st_ino != s->start_stat.st_ino || st.st_size != s->start_stat.st_size ||
	       st.st_mtim.tv_sec != s->start_stat.st_mtim.tv_sec ||
	       st.st_mtim.tv_nsec != s->start_stat.st_mtim.tv_nsec;
}

/* Boot and SIGHUP: make the running set match the config dir. */
static void rescan(bool hup, sigset_t *blocked)
{
	for_each_service(s) {
		s->wanted = access(s->conf, F_OK) == 0;
		if (!s->wanted) {
			stop_service(s, "config removed");
			continue;
		}
		if (s->state == FAILED)
			logmsg("%s failed state cleared", s->name);
		if (s->state == STOPPED || s->state == FAILED) {
			s->fails = 0;
			start_service(s, blocked);
		} else if (hup && s->state == RUNNING && !s->stopping && start_file_changed(s)) {
			/* stopping with its config present: it is started again as it exits */
			char why[PATH_MAX + 32];
			snprintf(why, sizeof(why), "%s changed, restarting", s->start_file);
			stop_service(s, why);
		} else if (hup && s->state == RUNNING && s->hup_on_reload && !s->stopping) {
			logmsg("%s sent SIGHUP (reload)", s->name);
			kill(s->pid, SIGHUP);
		}
	}
}

static void begin_shutdown(int sig)
{
	logmsg("received %s, stopping services", sig == SIGINT ? "SIGINT" : "SIGTERM");
	shutting_down = true;
	/* run_timers() SIGKILLs at kill_at; the extra second is for reaping them. */
	shutdown_deadline = now_ms() + scaled(STOP_GRACE_MS) + 1000;
	for_each_service(s) {
		if (s->state == RUNNING) {
			kill(s->pid, SIGTERM);
			s->stopping = true;
			s->kill_at = now_ms() + scaled(STOP_GRACE_MS);
		} else {
			s->state = STOPPED;
		}
	}
	/* As PID 1 of the container, -1 means "everything in our namespace",
	 * which also reaches helpers the services forked.  Outside a namespace
	 * (tests) it would hit every process of the user, hence only as PID 1. */
	if (getpid() == 1)
		kill(-1, SIGTERM);
}

static void reap(sigset_t *blocked)
{
	int status;
	pid_t pid;
	/* One SIGCHLD may stand for many exits, so drain them all. */
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for_each_service(s)
			if (s->pid == pid)
				service_exited(s, status, blocked);
		/* Any other pid is an orphan reparented to us; reaping is all it needs. */
	}
}

static void run_timers(sigset_t *blocked)
{
	long long now = now_ms();
	for_each_service(s) {
		if (s->state == BACKOFF && now >= s->restart_at && !shutting_down) {
			s->restarts++;
			start_service(s, blocked);
		} else if (s->state == RUNNING && s->stopping && now >= s->kill_at) {
			logmsg("%s did not stop in time, sending SIGKILL", s->name);
			kill(s->pid, SIGKILL);
			s->kill_at = NEVER;
		}
	}
}

static long long next_deadline(void)
{
	long long d = shutdown_deadline;
	for_each_service(s) {
		if (s->state == BACKOFF && s->restart_at < d)
			d = s->restart_at;
		if (s->state == RUNNING && s->stopping && s->kill_at < d)
			d = s->kill_at;
	}
	return d;
}

static bool any_running(void)
{
	for_each_service(s)
		if (s->state == RUNNING)
			return true;
	return false;
}

int main(void)
{
	const char *env;
	if ((env = getenv("NI_INIT_CONFIG_DIR")))
		config_dir = env;
	if ((env = getenv("NI_INIT_STATE_DIR")))
		state_dir = env;
	if ((env = getenv("NI_INIT_TIME_SCALE")) && strtod(env, NULL) > 0)
		time_scale = strtod(env, NULL);
	for_each_service(s) {
		if ((env = getenv(s->bin_env)))
			s->bin = env;
		snprintf(s->conf, sizeof(s->conf), "%s/%s", config_dir, s->conf_file);
		if (s->start_file)
			snprintf(s->start_path, sizeof(s->start_path), "%s/%s", config_dir,
				 s->start_file);
		strcpy(s->last_exit, "-");
	}

	/* Outside a PID namespace (tests), orphans would otherwise go to the
	 * real init and we could not reap them; as PID 1 this is a no-op. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);

	sigset_t blocked;
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGCHLD);
	sigaddset(&blocked, SIGTERM);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGHUP);
	/* Blocked signals stay pending even for PID 1 (which otherwise drops
	 * signals it has no handler for), and the signalfd collects them. */
	sigprocmask(SIG_BLOCK, &blocked, NULL);
	int sfd = signalfd(-1, &blocked, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		logmsg("signalfd: %s", strerror(errno));
		return 1;
	}

	logmsg("starting, config %s, state %s", config_dir, state_dir);
	rescan(false, &blocked);
	write_status();

	while (!(shutting_down && !any_running())) {
		long long wait = next_deadline();
		int timeout = -1;
		if (wait != NEVER) {
			wait -= now_ms();
			timeout = wait < 0 ? 0 : wait > INT_MAX ? INT_MAX : (int)wait;
		}
		struct pollfd pfd = {.fd = sfd, .events = POLLIN};
		if (poll(&pfd, 1, timeout) < 0 && errno != EINTR) {
			logmsg("poll: %s", strerror(errno));
			return 1;
		}
		struct signalfd_siginfo si;
		while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
			if (si.ssi_signo == SIGCHLD)
				reap(&blocked);
			else if (si.ssi_signo == SIGHUP && !shutting_down)
				rescan(true, &blocked);
			else if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) && !shutting_down)
				begin_shutdown(si.ssi_signo);
		}
		run_timers(&blocked);
		if (shutting_down && now_ms() >= shutdown_deadline)
			break;   /* a process stuck in D state must not keep us alive */
		write_status();
	}
	reap(&blocked);
	write_status();
	logmsg("exiting");
	return 0;
}
