/*
 * fio_ref: fio as a subprocess, its JSON report read from a pipe and parsed
 * with jansson.
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
    const char *dirs = getenv("PATH");
    if (dirs == NULL || *dirs == '\0')
        dirs = "/usr/local/bin:/usr/bin:/bin";
    while (*dirs) {
        const char *colon = strchr(dirs, ':');
        size_t n = colon ? (size_t)(colon - dirs) : strlen(dirs);
        snprintf(path, len, "%.*s/fio", (int)n, n ? dirs : ".");
        if (access(path, X_OK) == 0)
            return 0;
        dirs += n + (colon ? 1 : 0);
    }
    fprintf(stderr, "fio not found in PATH; it is this benchmark's reference: install the "
                    "Debian package 'fio'\n");
    return -1;
}

/* Runs argv (argv[0] the executable) and returns its whole stdout as a
 * NUL-terminated heap string, or NULL after printing why (also when it
 * exits other than 0). */
static char *run_capture(char *const argv[])
{
    int p[2];
    if (pipe(p) != 0) {
        perror("fio: pipe");
        return NULL;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fio: fork");
        close(p[0]);
        close(p[1]);
        return NULL;
    }
    if (pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        close(p[0]);
        close(p[1]);
        execv(argv[0], argv);
        fprintf(stderr, "fio: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap); /* [cap] bytes, out[0..len) read so far */
    ssize_t got;
    while (out != NULL && (got = read(p[0], out + len, cap - len - 1)) > 0) {
        len += (size_t)got;
        if (cap - len < 1024) {
            char *grown = realloc(out, cap * 2);
            if (grown == NULL) {
                free(out);
                out = NULL;
                break;
            }
            out = grown;
            cap *= 2;
        }
    }
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    if (out == NULL) {
        fprintf(stderr, "fio: no memory for %s's output\n", argv[0]);
        return NULL;
    }
    out[len] = '\0';
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "fio: %s failed (status %d): %s\n", argv[0], status, out);
        free(out);
        return NULL;
    }
    return out;
}

double fio_seq(const char *fio, const char *file, bool write, uint64_t bs, unsigned depth,
               uint64_t size, char *version, size_t vlen)
{
    const char *rw = write ? "write" : "read";
    char a_file[4200], a_rw[32], a_bs[64], a_depth[64], a_size[64];
    snprintf(a_file, sizeof a_file, "--filename=%s", file);
    snprintf(a_rw, sizeof a_rw, "--rw=%s", rw);
    snprintf(a_bs, sizeof a_bs, "--bs=%llu", (unsigned long long)bs);
    snprintf(a_depth, sizeof a_depth, "--iodepth=%u", depth);
    snprintf(a_size, sizeof a_size, "--size=%llu", (unsigned long long)size);
    char *argv[] = {(char *)fio, "--name=ref", a_file, a_rw, a_bs, a_depth, a_size, "--direct=1",
                    "--ioengine=io_uring", "--output-format=json", NULL};
    char *out = run_capture(argv);
    if (out == NULL)
        return -1;
    double bw = -1;
    char *start = strchr(out, '{'); /* fio may print notes before the JSON */
    json_error_t jerr;
    json_t *root = start ? json_loads(start, JSON_DISABLE_EOF_CHECK, &jerr) : NULL;
    if (root == NULL) {
        fprintf(stderr, "fio: the output on %s is not JSON (%s): %.200s\n", file,
                start ? jerr.text : "no '{'", out);
        goto cleanup;
    }
    const char *ver = json_string_value(json_object_get(root, "fio version"));
    if (version != NULL && ver != NULL)
        snprintf(version, vlen, "%s", ver);
    json_t *job = json_array_get(json_object_get(root, "jobs"), 0);
    json_t *v = json_object_get(json_object_get(job, rw), "bw_bytes");
    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        fprintf(stderr, "fio: the JSON report on %s has no positive jobs[0].%s.bw_bytes\n", file, rw);
        goto cleanup;
    }
    bw = (double)json_integer_value(v);

cleanup:
    json_decref(root);
    free(out);
    return bw;
}
