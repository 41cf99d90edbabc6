/* A slow phone's flash for the bindings' tests, loaded with LD_PRELOAD: fsync and fdatasync of
 * files whose path contains "slow-disk" take 300 ms longer; every other call is untouched.
 * The Rust tests slow their store instead (tests/common FaultyStore); the SDK's Kotlin and
 * Swift faces take no store, so their tests slow the disk under it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void slow_if_marked(int fd) {
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = '\0';
    if (strstr(path, "slow-disk") == NULL) return;
    struct timespec pause = {0, 300 * 1000 * 1000L};
    nanosleep(&pause, NULL);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    slow_if_marked(fd);
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    slow_if_marked(fd);
    return real(fd);
}
