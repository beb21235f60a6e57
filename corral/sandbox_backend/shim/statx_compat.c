/* gVisor 20221219 (Debian bookworm's runsc) rejects statx() with AT_NO_AUTOMOUNT (EINVAL), which
 * breaks coreutils' `ls -l` and `stat`. There are no automounts inside a sandbox, so dropping the
 * flag changes nothing else. Preloaded via /etc/ld.so.preload in the default image. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf) {
    return (int)syscall(SYS_statx, dirfd, path, flags & ~AT_NO_AUTOMOUNT, mask, buf);
}
