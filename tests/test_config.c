/* test_config — defaults, flags in both spellings, environment, bounds, enums. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "unit.h"

extern char **environ;

static FILE *devnull;

/* Every FLASHSALE_* variable is removed, so the caller's environment cannot leak in. */
static void clear_env(void)
{
    for (;;) {
        char name[128] = "";
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "FLASHSALE_", 10) == 0) {
                size_t n = strcspn(*e, "=");
                if (n < sizeof name) memcpy(name, *e, n), name[n] = 0;
                break;
            }
        }
        if (!name[0]) return;
        unsetenv(name);
    }
}

/* Parses argv (NULL-terminated, argv[0] included) into cfg. */
static int parse(struct config *cfg, FILE *err, const char *const *args)
{
    char *argv[64]; /* config_parse takes char **, as main() does */
    int argc = 0;
    for (; args[argc] && argc < 63; argc++) argv[argc] = (char *)(uintptr_t)args[argc];
    argv[argc] = NULL;
    return config_parse(cfg, argc, argv, err);
}

#define PARSE(cfg, ...) parse(cfg, devnull, (const char *const[]){"flashsale", __VA_ARGS__, NULL})
#define PARSE0(cfg) parse(cfg, devnull, (const char *const[]){"flashsale", NULL})

/* Automatic workers come from the strategy's data: unsafe needs buyers that race. */
static void test_workers_follow_strategy(void)
{
    static const struct {
        const char *inventory;
        int at_least;
    } t[] = {{"atomic", 1}, {"mutex", 1}, {"sqlite", 1}, {"unsafe", 4}};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int half = cores > 1 ? (int)cores / 2 : 1;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct config c;
        CHECK_EQ_INT(PARSE(&c, "--inventory", t[i].inventory), 0);
        CHECK_EQ_INT(c.workers, half > t[i].at_least ? half : t[i].at_least);
        config_deinit(&c);
        CHECK_EQ_INT(PARSE(&c, "--inventory", t[i].inventory, "--workers", "2"), 0);
        CHECK_EQ_INT(c.workers, 2); /* an explicit count always wins */
        config_deinit(&c);
    }
}

static void test_defaults(void)
{
    clear_env();
    struct config c;
    CHECK_EQ_INT(PARSE0(&c), 0);
    CHECK_EQ_INT(c.port, 8080);
    CHECK_EQ_STR(c.bind, "127.0.0.1");
    CHECK_EQ_STR(c.db, "./flashsale.db");
    CHECK_EQ_STR(c.admin_token, "");
    CHECK_EQ_INT(c.admin, 1);
    CHECK_EQ_INT(c.inventory, INVENTORY_ATOMIC);
    CHECK_EQ_INT(c.model, MODEL_THREADS);
    /* 0 = automatic: the cores but one for I/O, half the cores for workers */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK_EQ_INT(c.workers, cores > 1 ? cores / 2 : 1);
    CHECK_EQ_INT(c.queue, 8192);
    CHECK_EQ_INT(c.queue_timeout_ms, 2000);
    CHECK_EQ_INT(c.io_threads, cores > 1 ? cores - 1 : 1);
    CHECK_EQ_INT(c.batch, 1024);
    CHECK_EQ_INT(c.demo_stock, 100);
    CHECK_EQ_STR(c.static_dir, "./static");
    CHECK_EQ_INT(c.durability, DURABILITY_FULL);
    CHECK_EQ_INT(c.max_connections, 16384);
    CHECK_EQ_INT(c.per_ip_limit, 0);
    CHECK_EQ_INT(c.idle_timeout, 30);
    CHECK_EQ_INT(c.log_level, LOG_LEVEL_INFO);
    config_deinit(&c);
    CHECK(c.db == NULL && c.bind == NULL && c.admin_token == NULL && c.static_dir == NULL);
    config_deinit(&c); /* twice is harmless */
}

static void test_flag_spellings(void)
{
    clear_env();
    struct config c;
    CHECK_EQ_INT(PARSE(&c, "--port", "9"), 0);
    CHECK_EQ_INT(c.port, 9);
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--port=9"), 0);
    CHECK_EQ_INT(c.port, 9);
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--port=1", "--port", "2"), 0); /* the last one wins */
    CHECK_EQ_INT(c.port, 2);
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--db", "/tmp/a.db", "--db=/tmp/b.db", "--bind=0.0.0.0",
                       "--admin-token", "s3cret", "--static", "/srv", "--queue-timeout-ms", "50"),
                 0);
    CHECK_EQ_STR(c.db, "/tmp/b.db"); /* the first copy is freed (LSan would tell) */
    CHECK_EQ_STR(c.bind, "0.0.0.0");
    CHECK_EQ_STR(c.admin_token, "s3cret");
    CHECK_EQ_STR(c.static_dir, "/srv");
    CHECK_EQ_INT(c.queue_timeout_ms, 50);
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--admin-token="), 0); /* an empty string value */
    CHECK_EQ_STR(c.admin_token, "");
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--admin-token=a=b"), 0); /* only the first '=' splits */
    CHECK_EQ_STR(c.admin_token, "a=b");
    config_deinit(&c);
}

static void test_environment(void)
{
    clear_env();
    struct config c;
    setenv("FLASHSALE_PORT", "7", 1);
    setenv("FLASHSALE_IO_THREADS", "4", 1);
    setenv("FLASHSALE_DB", "/tmp/env.db", 1);
    setenv("FLASHSALE_INVENTORY", "mutex", 1);
    setenv("FLASHSALE_QUEUE_TIMEOUT_MS", "77", 1);
    CHECK_EQ_INT(PARSE0(&c), 0);
    CHECK_EQ_INT(c.port, 7);
    CHECK_EQ_INT(c.io_threads, 4);
    CHECK_EQ_STR(c.db, "/tmp/env.db");
    CHECK_EQ_INT(c.inventory, INVENTORY_MUTEX);
    CHECK_EQ_INT(c.queue_timeout_ms, 77);
    config_deinit(&c);
    /* the flag beats the environment */
    CHECK_EQ_INT(PARSE(&c, "--port", "9", "--io-threads=3", "--db", "/tmp/flag.db"), 0);
    CHECK_EQ_INT(c.port, 9);
    CHECK_EQ_INT(c.io_threads, 3);
    CHECK_EQ_STR(c.db, "/tmp/flag.db");
    CHECK_EQ_INT(c.inventory, INVENTORY_MUTEX);
    config_deinit(&c);
    /* a bad environment value is an error even when a flag would override it */
    setenv("FLASHSALE_PORT", "seven", 1);
    CHECK_EQ_INT(PARSE0(&c), -1);
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--port", "9"), -1);
    config_deinit(&c);
    setenv("FLASHSALE_PORT", "70000", 1);
    CHECK_EQ_INT(PARSE0(&c), -1);
    config_deinit(&c);
    clear_env();
    setenv("FLASHSALE_IO_THREADS", "65", 1);
    CHECK_EQ_INT(PARSE0(&c), -1);
    config_deinit(&c);
    clear_env();
    setenv("flashsale_port", "5", 1); /* names are upper case */
    CHECK_EQ_INT(PARSE0(&c), 0);
    CHECK_EQ_INT(c.port, 8080);
    config_deinit(&c);
    unsetenv("flashsale_port");
}

static void test_bounds(void)
{
    clear_env();
    static const struct {
        const char *flag, *value;
        int want;
    } t[] = {
        {"port", "0", 0},          {"port", "65535", 0},       {"port", "65536", -1},
        {"port", "-1", -1},        {"port", "", -1},           {"port", "abc", -1},
        {"port", "80x", -1},       {"port", "1.5", -1},        {"port", "0x10", -1},
        {"port", "9223372036854775808", -1},                   {"port", "-9223372036854775809", -1},
        {"workers", "-1", -1},     {"workers", "1", 0},        {"workers", "256", 0},
        {"workers", "257", -1},    {"queue", "0", -1},         {"queue", "1000000", 0},
        {"queue", "1000001", -1},  {"queue-timeout-ms", "0", -1}, {"queue-timeout-ms", "600000", 0},
        {"io-threads", "64", 0},   {"io-threads", "65", -1},   {"batch", "0", -1},
        {"batch", "100000", 0},    {"batch", "100001", -1},    {"demo-stock", "0", 0},
        {"demo-stock", "1000000000", 0}, {"demo-stock", "1000000001", -1},
        {"max-connections", "15", -1}, {"max-connections", "16", 0},
        {"max-connections", "1000001", -1}, {"per-ip-limit", "0", 0},
        {"per-ip-limit", "-1", -1}, {"idle-timeout", "0", -1},  {"idle-timeout", "3600", 0},
        {"idle-timeout", "3601", -1},
        {"inventory", "atomic", 0}, {"inventory", "unsafe", 0}, {"inventory", "MUTEX", -1},
        {"inventory", "", -1},     {"inventory", "redis", -1}, {"durability", "normal", 0},
        {"durability", "off", -1}, {"admin", "off", 0},        {"admin", "0", -1},
        {"log-level", "debug", 0}, {"log-level", "fatal", -1}, {"log-level", "warn", 0},
        {"model", "threads", 0},   {"model", "thread-per-connection", 0},
        {"model", "processes", 0}, {"model", "Processes", -1}, {"model", "Threads", -1},
        {"processes", "0", 0},      {"processes", "64", 0},     {"processes", "65", -1},
        {"processes", "-1", -1},    {"ledger-entries", "1023", -1}, {"ledger-entries", "1024", 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct config c;
        char a[128], b[128];
        snprintf(a, sizeof a, "--%s", t[i].flag);
        snprintf(b, sizeof b, "--%s=%s", t[i].flag, t[i].value);
        int r1 = PARSE(&c, a, t[i].value);
        config_deinit(&c);
        int r2 = PARSE(&c, b);
        config_deinit(&c);
        if (r1 != t[i].want || r2 != t[i].want) {
            UNIT_FAILF("case %zu --%s '%s': got %d and %d, want %d", i,
                     t[i].flag, t[i].value, r1, r2, t[i].want);
        }
    }
    log_threshold = LOG_LEVEL_INFO;
}

static void test_bad_arguments(void)
{
    clear_env();
    struct config c;
    CHECK_EQ_INT(PARSE(&c, "--nope", "1"), -1);
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--nope=1"), -1);
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--por", "1"), -1); /* no prefixes */
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--portx=1"), -1);
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--=1"), -1);
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--"), -1);
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "port", "1"), -1); /* no dashes */
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "-p", "1"), -1);
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--port"), -1); /* a value is missing */
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--port", "1", "extra"), -1);
    config_deinit(&c);

    /* the error names the flag and the bounds */
    char *text = NULL;
    size_t size = 0;
    FILE *err = open_memstream(&text, &size);
    CHECK_EQ_INT(parse(&c, err, (const char *const[]){"x", "--workers", "300", NULL}), -1);
    config_deinit(&c);
    CHECK_EQ_INT(parse(&c, err, (const char *const[]){"x", "--inventory=magic", NULL}), -1);
    config_deinit(&c);
    CHECK_EQ_INT(parse(&c, err, (const char *const[]){"x", "--bogus", NULL}), -1);
    config_deinit(&c);
    fclose(err);
    CHECK(strstr(text, "--workers must be an integer from 0 to 256, not '300'") != NULL);
    CHECK(strstr(text, "--inventory must be one of atomic|mutex|sqlite|unsafe, not 'magic'") != NULL);
    CHECK(strstr(text, "unknown flag '--bogus'") != NULL);
    free(text);
}

static void test_enums_and_names(void)
{
    clear_env();
    struct config c;
    CHECK_EQ_INT(PARSE(&c, "--inventory", "mutex", "--durability=normal", "--admin", "off",
                       "--log-level", "error"),
                 0);
    CHECK_EQ_INT(c.inventory, INVENTORY_MUTEX);
    CHECK_EQ_INT(c.durability, DURABILITY_NORMAL);
    CHECK_EQ_INT(c.admin, 0);
    CHECK_EQ_INT(c.log_level, LOG_LEVEL_ERROR);
    CHECK_EQ_INT(log_threshold, LOG_LEVEL_ERROR); /* parse applies the level */
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--inventory=sqlite"), 0);
    CHECK_EQ_INT(c.inventory, INVENTORY_SQLITE);
    CHECK_EQ_INT(log_threshold, LOG_LEVEL_INFO);
    CHECK_EQ_INT(c.log_format, 0); /* text unless asked */
    CHECK(!log_json);
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--log-format", "json"), 0);
    CHECK_EQ_INT(c.log_format, 1);
    CHECK(log_json); /* parse applies the format */
    config_deinit(&c);
    CHECK_EQ_INT(PARSE(&c, "--log-format", "xml"), -1);
    config_deinit(&c);
    CHECK_EQ_INT(PARSE0(&c), 0);
    CHECK(!log_json);
    config_deinit(&c);

    CHECK_EQ_STR(config_name("inventory", INVENTORY_ATOMIC), "atomic");
    CHECK_EQ_STR(config_name("inventory", INVENTORY_MUTEX), "mutex");
    CHECK_EQ_STR(config_name("inventory", INVENTORY_SQLITE), "sqlite");
    CHECK_EQ_STR(config_name("inventory", INVENTORY_UNSAFE), "unsafe");
    CHECK_EQ_STR(config_name("inventory", 4), "?");
    CHECK_EQ_STR(config_name("inventory", -1), "?");
    CHECK_EQ_STR(config_name("model", MODEL_THREADS), "threads");
    CHECK_EQ_STR(config_name("model", MODEL_THREAD_PER_CONNECTION), "thread-per-connection");
    CHECK_EQ_STR(config_name("durability", DURABILITY_FULL), "full");
    CHECK_EQ_STR(config_name("durability", DURABILITY_NORMAL), "normal");
    CHECK_EQ_STR(config_name("admin", 0), "off");
    CHECK_EQ_STR(config_name("admin", 1), "on");
    CHECK_EQ_STR(config_name("log-level", LOG_LEVEL_DEBUG), "debug");
    CHECK_EQ_STR(config_name("log-level", LOG_LEVEL_ERROR), "error");
    CHECK_EQ_STR(config_name("port", 0), "?"); /* not an enum */
    CHECK_EQ_STR(config_name("nope", 0), "?");
}

/* --help prints the usage to stdout (silenced here) and returns 1. */
static void test_help(void)
{
    clear_env();
    struct config c;
    fflush(stdout);
    int saved = dup(1);
    int null_fd = fileno(devnull);
    dup2(null_fd, 1);
    int r1 = PARSE(&c, "--help");
    config_deinit(&c);
    int r2 = PARSE(&c, "--port", "9", "-h");
    config_deinit(&c);
    int r3 = PARSE(&c, "--port", "99999", "--help"); /* the error comes first */
    config_deinit(&c);
    int r4 = PARSE(&c, "--help-man");
    config_deinit(&c);
    int r5 = PARSE(&c, "--version"); /* main prints it: config knows no library */
    config_deinit(&c);
    int r6 = PARSE(&c, "-V");
    config_deinit(&c);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    CHECK_EQ_INT(r1, 1);
    CHECK_EQ_INT(r2, 1);
    CHECK_EQ_INT(r3, -1);
    CHECK_EQ_INT(r4, 1);
    CHECK_EQ_INT(r5, 2);
    CHECK_EQ_INT(r6, 2);

    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    config_usage(out);
    fclose(out);
    static const char *const must[] = {
        "--port N",   "FLASHSALE_PORT",     "--io-threads N", "FLASHSALE_IO_THREADS",
        "--inventory atomic|mutex|sqlite|unsafe", "FLASHSALE_QUEUE_TIMEOUT_MS",
        "FLASHSALE_ADMIN_TOKEN", "--db VALUE", "default '8080'", "FLASHSALE_LOG_LEVEL",
        "--durability full|normal", "FLASHSALE_MAX_CONNECTIONS", "FLASHSALE_PER_IP_LIMIT",
    };
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        if (!strstr(text, must[i])) {
            free(text);
            UNIT_FAILF("usage lacks '%s'", must[i]);
        }
    free(text);
}

static const struct unit_case cases[] = {
    {"defaults", test_defaults},
    {"workers_follow_the_strategy", test_workers_follow_strategy},
    {"flag_spellings", test_flag_spellings},
    {"environment", test_environment},
    {"bounds", test_bounds},
    {"bad_arguments", test_bad_arguments},
    {"enums_and_names", test_enums_and_names},
    {"help", test_help},
    {NULL, NULL}};

int main(void)
{
    devnull = fopen("/dev/null", "w");
    if (!devnull) return 2;
    int r = unit_run(cases);
    clear_env();
    fclose(devnull);
    return r;
}
