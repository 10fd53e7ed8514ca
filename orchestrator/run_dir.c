/*
 * run_dir: the run directory, its lock and run id, and removing a run's
 * state outside it (see run_dir.h).
 *
 * Rejected: a pid file checked with kill(pid, 0). A recycled pid makes a dead
 * run look alive, and two runs starting together both see it free; flock
 * has neither problem.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "orchestrator/cli.h"
#include "orchestrator/run_dir.h"
#include "storage/blockstore.h"

int rd_abspath(const char *path, char *out, size_t len, rt_err *err)
{
    if (path[0] == '/') {
        if (snprintf(out, len, "%s", path) >= (int)len)
            return err_set(err, -ENAMETOOLONG, "%s: path too long", path);
    } else {
        char cwd[RD_PATH_MAX];
        if (getcwd(cwd, sizeof cwd) == NULL)
            return err_set(err, -errno, "cannot get the current directory: %s", strerror(errno));
        const char *p = path;
        while (p[0] == '.' && p[1] == '/')
            p += 2;
        if (snprintf(out, len, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, p) >= (int)len)
            return err_set(err, -ENAMETOOLONG, "%s: path too long", path);
    }
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/')
        out[--n] = '\0';
    return 0;
}

int rd_default_path(char *out, size_t len, rt_err *err)
{
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    for (int k = 1; k < 1000; k++) {
        int n = k == 1 ? snprintf(out, len, "%s/run-%s", RD_RUNS_DIR, stamp)
                       : snprintf(out, len, "%s/run-%s-%d", RD_RUNS_DIR, stamp, k);
        if (n >= (int)len)
            return err_set(err, -ENAMETOOLONG, "run directory name too long");
        struct stat st;
        if (lstat(out, &st) != 0 && errno == ENOENT)
            return 0;
    }
    return err_set(err, -EEXIST, "%s/run-%s*: too many run directories with this name",
                   RD_RUNS_DIR, stamp);
}

int rd_latest_update(const char *dir, rt_err *err)
{
    const char *base = strrchr(dir, '/');
    base = base != NULL ? base + 1 : dir;
    char tmp[RD_PATH_MAX], link[RD_PATH_MAX];
    snprintf(link, sizeof link, "%s/%s", RD_RUNS_DIR, RD_LATEST);
    snprintf(tmp, sizeof tmp, "%s/.%s.%d", RD_RUNS_DIR, RD_LATEST, (int)getpid());
    unlink(tmp);
    if (symlink(base, tmp) != 0)
        return err_set(err, -errno, "cannot create the symlink %s: %s", tmp, strerror(errno));
    if (rename(tmp, link) != 0) {
        int e = errno;
        unlink(tmp);
        return err_set(err, -e, "cannot update %s: %s", link, strerror(e));
    }
    return 0;
}

static pid_t read_pid(int fd)
{
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    return n > 0 ? (pid_t)strtol(buf, NULL, 10) : 0;
}

static int busy(rt_err *err, const char *dir, pid_t pid)
{
    if (pid > 0)
        return err_set(err, -EBUSY, "run directory %s is in use by pid %d", dir, (int)pid);
    return err_set(err, -EBUSY, "run directory %s is in use by another ramtrain run", dir);
}

int rd_lock_probe(const char *dir, pid_t *holder, rt_err *err)
{
    char path[RD_PATH_MAX];
    if (snprintf(path, sizeof path, "%s/lock", dir) >= (int)sizeof path)
        return err_set(err, -ENAMETOOLONG, "%s: path too long", dir);
    *holder = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : err_set(err, -errno, "%s: %s", path, strerror(errno));
    int rc = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            *holder = read_pid(fd);
            rc = busy(err, dir, *holder);
        } else {
            rc = err_set(err, -errno, "%s: flock: %s", path, strerror(errno));
        }
    }
    close(fd); /* drops our lock, if we got it */
    return rc;
}

int rd_lock_take(const char *dir, int *fd, rt_err *err)
{
    char path[RD_PATH_MAX];
    if (snprintf(path, sizeof path, "%s/lock", dir) >= (int)sizeof path)
        return err_set(err, -ENAMETOOLONG, "%s: path too long", dir);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0)
        return err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        pid_t pid = e == EWOULDBLOCK ? read_pid(f) : 0;
        close(f);
        return e == EWOULDBLOCK ? busy(err, dir, pid)
                                : err_set(err, -e, "%s: flock: %s", path, strerror(e));
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    if (ftruncate(f, 0) != 0 || pwrite(f, buf, (size_t)n, 0) != n) {
        int e = errno;
        close(f);
        return err_set(err, -e, "cannot write %s: %s", path, strerror(e));
    }
    *fd = f;
    return 0;
}

bool rd_nonempty(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    struct dirent *e;
    bool any = false;
    while (!any && (e = readdir(d)) != NULL)
        any = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return any;
}

int rd_make_layout(const char *dir, rt_err *err)
{
    static const char *const SUB[] = {"", "/logs", "/checkpoints", "/sock", "/model", "/data"};
    for (size_t i = 0; i < sizeof SUB / sizeof SUB[0]; i++) {
        char path[RD_PATH_MAX];
        if (snprintf(path, sizeof path, "%s%s", dir, SUB[i]) >= (int)sizeof path)
            return err_set(err, -ENAMETOOLONG, "%s: path too long", dir);
        int rc = cli_mkdir_p(path);
        if (rc < 0)
            return err_set(err, rc, "cannot create %s: %s", path, strerror(-rc));
    }
    return 0;
}

int rd_run_id_new(const char *dir, char out[RD_RUN_ID_LEN], rt_err *err)
{
    char real[RD_PATH_MAX];
    if (realpath(dir, real) == NULL)
        return err_set(err, -errno, "%s: %s", dir, strerror(errno));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 */
    for (const char *p = real; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    uint64_t t = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    for (int i = 0; i < 8; i++)
        h = (h ^ ((t >> (8 * i)) & 0xff)) * 0x100000001b3ull;
    snprintf(out, RD_RUN_ID_LEN, "r%012llx", (unsigned long long)(h & 0xffffffffffffull));
    return 0;
}

int rd_run_id_read(const char *dir, char *out, size_t len, rt_err *err)
{
    char path[RD_PATH_MAX];
    snprintf(path, sizeof path, "%s/run_id", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT
                   ? err_set(err, -ENOENT, "%s is not a run directory (no %s)", dir, path)
                   : err_set(err, -errno, "cannot read %s: %s", path, strerror(errno));
    char buf[128] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    rt_err e2 = {{0}};
    if (bs_run_id_check(buf, &e2) < 0)
        return err_set(err, -EINVAL, "%s: %s", path, e2.msg);
    if (snprintf(out, len, "%s", buf) >= (int)len)
        return err_set(err, -ENAMETOOLONG, "%s: run id too long", path);
    return 0;
}

int rd_write_file(const char *path, const void *buf, size_t len, rt_err *err)
{
    char tmp[RD_PATH_MAX + 8];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return err_set(err, -ENAMETOOLONG, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return err_set(err, -errno, "cannot create %s: %s", tmp, strerror(errno));
    const char *p = buf;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            unlink(tmp);
            return err_set(err, -e, "cannot write %s: %s", tmp, strerror(e));
        }
        p += n, left -= (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return err_set(err, -e, "cannot write %s: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return err_set(err, -e, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return 0;
}

/* Skips one or more decimal digits; NULL when there is none. */
static const char *digits(const char *p)
{
    if (*p < '0' || *p > '9')
        return NULL;
    while (*p >= '0' && *p <= '9')
        p++;
    return p;
}

bool rd_is_run_object(const char *name, const char *run_id, bool spill)
{
    size_t rl = strlen(run_id);
    if (strncmp(name, "ramtrain.", 9) != 0 || strncmp(name + 9, run_id, rl) != 0 ||
        name[9 + rl] != '.')
        return false;
    const char *p = name + 10 + rl;
    if (!spill && strcmp(p, "ring") == 0)
        return true;
    if ((p = digits(p)) == NULL || *p++ != '.')
        return false;
    if (spill)
        return strcmp(p, "spill") == 0;
    if (strcmp(p, "journal") == 0)
        return true;
    return (p = digits(p)) != NULL && *p == '\0';
}

static int remove_in(const char *dir, const char *run_id, bool spill, int *n, rt_err *err)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0; /* absent or unreadable: nothing of ours can be there */
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!rd_is_run_object(e->d_name, run_id, spill))
            continue;
        char path[RD_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0)
            (*n)++;
        else if (errno != ENOENT && rc == 0)
            rc = err_set(err, -errno, "cannot remove %s: %s", path, strerror(errno));
    }
    closedir(d);
    return rc;
}

int rd_remove_state(const char *run_id, const char *spill_dir, int *n, rt_err *err)
{
    int count = 0, rc = 0;
    const char *env = getenv(BS_ENV_DIR);
    const char *dirs[] = {env != NULL && env[0] ? env : NULL, BS_DIR_HUGETLB, BS_DIR_SHM};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (dirs[i] == NULL)
            continue;
        int r = remove_in(dirs[i], run_id, false, &count, err);
        rc = rc < 0 ? rc : r;
    }
    if (spill_dir != NULL) {
        int r = remove_in(spill_dir, run_id, true, &count, err);
        rc = rc < 0 ? rc : r;
    }
    if (n != NULL)
        *n = count;
    return rc;
}

void rd_log_tail(const char *path, int n, const char *indent, char *out, size_t len)
{
    out[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[16384 + 1];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t start = end > 16384 ? end - 16384 : 0;
    ssize_t got = pread(fd, buf, (size_t)(end - start), start);
    close(fd);
    if (got <= 0)
        return;
    buf[got] = '\0';
    while (got > 0 && buf[got - 1] == '\n')
        buf[--got] = '\0';
    char *p = buf + got;
    for (int k = 0; k < n && p > buf; k++) {
        p--;
        while (p > buf && p[-1] != '\n')
            p--;
    }
    size_t used = 0;
    while (*p && used + 1 < len) {
        char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        int w = snprintf(out + used, len - used, "%s%.*s\n", indent, (int)l, p);
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
        p += l + (nl != NULL);
    }
    if (used > 0 && out[used - 1] == '\n')
        out[used - 1] = '\0';
}
