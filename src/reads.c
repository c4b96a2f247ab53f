/* reads — see reads.h. */
#include "reads.h"

#include <string.h>

#include "assets.h"
#include "clock.h"
#include "render.h"

#define READS_JSON "application/json"
#define READS_PROMETHEUS "text/plain; version=0.0.4; charset=utf-8"

void reads_healthz(const struct call_env *env, struct http_request *r, int64_t id)
{
    char body[32];
    call_answer(r, &(struct answer){.body = body, .len = render_healthz(body, sizeof body)});
}

struct reads_list {
    const struct call_env *env;
    int64_t now;
};

static struct render_service reads_service(const struct call_env *env)
{
    return (struct render_service){store_kind(env->store), inventory_traits(env->inv)->name,
                                   config_name("durability", env->cfg->durability), pool_depth(env->workers),
                                   pool_capacity(env->workers), store_backlog(env->store),
                                   config_name("model", env->cfg->model),
                                   env->cfg->model == MODEL_PROCESSES ? env->cfg->processes : 0};
}

static void reads_sales_fill(FILE *out, void *arg)
{
    struct reads_list *l = arg;
    render_sales(out, l->env->inv, l->now);
}

static void reads_stats_fill(FILE *out, void *arg)
{
    struct reads_list *l = arg;
    struct render_service svc = reads_service(l->env);
    render_stats(out, l->env->inv, &svc, l->now);
}

static void reads_metrics_fill(FILE *out, void *arg)
{
    struct reads_list *l = arg;
    struct render_service svc = reads_service(l->env);
    render_metrics(out, l->env->inv, &svc);
}

void reads_sale_fill(FILE *out, void *arg) { render_sale(out, arg, clock_wall_ms() / 1000); }

void reads_metrics(const struct call_env *env, struct http_request *r, int64_t id)
{
    struct reads_list l = {env, clock_wall_ms() / 1000};
    call_answer_rendered(r, &(struct answer){.content_type = READS_PROMETHEUS, .no_store = true},
                         reads_metrics_fill, &l);
}

void reads_stats(const struct call_env *env, struct http_request *r, int64_t id)
{
    struct reads_list l = {env, clock_wall_ms() / 1000};
    call_answer_rendered(r, &(struct answer){.content_type = READS_JSON, .no_store = true}, reads_stats_fill, &l);
}

void reads_sales(const struct call_env *env, struct http_request *r, int64_t id)
{
    struct reads_list l = {env, clock_wall_ms() / 1000};
    call_answer_rendered(r, &(struct answer){.content_type = READS_JSON, .no_store = true}, reads_sales_fill, &l);
}

void reads_sale(const struct call_env *env, struct http_request *r, int64_t sale_id)
{
    struct sale *s = inventory_get(env->inv, sale_id);
    call_answer_rendered(r, &(struct answer){.content_type = READS_JSON, .no_store = true}, reads_sale_fill, s);
}

void reads_static(const struct call_env *env, struct http_request *r, int64_t id)
{
    struct assets_file f;
    if (assets_open(env->cfg->static_dir, http_path(r), &f) != 0)
        return call_refuse(r, OUTCOME_NOT_FOUND, "no such file");
    const char *inm = http_header(r, "If-None-Match");
    const char *validators[] = {"Cache-Control", f.cache_control, "ETag", f.etag, "X-Content-Type-Options",
                                "nosniff", NULL};
    struct answer a = {.file = true, .fd = f.fd, .file_size = f.size, .headers = validators};
    if (inm && strcmp(inm, f.etag) == 0) {
        /* The 200's validators, and no body headers that lie: libmicrohttpd sends no
         * body with a 304 but always a Content-Length, so it is the 200's (RFC 9110
         * §8.6), and there is no Content-Type. */
        a.status = 304;
    } else {
        a.content_type = f.content_type;
    }
    call_answer(r, &a);
}
