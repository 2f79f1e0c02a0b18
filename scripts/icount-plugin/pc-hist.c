/*
 * pc-hist: a QEMU TCG plugin that counts how often each instruction at or above a virtual
 * address runs (all vCPUs together) and writes one line per executed address through
 * qemu_plugin_outs() when QEMU exits, i.e. into the -D log when `-d plugin` is given:
 *
 *   qemu-system-aarch64 ... -plugin ./pc-hist.so,low=0x7f0000000000 -d plugin -D hist.txt
 *
 *   pc-hist: <address, decimal> <executions>
 *
 * For Bulkhead, low= is its IMAGE_VA: only EL2 code runs there, so the guest's instructions
 * are not counted (nor slowed down by a callback). scripts/profile-el2.sh runs a probe
 * micro-benchmark twice with it and prints EL2 instructions per operation by function.
 *
 * Counters are updated atomically and the table is locked at translation time, so MTTCG
 * is fine too (the counts are exact; -icount makes them repeatable).
 *
 * Built by build.sh against the qemu-plugin.h of the installed QEMU. QEMU's plugin API is
 * GPL-2.0-or-later, and so is this file.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

static uint64_t low;
/* Address -> heap-allocated counter; counters live until QEMU exits. */
static GHashTable *counters;
static GMutex lock;

static void on_insn_exec(unsigned int vcpu, void *counter)
{
    (void)vcpu;
    __atomic_fetch_add((uint64_t *)counter, 1, __ATOMIC_RELAXED);
}

static void on_tb_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);

    g_mutex_lock(&lock);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        if (pc < low) {
            continue;
        }
        uint64_t *counter = g_hash_table_lookup(counters, &pc);
        if (counter == NULL) {
            uint64_t *key = g_new(uint64_t, 1);
            *key = pc;
            counter = g_new0(uint64_t, 1);
            g_hash_table_insert(counters, key, counter);
        }
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_insn_exec, QEMU_PLUGIN_CB_NO_REGS,
                                               counter);
    }
    g_mutex_unlock(&lock);
}

static void on_qemu_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    GHashTableIter iter;
    gpointer key, value;
    GString *out = g_string_new(NULL);

    g_mutex_lock(&lock);
    g_hash_table_iter_init(&iter, counters);
    while (g_hash_table_iter_next(&iter, &key, &value)) {
        uint64_t count = __atomic_load_n((uint64_t *)value, __ATOMIC_RELAXED);
        if (count != 0) {
            g_string_append_printf(out, "pc-hist: %" PRIu64 " %" PRIu64 "\n", *(uint64_t *)key,
                                   count);
        }
    }
    g_mutex_unlock(&lock);
    qemu_plugin_outs(out->str);
    g_string_free(out, TRUE);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "low=", 4) == 0) {
            low = strtoull(argv[i] + 4, NULL, 0);
        } else {
            fprintf(stderr, "pc-hist: unknown option %s (low=ADDR)\n", argv[i]);
            return -1;
        }
    }
    counters = g_hash_table_new(g_int64_hash, g_int64_equal);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_translate);
    qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
    return 0;
}
