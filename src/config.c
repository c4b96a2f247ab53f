/* config — see config.h.  Add a setting by adding a row to config_table. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "inventory.h"
#include "log.h"
#include "version.h"

enum config_type { CFG_INT, CFG_STR, CFG_ENUM };

struct config_row {
    const char *name;    /* --name, and FLASHSALE_NAME with '-' as '_' */
    enum config_type type;
    size_t offset;
    const char *def;     /* default, as it would be typed */
    int64_t min, max;    /* bounds for CFG_INT */
    const char *const *choices; /* CFG_ENUM names, NULL-terminated: the value stored is the index */
    const char *help;
};

#define F(field) offsetof(struct config, field)

static const char *const config_off_on[] = {"off", "on", NULL};
static const char *const config_inventories[] = {"atomic", "mutex", "sqlite", "unsafe", NULL};
static const char *const config_durabilities[] = {"full", "normal", NULL};
static const char *const config_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const config_log_formats[] = {"text", "json", NULL};
static const char *const config_models[] = {"threads", "thread-per-connection", "processes", NULL};

static const struct config_row config_table[] = {
    {"port", CFG_INT, F(port), "8080", 0, 65535, NULL, "TCP port to listen on (0 = any free port)"},
    {"bind", CFG_STR, F(bind), "127.0.0.1", 0, 0, NULL, "IPv4 address to listen on"},
    {"db", CFG_STR, F(db), "./flashsale.db", 0, 0, NULL,
     "SQLite database file, or a postgresql:// URI shared by several nodes"},
    {"admin-token", CFG_STR, F(admin_token), "", 0, 0, NULL,
     "bearer token for admin endpoints (empty = generate one and print it)"},
    {"admin", CFG_ENUM, F(admin), "on", 0, 0, config_off_on, "serve the admin endpoints at all"},
    {"inventory", CFG_ENUM, F(inventory), "atomic", 0, 0, config_inventories,
     "inventory strategy (unsafe oversells on purpose)"},
    {"model", CFG_ENUM, F(model), "threads", 0, 0, config_models,
     "execution model: I/O threads + a worker pool, one thread per connection (costly), or worker processes "
     "+ a writer process on shared memory (see README)"},
    {"processes", CFG_INT, F(processes), "0", 0, 64, NULL,
     "--model processes: worker processes (0 = one per core)"},
    {"ledger-entries", CFG_INT, F(ledger_entries), "1048576", 1024, 268435456, NULL,
     "--model processes: (sale, user) pairs the shared ledger holds; beyond it purchases get 503"},
    {"workers", CFG_INT, F(workers), "0", 0, 256, NULL,
     "purchase worker threads (0 = half the cores, at least 1; at least 4 for unsafe)"},
    {"queue", CFG_INT, F(queue), "8192", 1, 1000000, NULL,
     "purchase queue capacity; a full queue answers 503"},
    {"queue-timeout-ms", CFG_INT, F(queue_timeout_ms), "2000", 1, 600000, NULL,
     "a purchase queued longer than this is answered 503"},
    {"io-threads", CFG_INT, F(io_threads), "0", 0, 64, NULL,
     "HTTP event-loop threads (0 = the cores but one, at least 1)"},
    {"batch", CFG_INT, F(batch), "1024", 1, 100000, NULL, "most purchases per group commit"},
    {"demo-stock", CFG_INT, F(demo_stock), "100", 0, 1000000000, NULL,
     "units of the demo sale created in an empty database (0 = none)"},
    {"static", CFG_STR, F(static_dir), "./static", 0, 0, NULL,
     "folder served at / (an installed binary falls back to PREFIX/share/flashsale/static)"},
    {"durability", CFG_ENUM, F(durability), "full", 0, 0, config_durabilities,
     "SQLite synchronous mode: full survives power loss, normal a process crash"},
    {"max-connections", CFG_INT, F(max_connections), "16384", 16, 1000000, NULL,
     "most concurrent HTTP connections"},
    {"per-ip-limit", CFG_INT, F(per_ip_limit), "0", 0, 1000000, NULL,
     "most connections per client IP, for the whole service (0 = no limit)"},
    {"idle-timeout", CFG_INT, F(idle_timeout), "30", 1, 3600, NULL,
     "seconds of silence before a connection is closed"},
    {"sweep-ms", CFG_INT, F(sweep_ms), "1000", 10, 60000, NULL,
     "how often expired unpaid orders give their units back"},
    {"user-rate", CFG_INT, F(user_rate), "0", 0, 1000000, NULL,
     "purchase/pay/cancel requests per second per user id (0 = no limit; 429 beyond)"},
    {"ip-rate", CFG_INT, F(ip_rate), "0", 0, 10000000, NULL,
     "API requests per second per client address (0 = no limit; 429 beyond)"},
    {"user-secret", CFG_STR, F(user_secret), "", 0, 0, NULL,
     "HMAC key: purchases must carry X-User-Token signed with it (empty = off)"},
    {"log-level", CFG_ENUM, F(log_level), "info", 0, 0, config_levels, "log verbosity"},
    {"log-format", CFG_ENUM, F(log_format), "text", 0, 0, config_log_formats,
     "log lines as readable text, or one JSON object per line for log collectors"},
};

#define CONFIG_ROWS (sizeof config_table / sizeof config_table[0])

/* Flags that do something and exit instead of setting a value. */
static const struct {
    const char *flag, *help;
} config_actions[] = {
    {"--help", "print this help and exit"},
    {"--help-man", "print this help as the flashsale(1) man page (roff) and exit"},
    {"--version", "print the version and the libmicrohttpd, SQLite, jansson and libpq versions in use"},
};

static int64_t *config_int(struct config *cfg, const struct config_row *row)
{
    return (int64_t *)(void *)((char *)cfg + row->offset);
}

static char **config_str(struct config *cfg, const struct config_row *row)
{
    return (char **)(void *)((char *)cfg + row->offset);
}

/* Index of `value` in a NULL-terminated list of names, or -1. */
static int config_choice(const char *const *choices, const char *value)
{
    for (int i = 0; choices[i]; i++)
        if (strcmp(choices[i], value) == 0) return i;
    return -1;
}

/* "a|b|c", for messages and --help. */
static const char *config_choices_text(const char *const *choices, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; choices[i] && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? "|" : "", choices[i]);
    return buf;
}

static int config_set(struct config *cfg, const struct config_row *row, const char *value,
                      const char *source, FILE *err)
{
    switch (row->type) {
    case CFG_STR: {
        char *copy = strdup(value);
        if (!copy) return -1;
        free(*config_str(cfg, row));
        *config_str(cfg, row) = copy;
        return 0;
    }
    case CFG_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end || v < row->min || v > row->max) {
            fprintf(err, "flashsale: %s: --%s must be an integer from %lld to %lld, not '%s'\n",
                    source, row->name, (long long)row->min, (long long)row->max, value);
            return -1;
        }
        *config_int(cfg, row) = v;
        return 0;
    }
    case CFG_ENUM: {
        int i = config_choice(row->choices, value);
        if (i < 0) {
            char names[128];
            fprintf(err, "flashsale: %s: --%s must be one of %s, not '%s'\n", source, row->name,
                    config_choices_text(row->choices, names, sizeof names), value);
            return -1;
        }
        *config_int(cfg, row) = i;
        return 0;
    }
    }
    return -1;
}

static void config_env_name(const struct config_row *row, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "FLASHSALE_%s", row->name);
    for (size_t i = 0; i < n && i < size; i++)
        buf[i] = buf[i] == '-' ? '_' : (char)toupper((unsigned char)buf[i]);
}

/* An installed binary finds its dashboard.  When --static was left at its default
 * and ./static is not a folder, and this executable is <prefix>/bin/<name>, the
 * folder <prefix>/share/flashsale/static is used if it exists.  /proc/self/exe
 * gives <prefix>, so this holds for any PREFIX and DESTDIR without rebuilding. */
static void config_installed_static(struct config *cfg)
{
    struct stat st;
    if (stat(cfg->static_dir, &st) == 0 && S_ISDIR(st.st_mode)) return;
    char exe[4096], dir[4096 + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0 || n >= (ssize_t)sizeof exe - 1) return;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return;
    *slash = 0; /* exe is now the folder holding the binary */
    slash = strrchr(exe, '/');
    if (!slash || strcmp(slash, "/bin") != 0) return;
    *slash = 0;
    snprintf(dir, sizeof dir, "%s/share/flashsale/static", exe);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return;
    char *copy = strdup(dir);
    if (!copy) return;
    free(cfg->static_dir);
    cfg->static_dir = copy;
}

int config_parse(struct config *cfg, int argc, char **argv, FILE *err)
{
    memset(cfg, 0, sizeof *cfg);
    char env_name[64];
    bool static_given = false;
    for (size_t i = 0; i < CONFIG_ROWS; i++)
        if (config_set(cfg, &config_table[i], config_table[i].def, "default", err)) return -1;
    for (size_t i = 0; i < CONFIG_ROWS; i++) {
        config_env_name(&config_table[i], env_name, sizeof env_name);
        const char *v = getenv(env_name);
        if (v && config_set(cfg, &config_table[i], v, env_name, err)) return -1;
        if (v && config_table[i].offset == F(static_dir)) static_given = true;
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            config_usage(stdout);
            return 1;
        }
        if (strcmp(arg, "--help-man") == 0) {
            config_man(stdout);
            return 1;
        }
        if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) return 2;
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(err, "flashsale: unexpected argument '%s' (see --help)\n", arg);
            return -1;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const struct config_row *row = NULL;
        for (size_t i = 0; i < CONFIG_ROWS; i++)
            if (strlen(config_table[i].name) == len && strncmp(config_table[i].name, name, len) == 0)
                row = &config_table[i];
        if (!row) {
            fprintf(err, "flashsale: unknown flag '%s' (see --help)\n", arg);
            return -1;
        }
        const char *value = eq ? eq + 1 : (a + 1 < argc ? argv[++a] : NULL);
        if (!value) {
            fprintf(err, "flashsale: --%s needs a value\n", row->name);
            return -1;
        }
        if (config_set(cfg, row, value, "command line", err)) return -1;
        if (row->offset == F(static_dir)) static_given = true;
    }
    log_threshold = (enum log_level)cfg->log_level;
    log_json = cfg->log_format == 1;
    if (!static_given) config_installed_static(cfg);
    /* Measured on 2 cores: one I/O thread serves a flash crowd ~20% faster than
     * two (190k vs 158k requests/s, p99 1 ms vs 4 ms): threads beyond the cores
     * left over by the writer only add switches. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    bool procs = cfg->model == MODEL_PROCESSES;
    /* Processes: each worker process is one event loop and one purchase thread,
     * one per core, so the cores are shared the way the threaded defaults share them. */
    if (procs && cfg->processes == 0) cfg->processes = cores;
    if (cfg->io_threads == 0) cfg->io_threads = procs ? 1 : cores > 1 ? cores - 1 : 1;
    if (cfg->workers == 0) {
        int min = inventory_traits_of((enum config_inventory)cfg->inventory)->min_workers;
        cfg->workers = procs ? 1 : cores > 1 ? (int)cores / 2 : 1;
        if (cfg->workers < min) cfg->workers = min;
    }
    return 0;
}

void config_deinit(struct config *cfg)
{
    for (size_t i = 0; i < CONFIG_ROWS; i++) {
        if (config_table[i].type == CFG_STR) {
            free(*config_str(cfg, &config_table[i]));
            *config_str(cfg, &config_table[i]) = NULL;
        }
    }
}

void config_usage(FILE *out)
{
    char env_name[64], flag[128], names[96];
    fprintf(out, "usage: flashsale [--flag value]...\n\n"
                 "A flash-sale HTTP service: sells exactly the stock, never one unit more.\n"
                 "Every flag can also be set as an environment variable.\n\n");
    for (size_t i = 0; i < CONFIG_ROWS; i++) {
        const struct config_row *row = &config_table[i];
        config_env_name(row, env_name, sizeof env_name);
        snprintf(flag, sizeof flag, "--%s %s", row->name,
                 row->type == CFG_ENUM ? config_choices_text(row->choices, names, sizeof names) : row->type == CFG_INT ? "N" : "VALUE");
        fprintf(out, "  %-40s %s\n  %-40s env %s, default '%s'\n", flag, row->help, "", env_name,
                row->def);
    }
    for (size_t i = 0; i < sizeof config_actions / sizeof config_actions[0]; i++)
        fprintf(out, "  %-40s %s\n", config_actions[i].flag, config_actions[i].help);
}

/* Text for roff: a backslash is \e, and a line may not start with '.' or '\''.
 * literal also writes '-' as \- (a flag's minus sign, which man -l shows as '-'
 * and searches find, where a bare '-' may become a hyphen). */
static void config_roff(FILE *out, const char *text, bool literal)
{
    if (text[0] == '.' || text[0] == '\'') fputs("\\&", out);
    for (const char *p = text; *p; p++) {
        if (*p == '\\') fputs("\\e", out);
        else if (*p == '-' && literal) fputs("\\-", out);
        else fputc(*p, out);
    }
}

void config_man(FILE *out)
{
    char env_name[64], names[96];
    fprintf(out, ".\\\" Generated by flashsale --help-man from config.c's table: edit that, not this.\n"
                 ".TH FLASHSALE 1 \"\" \"flashsale %s\" \"User Commands\"\n.nh\n.ad l\n"
                 ".SH NAME\nflashsale \\- a flash-sale HTTP service that never sells one unit more than the stock\n"
                 ".SH SYNOPSIS\n.B flashsale\n[\\fB\\-\\-\\fIflag\\fR \\fIvalue\\fR]...\n.br\n"
                 ".B flashsale \\-\\-help\n.br\n.B flashsale \\-\\-version\n"
                 ".SH DESCRIPTION\n"
                 "flashsale takes a crowd of buyers at close to the speed of the machine, sells exactly the stock\n"
                 "of each sale, and never loses an order it acknowledged: purchases are decided in memory and\n"
                 "committed to SQLite (or PostgreSQL) in group commits before they are answered.\n"
                 "It serves a REST API under \\fI/api/v1\\fR, a live dashboard at \\fI/\\fR,\n"
                 "\\fI/healthz\\fR and Prometheus metrics at \\fI/metrics\\fR.\n"
                 ".PP\nEvery option is also an environment variable: \\fB\\-\\-io\\-threads\\fR is\n"
                 "\\fBFLASHSALE_IO_THREADS\\fR.  A flag overrides the environment, which overrides the default.\n"
                 ".SH OPTIONS\n",
            FLASHSALE_VERSION);
    for (size_t i = 0; i < CONFIG_ROWS; i++) {
        const struct config_row *row = &config_table[i];
        config_env_name(row, env_name, sizeof env_name);
        fputs(".TP\n\\fB\\-\\-", out);
        config_roff(out, row->name, true);
        fputs("\\fR \\fI", out);
        config_roff(out, row->type == CFG_ENUM ? config_choices_text(row->choices, names, sizeof names)
                         : row->type == CFG_INT ? "N" : "VALUE", true);
        fputs("\\fR\n", out);
        config_roff(out, row->help, false);
        fputs(".\nEnvironment \\fB\\%", out); /* \\% : never hyphenate the name */
        config_roff(out, env_name, true);
        fputs("\\fR, default \\(lq", out);
        config_roff(out, row->def, true);
        fputs("\\(rq.\n", out);
    }
    for (size_t i = 0; i < sizeof config_actions / sizeof config_actions[0]; i++) {
        fputs(".TP\n\\fB", out);
        config_roff(out, config_actions[i].flag, true);
        fputs("\\fR\n", out);
        config_roff(out, config_actions[i].help, false);
        fputs(".\n", out);
    }
    fputs(".SH ENVIRONMENT\n"
          "\\fBFLASHSALE_\\fINAME\\fR for each option \\fB\\-\\-\\fIname\\fR above, with \\(oq\\-\\(cq written\n"
          "as \\(oq_\\(cq.  The systemd unit reads them from \\fI/etc/flashsale/flashsale.env\\fR.\n"
          ".SH FILES\n.TP\n.I PREFIX/share/flashsale/static\n"
          "The dashboard an installed binary serves when \\fB\\-\\-static\\fR is not given and\n"
          "\\fI./static\\fR does not exist (\\fIPREFIX\\fR is the folder above the binary\\(aqs \\fIbin\\fR).\n"
          ".TP\n.I PREFIX/lib/systemd/system/flashsale.service\n"
          "The systemd unit; its database lives in \\fI/var/lib/flashsale\\fR.\n"
          ".TP\n.I PREFIX/share/flashsale/flashsale.env\n"
          "Every \\fBFLASHSALE_*\\fR variable with its default; copy it to \\fI/etc/flashsale/flashsale.env\\fR.\n"
          ".SH SIGNALS\n"
          "SIGTERM or SIGINT stop taking connections, commit and answer every queued purchase, and exit 0.\n"
          ".SH EXIT STATUS\n"
          "0 after a clean stop, \\-\\-help or \\-\\-version; 1 when the service cannot start;\n"
          "2 for a bad flag or value.\n"
          ".SH SEE ALSO\n.BR systemd.exec (5),\n.BR sqlite3 (1),\n.BR prometheus (1)\n",
          out);
}

const char *config_name(const char *setting, int64_t value)
{
    for (size_t i = 0; i < CONFIG_ROWS; i++) {
        const struct config_row *row = &config_table[i];
        if (row->type != CFG_ENUM || strcmp(row->name, setting) != 0) continue;
        for (int64_t k = 0; row->choices[k]; k++)
            if (k == value) return row->choices[k];
    }
    return "?";
}
