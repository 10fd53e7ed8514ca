/*
 * topo: NUMA placement and optimizer CPUs through hwloc (see topo.h).
 *
 * The topology is loaded with PCI devices (all of them, not only the
 * "important" classes, so any bus id a user names can be found) but without
 * bridges and OS devices: locality needs only the device's first non-I/O
 * ancestor, and skipping the OS-device plugins (CUDA, NVML, OpenCL) keeps
 * topo_open fast and free of GPU driver calls.
 *
 * hwloc drops the CPUs and nodes outside the process's cgroup cpuset at load,
 * so "the machine" here is what this process may use. A NUMA node counts
 * only when it has memory: memory-less nodes (CPU-only on some AMD NPS
 * settings) hold no pages, and counting them would misreport the interleave.
 *
 * Rejected: binding optimizer threads here. topo_cpus only lists CPU ids; the
 * thread pool pins its own threads, so this module owns no threads.
 */
#include "storage/topo.h"

#include <errno.h>
#include <hwloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct topo {
    hwloc_topology_t h;
    hwloc_bitmap_t mem_nodes;             /* allowed NUMA nodes that have memory */
    int n_numa;                           /* weight of mem_nodes, >= 1 */
    char desc[128];                       /* topo_describe */
};

enum place_kind { PLACE_NONE, PLACE_INTERLEAVE, PLACE_BIND };

/* A resolved policy: what to do with the pages and which CPUs are local. */
struct placement {
    enum place_kind kind;
    hwloc_bitmap_t nodes;                 /* PLACE_INTERLEAVE / PLACE_BIND: the nodeset */
    hwloc_bitmap_t cpus;                  /* CPUs local to the policy's memory */
    char report[TOPO_REPORT_LEN];
};

static const char POLICIES[] = "\"none\", \"interleave\" or \"gpu:<PCI bus id>\"";

static int topo_load(hwloc_topology_t h, const char *synthetic, rt_err *err)
{
    if (synthetic != NULL && hwloc_topology_set_synthetic(h, synthetic) != 0)
        return err_set(err, -EINVAL, "topology: synthetic description \"%s\" is not valid",
                       synthetic);
    if (hwloc_topology_set_type_filter(h, HWLOC_OBJ_PCI_DEVICE, HWLOC_TYPE_FILTER_KEEP_ALL) != 0 ||
        hwloc_topology_set_type_filter(h, HWLOC_OBJ_BRIDGE, HWLOC_TYPE_FILTER_KEEP_NONE) != 0 ||
        hwloc_topology_set_type_filter(h, HWLOC_OBJ_OS_DEVICE, HWLOC_TYPE_FILTER_KEEP_NONE) != 0)
        return err_set(err, -errno, "topology: hwloc type filters: %s", strerror(errno));
    if (hwloc_topology_load(h) != 0)
        return err_set(err, -errno, "topology: hwloc could not read the machine: %s",
                       strerror(errno));
    return 0;
}

/* The CPUs the calling thread may run on: its affinity within the topology. */
static int topo_allowed_cpus(topo *t, hwloc_bitmap_t out, rt_err *err)
{
    if (hwloc_bitmap_copy(out, hwloc_topology_get_allowed_cpuset(t->h)) != 0)
        return err_set(err, -ENOMEM, "topology: out of memory");
    if (!hwloc_topology_is_thissystem(t->h))
        return 0; /* a made-up machine: no affinity to ask for */
    hwloc_bitmap_t bound = hwloc_bitmap_alloc();
    if (bound == NULL)
        return err_set(err, -ENOMEM, "topology: out of memory");
    int rc = 0;
    if (hwloc_get_cpubind(t->h, bound, HWLOC_CPUBIND_THREAD) != 0)
        rc = err_set(err, -errno, "topology: reading this thread's CPU affinity: %s",
                     strerror(errno));
    else
        hwloc_bitmap_and(out, out, bound);
    hwloc_bitmap_free(bound);
    return rc;
}

/* Cores (or PUs, where hwloc finds no cores) with a CPU in set. */
static int count_cores(hwloc_topology_t h, hwloc_const_bitmap_t set, int *pus)
{
    hwloc_obj_type_t type = hwloc_get_nbobjs_by_type(h, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE
                                                                             : HWLOC_OBJ_PU;
    int n = 0;
    for (hwloc_obj_t o = NULL; (o = hwloc_get_next_obj_by_type(h, type, o)) != NULL;)
        n += hwloc_bitmap_intersects(o->cpuset, set);
    *pus = hwloc_bitmap_weight(set);
    return n;
}

static int topo_open_impl(const char *synthetic, topo **out, rt_err *err)
{
    int rc;
    hwloc_bitmap_t cpus = NULL;
    topo *t = calloc(1, sizeof *t);
    *out = NULL;
    if (t == NULL)
        return err_set(err, -ENOMEM, "topology: out of memory");
    if (hwloc_topology_init(&t->h) != 0) {
        t->h = NULL;
        rc = err_set(err, -ENOMEM, "topology: hwloc_topology_init failed");
        goto cleanup;
    }
    rc = topo_load(t->h, synthetic, err);
    if (rc != 0)
        goto cleanup;

    t->mem_nodes = hwloc_bitmap_alloc();
    cpus = hwloc_bitmap_alloc();
    if (t->mem_nodes == NULL || cpus == NULL) {
        rc = err_set(err, -ENOMEM, "topology: out of memory");
        goto cleanup;
    }
    for (hwloc_obj_t n = NULL; (n = hwloc_get_next_obj_by_type(t->h, HWLOC_OBJ_NUMANODE, n));)
        if (n->attr->numanode.local_memory > 0)
            hwloc_bitmap_set(t->mem_nodes, n->os_index);
    /* Without memory sizes (some virtual machines report none), every node. */
    if (hwloc_bitmap_iszero(t->mem_nodes))
        hwloc_bitmap_copy(t->mem_nodes, hwloc_topology_get_allowed_nodeset(t->h));
    hwloc_bitmap_and(t->mem_nodes, t->mem_nodes, hwloc_topology_get_allowed_nodeset(t->h));
    t->n_numa = hwloc_bitmap_weight(t->mem_nodes);
    if (t->n_numa < 1) {
        rc = err_set(err, -ENODEV, "topology: hwloc found no NUMA node this process may use");
        goto cleanup;
    }

    rc = topo_allowed_cpus(t, cpus, err);
    if (rc != 0)
        goto cleanup;
    int pus;
    int cores = count_cores(t->h, cpus, &pus);
    snprintf(t->desc, sizeof t->desc, "%d NUMA node%s, %d core%s, %d PU%s", t->n_numa,
             t->n_numa == 1 ? "" : "s", cores, cores == 1 ? "" : "s", pus, pus == 1 ? "" : "s");
    *out = t;
    t = NULL;
cleanup:
    hwloc_bitmap_free(cpus);
    topo_close(t);
    return rc;
}

int topo_open(topo **out, rt_err *err)
{
    return topo_open_impl(NULL, out, err);
}

int topo_open_synthetic(const char *description, topo **out, rt_err *err)
{
    if (description == NULL)
        return err_set(err, -EINVAL, "topology: no synthetic description given");
    return topo_open_impl(description, out, err);
}

void topo_close(topo *t)
{
    if (t == NULL)
        return;
    hwloc_bitmap_free(t->mem_nodes);
    if (t->h != NULL)
        hwloc_topology_destroy(t->h);
    free(t);
}

const char *topo_describe(const topo *t)
{
    return t->desc;
}

int topo_n_numa(const topo *t)
{
    return t->n_numa;
}

/* Parses "[domain:]bus:dev.fn" (hex; the domain up to 8 digits, as
 * nvidia-smi prints it) into v = {domain, bus, dev, fn}. 0 or -1. */
static int parse_busid(const char *s, unsigned v[4])
{
    size_t len = strlen(s);
    int colons = 0, dots = 0;
    if (len == 0 || len > 20 || strspn(s, "0123456789abcdefABCDEF:.") != len)
        return -1;
    for (const char *q = s; *q != '\0'; q++) {
        colons += *q == ':';
        dots += *q == '.';
    }
    const char *dot = strchr(s, '.');
    if (dots != 1 || (colons != 1 && colons != 2) || strchr(dot, ':') != NULL)
        return -1;
    /* Every field has at least one digit: no "::" and no empty ends. */
    if (s[0] == ':' || dot[1] == '\0' || dot[-1] == ':' || strstr(s, "::") != NULL)
        return -1;
    int used = -1;
    v[0] = 0;
    if (colons == 2)
        sscanf(s, "%8x:%2x:%2x.%1x%n", &v[0], &v[1], &v[2], &v[3], &used);
    else
        sscanf(s, "%2x:%2x.%1x%n", &v[1], &v[2], &v[3], &used);
    if (used != (int)len || v[2] > 0x1f || v[3] > 7)
        return -1;
    return 0;
}

static void placement_free(struct placement *p)
{
    hwloc_bitmap_free(p->nodes);
    hwloc_bitmap_free(p->cpus);
    p->nodes = p->cpus = NULL;
}

/* Resolves policy into *p (freed with placement_free, also on failure). */
static int placement_resolve(topo *t, const char *policy, struct placement *p, rt_err *err)
{
    memset(p, 0, sizeof *p);
    p->nodes = hwloc_bitmap_dup(t->mem_nodes);
    p->cpus = hwloc_bitmap_dup(hwloc_topology_get_allowed_cpuset(t->h));
    if (p->nodes == NULL || p->cpus == NULL)
        return err_set(err, -ENOMEM, "topology: out of memory");
    if (policy == NULL)
        return err_set(err, -EINVAL, "placement policy missing: expected %s", POLICIES);

    if (strcmp(policy, "none") == 0) {
        p->kind = PLACE_NONE;
        snprintf(p->report, sizeof p->report, "placement \"none\": pages go where first touched");
        return 0;
    }
    if (strcmp(policy, "interleave") == 0) {
        p->kind = t->n_numa > 1 ? PLACE_INTERLEAVE : PLACE_NONE;
        if (t->n_numa > 1)
            snprintf(p->report, sizeof p->report, "blocks interleaved over %d NUMA nodes",
                     t->n_numa);
        else
            snprintf(p->report, sizeof p->report, "1 NUMA node: no placement");
        return 0;
    }
    if (strncmp(policy, "gpu:", 4) != 0)
        return err_set(err, -EINVAL, "placement policy \"%s\" is not one of %s", policy,
                       POLICIES);

    const char *busid = policy + 4;
    unsigned v[4];
    if (parse_busid(busid, v) != 0)
        return err_set(err, -EINVAL,
                       "placement policy \"%s\": \"%s\" is not a PCI bus id "
                       "(expected domain:bus:device.function in hex, e.g. 0000:65:00.0)",
                       policy, busid);
    hwloc_obj_t dev = hwloc_get_pcidev_by_busid(t->h, v[0], v[1], v[2], v[3]);
    if (dev == NULL) {
        int n_pci = hwloc_get_nbobjs_by_type(t->h, HWLOC_OBJ_PCI_DEVICE);
        if (n_pci == 0)
            return err_set(err, -ENODEV,
                           "placement policy \"%s\": no PCI device %04x:%02x:%02x.%x: hwloc "
                           "sees no PCI devices at all (is /sys/bus/pci readable here?)",
                           policy, v[0], v[1], v[2], v[3]);
        return err_set(err, -ENODEV,
                       "placement policy \"%s\": no PCI device %04x:%02x:%02x.%x on this "
                       "machine (hwloc sees %d PCI devices; `lspci -D` or `nvidia-smi "
                       "--query-gpu=pci.bus_id --format=csv` lists them)",
                       policy, v[0], v[1], v[2], v[3], n_pci);
    }
    hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(t->h, dev);
    if (anc != NULL && anc->nodeset != NULL)
        hwloc_bitmap_and(p->nodes, t->mem_nodes, anc->nodeset);
    if (anc != NULL && anc->cpuset != NULL)
        hwloc_bitmap_and(p->cpus, p->cpus, anc->cpuset);
    char id[32];
    snprintf(id, sizeof id, "%04x:%02x:%02x.%x", v[0], v[1], v[2], v[3]);
    if (t->n_numa == 1) {
        p->kind = PLACE_NONE;
        snprintf(p->report, sizeof p->report, "1 NUMA node: no placement (GPU %s is on it)", id);
        return 0;
    }
    if (hwloc_bitmap_iszero(p->nodes) || hwloc_bitmap_isequal(p->nodes, t->mem_nodes)) {
        /* The device hangs off the whole machine (firmware gives no locality):
         * nearest is every node, and spreading beats piling onto one. */
        hwloc_bitmap_copy(p->nodes, t->mem_nodes);
        p->kind = PLACE_INTERLEAVE;
        snprintf(p->report, sizeof p->report,
                 "GPU %s has no NUMA locality: blocks interleaved over %d NUMA nodes", id,
                 t->n_numa);
        return 0;
    }
    char list[64];
    hwloc_bitmap_list_snprintf(list, sizeof list, p->nodes);
    int w = hwloc_bitmap_weight(p->nodes);
    p->kind = PLACE_BIND;
    snprintf(p->report, sizeof p->report, "blocks bound to NUMA node%s %s, nearest GPU %s",
             w == 1 ? "" : "s", list, id);
    return 0;
}

int topo_place_describe(topo *t, const char *policy, char *report, size_t report_len,
                        rt_err *err)
{
    struct placement p;
    int rc = placement_resolve(t, policy, &p, err);
    if (rc == 0 && report != NULL && report_len > 0)
        snprintf(report, report_len, "%s", p.report);
    placement_free(&p);
    return rc;
}

int topo_place(topo *t, void *addr, size_t len, const char *policy, rt_err *err)
{
    struct placement p;
    int rc = placement_resolve(t, policy, &p, err);
    if (rc != 0 || p.kind == PLACE_NONE)
        goto cleanup;
    long page = sysconf(_SC_PAGESIZE);
    if ((uintptr_t)addr % (uintptr_t)page != 0) {
        rc = err_set(err, -EINVAL, "placement policy \"%s\": address %p is not page aligned",
                     policy, addr);
        goto cleanup;
    }
    hwloc_membind_policy_t mp =
        p.kind == PLACE_INTERLEAVE ? HWLOC_MEMBIND_INTERLEAVE : HWLOC_MEMBIND_BIND;
    if (hwloc_set_area_membind(t->h, addr, len, p.nodes, mp, HWLOC_MEMBIND_BYNODESET) != 0) {
        char list[64];
        hwloc_bitmap_list_snprintf(list, sizeof list, p.nodes);
        rc = err_set(err, -errno, "placement policy \"%s\": binding %zu bytes to NUMA nodes %s: %s",
                     policy, len, list, strerror(errno));
        goto cleanup;
    }
cleanup:
    placement_free(&p);
    return rc;
}

int topo_cpus(topo *t, const char *policy, int *cpus, int max, rt_err *err)
{
    hwloc_bitmap_t allowed = NULL, set = NULL;
    struct placement p;
    int rc = placement_resolve(t, policy, &p, err);
    if (rc != 0)
        goto cleanup;
    if (max < 1) {
        rc = err_set(err, -EINVAL, "optimizer CPUs: room for %d CPU ids, at least 1 needed", max);
        goto cleanup;
    }
    allowed = hwloc_bitmap_alloc();
    set = hwloc_bitmap_alloc();
    if (allowed == NULL || set == NULL) {
        rc = err_set(err, -ENOMEM, "topology: out of memory");
        goto cleanup;
    }
    rc = topo_allowed_cpus(t, allowed, err);
    if (rc != 0)
        goto cleanup;

    hwloc_obj_type_t type = hwloc_get_nbobjs_by_type(t->h, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE
                                                                                : HWLOC_OBJ_PU;
    int n = 0;
    for (hwloc_obj_t o = NULL; n < max && (o = hwloc_get_next_obj_by_type(t->h, type, o));) {
        hwloc_bitmap_and(set, o->cpuset, allowed);
        hwloc_bitmap_and(set, set, p.cpus);
        int cpu = hwloc_bitmap_first(set);
        if (cpu >= 0)
            cpus[n++] = cpu;
    }
    if (n == 0) {
        char local[64], mine[64];
        hwloc_bitmap_list_snprintf(local, sizeof local, p.cpus);
        hwloc_bitmap_list_snprintf(mine, sizeof mine, allowed);
        rc = err_set(err, -ENODEV,
                     "optimizer CPUs for placement policy \"%s\": none of the CPUs this thread "
                     "may run on (%s) is local to its memory (CPUs %s); widen the affinity "
                     "(taskset, cgroup cpuset) or choose another policy",
                     policy, mine, local);
        goto cleanup;
    }
    rc = n;
cleanup:
    hwloc_bitmap_free(allowed);
    hwloc_bitmap_free(set);
    placement_free(&p);
    return rc;
}
