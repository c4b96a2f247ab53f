/* config — the service's settings, as one table.
 *
 * Every setting is a row of config.c's table: flag name, field, default, bounds,
 * help.  Parsing (defaults, then FLASHSALE_<NAME> environment variables, then
 * --flags), validation and --help all read that table.  The resulting struct is
 * passed explicitly to the modules that need it; nothing here is global.
 * Strings in struct config are owned by it and freed by config_deinit().
 */
#ifndef FLASHSALE_CONFIG_H
#define FLASHSALE_CONFIG_H

#include <stdint.h>
#include <stdio.h>

enum config_inventory { INVENTORY_ATOMIC, INVENTORY_MUTEX, INVENTORY_SQLITE, INVENTORY_UNSAFE };
enum config_durability { DURABILITY_FULL, DURABILITY_NORMAL };
/* How connections meet threads and processes (README "Threading model"). */
enum config_model { MODEL_THREADS, MODEL_THREAD_PER_CONNECTION, MODEL_PROCESSES };

struct config {
    int64_t port;
    char *bind;
    char *db;
    char *admin_token;
    int64_t admin;            /* 1 = admin endpoints on, 0 = off entirely */
    int64_t inventory;        /* enum config_inventory */
    int64_t model;            /* enum config_model */
    int64_t processes;        /* --model processes: worker processes (0 = one per core) */
    int64_t ledger_entries;   /* --model processes: the shared ledger's fixed size */
    int64_t workers;
    int64_t queue;
    int64_t queue_timeout_ms;
    int64_t io_threads;
    int64_t batch;
    int64_t demo_stock;
    char *static_dir;
    int64_t durability;       /* enum config_durability */
    int64_t max_connections;
    int64_t per_ip_limit;
    int64_t idle_timeout;
    int64_t sweep_ms;
    int64_t user_rate;        /* purchases per second per user id, 0 = no limit */
    int64_t ip_rate;          /* API requests per second per client address, 0 = no limit */
    char *user_secret;        /* "" = purchases need no signed token */
    int64_t log_level;
    int64_t log_format;       /* 0 = text, 1 = one JSON object per line */
};

/* Fills cfg from defaults, the environment and argv.  Returns 0 on success, 1 when
 * --help or --help-man was printed (exit 0), 2 when --version was asked (the caller
 * prints it: config knows no library), -1 after printing an error to `err` (exit 2).
 * On any return, cfg must be released with config_deinit(). */
int config_parse(struct config *cfg, int argc, char **argv, FILE *err);

void config_deinit(struct config *cfg);

/* Writes the --help text (every flag, its environment variable and default). */
void config_usage(FILE *out);

/* Writes the flashsale(1) man page in roff, from the same table as --help. */
void config_man(FILE *out);

/* The name of an enum setting's value, e.g. config_name("inventory", 0) = "atomic". */
const char *config_name(const char *setting, int64_t value);

#endif
