/*
 * topo: where the parameter server's memory and optimizer threads go on a
 * machine with several NUMA nodes (DESIGN.md §1, §7), through hwloc.
 *
 * Placement policies, one string from the config (shared by topo_place,
 * topo_place_describe and topo_cpus):
 *   "none"          leave placement to the kernel (first touch);
 *   "interleave"    spread each block's pages round-robin over every NUMA node
 *                   this process may allocate on: the optimizer, which sweeps
 *                   all blocks with threads on all cores, sees the sum of the
 *                   nodes' bandwidth;
 *   "gpu:<bus id>"  bind the pages to the NUMA node(s) nearest the PCI device
 *                   with that bus id ("0000:65:00.0", as cudaDeviceGetPCIBusId
 *                   or nvidia-smi print it), so copy engines read local memory,
 *                   and run the optimizer threads on that node's cores only.
 * On a machine (or cgroup) with one NUMA node every policy is a no-op that
 * says so; "gpu:" still checks that the device exists, so a config with a
 * wrong bus id fails on the laptop as it would on the server.
 *
 * Placement is a memory policy set on a mapping before its pages are first
 * touched (mbind through hwloc_set_area_membind); on tmpfs it becomes the
 * shared policy of the object, which pages allocated later (fallocate, a
 * restarted process's faults) follow too.
 *
 * Threads: a topo is loaded once per process (loading reads sysfs: tens of
 * milliseconds) and is then only read; the functions may be called from any
 * one thread at a time. Rejected: libnuma directly. It knows nodes but not
 * PCI locality nor cores vs hyperthreads, which topo_cpus needs.
 */
#ifndef RAMTRAIN_STORAGE_TOPO_H
#define RAMTRAIN_STORAGE_TOPO_H

#include <stddef.h>

#include "storage/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct topo topo;

#define TOPO_REPORT_LEN 256               /* enough for any topo_place_describe report */

/* Loads the machine's topology, PCI devices included. *out is owned by the
 * caller (topo_close). Blocks while hwloc reads sysfs. 0 or a negative errno. */
int topo_open(topo **out, rt_err *err);

/* For tests: a made-up machine from an hwloc synthetic description, e.g.
 * "pack:2 numa:1 core:4 pu:2" (no PCI devices). Placement on it resolves
 * and reports as on a real machine, but binds nothing. */
int topo_open_synthetic(const char *description, topo **out, rt_err *err);

/* Frees t. Safe on NULL. */
void topo_close(topo *t);

/* "1 NUMA node, 2 cores, 2 PUs": what this process may use. Owned by t. */
const char *topo_describe(const topo *t);

/* NUMA nodes this process may allocate memory on (>= 1). */
int topo_n_numa(const topo *t);

/* Checks policy and resolves it without placing anything; writes what
 * topo_place does with it into report (a line for the service log, e.g.
 * "blocks interleaved over 2 NUMA nodes", "1 NUMA node: no placement",
 * "blocks bound to NUMA node 1, nearest GPU 0000:65:00.0"). report may be
 * NULL. 0, or -EINVAL for a malformed policy, -ENODEV for a PCI device that
 * is not there; the message names the policy. */
int topo_place_describe(topo *t, const char *policy, char *report, size_t report_len,
                        rt_err *err);

/* Sets the memory policy of [addr, addr + len) (page aligned) to policy;
 * call it before the pages are first touched. A no-op (0) for "none" and on
 * one NUMA node. Errors as topo_place_describe, or the mbind errno. */
int topo_place(topo *t, void *addr, size_t len, const char *policy, rt_err *err);

/* Fills cpus[0..max) with the OS ids of the CPUs for the optimizer threads:
 * one PU per core, cores in hwloc order (grouped by package and node), only
 * CPUs the calling thread may run on (its sched_getaffinity mask, within the
 * cgroup's cpuset) and, with "gpu:<bus id>", only cores local to that
 * device. Returns how many were written (>= 1, <= max), or a negative errno
 * (-ENODEV when no allowed core is local to the device). */
int topo_cpus(topo *t, const char *policy, int *cpus, int max, rt_err *err);

#ifdef __cplusplus
}
#endif

#endif
