/*
 * ramtrain clean: removes what a run keeps outside its run directory — the
 * layer blocks, the paramserver shards' undo journals and the batch ring in
 * shared memory and, given --spill-dir,
 * the spill files — so
 * the memory comes back and the run id can start over. A paramserver never
 * removes them on its own except at the end of a run (Shutdown with
 * remove_state): they are the run's state between restarts.
 *
 * It looks wherever the block store creates objects (RAMTRAIN_SHM_DIR,
 * /dev/hugepages, /dev/shm) for "ramtrain.<run-id>.<shard>.<block>" and
 * "ramtrain.<run-id>.<shard>.journal", and removes only names of exactly
 * those forms.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orchestrator/cli.h"
#include "orchestrator/run_dir.h"
#include "storage/blockstore.h"

static int remove_matching(const char *dir, const char *run_id, bool spill, int *n)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (!rd_is_run_object(e->d_name, run_id, spill))
            continue;
        char path[4352];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) {
            (*n)++;
            printf("removed %s\n", path);
        } else if (errno != ENOENT) {
            cli_error("clean", "cannot remove %s: %s", path, strerror(errno));
            rc = -errno;
        }
    }
    closedir(d);
    return rc;
}

int cmd_clean(int argc, char **argv)
{
    static const struct option opts[] = {
        {"run-id", required_argument, 0, 'r'},
        {"spill-dir", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *run_id = NULL, *spill_dir = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'r': run_id = optarg; break;
        case 's': spill_dir = optarg; break;
        case 'h': printf("usage: ramtrain clean --run-id ID [--spill-dir DIR]\n"); return CLI_OK;
        default: cli_bad_option("clean", argc, argv, optind); return CLI_USAGE;
        }
    }
    if (optind < argc) {
        cli_error("clean", "unexpected argument '%s'", argv[optind]);
        return CLI_USAGE;
    }
    if (run_id == NULL) {
        cli_error("clean", "--run-id is required (the run whose shared memory to remove)");
        return CLI_USAGE;
    }
    rt_err err = {{0}};
    if (bs_run_id_check(run_id, &err) < 0) {
        cli_error("clean", "--run-id: %s", err.msg);
        return CLI_USAGE;
    }
    int n = 0, rc = 0;
    const char *env = getenv(BS_ENV_DIR);
    const char *dirs[] = {env != NULL && env[0] ? env : NULL, BS_DIR_HUGETLB, BS_DIR_SHM};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
        if (dirs[i] != NULL && remove_matching(dirs[i], run_id, false, &n) < 0)
            rc = -1;
    if (spill_dir != NULL && remove_matching(spill_dir, run_id, true, &n) < 0)
        rc = -1;
    printf("%d object%s of run %s removed\n", n, n == 1 ? "" : "s", run_id);
    return rc < 0 ? CLI_FAIL : CLI_OK;
}
