/*
 * fio_ref: fio as a subprocess, its JSON report parsed with jansson.
 */
#include "bench/fio_ref.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int fio_find(char *path, size_t len)
{
    const char *env = getenv("PATH");
    char dirs[8192];
    snprintf(dirs, sizeof dirs, "%s", env ? env : "/usr/bin:/bin");
    for (char *save, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(path, len, "%s/fio", d);
        if (access(path, X_OK) == 0)
            return 0;
    }
    fprintf(stderr, "fio not found in PATH; it is this benchmark's reference: install the "
                    "Debian package 'fio'\n");
    return -1;
}

double fio_seq(const char *fio, const char *file, bool write, uint64_t bs, unsigned depth,
               uint64_t size)
{
    char a_file[4200], a_bs[64], a_depth[64], a_size[64];
    snprintf(a_file, sizeof a_file, "--filename=%s", file);
    snprintf(a_bs, sizeof a_bs, "--bs=%llu", (unsigned long long)bs);
    snprintf(a_depth, sizeof a_depth, "--iodepth=%u", depth);
    snprintf(a_size, sizeof a_size, "--size=%llu", (unsigned long long)size);
    char *argv[] = {(char *)fio, "--name=ref", a_file, write ? "--rw=write" : "--rw=read", a_bs,
                    a_depth, a_size, "--direct=1", "--ioengine=io_uring", "--output-format=json",
                    NULL};
    int pfd[2];
    if (pipe(pfd) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execv(fio, argv);
        _exit(127);
    }
    close(pfd[1]);
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    ssize_t r;
    while (out != NULL && (r = read(pfd[0], out + n, cap - n - 1)) > 0) {
        n += (size_t)r;
        if (n + 1 == cap) {
            char *p = realloc(out, cap *= 2);
            if (p == NULL) {
                free(out);
                out = NULL;
            }
            out = p;
        }
    }
    close(pfd[0]);
    int status;
    waitpid(pid, &status, 0);
    if (out == NULL || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "fio failed on %s (status %d)\n", file, status);
        free(out);
        return -1;
    }
    out[n] = '\0';
    json_error_t jerr;
    char *start = strchr(out, '{');
    json_t *root = start ? json_loads(start, JSON_DISABLE_EOF_CHECK, &jerr) : NULL;
    double bw = -1;
    json_t *job = root ? json_array_get(json_object_get(root, "jobs"), 0) : NULL;
    json_t *v = job ? json_object_get(json_object_get(job, write ? "write" : "read"), "bw_bytes")
                    : NULL;
    if (v != NULL && json_is_integer(v))
        bw = (double)json_integer_value(v);
    else
        fprintf(stderr, "fio's JSON report has no jobs[0].%s.bw_bytes\n", write ? "write" : "read");
    json_decref(root);
    free(out);
    return bw;
}
