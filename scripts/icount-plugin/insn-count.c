/*
 * insn-count: a QEMU TCG plugin that counts the guest instructions each vCPU executes (all
 * exception levels together: EL0-EL3 code is all translated by TCG) and writes the totals
 * through qemu_plugin_outs() when QEMU exits, i.e. into the -D log when `-d plugin` is given.
 *
 *   qemu-system-aarch64 ... -plugin ./insn-count.so[,mode=insn|tb] -d plugin -D counts.txt
 *
 * Output, one line each:
 *   insn-count: cpu<N>=<instructions>
 *   insn-count: total=<instructions> vcpus=<N> mode=<mode>
 *
 * guest_below=ADDR also prints `insn-count: first_guest_total=<instructions>` and
 * `first_guest_pc=`: the total of all vCPUs when vCPU 0, after running code at or above ADDR (a
 * hypervisor linked high, e.g. Bulkhead's IMAGE_VA), first enters a block below it: a guest's
 * first instruction. Exact with one CPU; with several, CPU 0 may run low code (or no guest)
 * first, which first_guest_pc shows.
 *
 * mode=insn (default) counts every executed instruction: exact, also when a translation block
 * is left early by an exception or interrupt. mode=tb adds a block's length once per block
 * entry: about twice as fast, but also counts the rest of a block that was left early.
 * With `-icount shift=0` one instruction is one nanosecond of guest time, so the counts and the
 * guest's clock agree and are the same on every run.
 *
 * Why a callback and not QEMU's inline scoreboard ops (qemu_plugin_register_vcpu_*_inline_per_vcpu,
 * no call per instruction): in QEMU 10.0.2 those abort with `arm_mmu_idx_el: code should not be
 * reached` as soon as `-icount` and more than one vCPU are combined; the callbacks work. Each
 * vCPU only writes its own counter (slots padded to a cache line), so no lock is needed.
 *
 * Built by build.sh against the qemu-plugin.h of the installed QEMU. QEMU's plugin API is
 * GPL-2.0-or-later, and so is this file.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

/* One counter per vCPU, each on its own cache line (vCPU threads run in parallel under MTTCG). */
struct vcpu_count {
    uint64_t insns;
    char pad[64 - sizeof(uint64_t)];
};
static struct vcpu_count *counts;
static unsigned int max_vcpus;
static int exact = 1;
static uint64_t guest_below;
static int seen_high, first_guest_done;
static uint64_t first_guest_total, first_guest_pc;

static void on_tb_exec_mark(unsigned int vcpu, void *vaddr)
{
    if (vcpu != 0 || first_guest_done) {
        return;
    }
    if ((uintptr_t)vaddr >= guest_below) {
        seen_high = 1;
    } else if (seen_high) {
        first_guest_done = 1;
        first_guest_pc = (uintptr_t)vaddr;
        for (unsigned int cpu = 0; cpu < max_vcpus; cpu++) {
            first_guest_total += counts[cpu].insns;
        }
    }
}

static void on_exec_add(unsigned int vcpu, void *insns)
{
    if (vcpu < max_vcpus) {
        counts[vcpu].insns += (uintptr_t)insns;
    }
}

static void on_tb_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);

    if (guest_below != 0) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb_exec_mark, QEMU_PLUGIN_CB_NO_REGS,
                                             (void *)(uintptr_t)qemu_plugin_tb_vaddr(tb));
    }
    if (!exact) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec_add, QEMU_PLUGIN_CB_NO_REGS,
                                             (void *)(uintptr_t)n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        qemu_plugin_register_vcpu_insn_exec_cb(qemu_plugin_tb_get_insn(tb, i), on_exec_add,
                                               QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)1);
    }
}

static void on_qemu_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    char line[128];
    unsigned int vcpus = (unsigned int)qemu_plugin_num_vcpus();
    uint64_t total = 0;

    if (vcpus > max_vcpus) {
        vcpus = max_vcpus;
    }
    for (unsigned int cpu = 0; cpu < vcpus; cpu++) {
        snprintf(line, sizeof(line), "insn-count: cpu%u=%" PRIu64 "\n", cpu, counts[cpu].insns);
        qemu_plugin_outs(line);
        total += counts[cpu].insns;
    }
    snprintf(line, sizeof(line), "insn-count: total=%" PRIu64 " vcpus=%u mode=%s\n", total, vcpus,
             exact ? "insn" : "tb");
    qemu_plugin_outs(line);
    if (first_guest_done) {
        snprintf(line, sizeof(line), "insn-count: first_guest_total=%" PRIu64 "\n",
                 first_guest_total);
        qemu_plugin_outs(line);
        snprintf(line, sizeof(line), "insn-count: first_guest_pc=%#" PRIx64 "\n", first_guest_pc);
        qemu_plugin_outs(line);
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "mode=insn") == 0) {
            exact = 1;
        } else if (strcmp(argv[i], "mode=tb") == 0) {
            exact = 0;
        } else if (strncmp(argv[i], "guest_below=", 12) == 0) {
            guest_below = strtoull(argv[i] + 12, NULL, 0);
        } else {
            fprintf(stderr, "insn-count: unknown option '%s' (mode=insn|tb, guest_below=ADDR)\n",
                    argv[i]);
            return -1;
        }
    }
    if (!info->system_emulation) {
        fprintf(stderr, "insn-count: system emulation only\n");
        return -1;
    }
    max_vcpus = info->system.max_vcpus > 0 ? (unsigned int)info->system.max_vcpus : 1;
    counts = calloc(max_vcpus, sizeof(*counts));
    if (counts == NULL) {
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_translate);
    qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
    return 0;
}
