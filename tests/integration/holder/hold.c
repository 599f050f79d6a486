/* GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * The preflight's lab holder (tests/integration/test_preflight.py): PID 1 of a FROM-scratch
 * image, built static with the host's gcc. It sets up ONE thing CRIU cannot dump (or dumps
 * only with an option), writes how it went to /tmp/result, then /tmp/ready, and holds it
 * until killed. Plain syscalls, no libc wrappers a static glibc might lack, no shell in the
 * image: nothing that can make it exit at start unseen (/tmp/result says why, /tmp/ready
 * is written only when it holds the thing).
 *
 *   hold iouring | inotify DIR | unix PATH | dgram PATH | device PATH | ghost BYTES | lock
 *   hold ready   (the health check: exit 0 once /tmp/ready exists)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif

static void say(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd >= 0) {
		if (write(fd, text, strlen(text)) < 0)
			_exit(3);
		close(fd);
	}
}

static void __attribute__((noreturn)) fail(const char *what)
{
	char buf[256];

	snprintf(buf, sizeof(buf), "failed: %s: %s\n", what, strerror(errno));
	say("/tmp/result", buf);
	/* Stay up (not ready): the test reads /tmp/result and says why instead of seeing an exit. */
	for (;;)
		pause();
}

static void bye(int sig)
{
	(void)sig;
	_exit(0);
}

static int unix_connect(const char *path, int type)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, type, 0);

	if (fd < 0)
		return -1;
	strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	return fd;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	const char *arg = argc > 2 ? argv[2] : "";
	char buf[128];
	int fd = -1;

	if (!strcmp(mode, "ready")) {
		struct stat st;

		return stat("/tmp/ready", &st) == 0 ? 0 : 1;
	}
	mkdir("/tmp", 01777);
	if (!strcmp(mode, "iouring")) {
		unsigned char params[120] = { 0 };  /* struct io_uring_params */

		fd = syscall(SYS_io_uring_setup, 4, params);
		if (fd < 0)
			fail("io_uring_setup");
	} else if (!strcmp(mode, "inotify")) {
		fd = inotify_init1(0);
		if (fd < 0 || inotify_add_watch(fd, arg, IN_MODIFY | IN_CREATE) < 0)
			fail("inotify");
	} else if (!strcmp(mode, "unix") || !strcmp(mode, "dgram")) {
		fd = unix_connect(arg, !strcmp(mode, "unix") ? SOCK_STREAM : SOCK_DGRAM);
		if (fd < 0)
			fail("connect");
	} else if (!strcmp(mode, "device")) {
		fd = open(arg, O_RDWR);
		if (fd < 0)
			fail("open device");
	} else if (!strcmp(mode, "ghost")) {
		long left = atol(arg);
		static char chunk[65536];

		memset(chunk, 'x', sizeof(chunk));
		fd = open("/tmp/big", O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0)
			fail("open /tmp/big");
		while (left > 0) {
			ssize_t n = write(fd, chunk, left < (long)sizeof(chunk) ? (size_t)left : sizeof(chunk));

			if (n <= 0)
				fail("write /tmp/big");
			left -= n;
		}
		if (unlink("/tmp/big") < 0)
			fail("unlink /tmp/big");
	} else if (!strcmp(mode, "lock")) {
		fd = open("/tmp/lock", O_RDWR | O_CREAT, 0600);
		if (fd < 0 || flock(fd, LOCK_EX) < 0)
			fail("flock");
	} else {
		errno = EINVAL;
		fail(mode);
	}
	snprintf(buf, sizeof(buf), "ok %s fd %d pid %d\n", mode, fd, (int)getpid());
	say("/tmp/result", buf);
	say("/tmp/ready", "");
	/* PID 1 ignores signals it has no handler for: docker stop's SIGTERM must end it. */
	signal(SIGTERM, bye);
	for (;;)
		pause();
}
