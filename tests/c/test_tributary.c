/*
 * C test of the tributary C ABI (include/tributary.h): every exported function, its
 * success path and its error paths (NULL arguments, bad lines, oversized lines, a full
 * journal, a corrupt manifest, a corrupt journal row, a reader on uncommitted data, a
 * held lock, a lost lock, a busy journal, ...), on real files in a temporary folder.
 *
 * Built by scripts/test.d/30-c-abi.sh with -Wall -Wextra -Werror against the header and
 * target/release/libtributary.so, and run under valgrind (no leaks, no invalid reads).
 * Prints "N passed, N failed" last; exits 0 only if nothing failed.
 *
 * One file of ~1,800 lines on purpose: the whole C test is one program, so one valgrind
 * run checks every function of the ABI, and a C user reads it top to bottom as a guide.
 *
 * Usage: test_tributary            (the test)
 *        test_tributary --drain-child TARGET JOURNAL   (internal: one drain, exit code = rc)
 *        test_tributary --append-child JOURNAL         (internal: one append, exit code = rc)
 */
#define _GNU_SOURCE
#include "tributary.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int g_pass, g_fail;
static const char *g_argv0;
static char g_root[256];

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (cond) {                                                                 \
            g_pass++;                                                               \
        } else {                                                                    \
            g_fail++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                           \
    } while (0)

/* Check a call's result code; for a failure also that *err was filled in the same call
 * with the same kind and a message, then free it. `err` must be a local `trib_error *`
 * passed to the call as `&err`. */
static void expect_code(int want, int got, trib_error **err, const char *what, int line) {
    int ok = (got == want);
    if (want == TRIB_OK) {
        ok = ok && *err == NULL;
    } else {
        ok = ok && *err != NULL && trib_error_kind(*err) == want && trib_error_message(*err) != NULL &&
             strlen(trib_error_message(*err)) > 0;
    }
    if (ok) {
        g_pass++;
    } else {
        g_fail++;
        fprintf(stderr, "line %d: %s: want %d (%s), got %d (%s): %s\n", line, what, want, trib_result_name(want), got,
                trib_result_name(got), *err ? trib_error_message(*err) : "(no error object)");
    }
    trib_error_free(*err);
    *err = NULL;
}
#define EXPECT(want, call) expect_code((want), (call), &err, #call, __LINE__)

/* ---- helpers ------------------------------------------------------------------------ */

/* Every path buffer in this file is char[512]; a longer path is a test setup error. */
static void pathf(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pathf(char *out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, 512, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= 512) {
        fprintf(stderr, "path too long\n");
        exit(2);
    }
}

static const char *path_in(char *buf, const char *dir, const char *name) {
    pathf(buf, "%s/%s", dir, name);
    return buf;
}

static void make_dir(char *out, const char *name) {
    pathf(out, "%s/%s", g_root, name);
    if (mkdir(out, 0755) != 0) {
        perror(out);
        exit(2);
    }
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

static void append_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "ab");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* Whole file in a malloc'd buffer (NUL-terminated for convenience); *len gets its size. */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        *len = 0;
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    char *data = read_file(from, &n);
    if (!data) {
        perror(from);
        exit(2);
    }
    write_file(to, data, n);
    free(data);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static trib_journal *open_journal(const char *path, const trib_journal_options *opts) {
    trib_journal *j = NULL;
    trib_error *err = NULL;
    EXPECT(TRIB_OK, trib_journal_open(path, opts, &j, &err));
    if (!j) {
        fprintf(stderr, "cannot open journal %s\n", path);
        exit(2);
    }
    return j;
}

static uint64_t append_str(trib_journal *j, const char *line) {
    uint64_t seq = 0;
    trib_error *err = NULL;
    EXPECT(TRIB_OK, trib_journal_append(j, (const uint8_t *)line, strlen(line), &seq, &err));
    return seq;
}

static trib_drain_report drain_paths(const char *target, const char **paths, size_t n) {
    trib_drain_report rep;
    memset(&rep, 0, sizeof rep);
    trib_error *err = NULL;
    EXPECT(TRIB_OK, trib_drain(target, paths, n, NULL, NULL, &rep, &err));
    return rep;
}

/* Create a target once, as an application's setup does (drains never create one). */
static trib_init_report init_target(const char *target) {
    trib_init_report ir;
    memset(&ir, 0, sizeof ir);
    trib_error *err = NULL;
    EXPECT(TRIB_OK, trib_init(target, NULL, &ir, &err));
    CHECK(ir.created && strlen(ir.target_id) == 32);
    return ir;
}

/* True when the folder holds nothing (not even a hidden entry). */
static int dir_is_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 0;
    int empty = 1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = 0;
    }
    closedir(d);
    return empty;
}

/* Start one drain of `journal` into `target` in a child process (this program, with
 * --drain-child; its exit code is the drain's result code) with the failpoints
 * `failpoints` and, if not NULL, TRIBUTARY_FAILPOINT_DIR=`fpdir`. */
static pid_t spawn_drain_child(const char *target, const char *journal, const char *failpoints, const char *fpdir) {
    pid_t pid = fork();
    if (pid == 0) {
        char *args[] = {(char *)g_argv0, "--drain-child", (char *)target, (char *)journal, NULL};
        setenv("TRIBUTARY_FAILPOINTS", failpoints, 1);
        if (fpdir) setenv("TRIBUTARY_FAILPOINT_DIR", fpdir, 1);
        execv(g_argv0, args);
        _exit(127);
    }
    return pid;
}

/* Flip one byte of the manifest text in both slots of a target's lock file (slot A at
 * 0, slot B at 2 MiB; each a 16-byte header, then the text): a damaged slot falls back
 * to the other, so both, as a failing disk or a bad copy of the lock file would. */
static void damage_both_slots(const char *target) {
    char lockp[512];
    pathf(lockp, "%s.tributary/lock", target);
    int fd = open(lockp, O_RDWR);
    CHECK(fd >= 0);
    off_t at[2] = {16 + 20, (2 << 20) + 16 + 20};
    for (int i = 0; i < 2 && fd >= 0; i++) {
        char b = 0;
        CHECK(pread(fd, &b, 1, at[i]) == 1);
        b ^= 1;
        CHECK(pwrite(fd, &b, 1, at[i]) == 1);
    }
    if (fd >= 0) close(fd);
}

/* Take the target's lock as another holder would (an OFD lock on its lock file, which
 * conflicts with the library's own); close the returned descriptor to release it. */
static int hold_target_lock(const char *target) {
    char lockp[512];
    pathf(lockp, "%s.tributary/lock", target);
    int fd = open(lockp, O_RDWR);
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    CHECK(fd >= 0 && fcntl(fd, F_OFD_SETLK, &fl) == 0);
    return fd;
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_version_and_names(void) {
    trib_error *err = NULL;
    const char *v = trib_version();
    CHECK(v != NULL && strlen(v) >= 5 && strchr(v, '.') != NULL);
    CHECK(trib_abi_version() == TRIB_ABI_VERSION && TRIB_ABI_VERSION == 3);
    CHECK(strcmp(trib_result_name(TRIB_OK), "ok") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_INVALID_LINE), "invalid_line") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_INVALID_ARG), "invalid_argument") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_JOURNAL_FULL), "journal_full") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_LOCK_TIMEOUT), "lock_timeout") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_LOCK_LOST), "lock_lost") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_CORRUPT_MANIFEST), "corrupt_manifest") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_CORRUPT_JOURNAL_ROW), "corrupt_journal_row") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_TARGET_TRUNCATED), "target_truncated") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_UNEXPECTED_TAIL), "unexpected_tail") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_TORN_TARGET), "torn_target") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_JOURNAL_RESTORED), "journal_restored") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_JOURNAL_FOREIGN), "journal_foreign") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_UNSAFE_FILESYSTEM), "unsafe_filesystem") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_NOT_A_JOURNAL), "not_a_journal") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_IO), "io") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_SQLITE), "sqlite") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_JOURNAL_GONE), "journal_gone") == 0);
    CHECK(strcmp(trib_result_name(TRIB_E_TARGET_MISSING), "target_missing") == 0 && TRIB_E_TARGET_MISSING == 18);
    CHECK(strcmp(trib_result_name(TRIB_E_PANIC), "panic") == 0);
    CHECK(strcmp(trib_result_name(-7), "unknown") == 0);

    /* The error accessors on NULL never crash. */
    CHECK(trib_error_kind(NULL) == TRIB_E_INVALID_ARG);
    CHECK(trib_error_message(NULL) != NULL);
    CHECK(trib_error_line_index(NULL) == -1);
    trib_error_free(NULL);

    /* A panic inside the library is caught and reported, with or without err_out.
     * (Rust's panic hook prints each of these three panics to stderr: expected.) */
    fprintf(stderr, "(the next three \"trib_debug_panic was called\" panic messages are expected)\n");
    EXPECT(TRIB_E_PANIC, trib_debug_panic(&err));
    CHECK(trib_debug_panic(NULL) == TRIB_E_PANIC);
    CHECK(trib_debug_panic(&err) == TRIB_E_PANIC && err != NULL && strstr(trib_error_message(err), "panic") != NULL);
    CHECK(trib_error_line_index(err) == -1);
    trib_error_free(err);
    err = NULL;
}

static void test_options(void) {
    trib_error *err = NULL;
    trib_journal_options jo;
    trib_compactor_options co;
    EXPECT(TRIB_OK, trib_journal_options_default(&jo, &err));
    CHECK(jo.durability == TRIB_DURABILITY_FULL);
    CHECK(jo.max_line_bytes == 1u << 20);
    CHECK(jo.max_backlog_bytes == 0 && jo.full_wait_ms == 0);
    CHECK(jo.busy_timeout_ms > 0 && jo.key_retention_ms > 0);
    CHECK(!jo.allow_network_fs);
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_options_default(NULL, &err));
    CHECK(trib_journal_options_default(NULL, NULL) == TRIB_E_INVALID_ARG);

    EXPECT(TRIB_OK, trib_compactor_options_default(&co, &err));
    /* DESIGN: a round writes at most 64 MiB by default; the rest are the engine's choice. */
    CHECK(co.max_round_bytes >= 1 && co.max_round_bytes <= 64ull << 20);
    CHECK(co.max_round_time_ms > 0 && co.lock_timeout_ms > 0 && co.journal_busy_timeout_ms > 0);
    CHECK(co.max_line_bytes == 1u << 20 && !co.allow_network_fs);
    CHECK(!co.create); /* drains never create a target unless told to */
    EXPECT(TRIB_E_INVALID_ARG, trib_compactor_options_default(NULL, &err));
}

static void test_journal_open_errors(void) {
    char dir[512], p[512], q[512];
    trib_error *err = NULL;
    trib_journal *j = (trib_journal *)0x1; /* sentinel: must stay untouched on failure */
    trib_journal_options o;
    make_dir(dir, "open");
    path_in(p, dir, "a.journal");

    EXPECT(TRIB_E_INVALID_ARG, trib_journal_open(NULL, NULL, &j, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_open("", NULL, &j, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_open(p, NULL, NULL, &err));
    CHECK(trib_journal_open(NULL, NULL, &j, NULL) == TRIB_E_INVALID_ARG);

    trib_journal_options_default(&o, NULL);
    o.durability = 7;
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_open(p, &o, &j, &err));
    trib_journal_options_default(&o, NULL);
    o.max_line_bytes = 0;
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_open(p, &o, &j, &err));
    trib_journal_options_default(&o, NULL);
    o.busy_timeout_ms = UINT64_MAX; /* would overflow SQLite's int: refused, not a panic */
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_open(p, &o, &j, &err));
    trib_journal_options_default(&o, NULL);
    o.key_retention_ms = UINT64_MAX;
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_open(p, &o, &j, &err));
    CHECK(j == (trib_journal *)0x1);

    /* A folder that does not exist: an I/O error. */
    EXPECT(TRIB_E_IO, trib_journal_open("/nonexistent-tributary-dir/x.journal", NULL, &j, &err));
    /* Garbage, and an SQLite database that is not a journal. */
    path_in(q, dir, "garbage.journal");
    {
        char junk[8192];
        memset(junk, 'x', sizeof junk);
        write_file(q, junk, sizeof junk);
    }
    EXPECT(TRIB_E_NOT_A_JOURNAL, trib_journal_open(q, NULL, &j, &err));
    CHECK(j == (trib_journal *)0x1);

    /* A non-UTF-8 path is just bytes. */
    {
        char odd[512];
        pathf(odd, "%s/caf\xe9-\xff.journal", dir);
        trib_journal *jj = open_journal(odd, NULL);
        CHECK(append_str(jj, "from a latin-1 path") == 1);
        trib_journal_close(jj);
        struct stat st;
        CHECK(stat(odd, &st) == 0 && (st.st_mode & 0777) == 0600);
    }
    trib_journal_close(NULL);
}

static void test_append(void) {
    char dir[512], p[512], id[TRIB_ID_BUF_LEN];
    trib_error *err = NULL;
    trib_journal_options o;
    uint64_t seq = 999;
    make_dir(dir, "append");
    path_in(p, dir, "a.journal");
    trib_journal_options_default(&o, NULL);
    o.max_line_bytes = 16;
    o.durability = TRIB_DURABILITY_NORMAL;
    trib_journal *j = open_journal(p, &o);

    CHECK(append_str(j, "first") == 1);
    EXPECT(TRIB_OK, trib_journal_append(j, (const uint8_t *)"second", 6, &seq, &err));
    CHECK(seq == 2);
    /* (NULL, 0) is the empty line; seq_out is optional. */
    EXPECT(TRIB_OK, trib_journal_append(j, NULL, 0, NULL, &err));
    EXPECT(TRIB_OK, trib_journal_append(j, (const uint8_t *)"", 0, &seq, &err));
    CHECK(seq == 4);
    /* Any byte but \n, NULs included. */
    EXPECT(TRIB_OK, trib_journal_append(j, (const uint8_t *)"a\0b\xff", 4, &seq, &err));
    CHECK(seq == 5);

    /* Refused lines store nothing and leave seq_out alone. */
    seq = 777;
    EXPECT(TRIB_E_INVALID_LINE, trib_journal_append(j, (const uint8_t *)"bad\nline", 8, &seq, &err));
    CHECK(trib_journal_append(j, (const uint8_t *)"bad\nline", 8, &seq, &err) == TRIB_E_INVALID_LINE);
    CHECK(err && trib_error_line_index(err) == 0 && strstr(trib_error_message(err), "newline") != NULL);
    trib_error_free(err);
    err = NULL;
    EXPECT(TRIB_E_INVALID_LINE, trib_journal_append(j, (const uint8_t *)"0123456789abcdefX", 17, &seq, &err));
    EXPECT(TRIB_OK, trib_journal_append(j, (const uint8_t *)"0123456789abcdef", 16, NULL, &err));
    CHECK(seq == 777);

    /* NULL / wrong arguments. */
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_append(NULL, (const uint8_t *)"x", 1, &seq, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_append(j, NULL, 3, &seq, &err));
    CHECK(trib_journal_append(NULL, NULL, 0, NULL, NULL) == TRIB_E_INVALID_ARG);
    {
        /* A handle of another type is recognised, not trusted. */
        trib_reader *r = NULL;
        char t[512];
        path_in(t, dir, "t.log");
        EXPECT(TRIB_OK, trib_reader_open(t, 0, &r, &err));
        EXPECT(TRIB_E_INVALID_ARG, trib_journal_append((const trib_journal *)(const void *)r, (const uint8_t *)"x",
                                                       1, &seq, &err));
        trib_reader_close(r);
    }
    CHECK(seq == 777);

    /* Batches: all or nothing, consecutive seqs. */
    trib_slice batch[3] = {{(const uint8_t *)"b1", 2}, {NULL, 0}, {(const uint8_t *)"b3", 2}};
    EXPECT(TRIB_OK, trib_journal_append_batch(j, batch, 3, &seq, &err));
    CHECK(seq == 7);
    EXPECT(TRIB_OK, trib_journal_append_batch(j, batch, 1, NULL, &err));
    trib_backlog before, after;
    EXPECT(TRIB_OK, trib_journal_backlog(j, &before, &err));
    trib_slice bad[3] = {{(const uint8_t *)"ok", 2}, {(const uint8_t *)"ok", 2}, {(const uint8_t *)"no\n", 3}};
    CHECK(trib_journal_append_batch(j, bad, 3, &seq, &err) == TRIB_E_INVALID_LINE);
    CHECK(err && trib_error_kind(err) == TRIB_E_INVALID_LINE && trib_error_line_index(err) == 2);
    trib_error_free(err);
    err = NULL;
    EXPECT(TRIB_OK, trib_journal_backlog(j, &after, &err));
    CHECK(after.lines == before.lines && after.last_seq == before.last_seq);
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_append_batch(j, batch, 0, &seq, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_append_batch(j, NULL, 2, &seq, &err));
    trib_slice holes[2] = {{(const uint8_t *)"ok", 2}, {NULL, 5}};
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_append_batch(j, holes, 2, &seq, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_append_batch(NULL, batch, 3, &seq, &err));
    CHECK(seq == 7);

    /* Keyed appends: once per key. */
    uint64_t k1 = 0, k2 = 0, k3 = 0;
    EXPECT(TRIB_OK, trib_journal_append_keyed(j, (const uint8_t *)"key-1", 5, (const uint8_t *)"once", 4, &k1, &err));
    EXPECT(TRIB_OK, trib_journal_append_keyed(j, (const uint8_t *)"key-1", 5, (const uint8_t *)"once", 4, &k2, &err));
    EXPECT(TRIB_OK, trib_journal_append_keyed(j, (const uint8_t *)"key-2", 5, (const uint8_t *)"twice", 5, &k3, &err));
    CHECK(k1 > 0 && k1 == k2 && k3 == k1 + 1);
    EXPECT(TRIB_OK, trib_journal_append_keyed(j, (const uint8_t *)"key-3", 5, NULL, 0, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_append_keyed(j, NULL, 0, (const uint8_t *)"x", 1, &k1, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_append_keyed(j, NULL, 4, (const uint8_t *)"x", 1, &k1, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_append_keyed(j, (const uint8_t *)"k", 1, NULL, 1, &k1, &err));
    EXPECT(TRIB_E_INVALID_LINE, trib_journal_append_keyed(j, (const uint8_t *)"k", 1, (const uint8_t *)"\n", 1, &k1,
                                                          &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_append_keyed(NULL, (const uint8_t *)"k", 1, NULL, 0, &k1, &err));
    CHECK(k1 == k2);

    /* Backlog and id. */
    trib_backlog b;
    EXPECT(TRIB_OK, trib_journal_backlog(j, &b, &err));
    CHECK(b.last_seq == k3 + 1 && b.lines == b.last_seq && b.drained_seq == 0 && b.oldest_append_ms > 0);
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_backlog(j, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_backlog(NULL, &b, &err));
    memset(id, 'z', sizeof id);
    EXPECT(TRIB_OK, trib_journal_id(j, id, sizeof id, &err));
    CHECK(strlen(id) == 32 && strspn(id, "0123456789abcdef") == 32);
    char small[8] = "unchang";
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_id(j, small, sizeof small, &err));
    CHECK(strcmp(small, "unchang") == 0);
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_id(j, NULL, 64, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_id(NULL, id, sizeof id, &err));
    trib_journal_close(j);

    /* Reopening keeps the id and the seq counter. */
    char id2[TRIB_ID_BUF_LEN];
    j = open_journal(p, NULL);
    EXPECT(TRIB_OK, trib_journal_id(j, id2, sizeof id2, &err));
    CHECK(strcmp(id, id2) == 0);
    CHECK(append_str(j, "after reopen") == b.last_seq + 1);
    trib_journal_close(j);
}

static void test_drain_verify_read(void) {
    char dir[512], jp[512], jp2[512], target[512], spool[512];
    trib_error *err = NULL;
    trib_drain_report rep;
    make_dir(dir, "drain");
    make_dir(spool, "drain/spool");
    path_in(target, dir, "out.log");
    path_in(jp, spool, "one.journal");
    path_in(jp2, spool, "two.journal");

    /* Argument errors, before anything is touched. */
    const char *paths[2] = {jp, jp2};
    memset(&rep, 0xab, sizeof rep);
    EXPECT(TRIB_E_INVALID_ARG, trib_drain(NULL, paths, 1, NULL, NULL, &rep, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_drain("", paths, 1, NULL, NULL, &rep, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_drain(target, paths, 1, NULL, NULL, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_drain(target, NULL, 2, NULL, NULL, &rep, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_drain(target, paths, 1, spool, NULL, &rep, &err));
    const char *with_null[2] = {jp, NULL};
    EXPECT(TRIB_E_INVALID_ARG, trib_drain(target, with_null, 2, NULL, NULL, &rep, &err));
    trib_compactor_options co;
    trib_compactor_options_default(&co, NULL);
    co.max_round_bytes = 0;
    EXPECT(TRIB_E_INVALID_ARG, trib_drain(target, paths, 1, NULL, &co, &rep, &err));
    trib_compactor_options_default(&co, NULL);
    co.lock_timeout_ms = UINT64_MAX;
    EXPECT(TRIB_E_INVALID_ARG, trib_drain(target, paths, 1, NULL, &co, &rep, &err));
    CHECK(rep.rounds == 0xababababababababull);
    CHECK(access(target, F_OK) != 0);

    /* Status before anything was drained. */
    trib_status_report *st = NULL;
    trib_status_summary sum;
    EXPECT(TRIB_OK, trib_status(target, NULL, &st, &err));
    EXPECT(TRIB_OK, trib_status_report_summary(st, &sum, &err));
    CHECK(!sum.has_manifest && !sum.target_exists && sum.watermark_count == 0 && sum.journal_count == 0);
    CHECK(sum.target_id[0] == 0);
    uint32_t format = 99;
    EXPECT(TRIB_OK, trib_status_report_manifest_format(st, &format, &err));
    CHECK(format == 0); /* no manifest */
    trib_status_report_free(st);

    /* Verify without a manifest: the check cannot run. */
    trib_verify_report vr;
    memset(&vr, 0, sizeof vr);
    EXPECT(TRIB_E_INVALID_ARG, trib_verify(target, &vr, &err));

    /* A drain does not create the target; trib_init does, once. */
    EXPECT(TRIB_E_TARGET_MISSING, trib_drain(target, NULL, 0, NULL, NULL, &rep, &err));
    CHECK(access(target, F_OK) != 0);
    trib_init_report ir = init_target(target);
    CHECK(ir.adopted_lines == 0 && !ir.upgraded && !ir.rebound && access(target, F_OK) == 0);

    /* Drain with neither journals nor spool: only checks (and repairs) the target. */
    memset(&rep, 0, sizeof rep);
    EXPECT(TRIB_OK, trib_drain(target, NULL, 0, NULL, NULL, &rep, &err));
    CHECK(rep.lines == 0 && rep.rounds == 0 && rep.epoch == 1);

    trib_journal *j1 = open_journal(jp, NULL);
    trib_journal *j2 = open_journal(jp2, NULL);
    append_str(j1, "one-1");
    append_str(j1, "one-2");
    append_str(j2, "two-1");
    EXPECT(TRIB_OK, trib_journal_append(j2, NULL, 0, NULL, &err)); /* an empty line */

    rep = drain_paths(target, paths, 2);
    /* epoch 1: init; 2: the round's intent; 3: its commit */
    CHECK(rep.lines == 4 && rep.bytes == 6 + 6 + 6 + 1 && rep.rounds == 1 && rep.journals == 2 && rep.epoch == 3);
    CHECK(rep.repaired_tail_bytes == 0);
    size_t n;
    char *content = read_file(target, &n);
    CHECK(n == 19 && memcmp(content, "one-1\none-2\ntwo-1\n\n", 19) == 0);
    free(content);

    /* A second drain moves nothing; the journal records the drain. */
    rep = drain_paths(target, paths, 2);
    CHECK(rep.lines == 0 && rep.rounds == 0);
    trib_backlog b;
    EXPECT(TRIB_OK, trib_journal_backlog(j1, &b, &err));
    CHECK(b.lines == 0 && b.bytes == 0 && b.drained_seq == 2 && b.last_seq == 2 && b.oldest_append_ms == 0);

    /* Drain a spool folder. */
    append_str(j2, "two-3");
    memset(&rep, 0, sizeof rep);
    EXPECT(TRIB_OK, trib_drain(target, NULL, 0, spool, NULL, &rep, &err));
    CHECK(rep.lines == 1 && rep.journals == 1);
    EXPECT(TRIB_E_IO, trib_drain(target, NULL, 0, "/nonexistent-spool-dir", NULL, &rep, &err));

    /* Verify: consistent. */
    EXPECT(TRIB_OK, trib_verify(target, &vr, &err));
    CHECK(vr.consistent && vr.problems == NULL && vr.problem_count == 0);
    CHECK(vr.committed_len == 25 && vr.committed_lines == 5 && vr.target_len == 25 && vr.uncommitted_tail_bytes == 0);
    trib_verify_report_clear(&vr);
    EXPECT(TRIB_E_INVALID_ARG, trib_verify(NULL, &vr, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_verify(target, NULL, &err));

    /* Status with a spool. */
    EXPECT(TRIB_OK, trib_status(target, spool, &st, &err));
    EXPECT(TRIB_OK, trib_status_report_summary(st, &sum, &err));
    CHECK(sum.has_manifest && sum.target_exists && sum.committed_len == 25 && sum.committed_lines == 5);
    CHECK(sum.target_len == 25 && sum.epoch == rep.epoch && sum.watermark_count == 2 && sum.journal_count == 2);
    CHECK(strcmp(sum.target_id, ir.target_id) == 0);
    trib_watermark w;
    uint64_t seqs = 0;
    for (size_t i = 0; i < sum.watermark_count; i++) {
        EXPECT(TRIB_OK, trib_status_report_watermark(st, i, &w, &err));
        CHECK(strlen(w.journal_id) == 32);
        seqs += w.last_seq;
    }
    CHECK(seqs == 2 + 3);
    EXPECT(TRIB_OK, trib_status_report_manifest_format(st, &format, &err));
    CHECK(format == 3); /* a new target's manifest: deltas */
    EXPECT(TRIB_E_INVALID_ARG, trib_status_report_manifest_format(st, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_status_report_manifest_format(NULL, &format, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_status_report_watermark(st, 2, &w, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_status_report_watermark(st, 0, NULL, &err));
    trib_journal_status js;
    char id1[TRIB_ID_BUF_LEN];
    trib_journal_id(j1, id1, sizeof id1, NULL);
    EXPECT(TRIB_OK, trib_status_report_journal(st, 0, &js, &err));
    CHECK(strcmp(js.path, jp) == 0 && strcmp(js.journal_id, id1) == 0 && js.watermark == 2);
    CHECK(js.backlog.lines == 0 && js.backlog.last_seq == 2);
    EXPECT(TRIB_OK, trib_status_report_journal(st, 1, &js, &err));
    CHECK(strcmp(js.path, jp2) == 0 && js.watermark == 3);
    EXPECT(TRIB_E_INVALID_ARG, trib_status_report_journal(st, 2, &js, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_status_report_journal(st, 0, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_status_report_summary(NULL, &sum, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_status_report_summary(st, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_status_report_journal(NULL, 0, &js, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_status_report_watermark(NULL, 0, &w, &err));
    trib_status_report_free(st);
    trib_status_report_free(NULL);
    EXPECT(TRIB_E_INVALID_ARG, trib_status(NULL, NULL, &st, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_status(target, NULL, NULL, &err));
    EXPECT(TRIB_E_IO, trib_status(target, "/nonexistent-spool-dir", &st, &err));

    /* Reader: committed lines only, with a cursor. */
    trib_reader *r = NULL;
    bool has = false;
    const uint8_t *line = NULL;
    size_t len = 0;
    uint64_t off = 1;
    EXPECT(TRIB_OK, trib_reader_open(target, 0, &r, &err));
    EXPECT(TRIB_OK, trib_reader_offset(r, &off, &err));
    CHECK(off == 0);
    const char *want[5] = {"one-1", "one-2", "two-1", "", "two-3"};
    for (int i = 0; i < 5; i++) {
        EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
        CHECK(has && line != NULL && len == strlen(want[i]) && memcmp(line, want[i], len) == 0 && line[len] == 0);
        if (i == 1) {
            EXPECT(TRIB_OK, trib_reader_offset(r, &off, &err));
            CHECK(off == 12);
        }
    }
    /* Bytes beyond the committed length are never shown (here another program's). */
    append_file(target, "uncommitted-tail\npartial", 24);
    EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
    CHECK(!has && line == NULL && len == 0);
    uint64_t t0 = now_ms();
    EXPECT(TRIB_OK, trib_reader_next(r, 120, &has, &line, &len, &err));
    CHECK(!has && now_ms() - t0 >= 100);
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_next(r, 0, NULL, &line, &len, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_next(r, 0, &has, NULL, &len, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_next(r, 0, &has, &line, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_next(NULL, 0, &has, &line, &len, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_offset(NULL, &off, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_offset(r, NULL, &err));
    EXPECT(TRIB_OK, trib_reader_offset(r, &off, &err));
    CHECK(off == 25);

    /* No drain round announced those bytes: verify says so, and a drain refuses to
     * touch them (or to write after them). */
    EXPECT(TRIB_OK, trib_verify(target, &vr, &err));
    CHECK(!vr.consistent && vr.uncommitted_tail_bytes == 24 && vr.target_len == 49 && vr.problem_count == 1);
    CHECK(vr.problems != NULL && strstr(vr.problems, "not written by a drain round") != NULL);
    trib_verify_report_clear(&vr);
    append_str(j1, "one-3");
    EXPECT(TRIB_E_UNEXPECTED_TAIL, trib_drain(target, paths, 2, NULL, NULL, &rep, &err));
    struct stat tst;
    CHECK(stat(target, &tst) == 0 && tst.st_size == 49);
    CHECK(truncate(target, 25) == 0); /* what the operator does with them */

    /* A drain killed after writing its round, before committing it: it announced its
     * bytes (an intent) first, so verify reports them as a crashed round's tail, still
     * consistent, and the next drain cuts them and appends after the committed part. */
    {
        int status = 0;
        pid_t pid = spawn_drain_child(target, jp, "drain.after_write=kill", NULL);
        CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    }
    EXPECT(TRIB_OK, trib_verify(target, &vr, &err));
    CHECK(vr.consistent && vr.problem_count == 0 && vr.uncommitted_tail_bytes == 6 && vr.target_len == 31);
    trib_verify_report_clear(&vr);
    EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
    CHECK(!has);
    /* The reader then sees the new line (here via a wait that a drain in this thread
     * cannot end, so drain first). */
    rep = drain_paths(target, paths, 2);
    CHECK(rep.lines == 1 && rep.repaired_tail_bytes == 6);
    EXPECT(TRIB_OK, trib_reader_next(r, 1000, &has, &line, &len, &err));
    CHECK(has && len == 5 && memcmp(line, "one-3", 5) == 0);
    trib_reader_close(r);
    trib_reader_close(NULL);

    /* Reopen at a kept cursor; bad cursors are refused. */
    r = (trib_reader *)0x1;
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_open(target, 5, &r, &err)); /* not a line start */
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_open(target, 10000, &r, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_open(NULL, 0, &r, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_open(target, 0, NULL, &err));
    CHECK(r == (trib_reader *)0x1);
    EXPECT(TRIB_OK, trib_reader_open(target, 12, &r, &err));
    EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
    CHECK(has && len == 5 && memcmp(line, "two-1", 5) == 0);
    trib_reader_close(r);

    /* A reader of a target that was never created has nothing (yet), and creates
     * nothing. */
    char fresh[512], fresh_side[512];
    path_in(fresh, dir, "never.log");
    pathf(fresh_side, "%s.tributary", fresh);
    EXPECT(TRIB_OK, trib_reader_open(fresh, 0, &r, &err));
    EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
    CHECK(!has);
    trib_reader_close(r);
    CHECK(access(fresh, F_OK) != 0 && access(fresh_side, F_OK) != 0);

    /* Changed committed bytes: verify says so (no error: the check ran). */
    {
        int fd = open(target, O_WRONLY);
        CHECK(fd >= 0 && pwrite(fd, "X", 1, 0) == 1);
        close(fd);
    }
    EXPECT(TRIB_OK, trib_verify(target, &vr, &err));
    CHECK(!vr.consistent && vr.problem_count == 1 && vr.problems != NULL && strstr(vr.problems, "CRC") != NULL);
    trib_verify_report_clear(&vr);
    CHECK(vr.problems == NULL);
    trib_verify_report_clear(&vr); /* twice is fine */
    trib_verify_report_clear(NULL);

    /* A corrupt manifest is an error for verify, drain, status, readers and init. */
    damage_both_slots(target);
    EXPECT(TRIB_E_CORRUPT_MANIFEST, trib_verify(target, &vr, &err));
    EXPECT(TRIB_E_CORRUPT_MANIFEST, trib_drain(target, paths, 2, NULL, NULL, &rep, &err));
    EXPECT(TRIB_E_CORRUPT_MANIFEST, trib_status(target, NULL, &st, &err));
    EXPECT(TRIB_E_CORRUPT_MANIFEST, trib_reader_open(target, 0, &r, &err));
    EXPECT(TRIB_E_CORRUPT_MANIFEST, trib_init(target, NULL, &ir, &err));

    trib_journal_close(j1);
    trib_journal_close(j2);
}

static void test_journal_full(void) {
    char dir[512], jp[512], target[512];
    trib_error *err = NULL;
    trib_journal_options o;
    make_dir(dir, "full");
    path_in(jp, dir, "a.journal");
    path_in(target, dir, "out.log");
    init_target(target);
    trib_journal_options_default(&o, NULL);
    o.max_backlog_bytes = 10;
    trib_journal *j = open_journal(jp, &o);
    uint64_t seq = 0;
    CHECK(append_str(j, "12345678") == 1);
    seq = 42;
    EXPECT(TRIB_E_JOURNAL_FULL, trib_journal_append(j, (const uint8_t *)"12345678", 8, &seq, &err));
    trib_slice batch[2] = {{(const uint8_t *)"a", 1}, {(const uint8_t *)"bc", 2}};
    EXPECT(TRIB_E_JOURNAL_FULL, trib_journal_append_batch(j, batch, 2, &seq, &err));
    EXPECT(TRIB_OK, trib_journal_append_batch(j, batch, 1, &seq, &err)); /* 9 bytes: fits */
    CHECK(seq == 2);
    const char *paths[1] = {jp};
    trib_drain_report rep = drain_paths(target, paths, 1);
    CHECK(rep.lines == 2);
    CHECK(append_str(j, "12345678") == 3); /* room again */
    trib_journal_close(j);

    /* With full_wait_ms the append waits, then still fails if nobody drains. */
    o.full_wait_ms = 150;
    j = open_journal(jp, &o);
    uint64_t t0 = now_ms();
    EXPECT(TRIB_E_JOURNAL_FULL, trib_journal_append(j, (const uint8_t *)"12345678", 8, &seq, &err));
    CHECK(now_ms() - t0 >= 140);
    trib_journal_close(j);
}

static void test_target_errors(void) {
    char dir[512], jp[512], jp_copy[512], t1[512], t2[512], p[512];
    trib_error *err = NULL;
    trib_drain_report rep;
    make_dir(dir, "targets");
    path_in(jp, dir, "a.journal");
    path_in(t1, dir, "t1.log");
    path_in(t2, dir, "t2.log");
    const char *paths[1] = {jp};
    init_target(t1);
    init_target(t2);

    trib_journal *j = open_journal(jp, NULL);
    append_str(j, "a-1");
    rep = drain_paths(t1, paths, 1);
    CHECK(rep.lines == 1);

    /* The journal was drained into t1: draining it into t2 is refused. */
    append_str(j, "a-2");
    EXPECT(TRIB_E_JOURNAL_FOREIGN, trib_drain(t2, paths, 1, NULL, NULL, &rep, &err));
    rep = drain_paths(t1, paths, 1);
    CHECK(rep.lines == 1);

    /* The same journal twice (a copy) in one drain. */
    trib_journal_close(j);
    path_in(jp_copy, dir, "copy.journal");
    copy_file(jp, jp_copy);
    const char *both[2] = {jp, jp_copy};
    EXPECT(TRIB_E_JOURNAL_RESTORED, trib_drain(t1, both, 2, NULL, NULL, &rep, &err));

    /* A journal restored from an older copy (its seqs are below the watermark). */
    char jr[512], jr_old[512];
    path_in(jr, dir, "r.journal");
    path_in(jr_old, dir, "r-old.journal");
    j = open_journal(jr, NULL);
    append_str(j, "r-1");
    trib_journal_close(j);
    copy_file(jr, jr_old);
    j = open_journal(jr, NULL);
    append_str(j, "r-2");
    const char *rpaths[1] = {jr};
    rep = drain_paths(t1, rpaths, 1);
    CHECK(rep.lines == 2);
    trib_journal_close(j);
    copy_file(jr_old, jr);
    EXPECT(TRIB_E_JOURNAL_RESTORED, trib_drain(t1, rpaths, 1, NULL, NULL, &rep, &err));

    /* Truncated behind tributary's back: nothing is touched, readers notice too. */
    char t3[512];
    path_in(t3, dir, "t3.log");
    char j3[512];
    path_in(j3, dir, "c.journal");
    j = open_journal(j3, NULL);
    append_str(j, "c-1");
    append_str(j, "c-2");
    const char *p3[1] = {j3};
    init_target(t3);
    drain_paths(t3, p3, 1);
    trib_reader *r = NULL;
    EXPECT(TRIB_OK, trib_reader_open(t3, 0, &r, &err));
    CHECK(truncate(t3, 2) == 0);
    append_str(j, "c-3");
    EXPECT(TRIB_E_TARGET_TRUNCATED, trib_drain(t3, p3, 1, NULL, NULL, &rep, &err));
    bool has = false;
    const uint8_t *line = NULL;
    size_t len = 0;
    EXPECT(TRIB_E_TARGET_TRUNCATED, trib_reader_next(r, 0, &has, &line, &len, &err));
    trib_reader_close(r);
    struct stat st;
    CHECK(stat(t3, &st) == 0 && st.st_size == 2);

    /* Bytes that no drain round announced: a foreign writer, or a manifest older than
     * the target. Refused, however few, and nothing is touched. */
    char t4[512];
    path_in(t4, dir, "t4.log");
    trib_compactor_options co;
    trib_compactor_options_default(&co, NULL);
    init_target(t4);
    append_file(t4, "one foreign line\n", 17);
    EXPECT(TRIB_E_UNEXPECTED_TAIL, trib_drain(t4, NULL, 0, NULL, &co, &rep, &err));
    CHECK(stat(t4, &st) == 0 && st.st_size == 17);

    /* A pre-existing target that does not end with a newline cannot be adopted. */
    char t5[512];
    path_in(t5, dir, "t5.log");
    write_file(t5, "whole\npartial", 13);
    trib_init_report ir;
    EXPECT(TRIB_E_TORN_TARGET, trib_init(t5, NULL, &ir, &err));
    co.create = true;
    EXPECT(TRIB_E_TORN_TARGET, trib_drain(t5, NULL, 0, NULL, &co, &rep, &err));
    co.create = false;
    /* ... one that does is adopted as committed. */
    write_file(t5, "whole\n", 6);
    CHECK(init_target(t5).adopted_lines == 1);
    trib_verify_report vr;
    EXPECT(TRIB_OK, trib_verify(t5, &vr, &err));
    CHECK(vr.consistent && vr.committed_lines == 1 && vr.committed_len == 6);
    trib_verify_report_clear(&vr);

    /* A world-writable sidecar folder: anyone could plant a manifest. */
    char t6[512], side[512];
    path_in(t6, dir, "t6.log");
    init_target(t6);
    pathf(side, "%s.tributary", t6);
    CHECK(chmod(side, 0777) == 0);
    EXPECT(TRIB_E_UNSAFE_FILESYSTEM, trib_drain(t6, NULL, 0, NULL, NULL, &rep, &err));
    CHECK(chmod(side, 0755) == 0);

    /* A held lock: the drain gives up after lock_timeout_ms. */
    int fd = hold_target_lock(t6);
    trib_compactor_options_default(&co, NULL);
    co.lock_timeout_ms = 100;
    uint64_t t0 = now_ms();
    EXPECT(TRIB_E_LOCK_TIMEOUT, trib_drain(t6, NULL, 0, NULL, &co, &rep, &err));
    CHECK(now_ms() - t0 >= 90);
    close(fd); /* releases the OFD lock */
    EXPECT(TRIB_OK, trib_drain(t6, NULL, 0, NULL, &co, &rep, &err));

    /* A journal row whose bytes no longer match their CRC (a failing disk). */
    char jc[512], t7[512];
    path_in(jc, dir, "corrupt.journal");
    path_in(t7, dir, "t7.log");
    trib_journal *jcj = open_journal(jc, NULL);
    append_str(jcj, "fine-line");
    append_str(jcj, "CORRUPT-ME-0123456789");
    trib_journal_close(jcj); /* the last close checkpoints the WAL into the file */
    size_t n;
    char *db = read_file(jc, &n);
    char *hit = db ? memmem(db, n, "CORRUPT-ME-0123456789", 21) : NULL;
    CHECK(hit != NULL);
    if (hit) {
        hit[3] = 'X';
        write_file(jc, db, n);
    }
    free(db);
    const char *pc[1] = {jc};
    init_target(t7);
    CHECK(trib_drain(t7, pc, 1, NULL, NULL, &rep, &err) == TRIB_E_CORRUPT_JOURNAL_ROW);
    CHECK(err && strstr(trib_error_message(err), "seq 2") != NULL);
    trib_error_free(err);
    err = NULL;
    (void)p;
    trib_journal_close(j);
}

/* SQLite errors: hold the journal's WAL write lock (a POSIX lock on byte 120 of the
 * -shm file, as SQLite's unix VFS takes it) from another process; an append with a
 * 100 ms busy timeout then fails with SQLITE_BUSY. The append runs in a fresh process
 * (--append-child): the engine keeps one busy-retry limit per process, the longest busy
 * timeout of any journal it opened, and this process opened journals with the default
 * 30 s. */
static void test_sqlite_busy(void) {
    char dir[512], jp[512], shm[512];
    trib_error *err = NULL;
    make_dir(dir, "busy");
    path_in(jp, dir, "a.journal");
    trib_journal *j = open_journal(jp, NULL);
    append_str(j, "before");
    pathf(shm, "%s-shm", jp);
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    pid_t holder = fork();
    if (holder == 0) {
        int fd = open(shm, O_RDWR);
        struct flock fl;
        memset(&fl, 0, sizeof fl);
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = 120;
        fl.l_len = 1;
        char ok = (fd >= 0 && fcntl(fd, F_SETLK, &fl) == 0) ? 'y' : 'n';
        if (write(pipefd[1], &ok, 1) != 1) _exit(3);
        pause();
        _exit(0);
    }
    char ok = 0;
    CHECK(read(pipefd[0], &ok, 1) == 1 && ok == 'y');
    uint64_t t0 = now_ms();
    pid_t appender = fork();
    if (appender == 0) {
        char *args[] = {(char *)g_argv0, "--append-child", jp, NULL};
        execv(g_argv0, args);
        _exit(127);
    }
    int status = 0;
    CHECK(waitpid(appender, &status, 0) == appender);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == TRIB_E_SQLITE);
    CHECK(now_ms() - t0 < 10000);
    kill(holder, SIGKILL);
    waitpid(holder, NULL, 0);
    close(pipefd[0]);
    close(pipefd[1]);
    CHECK(append_str(j, "after") == 2);
    trib_backlog b;
    EXPECT(TRIB_OK, trib_journal_backlog(j, &b, &err));
    CHECK(b.lines == 2);
    trib_journal_close(j);
}

static int append_child(const char *journal) {
    trib_journal_options o;
    trib_journal *j = NULL;
    trib_error *err = NULL;
    trib_journal_options_default(&o, NULL);
    o.busy_timeout_ms = 100;
    int rc = trib_journal_open(journal, &o, &j, &err);
    if (rc == TRIB_OK) rc = trib_journal_append(j, (const uint8_t *)"blocked", 7, NULL, &err);
    if (rc != TRIB_OK) fprintf(stderr, "append child: %s (expected in this test)\n", trib_error_message(err));
    trib_error_free(err);
    trib_journal_close(j);
    return rc;
}

/* A lost lock: a drain child loses its lock after writing and fsyncing its round,
 * before committing it (failpoint drain.lose_lock=hold: the lock goes, as with an
 * expired lease or a remounted share, and the child holds until its .reached file is
 * removed). Meanwhile another drain takes the lock, cuts the child's bytes and commits.
 * The child must notice the epoch moved and commit nothing (TRIB_E_LOCK_LOST); nothing
 * is lost or duplicated afterwards. */
static void test_lock_lost(void) {
    char dir[512], target[512], j1p[512], j2p[512], fp[512], reached[512];
    trib_error *err = NULL;
    trib_drain_report rep;
    make_dir(dir, "lost");
    make_dir(fp, "lost/failpoints");
    path_in(target, dir, "out.log");
    path_in(j1p, dir, "one.journal");
    path_in(j2p, dir, "two.journal");
    path_in(reached, fp, "drain.lose_lock.reached");
    init_target(target);
    trib_journal *j1 = open_journal(j1p, NULL);
    trib_journal *j2 = open_journal(j2p, NULL);
    append_str(j1, "from-child-round");
    append_str(j2, "from-parent-round");

    pid_t pid = spawn_drain_child(target, j1p, "drain.lose_lock=hold", fp);
    /* Wait for the child to announce it lost its lock (its round is written). */
    int seen = 0;
    for (int i = 0; i < 3000 && !seen; i++) {
        seen = access(reached, F_OK) == 0;
        if (!seen) usleep(10000);
    }
    CHECK(seen);
    /* "Another compactor" takes the lock and commits; then the child goes on. */
    trib_compactor_options co;
    trib_compactor_options_default(&co, NULL);
    co.lock_timeout_ms = 5000;
    const char *p2[1] = {j2p};
    memset(&rep, 0, sizeof rep);
    EXPECT(TRIB_OK, trib_drain(target, p2, 1, NULL, &co, &rep, &err));
    CHECK(rep.lines == 1);
    if (seen) {
        CHECK(unlink(reached) == 0); /* let the child go on */
    } else {
        kill(pid, SIGKILL);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == TRIB_E_LOCK_LOST);

    /* The child's lines were not committed; the next drain commits them once. */
    trib_backlog b;
    EXPECT(TRIB_OK, trib_journal_backlog(j1, &b, &err));
    CHECK(b.lines == 1 && b.drained_seq == 0);
    const char *both[2] = {j1p, j2p};
    rep = drain_paths(target, both, 2);
    CHECK(rep.lines == 1);
    size_t n;
    char *content = read_file(target, &n);
    CHECK(content && strcmp(content, "from-parent-round\nfrom-child-round\n") == 0);
    free(content);
    trib_verify_report vr;
    EXPECT(TRIB_OK, trib_verify(target, &vr, &err));
    CHECK(vr.consistent && vr.committed_lines == 2);
    trib_verify_report_clear(&vr);
    trib_journal_close(j1);
    trib_journal_close(j2);
}

static int drain_child(const char *target, const char *journal) {
    trib_drain_report rep;
    trib_error *err = NULL;
    const char *paths[1] = {journal};
    int rc = trib_drain(target, paths, 1, NULL, NULL, &rep, &err);
    if (rc != TRIB_OK) {
        fprintf(stderr, "drain child: %s (expected in this test)\n", trib_error_message(err));
    }
    trib_error_free(err);
    return rc;
}

/* Explicit creation: trib_init creates a target once; trib_drain and trib_retire never
 * create one unless the options' `create` is set. A target never initialised, or on a
 * share that is not mounted, is TRIB_E_TARGET_MISSING: nothing is created, nothing
 * leaves the journals. */
static void test_explicit_creation(void) {
    char dir[512], shared[512], target[512], jp[512];
    trib_error *err = NULL;
    trib_drain_report rep;
    make_dir(dir, "create");
    make_dir(shared, "create/shared");
    path_in(target, shared, "app.log");
    path_in(jp, dir, "a.journal");
    trib_journal *j = open_journal(jp, NULL);
    append_str(j, "one");
    append_str(j, "two");
    const char *paths[1] = {jp};

    /* Drains and retire into a target never initialised. */
    memset(&rep, 0xab, sizeof rep);
    size_t retired = 77;
    EXPECT(TRIB_E_TARGET_MISSING, trib_drain(target, paths, 1, NULL, NULL, &rep, &err));
    EXPECT(TRIB_E_TARGET_MISSING, trib_drain(target, NULL, 0, dir, NULL, &rep, &err)); /* its spool */
    EXPECT(TRIB_E_TARGET_MISSING, trib_drain(target, NULL, 0, NULL, NULL, &rep, &err));
    EXPECT(TRIB_E_TARGET_MISSING, trib_retire(target, paths, 1, NULL, &retired, &err));
    CHECK(rep.rounds == 0xababababababababull && retired == 77);
    CHECK(trib_drain(target, paths, 1, NULL, NULL, &rep, &err) == TRIB_E_TARGET_MISSING && err != NULL);
    CHECK(err && strstr(trib_error_message(err), "tributary init") != NULL &&
          strstr(trib_error_message(err), "Nothing was created") != NULL);
    trib_error_free(err);
    err = NULL;
    CHECK(dir_is_empty(shared)); /* no target file, no sidecar folder */
    trib_backlog b;
    EXPECT(TRIB_OK, trib_journal_backlog(j, &b, &err));
    CHECK(b.lines == 2 && b.last_seq == 2 && b.drained_seq == 0);
    CHECK(access(jp, F_OK) == 0);

    /* trib_init's argument errors leave the report alone and create nothing. */
    trib_init_report ir, ir2;
    memset(&ir, 0x5a, sizeof ir);
    EXPECT(TRIB_E_INVALID_ARG, trib_init(NULL, NULL, &ir, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_init("", NULL, &ir, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_init(target, NULL, NULL, &err));
    CHECK(trib_init(NULL, NULL, &ir, NULL) == TRIB_E_INVALID_ARG);
    trib_compactor_options co;
    trib_compactor_options_default(&co, NULL);
    co.lock_timeout_ms = UINT64_MAX;
    EXPECT(TRIB_E_INVALID_ARG, trib_init(target, &co, &ir, &err));
    CHECK(ir.adopted_lines == 0x5a5a5a5a5a5a5a5aull);
    CHECK(dir_is_empty(shared));

    /* trib_init creates it; a second call changes nothing (same id). */
    ir = init_target(target);
    CHECK(ir.adopted_lines == 0 && !ir.upgraded && !ir.rebound && strspn(ir.target_id, "0123456789abcdef") == 32);
    trib_compactor_options_default(&co, NULL);
    co.lock_timeout_ms = 1000;
    memset(&ir2, 0, sizeof ir2);
    EXPECT(TRIB_OK, trib_init(target, &co, &ir2, &err));
    CHECK(!ir2.created && ir2.adopted_lines == 0 && !ir2.rebound && strcmp(ir2.target_id, ir.target_id) == 0);
    /* trib_init_in_format switches the manifest's format (2: older builds drain it too),
     * and back; a format that does not exist is refused. status tells the format. */
    EXPECT(TRIB_E_INVALID_ARG, trib_init_in_format(target, NULL, 7, &ir2, &err));
    for (uint32_t want = 2; want <= 3; want++) {
        EXPECT(TRIB_OK, trib_init_in_format(target, NULL, want, &ir2, &err));
        CHECK(!ir2.created && strcmp(ir2.target_id, ir.target_id) == 0);
        trib_status_report *fs = NULL;
        uint32_t got = 0;
        EXPECT(TRIB_OK, trib_status(target, NULL, &fs, &err));
        EXPECT(TRIB_OK, trib_status_report_manifest_format(fs, &got, &err));
        CHECK(got == want);
        trib_status_report_free(fs);
    }
    /* Then a drain delivers the journal's lines, exactly once. */
    rep = drain_paths(target, paths, 1);
    CHECK(rep.lines == 2);
    rep = drain_paths(target, paths, 1);
    CHECK(rep.lines == 0);
    size_t n;
    char *content = read_file(target, &n);
    CHECK(content && strcmp(content, "one\ntwo\n") == 0);
    free(content);

    /* trib_init adopts a pre-existing file's lines as committed. */
    char adopt[512];
    path_in(adopt, dir, "adopt.log");
    write_file(adopt, "old-1\nold-2\nold-3\n", 18);
    CHECK(init_target(adopt).adopted_lines == 3);
    trib_verify_report vr;
    EXPECT(TRIB_OK, trib_verify(adopt, &vr, &err));
    CHECK(vr.consistent && vr.committed_lines == 3 && vr.committed_len == 18);
    trib_verify_report_clear(&vr);

    /* With `create`, a drain (or a retire) creates the target it does not find. */
    char fresh[512], jc[512];
    path_in(fresh, dir, "fresh.log");
    path_in(jc, dir, "c.journal");
    trib_journal *c = open_journal(jc, NULL);
    append_str(c, "created by a drain");
    const char *pc[1] = {jc};
    trib_compactor_options_default(&co, NULL);
    co.create = true;
    memset(&rep, 0, sizeof rep);
    EXPECT(TRIB_OK, trib_drain(fresh, pc, 1, NULL, &co, &rep, &err));
    CHECK(rep.lines == 1);
    append_str(c, "then retired");
    EXPECT(TRIB_OK, trib_retire(fresh, pc, 1, &co, &retired, &err)); /* exists: create is a no-op */
    CHECK(retired == 1);
    memset(&ir2, 0, sizeof ir2);
    EXPECT(TRIB_OK, trib_init(fresh, NULL, &ir2, &err));
    CHECK(!ir2.created);
    content = read_file(fresh, &n);
    CHECK(content && strcmp(content, "created by a drain\nthen retired\n") == 0);
    free(content);
    trib_journal_close(c);

    /* The share is not mounted: its mount point is there, empty. Refused, nothing
     * created there; mounted again, the line arrives. */
    char mnt[512], away[512], mt[512], jm[512];
    make_dir(mnt, "create/mnt");
    pathf(away, "%s/the-share-while-unmounted", dir);
    path_in(mt, mnt, "app.log");
    path_in(jm, dir, "m.journal");
    init_target(mt);
    trib_journal *m = open_journal(jm, NULL);
    const char *pm[1] = {jm};
    append_str(m, "before the unmount");
    CHECK(drain_paths(mt, pm, 1).lines == 1);
    CHECK(rename(mnt, away) == 0 && mkdir(mnt, 0755) == 0);
    append_str(m, "while unmounted");
    CHECK(trib_drain(mt, pm, 1, NULL, NULL, &rep, &err) == TRIB_E_TARGET_MISSING && err != NULL);
    CHECK(err && strstr(trib_error_message(err), "not mounted") != NULL);
    trib_error_free(err);
    err = NULL;
    CHECK(dir_is_empty(mnt));
    CHECK(rmdir(mnt) == 0 && rename(away, mnt) == 0);
    CHECK(drain_paths(mt, pm, 1).lines == 1);
    content = read_file(mt, &n);
    CHECK(content && strcmp(content, "before the unmount\nwhile unmounted\n") == 0);
    free(content);
    trib_journal_close(m);
    trib_journal_close(j);
}

/* Managed rotation: generations, cursors that survive a rotation, retention. */
static void test_rotation(void) {
    char dir[512], jp[512], target[512], gen1[512];
    trib_error *err = NULL;
    trib_drain_report rep;
    make_dir(dir, "rotation");
    path_in(jp, dir, "a.journal");
    path_in(target, dir, "out.log");
    pathf(gen1, "%s.1", target);
    init_target(target);
    trib_compactor_options co;
    trib_compactor_options_default(&co, NULL);
    CHECK(co.rotate_bytes == 0 && co.rotate_lines == 0 && co.retain_generations == 0);
    co.rotate_lines = 2;
    trib_journal *j = open_journal(jp, NULL);
    const char *paths[1] = {jp};
    append_str(j, "g1-a");
    append_str(j, "g1-b");
    EXPECT(TRIB_OK, trib_drain(target, paths, 1, NULL, &co, &rep, &err));
    CHECK(rep.lines == 2 && rep.rotations == 0);

    trib_reader *r = NULL;
    bool has = false;
    const uint8_t *line = NULL;
    size_t len = 0;
    uint64_t gen = 0, off = 0;
    EXPECT(TRIB_OK, trib_reader_open(target, 0, &r, &err));
    EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
    CHECK(has && len == 4 && memcmp(line, "g1-a", 4) == 0);
    EXPECT(TRIB_OK, trib_reader_cursor(r, &gen, &off, &err));
    CHECK(gen == 1 && off == 5);

    /* The next round starts a new generation: out.log.1 keeps generation 1. */
    append_str(j, "g2-a");
    EXPECT(TRIB_OK, trib_drain(target, paths, 1, NULL, &co, &rep, &err));
    CHECK(rep.lines == 1 && rep.rotations == 1);
    size_t n;
    char *g1 = read_file(gen1, &n);
    CHECK(g1 && strcmp(g1, "g1-a\ng1-b\n") == 0);
    free(g1);
    char *cur = read_file(target, &n);
    CHECK(cur && strcmp(cur, "g2-a\n") == 0);
    free(cur);

    /* The open reader finishes generation 1, then goes on into generation 2. */
    EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
    CHECK(has && len == 4 && memcmp(line, "g1-b", 4) == 0);
    EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
    CHECK(has && len == 4 && memcmp(line, "g2-a", 4) == 0);
    EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
    CHECK(!has);
    EXPECT(TRIB_OK, trib_reader_cursor(r, &gen, &off, &err));
    CHECK(gen == 2 && off == 5);
    EXPECT(TRIB_OK, trib_reader_offset(r, &off, &err));
    CHECK(off == 5);
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_cursor(r, NULL, &off, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_cursor(r, &gen, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_cursor(NULL, &gen, &off, &err));
    trib_reader_close(r);

    /* Reopen at a kept cursor (generation 1, offset 5), and at the very beginning. */
    EXPECT(TRIB_OK, trib_reader_open_at(target, 1, 5, &r, &err));
    EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
    CHECK(has && len == 4 && memcmp(line, "g1-b", 4) == 0);
    trib_reader_close(r);
    EXPECT(TRIB_OK, trib_reader_open_at(target, 0, 0, &r, &err));
    int count = 0;
    while (trib_reader_next(r, 0, &has, &line, &len, NULL) == TRIB_OK && has) count++;
    CHECK(count == 3);
    trib_reader_close(r);
    r = (trib_reader *)0x1;
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_open_at(target, 0, 3, &r, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_open_at(target, 1, 2, &r, &err)); /* not a line start */
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_open_at(NULL, 1, 0, &r, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_open_at(target, 1, 0, NULL, &err));
    CHECK(r == (trib_reader *)0x1);

    /* Status and verify see both generations. */
    trib_status_report *st = NULL;
    trib_status_summary sum;
    EXPECT(TRIB_OK, trib_status(target, NULL, &st, &err));
    EXPECT(TRIB_OK, trib_status_report_summary(st, &sum, &err));
    CHECK(sum.generation == 2 && sum.rotated_generations == 1 && sum.committed_lines == 1);
    trib_status_report_free(st);
    trib_verify_report vr;
    EXPECT(TRIB_OK, trib_verify(target, &vr, &err));
    CHECK(vr.consistent && vr.generation == 2 && vr.rotated_generations == 1);
    trib_verify_report_clear(&vr);

    /* Retention: keep one rotated generation; generation 1 goes when 3 starts. */
    co.retain_generations = 1;
    append_str(j, "g2-b");
    EXPECT(TRIB_OK, trib_drain(target, paths, 1, NULL, &co, &rep, &err));
    append_str(j, "g3-a");
    EXPECT(TRIB_OK, trib_drain(target, paths, 1, NULL, &co, &rep, &err));
    CHECK(rep.rotations == 1);
    CHECK(access(gen1, F_OK) != 0);
    EXPECT(TRIB_OK, trib_verify(target, &vr, &err));
    CHECK(vr.consistent && vr.generation == 3 && vr.rotated_generations == 1);
    trib_verify_report_clear(&vr);
    r = NULL;
    CHECK(trib_reader_open_at(target, 1, 5, &r, &err) != TRIB_OK && err != NULL && r == NULL);
    trib_error_free(err);
    err = NULL;
    trib_journal_close(j);
}

/* A cursor names one position of one target: it carries the target's id, a reader of
 * another target refuses it, and a line's start is the same before and after the
 * rotation of its generation. */
static void test_cursor_identity(void) {
    char dir[512], jp[512], jq[512], target[512], other[512];
    trib_error *err = NULL;
    trib_drain_report rep;
    make_dir(dir, "cursors");
    path_in(jp, dir, "a.journal");
    path_in(jq, dir, "b.journal");
    path_in(target, dir, "a.log");
    path_in(other, dir, "b.log");
    trib_journal *j = open_journal(jp, NULL);
    trib_journal *k = open_journal(jq, NULL);
    const char *pa[1] = {jp}, *pb[1] = {jq};
    append_str(j, "one");
    append_str(j, "two");
    append_str(k, "one");
    append_str(k, "two");
    trib_init_report ir;
    EXPECT(TRIB_OK, trib_init(target, NULL, &ir, &err));
    EXPECT(TRIB_OK, trib_init(other, NULL, &ir, &err));
    EXPECT(TRIB_OK, trib_drain(target, pa, 1, NULL, NULL, &rep, &err));
    EXPECT(TRIB_OK, trib_drain(other, pb, 1, NULL, NULL, &rep, &err));
    trib_status_report *st = NULL;
    trib_status_summary sum;
    EXPECT(TRIB_OK, trib_status(target, NULL, &st, &err));
    EXPECT(TRIB_OK, trib_status_report_summary(st, &sum, &err));
    trib_status_report_free(st);

    /* Read generation 1 to its end while it is current: every line's start. */
    trib_reader *r = NULL;
    bool has = false;
    const uint8_t *line = NULL;
    size_t len = 0;
    trib_cursor starts[3], c, none = {0};
    memset(starts, 0, sizeof starts);
    EXPECT(TRIB_OK, trib_reader_open_cursor(target, &none, &r, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_line_start(r, &c, &err)); /* no line yet */
    for (int i = 0; i < 2; i++) {
        EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
        CHECK(has);
        EXPECT(TRIB_OK, trib_reader_line_start(r, &starts[i], &err));
    }
    CHECK(starts[1].generation == 1 && starts[1].offset == 4 && strcmp(starts[1].target_id, sum.target_id) == 0);
    trib_cursor kept;
    EXPECT(TRIB_OK, trib_reader_position(r, &kept, &err));
    CHECK(kept.generation == 1 && kept.offset == 8 && strcmp(kept.target_id, sum.target_id) == 0);

    /* A rotation, then the same reader goes on into generation 2. */
    trib_compactor_options co;
    trib_compactor_options_default(&co, NULL);
    co.rotate_lines = 1;
    append_str(j, "three");
    EXPECT(TRIB_OK, trib_drain(target, pa, 1, NULL, &co, &rep, &err));
    CHECK(rep.rotations == 1);
    EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
    CHECK(has && len == 5 && memcmp(line, "three", 5) == 0);
    EXPECT(TRIB_OK, trib_reader_line_start(r, &starts[2], &err));
    CHECK(starts[2].generation == 2 && starts[2].offset == 0); /* not 1:8 */
    trib_reader_close(r);

    /* A fresh reader after the rotation: the same start for every line. */
    EXPECT(TRIB_OK, trib_reader_open_cursor(target, &none, &r, &err));
    for (int i = 0; i < 3; i++) {
        EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
        EXPECT(TRIB_OK, trib_reader_line_start(r, &c, &err));
        CHECK(has && c.generation == starts[i].generation && c.offset == starts[i].offset &&
              strcmp(c.target_id, starts[i].target_id) == 0);
    }
    trib_reader_close(r);

    /* The kept cursor resumes on its target; another target refuses it. */
    EXPECT(TRIB_OK, trib_reader_open_cursor(target, &kept, &r, &err));
    EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
    CHECK(has && len == 5 && memcmp(line, "three", 5) == 0);
    trib_reader_close(r);
    r = (trib_reader *)0x1;
    int rc = trib_reader_open_cursor(other, &kept, &r, &err);
    CHECK(rc == TRIB_E_INVALID_ARG && err && strstr(trib_error_message(err), "belongs to target") != NULL);
    trib_error_free(err);
    err = NULL;
    CHECK(r == (trib_reader *)0x1);
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_open_cursor(NULL, &kept, &r, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_open_cursor(other, NULL, &r, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_open_cursor(other, &kept, NULL, &err));
    trib_cursor bad = kept;
    memcpy(bad.target_id, "not hex", 8);
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_open_cursor(other, &bad, &r, &err));
    memset(bad.target_id, 'a', sizeof bad.target_id); /* no NUL */
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_open_cursor(other, &bad, &r, &err));
    CHECK(r == (trib_reader *)0x1);

    /* Text: with the id, and the legacy form without it. */
    char text[TRIB_CURSOR_TEXT_LEN], want[TRIB_CURSOR_TEXT_LEN];
    snprintf(want, sizeof want, "%s:1:8", sum.target_id);
    EXPECT(TRIB_OK, trib_cursor_format(&kept, text, sizeof text, &err));
    CHECK(strcmp(text, want) == 0);
    EXPECT(TRIB_OK, trib_cursor_parse(text, &c, &err));
    CHECK(c.generation == 1 && c.offset == 8 && strcmp(c.target_id, sum.target_id) == 0);
    EXPECT(TRIB_OK, trib_cursor_parse("1:4", &c, &err));
    CHECK(c.generation == 1 && c.offset == 4 && c.target_id[0] == '\0');
    EXPECT(TRIB_OK, trib_cursor_format(&c, text, sizeof text, &err));
    CHECK(strcmp(text, "1:4") == 0);
    EXPECT(TRIB_OK, trib_reader_open_cursor(other, &c, &r, &err)); /* legacy: unchecked */
    EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
    CHECK(has && len == 3 && memcmp(line, "two", 3) == 0);
    trib_reader_close(r);
    EXPECT(TRIB_E_INVALID_ARG, trib_cursor_parse("1:2:3", &c, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_cursor_parse("", &c, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_cursor_parse(NULL, &c, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_cursor_parse("1:4", NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_cursor_format(&kept, text, TRIB_CURSOR_TEXT_LEN - 1, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_cursor_format(NULL, text, sizeof text, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_cursor_format(&kept, NULL, sizeof text, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_position(NULL, &c, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_line_start(NULL, &c, &err));
    trib_journal_close(j);
    trib_journal_close(k);
}

/* One journal handle shared by several threads (group commit). */
#define THREADS 4
#define PER_THREAD 150
struct thread_arg {
    trib_journal *j;
    int id;
    uint64_t seqs[PER_THREAD];
    int failures;
};

static void *append_thread(void *p) {
    struct thread_arg *a = p;
    char line[64];
    for (int i = 0; i < PER_THREAD; i++) {
        int n = snprintf(line, sizeof line, "thread-%d-line-%d", a->id, i);
        trib_error *err = NULL;
        if (trib_journal_append(a->j, (const uint8_t *)line, (size_t)n, &a->seqs[i], &err) != TRIB_OK) {
            a->failures++;
            trib_error_free(err);
        }
    }
    return NULL;
}

static int cmp_u64(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

static void test_threads_share_a_journal(void) {
    char dir[512], jp[512], target[512];
    make_dir(dir, "threads");
    path_in(jp, dir, "a.journal");
    path_in(target, dir, "out.log");
    init_target(target);
    trib_journal_options o;
    trib_journal_options_default(&o, NULL);
    o.durability = TRIB_DURABILITY_NORMAL; /* keep the valgrind run short */
    trib_journal *j = open_journal(jp, &o);
    static struct thread_arg args[THREADS];
    pthread_t tids[THREADS];
    for (int t = 0; t < THREADS; t++) {
        args[t].j = j;
        args[t].id = t;
        args[t].failures = 0;
        CHECK(pthread_create(&tids[t], NULL, append_thread, &args[t]) == 0);
    }
    static uint64_t all[THREADS * PER_THREAD];
    int failures = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(tids[t], NULL);
        failures += args[t].failures;
        memcpy(&all[t * PER_THREAD], args[t].seqs, sizeof args[t].seqs);
        for (int i = 1; i < PER_THREAD; i++) {
            if (args[t].seqs[i] <= args[t].seqs[i - 1]) failures++; /* per-thread order */
        }
    }
    CHECK(failures == 0);
    qsort(all, THREADS * PER_THREAD, sizeof all[0], cmp_u64);
    int dense = 1;
    for (int i = 0; i < THREADS * PER_THREAD; i++) {
        if (all[i] != (uint64_t)i + 1) dense = 0;
    }
    CHECK(dense);
    const char *paths[1] = {jp};
    trib_drain_report rep = drain_paths(target, paths, 1);
    CHECK(rep.lines == THREADS * PER_THREAD);
    trib_journal_close(j);

    /* Each line exactly once, each thread's lines in order. */
    trib_reader *r = NULL;
    trib_error *err = NULL;
    EXPECT(TRIB_OK, trib_reader_open(target, 0, &r, &err));
    int next[THREADS] = {0};
    int count = 0, in_order = 1;
    bool has = true;
    const uint8_t *line = NULL;
    size_t len = 0;
    while (trib_reader_next(r, 0, &has, &line, &len, NULL) == TRIB_OK && has) {
        int t, i;
        if (sscanf((const char *)line, "thread-%d-line-%d", &t, &i) != 2 || t < 0 || t >= THREADS || i != next[t]) {
            in_order = 0;
        } else {
            next[t]++;
        }
        count++;
    }
    CHECK(count == THREADS * PER_THREAD && in_order);
    trib_reader_close(r);
}

/* Retirement: drain, then delete; a writer that still has the journal open gets
 * TRIB_E_JOURNAL_GONE and stores nothing; bad arguments are errors. */
static void test_retire(void) {
    char dir[512], target[512], jpath[512], wal[512];
    make_dir(dir, "retire");
    path_in(target, dir, "out.log");
    path_in(jpath, dir, "job.journal");
    init_target(target);
    trib_journal *j = open_journal(jpath, NULL);
    append_str(j, "one");
    append_str(j, "two");
    const char *paths[] = {jpath};
    size_t retired = 0;
    trib_error *err = NULL;
    EXPECT(TRIB_OK, trib_retire(target, paths, 1, NULL, &retired, &err));
    CHECK(retired == 1);
    struct stat st;
    pathf(wal, "%s-wal", jpath);
    CHECK(stat(jpath, &st) != 0 && stat(wal, &st) != 0);
    uint64_t seq = 0;
    EXPECT(TRIB_E_JOURNAL_GONE, trib_journal_append(j, (const uint8_t *)"late", 4, &seq, &err));
    CHECK(seq == 0);
    trib_journal_close(j);
    size_t len = 0;
    char *got = read_file(target, &len);
    CHECK(got != NULL && len == 8 && memcmp(got, "one\ntwo\n", 8) == 0);
    free(got);
    EXPECT(TRIB_E_NOT_A_JOURNAL, trib_retire(target, paths, 1, NULL, &retired, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_retire(NULL, paths, 1, NULL, &retired, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_retire(target, paths, 1, NULL, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_retire(target, NULL, 1, NULL, &retired, &err));

    /* A journal holding an idempotency key: refused (the advice names the C call),
     * retired by trib_retire_forgetting_keys. */
    char kpath[512];
    path_in(kpath, dir, "keyed.journal");
    trib_journal *k = open_journal(kpath, NULL);
    EXPECT(TRIB_OK, trib_journal_append_keyed(k, (const uint8_t *)"order-1", 7, (const uint8_t *)"three", 5, &seq,
                                              &err));
    trib_journal_close(k);
    const char *kpaths[] = {kpath};
    retired = 77;
    CHECK(trib_retire(target, kpaths, 1, NULL, &retired, &err) == TRIB_E_INVALID_ARG && err != NULL);
    CHECK(err && strstr(trib_error_message(err), "idempotency key") != NULL &&
          strstr(trib_error_message(err), "trib_retire_forgetting_keys") != NULL);
    trib_error_free(err);
    err = NULL;
    CHECK(retired == 77 && stat(kpath, &st) == 0);
    EXPECT(TRIB_OK, trib_retire_forgetting_keys(target, kpaths, 1, NULL, &retired, &err));
    CHECK(retired == 1 && stat(kpath, &st) != 0);
    got = read_file(target, &len);
    CHECK(got != NULL && len == 14 && memcmp(got, "one\ntwo\nthree\n", 14) == 0);
    free(got);
    EXPECT(TRIB_E_INVALID_ARG, trib_retire_forgetting_keys(target, kpaths, 1, NULL, NULL, &err));
}

/* ---- the daemon: trib_compact and its stop token ------------------------------------ */

/* What the daemon's events told, shared with the thread that stops it. */
struct compact_seen {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t lines;   /* committed, from TRIB_EVENT_COMMITTED reports */
    int set_aside;    /* TRIB_EVENT_SET_ASIDE events */
    int set_aside_kind;
    int bad_event;    /* an event whose arguments break the documented contract */
    int done;         /* trib_compact returned */
    trib_stop *stop;
};

static void on_compact_event(void *ctx, int event, const char *subject, int kind, const char *message,
                             const trib_drain_report *report) {
    struct compact_seen *s = ctx;
    pthread_mutex_lock(&s->mu);
    if (subject == NULL || message == NULL) {
        s->bad_event++;
    } else if (event == TRIB_EVENT_COMMITTED) {
        if (report == NULL || kind != 0 || report->lines == 0) {
            s->bad_event++;
        } else {
            s->lines += report->lines;
        }
    } else if (event == TRIB_EVENT_SET_ASIDE) {
        s->set_aside++;
        s->set_aside_kind = kind;
        if (strstr(subject, "junk.journal") == NULL || report != NULL) {
            s->bad_event++;
        }
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Asks the daemon to stop once it has committed 3 lines and set the junk journal aside
 * (a condition, never a time); gives up when trib_compact returned on its own. */
static void *compact_stopper(void *p) {
    struct compact_seen *s = p;
    pthread_mutex_lock(&s->mu);
    while (!s->done && !(s->lines >= 3 && s->set_aside >= 1)) {
        pthread_cond_wait(&s->cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    trib_stop_request(s->stop);
    return NULL;
}

/* trib_compact drains a spool until another thread asks it to stop, sets a junk
 * journal aside (said once) while the good one drains, stops on its own with an error
 * that needs a human, and refuses bad arguments. */
static void test_compact_daemon(void) {
    char dir[512], spool[512], target[512], jpath[512], junk[512];
    trib_error *err = NULL;
    make_dir(dir, "daemon");
    pathf(spool, "%s/spool", dir);
    CHECK(mkdir(spool, 0755) == 0);
    path_in(target, dir, "out.log");
    path_in(jpath, spool, "good.journal");
    path_in(junk, spool, "junk.journal");
    init_target(target);
    trib_journal *j = open_journal(jpath, NULL);
    append_str(j, "one");
    append_str(j, "two");
    append_str(j, "three");
    write_file(junk, "not an SQLite file, not even a little", 37);

    struct compact_seen seen;
    memset(&seen, 0, sizeof seen);
    pthread_mutex_init(&seen.mu, NULL);
    pthread_cond_init(&seen.cv, NULL);
    EXPECT(TRIB_OK, trib_stop_new(&seen.stop, &err));
    CHECK(seen.stop != NULL);
    pthread_t tid;
    CHECK(pthread_create(&tid, NULL, compact_stopper, &seen) == 0);
    trib_compact_report rep = {99, 99};
    EXPECT(TRIB_OK, trib_compact(target, spool, NULL, 1, seen.stop, on_compact_event, &seen, &rep, &err));
    pthread_mutex_lock(&seen.mu);
    seen.done = 1;
    pthread_cond_broadcast(&seen.cv);
    pthread_mutex_unlock(&seen.mu);
    pthread_join(tid, NULL);
    CHECK(rep.lines == 3 && rep.rounds >= 1 && seen.lines == 3);
    CHECK(seen.set_aside == 1 && seen.set_aside_kind == TRIB_E_NOT_A_JOURNAL && seen.bad_event == 0);
    size_t len = 0;
    char *got = read_file(target, &len);
    CHECK(got != NULL && len == 14 && memcmp(got, "one\ntwo\nthree\n", 14) == 0);
    free(got);

    /* A stop requested before the call: it returns at once; requests are idempotent. */
    trib_stop_request(seen.stop);
    rep.rounds = rep.lines = 99;
    EXPECT(TRIB_OK, trib_compact(target, spool, NULL, 0, seen.stop, NULL, NULL, &rep, &err));
    CHECK(rep.rounds == 0 && rep.lines == 0);
    trib_stop_free(seen.stop);

    /* Truncated behind tributary's back: needs a human, so the daemon stops with it (no
     * stop requested, no callback), and still says what it did. */
    trib_stop *never = NULL;
    EXPECT(TRIB_OK, trib_stop_new(&never, &err));
    CHECK(truncate(target, 4) == 0);
    append_str(j, "four");
    rep.rounds = rep.lines = 99;
    EXPECT(TRIB_E_TARGET_TRUNCATED, trib_compact(target, spool, NULL, 1, never, NULL, NULL, &rep, &err));
    CHECK(rep.rounds == 0 && rep.lines == 0);

    /* Bad arguments. */
    EXPECT(TRIB_E_INVALID_ARG, trib_compact(target, spool, NULL, 1, NULL, NULL, NULL, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_compact(target, NULL, NULL, 1, never, NULL, NULL, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_compact(NULL, spool, NULL, 1, never, NULL, NULL, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_stop_new(NULL, &err));
    trib_stop_request(NULL);
    trib_stop_free(never);
    trib_stop_free(NULL);
    trib_journal_close(j);
    pthread_cond_destroy(&seen.cv);
    pthread_mutex_destroy(&seen.mu);
}

/* trib_drain_stoppable: a stop token ends a wait for a lock held elsewhere (requested
 * before the call: at once, far inside the hour-long lock timeout), and without a
 * request it drains as trib_drain; a spool drain refusing one file reports what it
 * drained of the others. */
static void test_drain_stoppable(void) {
    char dir[512], spool[512], target[512], jpath[512], junk[512];
    trib_error *err = NULL;
    make_dir(dir, "stoppable");
    pathf(spool, "%s/spool", dir);
    CHECK(mkdir(spool, 0755) == 0);
    path_in(target, dir, "out.log");
    path_in(jpath, spool, "a.journal");
    init_target(target);
    trib_journal *j = open_journal(jpath, NULL);
    append_str(j, "one");
    append_str(j, "two");
    const char *paths[1] = {jpath};

    int fd = hold_target_lock(target);
    trib_compactor_options co;
    trib_compactor_options_default(&co, NULL);
    co.lock_timeout_ms = 3600 * 1000;
    trib_stop *stop = NULL;
    EXPECT(TRIB_OK, trib_stop_new(&stop, &err));
    trib_stop_request(stop);
    trib_drain_report rep;
    memset(&rep, 0xff, sizeof rep);
    uint64_t t0 = now_ms();
    EXPECT(TRIB_E_LOCK_TIMEOUT, trib_drain_stoppable(target, paths, 1, NULL, &co, stop, &rep, &err));
    CHECK(now_ms() - t0 < 1800 * 1000); /* a hang guard: the hour would have passed */
    CHECK(rep.lines == UINT64_MAX && rep.rounds == UINT64_MAX); /* a failed call writes no output */
    trib_stop_free(stop);
    close(fd); /* releases the OFD lock */

    EXPECT(TRIB_OK, trib_stop_new(&stop, &err));
    EXPECT(TRIB_OK, trib_drain_stoppable(target, paths, 1, NULL, &co, stop, &rep, &err));
    CHECK(rep.lines == 2);
    trib_stop_free(stop);
    append_str(j, "three");
    EXPECT(TRIB_OK, trib_drain_stoppable(target, paths, 1, NULL, NULL, NULL, &rep, &err));
    CHECK(rep.lines == 1);

    append_str(j, "four");
    path_in(junk, spool, "junk.journal");
    write_file(junk, "not an SQLite file, not even a little", 37);
    EXPECT(TRIB_E_NOT_A_JOURNAL, trib_drain(target, NULL, 0, spool, NULL, &rep, &err));
    CHECK(rep.lines == 1 && rep.journals == 1);
    trib_journal_close(j);
}

/* trib_retire_stoppable: a stop requested while another holder keeps the lock ends
 * the retirement's drain far inside the hour-long lock timeout, and the journal is
 * not deleted (an outside tester's Go Retire(ctx) waited out the holder after its
 * context was cancelled, then deleted it); without a request it retires as
 * trib_retire, and with forget_keys as trib_retire_forgetting_keys. */
static void test_retire_stoppable(void) {
    char dir[512], target[512], jpath[512], kpath[512];
    trib_error *err = NULL;
    make_dir(dir, "retire-stoppable");
    path_in(target, dir, "out.log");
    path_in(jpath, dir, "a.journal");
    path_in(kpath, dir, "keyed.journal");
    init_target(target);
    trib_journal *j = open_journal(jpath, NULL);
    append_str(j, "one");
    trib_journal_close(j);
    const char *paths[1] = {jpath};

    int fd = hold_target_lock(target);
    trib_compactor_options co;
    trib_compactor_options_default(&co, NULL);
    co.lock_timeout_ms = 3600 * 1000;
    trib_stop *stop = NULL;
    EXPECT(TRIB_OK, trib_stop_new(&stop, &err));
    trib_stop_request(stop);
    size_t retired = 77;
    uint64_t t0 = now_ms();
    EXPECT(TRIB_E_LOCK_TIMEOUT, trib_retire_stoppable(target, paths, 1, &co, false, stop, &retired, &err));
    CHECK(now_ms() - t0 < 1800 * 1000); /* a hang guard: the hour would have passed */
    CHECK(retired == 77);               /* a failed call writes no output */
    CHECK(access(jpath, F_OK) == 0);    /* not deleted */
    trib_stop_free(stop);
    close(fd); /* releases the OFD lock */

    EXPECT(TRIB_OK, trib_stop_new(&stop, &err));
    EXPECT(TRIB_OK, trib_retire_stoppable(target, paths, 1, &co, false, stop, &retired, &err));
    CHECK(retired == 1 && access(jpath, F_OK) != 0);
    trib_stop_free(stop);

    /* forget_keys: a journal holding a key within its retention is refused without it */
    trib_journal *k = open_journal(kpath, NULL);
    uint64_t seq = 0;
    EXPECT(TRIB_OK, trib_journal_append_keyed(k, (const uint8_t *)"key-1", 5, (const uint8_t *)"keyed", 5, &seq, &err));
    trib_journal_close(k);
    const char *kpaths[1] = {kpath};
    EXPECT(TRIB_E_INVALID_ARG, trib_retire_stoppable(target, kpaths, 1, NULL, false, NULL, &retired, &err));
    CHECK(access(kpath, F_OK) == 0);
    EXPECT(TRIB_OK, trib_retire_stoppable(target, kpaths, 1, NULL, true, NULL, &retired, &err));
    CHECK(retired == 1 && access(kpath, F_OK) != 0);
}

/* trib_compact_journals: the same daemon over a fixed set of journals. The junk one is
 * set aside (said once) while the good one drains; bad arguments are refused. */
static void test_compact_journals_daemon(void) {
    char dir[512], target[512], jpath[512], junk[512];
    trib_error *err = NULL;
    make_dir(dir, "daemon-fixed");
    path_in(target, dir, "out.log");
    path_in(jpath, dir, "good.journal");
    path_in(junk, dir, "junk.journal");
    init_target(target);
    trib_journal *j = open_journal(jpath, NULL);
    append_str(j, "one");
    append_str(j, "two");
    append_str(j, "three");
    write_file(junk, "not an SQLite file, not even a little", 37);
    const char *paths[] = {jpath, junk};

    struct compact_seen seen;
    memset(&seen, 0, sizeof seen);
    pthread_mutex_init(&seen.mu, NULL);
    pthread_cond_init(&seen.cv, NULL);
    EXPECT(TRIB_OK, trib_stop_new(&seen.stop, &err));
    pthread_t tid;
    CHECK(pthread_create(&tid, NULL, compact_stopper, &seen) == 0);
    trib_compact_report rep = {99, 99};
    EXPECT(TRIB_OK, trib_compact_journals(target, paths, 2, NULL, 1, seen.stop, on_compact_event, &seen, &rep, &err));
    pthread_mutex_lock(&seen.mu);
    seen.done = 1;
    pthread_cond_broadcast(&seen.cv);
    pthread_mutex_unlock(&seen.mu);
    pthread_join(tid, NULL);
    CHECK(rep.lines == 3 && seen.lines == 3);
    CHECK(seen.set_aside == 1 && seen.set_aside_kind == TRIB_E_NOT_A_JOURNAL && seen.bad_event == 0);
    size_t len = 0;
    char *got = read_file(target, &len);
    CHECK(got != NULL && len == 14 && memcmp(got, "one\ntwo\nthree\n", 14) == 0);
    free(got);

    /* Bad arguments: no array with a count, a NULL path, no stop token. */
    const char *with_null[] = {jpath, NULL};
    EXPECT(TRIB_E_INVALID_ARG, trib_compact_journals(target, NULL, 1, NULL, 1, seen.stop, NULL, NULL, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_compact_journals(target, with_null, 2, NULL, 1, seen.stop, NULL, NULL, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_compact_journals(target, paths, 2, NULL, 1, NULL, NULL, NULL, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_compact_journals(NULL, paths, 2, NULL, 1, seen.stop, NULL, NULL, NULL, &err));
    trib_stop_free(seen.stop);
    trib_journal_close(j);
    pthread_cond_destroy(&seen.cv);
    pthread_mutex_destroy(&seen.mu);
}

/* trib_compactor: a handle over two spools (one not there yet), a journal given by
 * path and a junk journal, run until empty (no stop token): every line once, the junk
 * journal and the missing spool counted as set aside; a second run finds nothing; a
 * spool added later is drained by the next run; bad arguments are refused. */
static void test_compactor_handle(void) {
    char dir[512], spool_a[512], spool_b[512], missing[512], target[512], ja[512], jb[512], loose[512], junk[512];
    trib_error *err = NULL;
    make_dir(dir, "handle");
    pathf(spool_a, "%s/a", dir);
    pathf(spool_b, "%s/b", dir);
    pathf(missing, "%s/not-yet", dir);
    CHECK(mkdir(spool_a, 0755) == 0);
    path_in(target, dir, "out.log");
    path_in(ja, spool_a, "one.journal");
    path_in(loose, dir, "loose.journal");
    path_in(junk, spool_a, "junk.journal");
    init_target(target);
    trib_journal *j1 = open_journal(ja, NULL);
    append_str(j1, "one");
    trib_journal *j2 = open_journal(loose, NULL);
    append_str(j2, "two");
    write_file(junk, "not an SQLite file, not even a little", 37);

    trib_compactor *c = NULL;
    EXPECT(TRIB_OK, trib_compactor_new(target, NULL, &c, &err));
    CHECK(c != NULL);
    EXPECT(TRIB_OK, trib_compactor_add_spool(c, spool_a, &err));
    EXPECT(TRIB_OK, trib_compactor_add_spool(c, missing, &err));
    EXPECT(TRIB_OK, trib_compactor_add_journal(c, loose, &err));
    EXPECT(TRIB_OK, trib_compactor_add_journal(c, loose, &err)); /* twice: drained once */
    trib_run_options ro;
    EXPECT(TRIB_OK, trib_run_options_default(&ro, &err));
    CHECK(ro.interval_ms == 100 && ro.max_backoff_ms == 30000 && !ro.until_empty);
    ro.interval_ms = 1;
    ro.until_empty = true;
    trib_run_report rep = {99, 99, 99};
    EXPECT(TRIB_OK, trib_compactor_run(c, &ro, NULL, NULL, NULL, &rep, &err));
    CHECK(rep.lines == 2 && rep.rounds >= 1 && rep.set_aside == 2);
    size_t len = 0;
    char *got = read_file(target, &len);
    CHECK(got != NULL && len == 8 && (memcmp(got, "one\ntwo\n", 8) == 0 || memcmp(got, "two\none\n", 8) == 0));
    free(got);

    /* Nothing new: a run until empty commits nothing. A spool added later (and a line
     * in it) is drained by the next run. */
    EXPECT(TRIB_OK, trib_compactor_run(c, &ro, NULL, NULL, NULL, &rep, &err));
    CHECK(rep.lines == 0 && rep.rounds == 0);
    CHECK(mkdir(spool_b, 0755) == 0);
    path_in(jb, spool_b, "three.journal");
    trib_journal *j3 = open_journal(jb, NULL);
    append_str(j3, "three");
    EXPECT(TRIB_OK, trib_compactor_add_spool(c, spool_b, &err));
    EXPECT(TRIB_OK, trib_compactor_run(c, &ro, NULL, NULL, NULL, &rep, &err));
    CHECK(rep.lines == 1 && rep.set_aside == 2);

    /* A stop requested before the run: it returns at once, even with until_empty off. */
    trib_stop *stop = NULL;
    EXPECT(TRIB_OK, trib_stop_new(&stop, &err));
    trib_stop_request(stop);
    ro.until_empty = false;
    EXPECT(TRIB_OK, trib_compactor_run(c, &ro, stop, NULL, NULL, &rep, &err));
    CHECK(rep.lines == 0);

    /* Bad arguments: interval 0, NULL paths and handles, a handle of another type. */
    ro.interval_ms = 0;
    EXPECT(TRIB_E_INVALID_ARG, trib_compactor_run(c, &ro, stop, NULL, NULL, &rep, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_compactor_add_spool(c, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_compactor_add_journal(c, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_compactor_add_spool(NULL, spool_a, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_compactor_run(NULL, NULL, stop, NULL, NULL, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_compactor_run((const trib_compactor *)stop, NULL, stop, NULL, NULL, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_compactor_new(NULL, NULL, &c, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_compactor_new(target, NULL, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_run_options_default(NULL, &err));
    trib_stop_free(stop);
    trib_compactor_free(c);
    trib_compactor_free(NULL);
    trib_journal_close(j1);
    trib_journal_close(j2);
    trib_journal_close(j3);
}

/* A processor's pieces: the cursor store, a cursor committed in the journal with its
 * results, keyed outcomes (single and batch), a reader's lag. */
static void test_processing_pieces(void) {
    char dir[512], jp[512], a[512], b[512], store_path[512];
    trib_error *err = NULL;
    make_dir(dir, "processing");
    path_in(jp, dir, "p.journal");
    path_in(a, dir, "a.log");
    path_in(b, dir, "b.log");
    path_in(store_path, dir, "r.cursors");
    init_target(a);
    init_target(b);
    trib_journal *j = open_journal(jp, NULL);
    const char *pj[1] = {jp};

    /* keyed outcomes: stored, absorbed; a batch with a key repeated */
    trib_keyed_append ka;
    memset(&ka, 0, sizeof ka);
    EXPECT(TRIB_OK, trib_journal_append_keyed_outcome(j, (const uint8_t *)"k1", 2, (const uint8_t *)"one", 3, &ka, &err));
    CHECK(ka.seq == 1 && ka.stored);
    EXPECT(TRIB_OK, trib_journal_append_keyed_outcome(j, (const uint8_t *)"k1", 2, (const uint8_t *)"one", 3, &ka, &err));
    CHECK(ka.seq == 1 && !ka.stored);
    EXPECT(TRIB_E_INVALID_ARG,
           trib_journal_append_keyed_outcome(j, (const uint8_t *)"k1", 2, (const uint8_t *)"one", 3, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG,
           trib_journal_append_keyed_outcome(j, NULL, 0, (const uint8_t *)"one", 3, &ka, &err)); /* empty key */
    trib_slice keys[3] = {{(const uint8_t *)"k2", 2}, {(const uint8_t *)"k1", 2}, {(const uint8_t *)"k2", 2}};
    trib_slice vals[3] = {{(const uint8_t *)"two", 3}, {(const uint8_t *)"x", 1}, {(const uint8_t *)"y", 1}};
    trib_keyed_append outs[3];
    memset(outs, 0, sizeof outs);
    EXPECT(TRIB_OK, trib_journal_append_keyed_batch(j, keys, vals, 3, outs, &err));
    CHECK(outs[0].seq == 2 && outs[0].stored);
    CHECK(outs[1].seq == 1 && !outs[1].stored);
    CHECK(outs[2].seq == 2 && !outs[2].stored);
    EXPECT(TRIB_OK, trib_journal_append_keyed_batch(j, NULL, NULL, 0, NULL, &err)); /* nothing to do */
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_append_keyed_batch(j, keys, vals, 3, NULL, &err));
    trib_slice bad[1] = {{(const uint8_t *)"a\nb", 3}};
    EXPECT(TRIB_E_INVALID_LINE, trib_journal_append_keyed_batch(j, keys, bad, 1, outs, &err));
    trib_backlog bl;
    EXPECT(TRIB_OK, trib_journal_backlog(j, &bl, &err));
    CHECK(bl.last_seq == 2);
    drain_paths(a, pj, 1); /* A: one, two */

    /* a reader's lag, and a cursor committed with results in the journal */
    trib_reader *r = NULL;
    trib_cursor start = {0}, c, got;
    trib_lag lag;
    bool has = false, found = true;
    const uint8_t *line = NULL;
    size_t len = 0;
    EXPECT(TRIB_OK, trib_reader_open_cursor(a, &start, &r, &err));
    EXPECT(TRIB_OK, trib_reader_lag(r, &lag, &err));
    CHECK(lag.bytes == 8 && lag.later_generations == 0);
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_lag(r, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_lag(NULL, &lag, &err));
    EXPECT(TRIB_OK, trib_reader_next(r, 0, &has, &line, &len, &err));
    CHECK(has && len == 3);
    EXPECT(TRIB_OK, trib_reader_lag(r, &lag, &err));
    CHECK(lag.bytes == 4);
    EXPECT(TRIB_OK, trib_reader_position(r, &c, &err));
    trib_journal *q = open_journal(path_in(store_path, dir, "q.journal"), NULL);
    EXPECT(TRIB_OK, trib_journal_cursor(q, "A", &got, &found, &err));
    CHECK(!found);
    trib_slice res[1] = {{(const uint8_t *)"r:one", 5}};
    uint64_t first = 99;
    EXPECT(TRIB_OK, trib_journal_append_batch_with_cursor(q, res, 1, "A", &c, &first, &err));
    CHECK(first == 1);
    EXPECT(TRIB_OK, trib_journal_cursor(q, "A", &got, &found, &err));
    CHECK(found && got.generation == c.generation && got.offset == c.offset && strcmp(got.target_id, c.target_id) == 0);
    EXPECT(TRIB_OK, trib_journal_append_batch_with_cursor(q, NULL, 0, "A", &c, &first, &err));
    CHECK(first == 0);
    EXPECT(TRIB_E_INVALID_LINE, trib_journal_append_batch_with_cursor(q, bad, 1, "A", &start, &first, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_append_batch_with_cursor(q, res, 1, "", &c, &first, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_append_batch_with_cursor(q, res, 1, "A", NULL, &first, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_cursor(q, NULL, &got, &found, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_cursor(q, "A", &got, NULL, &err));
    /* B's cursor under the same name: refused, nothing stored */
    trib_reader *rb = NULL;
    trib_cursor cb;
    EXPECT(TRIB_OK, trib_reader_open_cursor(b, &start, &rb, &err));
    EXPECT(TRIB_OK, trib_reader_position(rb, &cb, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_journal_append_batch_with_cursor(q, res, 1, "A", &cb, &first, &err));
    EXPECT(TRIB_OK, trib_journal_backlog(q, &bl, &err));
    CHECK(bl.last_seq == 1);
    /* a reader of A resumes at the journal's cursor; B's reader refuses it */
    trib_reader *r2 = NULL;
    EXPECT(TRIB_OK, trib_journal_cursor(q, "A", &got, &found, &err));
    EXPECT(TRIB_OK, trib_reader_open_cursor(a, &got, &r2, &err));
    EXPECT(TRIB_OK, trib_reader_next(r2, 0, &has, &line, &len, &err));
    CHECK(has && len == 3 && memcmp(line, "two", 3) == 0);
    trib_reader_close(r2);
    r2 = NULL;
    EXPECT(TRIB_E_INVALID_ARG, trib_reader_open_cursor(b, &got, &r2, &err));
    CHECK(r2 == NULL);

    /* the cursor store */
    trib_cursor_store *cs = NULL;
    EXPECT(TRIB_OK, trib_cursor_store_open(path_in(store_path, dir, "r.cursors"), &cs, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_cursor_store_open(NULL, &cs, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_cursor_store_open(store_path, NULL, &err));
    found = true;
    EXPECT(TRIB_OK, trib_cursor_store_get(cs, "reader-1", &got, &found, &err));
    CHECK(!found);
    EXPECT(TRIB_OK, trib_cursor_store_commit(cs, "reader-1", &c, &err));
    EXPECT(TRIB_OK, trib_cursor_store_get(cs, "reader-1", &got, &found, &err));
    CHECK(found && got.generation == c.generation && got.offset == c.offset && strcmp(got.target_id, c.target_id) == 0);
    EXPECT(TRIB_E_INVALID_ARG, trib_cursor_store_get(cs, "", &got, &found, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_cursor_store_get(cs, "reader-1", NULL, &found, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_cursor_store_commit(cs, "reader-1", NULL, &err));
    trib_cursor badc = c;
    memcpy(badc.target_id, "zz", 3);
    EXPECT(TRIB_E_INVALID_ARG, trib_cursor_store_commit(cs, "reader-1", &badc, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_cursor_store_get((trib_cursor_store *)j, "reader-1", &got, &found, &err));
    trib_cursor_store_close(cs);
    cs = NULL;
    EXPECT(TRIB_OK, trib_cursor_store_open(store_path, &cs, &err)); /* durable across handles */
    EXPECT(TRIB_OK, trib_cursor_store_get(cs, "reader-1", &got, &found, &err));
    CHECK(found && got.offset == c.offset);
    EXPECT(TRIB_OK, trib_reader_open_cursor(a, &got, &r2, &err));
    EXPECT(TRIB_OK, trib_reader_next(r2, 0, &has, &line, &len, &err));
    CHECK(has && len == 3 && memcmp(line, "two", 3) == 0);
    trib_reader_close(r2);
    trib_cursor_store_close(cs);
    trib_cursor_store_close(NULL);
    path_in(store_path, dir, "not-a-store");
    write_file(store_path, "hello, not sqlite at all, just some bytes to be sure", 52);
    cs = NULL;
    CHECK(trib_cursor_store_open(store_path, &cs, &err) != TRIB_OK && cs == NULL && err != NULL);
    trib_error_free(err);
    err = NULL;

    trib_reader_close(r);
    trib_reader_close(rb);
    trib_journal_close(q);
    trib_journal_close(j);
}

/* trib_appender: push returns before durability, flush makes it durable, a full
 * queue drops and counts with TRIB_ON_FULL_DROP, bad arguments are refused, close
 * flushes. */
static void test_appender(void) {
    char dir[512], target[512], jpath[512], other[512];
    trib_error *err = NULL;
    make_dir(dir, "appender");
    path_in(target, dir, "out.log");
    path_in(jpath, dir, "a.journal");
    path_in(other, dir, "b.journal");
    init_target(target);

    trib_appender_options o;
    EXPECT(TRIB_OK, trib_appender_options_default(&o, &err));
    CHECK(o.window_us == 10000 && o.max_queue_bytes == 8u << 20 && o.on_full == TRIB_ON_FULL_BLOCK);
    CHECK(o.journal.durability == TRIB_DURABILITY_FULL);
    o.window_us = 7200ull * 1000000; /* only flushes (and a full queue) commit */
    o.max_queue_bytes = 15;
    o.on_full = TRIB_ON_FULL_DROP;
    trib_appender *a = NULL;
    EXPECT(TRIB_OK, trib_appender_open(jpath, &o, &a, &err));
    int queued = -1;
    EXPECT(TRIB_OK, trib_appender_push(a, (const uint8_t *)"0123456789", 10, &queued, &err));
    CHECK(queued == 1);
    EXPECT(TRIB_OK, trib_appender_push(a, (const uint8_t *)"abcdefghij", 10, &queued, &err));
    CHECK(queued == 0);
    EXPECT(TRIB_OK, trib_appender_flush(a, &err));
    trib_appender_stats st;
    EXPECT(TRIB_OK, trib_appender_read_stats(a, &st, &err));
    CHECK(st.pushed == 1 && st.committed == 1 && st.dropped == 1 && st.commits == 1 && st.failed_commits == 0);
    EXPECT(TRIB_E_INVALID_ARG, trib_appender_read_stats(a, NULL, &err));
    /* The window as measured: the one committed line waited more than 0 µs (its
     * commit has an fsync), and q must be a fraction. */
    uint64_t waited = 0, longest = 0;
    EXPECT(TRIB_OK, trib_appender_durable_wait(a, 0.99, &waited, &err));
    EXPECT(TRIB_OK, trib_appender_durable_wait(a, 1.0, &longest, &err));
    CHECK(waited > 0 && waited == longest);
    EXPECT(TRIB_E_INVALID_ARG, trib_appender_durable_wait(a, 1.5, &waited, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_appender_durable_wait(a, -0.1, &waited, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_appender_durable_wait(a, 0.5, NULL, &err));
    EXPECT(TRIB_OK, trib_appender_push(a, (const uint8_t *)"after", 5, NULL, &err));
    EXPECT(TRIB_E_INVALID_LINE, trib_appender_push(a, (const uint8_t *)"a\nb", 3, NULL, &err));
    /* Many lines in one call, per line as pushes: 5 + 2 + 2 bytes fit the 15-byte
     * queue, the third line does not and is dropped. */
    size_t n_queued = 9, n_dropped = 9;
    const char *many = "x1\ny2\nzzzzzzzzzz\n";
    EXPECT(TRIB_OK, trib_appender_push_lines(a, (const uint8_t *)many, strlen(many), 0, &n_queued, &n_dropped, &err));
    CHECK(n_queued == 2 && n_dropped == 1);
    /* a held time the clock cannot go back by: refused, nothing queued */
    EXPECT(TRIB_E_INVALID_ARG,
           trib_appender_push_lines(a, (const uint8_t *)"w", 1, UINT64_MAX, &n_queued, &n_dropped, &err));
    CHECK(n_queued == 0 && n_dropped == 0);
    EXPECT(TRIB_E_INVALID_ARG, trib_appender_push_lines(NULL, (const uint8_t *)"w", 1, 0, NULL, NULL, &err));
    /* NULL lines with a length: refused, and the counts still say nothing was queued */
    n_queued = 9, n_dropped = 9;
    EXPECT(TRIB_E_INVALID_ARG, trib_appender_push_lines(a, NULL, 3, 0, &n_queued, &n_dropped, &err));
    CHECK(n_queued == 0 && n_dropped == 0);
    EXPECT(TRIB_OK, trib_appender_close(a, &err)); /* flushes "after", "x1", "y2" */
    const char *paths[] = {jpath};
    trib_drain_report rep = drain_paths(target, paths, 1);
    CHECK(rep.lines == 4);
    size_t len = 0;
    char *got = read_file(target, &len);
    CHECK(got != NULL && len == 23 && memcmp(got, "0123456789\nafter\nx1\ny2\n", 23) == 0);
    free(got);

    /* Bad arguments. */
    trib_appender *b = NULL;
    o.on_full = 7;
    EXPECT(TRIB_E_INVALID_ARG, trib_appender_open(other, &o, &b, &err));
    o.on_full = TRIB_ON_FULL_BLOCK;
    o.max_queue_bytes = 0;
    EXPECT(TRIB_E_INVALID_ARG, trib_appender_open(other, &o, &b, &err));
    CHECK(b == NULL);
    EXPECT(TRIB_E_INVALID_ARG, trib_appender_open(NULL, NULL, &b, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_appender_open(other, NULL, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_appender_push(NULL, (const uint8_t *)"x", 1, NULL, &err));
    EXPECT(TRIB_E_INVALID_ARG, trib_appender_flush(NULL, &err));
    trib_appender_stats none;
    EXPECT(TRIB_E_INVALID_ARG, trib_appender_read_stats(NULL, &none, &err));
    uint64_t us = 0;
    EXPECT(TRIB_E_INVALID_ARG, trib_appender_durable_wait(NULL, 0.5, &us, &err));
    EXPECT(TRIB_OK, trib_appender_close(NULL, &err));
    /* The defaults (NULL options) work, and a wrong handle type is refused. */
    EXPECT(TRIB_OK, trib_appender_open(other, NULL, &b, &err));
    trib_journal *j = open_journal(jpath, NULL);
    EXPECT(TRIB_E_INVALID_ARG, trib_appender_flush((const trib_appender *)(const void *)j, &err));
    trib_journal_close(j);
    EXPECT(TRIB_OK, trib_appender_push(b, (const uint8_t *)"default", 7, NULL, &err));
    EXPECT(TRIB_OK, trib_appender_close(b, &err));

    /* A close that gives up on queued records says how many, in the error itself: a
     * journal whose backlog holds 25 bytes (no wait for room) stores 2 of 5 records of
     * 10 bytes; the other 3 are lost at close, and only at close. */
    char full[512];
    path_in(full, dir, "full.journal");
    EXPECT(TRIB_OK, trib_appender_options_default(&o, &err));
    o.window_us = 7200ull * 1000000;
    o.journal.max_backlog_bytes = 25;
    o.journal.full_wait_ms = 0;
    EXPECT(TRIB_OK, trib_appender_open(full, &o, &b, &err));
    for (int i = 0; i < 5; i++) {
        char line[16];
        snprintf(line, sizeof line, "record-%03d", i);
        EXPECT(TRIB_OK, trib_appender_push(b, (const uint8_t *)line, 10, NULL, &err));
    }
    EXPECT(TRIB_E_JOURNAL_FULL, trib_appender_flush(b, &err));
    int rc = trib_appender_close(b, &err);
    CHECK(rc == TRIB_E_JOURNAL_FULL && err != NULL);
    CHECK(trib_error_records_not_stored(err) == 3);
    CHECK(strstr(trib_error_message(err), "3 queued record(s) were not stored") != NULL);
    trib_error_free(err);
    err = NULL;
    CHECK(trib_error_records_not_stored(NULL) == 0);
    /* any other error: 0 (a failed flush's records stay queued) */
    CHECK(trib_appender_flush(NULL, &err) == TRIB_E_INVALID_ARG && trib_error_records_not_stored(err) == 0);
    trib_error_free(err);
    err = NULL;
    const char *full_paths[] = {full};
    char full_target[512];
    path_in(full_target, dir, "full.log");
    init_target(full_target);
    rep = drain_paths(full_target, full_paths, 1);
    CHECK(rep.lines == 2);
}

int main(int argc, char **argv) {
    g_argv0 = argv[0];
    if (argc == 4 && strcmp(argv[1], "--drain-child") == 0) {
        return drain_child(argv[2], argv[3]);
    }
    if (argc == 3 && strcmp(argv[1], "--append-child") == 0) {
        return append_child(argv[2]);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *tmp = getenv("TMPDIR");
    pathf(g_root, "%s/trib-c-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 2;
    }
    printf("tributary %s (ABI %u), temp folder %s\n", trib_version(), trib_abi_version(), g_root);

    test_version_and_names();
    test_options();
    test_journal_open_errors();
    test_append();
    test_drain_verify_read();
    test_journal_full();
    test_target_errors();
    test_sqlite_busy();
    test_lock_lost();
    test_explicit_creation();
    test_rotation();
    test_cursor_identity();
    test_threads_share_a_journal();
    test_retire();
    test_compact_daemon();
    test_drain_stoppable();
    test_retire_stoppable();
    test_compact_journals_daemon();
    test_compactor_handle();
    test_appender();
    test_processing_pieces();

    if (g_fail == 0) {
        rm_rf(g_root);
    } else {
        printf("kept %s for inspection\n", g_root);
    }
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
