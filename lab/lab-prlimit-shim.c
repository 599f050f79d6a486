// SPDX-License-Identifier: GPL-3.0-or-later
/*
 * lab-prlimit-shim: LAB ONLY. Never load this on a real edge host.
 *
 * The machines the built-in lab runs on give root every capability except
 * CAP_SYS_RESOURCE. Without it the kernel refuses prlimit64() on a process
 * of another uid, even for a read-only query, so CRIU cannot dump a container
 * whose processes dropped privileges ("Can't get rlimit 0: Operation not
 * permitted"). Real edge hosts have the capability and do not need this.
 *
 * Loaded with LD_PRELOAD (or ld.so --preload) into criu by the lab's criu
 * wrapper, this library wraps prlimit(), prlimit64() and syscall(SYS_prlimit64)
 * and, only when the real call fails with EPERM for a read-only query
 * (new_limit == NULL, old_limit != NULL) about another process, fills
 * old_limit from /proc/<pid>/limits (world-readable). Every other call, and
 * every other failure, is passed through untouched.
 *
 * Set EDGEMIG_LAB_SHIM_DEBUG=1 to log each substitution to stderr.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

typedef int (*prlimit64_fn)(pid_t, __rlimit_resource_t,
			    const struct rlimit64 *, struct rlimit64 *);
typedef int (*prlimit_fn)(pid_t, __rlimit_resource_t,
			  const struct rlimit *, struct rlimit *);
typedef long (*syscall_fn)(long, ...);

static prlimit64_fn real_prlimit64;
static prlimit_fn real_prlimit;
static syscall_fn real_syscall;

/* Row names of /proc/<pid>/limits, indexed by RLIMIT_* (fs/proc/base.c). */
static const char *const limit_names[] = {
	[RLIMIT_CPU] = "Max cpu time",
	[RLIMIT_FSIZE] = "Max file size",
	[RLIMIT_DATA] = "Max data size",
	[RLIMIT_STACK] = "Max stack size",
	[RLIMIT_CORE] = "Max core file size",
	[RLIMIT_RSS] = "Max resident set",
	[RLIMIT_NPROC] = "Max processes",
	[RLIMIT_NOFILE] = "Max open files",
	[RLIMIT_MEMLOCK] = "Max locked memory",
	[RLIMIT_AS] = "Max address space",
	[RLIMIT_LOCKS] = "Max file locks",
	[RLIMIT_SIGPENDING] = "Max pending signals",
	[RLIMIT_MSGQUEUE] = "Max msgqueue size",
	[RLIMIT_NICE] = "Max nice priority",
	[RLIMIT_RTPRIO] = "Max realtime priority",
	[RLIMIT_RTTIME] = "Max realtime timeout",
};

__attribute__((constructor)) static void shim_init(void)
{
	real_prlimit64 = (prlimit64_fn)dlsym(RTLD_NEXT, "prlimit64");
	real_prlimit = (prlimit_fn)dlsym(RTLD_NEXT, "prlimit");
	real_syscall = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
}

static int parse_value(const char **p, rlim64_t *out)
{
	const char *s = *p;
	char *end;

	while (*s == ' ')
		s++;
	if (strncmp(s, "unlimited", 9) == 0) {
		*out = RLIM64_INFINITY;
		*p = s + 9;
		return 0;
	}
	errno = 0;
	*out = strtoull(s, &end, 10);
	if (end == s || errno)
		return -1;
	*p = end;
	return 0;
}

/* Fill *out with the soft and hard limit of resource for pid; 0 on success. */
static int limits_from_proc(pid_t pid, int resource, struct rlimit64 *out)
{
	char path[64], buf[8192];
	size_t len = 0;
	ssize_t n;
	const char *line, *name;
	size_t name_len;
	int fd;

	if (resource < 0 || resource >= (int)(sizeof(limit_names) / sizeof(limit_names[0])))
		return -1;
	name = limit_names[resource];
	name_len = strlen(name);

	snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while (len < sizeof(buf) - 1 &&
	       (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = '\0';

	for (line = buf; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		const char *p = line + name_len;

		if (strncmp(line, name, name_len) != 0 || *p != ' ')
			continue;
		if (parse_value(&p, &out->rlim_cur) || parse_value(&p, &out->rlim_max))
			return -1;
		return 0;
	}
	return -1;
}

/*
 * Called after the real call failed with err. Returns 0 if old_limit was
 * filled from /proc instead, -1 if the failure stands.
 */
static int substitute(pid_t pid, int resource, const void *new_limit,
		      void *old_limit, int err)
{
	struct rlimit64 r;

	if (err != EPERM || new_limit != NULL || old_limit == NULL ||
	    pid == 0 || pid == getpid())
		return -1;
	if (limits_from_proc(pid, resource, &r) != 0)
		return -1;
	memcpy(old_limit, &r, sizeof(r));
	if (getenv("EDGEMIG_LAB_SHIM_DEBUG"))
		fprintf(stderr, "lab-prlimit-shim: pid %d resource %d from /proc\n",
			(int)pid, resource);
	return 0;
}

int prlimit64(pid_t pid, __rlimit_resource_t resource,
	      const struct rlimit64 *new_limit, struct rlimit64 *old_limit)
{
	int ret, err;

	if (!real_prlimit64)
		shim_init();
	ret = real_prlimit64(pid, resource, new_limit, old_limit);
	if (ret == -1) {
		err = errno;
		if (substitute(pid, (int)resource, new_limit, old_limit, err) == 0)
			return 0;
		errno = err;
	}
	return ret;
}

int prlimit(pid_t pid, __rlimit_resource_t resource,
	    const struct rlimit *new_limit, struct rlimit *old_limit)
{
	int ret, err;

	if (!real_prlimit)
		shim_init();
	ret = real_prlimit(pid, resource, new_limit, old_limit);
	if (ret == -1) {
		err = errno;
		if (substitute(pid, (int)resource, new_limit, old_limit, err) == 0)
			return 0;
		errno = err;
	}
	return ret;
}

/*
 * x86_64: syscall() takes at most six arguments, all passed in registers, so
 * forwarding six longs is exact for every system call.
 */
long syscall(long number, ...)
{
	long a[6], ret;
	va_list ap;
	int i, err;

	if (!real_syscall)
		shim_init();
	va_start(ap, number);
	for (i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);

	ret = real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
	if (number == SYS_prlimit64 && ret == -1) {
		err = errno;
		if (substitute((pid_t)a[0], (int)a[1], (const void *)a[2],
			       (void *)a[3], err) == 0)
			return 0;
		errno = err;
	}
	return ret;
}
