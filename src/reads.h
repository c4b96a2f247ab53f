/* reads — the answers made on the I/O thread from memory (and one file): health,
 * metrics, stats, the sales, one sale, the dashboard's files.  Nothing here waits
 * for a worker or the writer.  Handlers of api.c's command table (see call.h). */
#ifndef FLASHSALE_READS_H
#define FLASHSALE_READS_H

#include <stdint.h>

#include "call.h"

void reads_healthz(const struct call_env *env, struct http_request *r, int64_t id);
void reads_metrics(const struct call_env *env, struct http_request *r, int64_t id);
void reads_stats(const struct call_env *env, struct http_request *r, int64_t id);
void reads_sales(const struct call_env *env, struct http_request *r, int64_t id);
/* One sale; the command table checked that it exists. */
void reads_sale(const struct call_env *env, struct http_request *r, int64_t sale_id);
void reads_static(const struct call_env *env, struct http_request *r, int64_t id);

/* A sale's JSON (arg: struct sale *), for call_answer_rendered (admin.c too). */
void reads_sale_fill(FILE *out, void *arg);

#endif
