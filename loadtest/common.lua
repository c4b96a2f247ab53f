-- Shared by the wrk scripts (each starts with dofile(<its folder> .. "common.lua")).

-- Every thread gets a number (the global `tid` in its Lua state), so that the user
-- ids of different threads never collide.
local next_thread = 0
function setup(thread)
  next_thread = next_thread + 1
  thread:set("tid", next_thread)
end

-- At the end, one machine-readable line with the latency percentiles wrk measured
-- (p99.9 included), for loadtest/run.py and bench.py.
function done(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.3f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,' ..
    '"p999_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f,"errors":%d,"non_2xx_3xx":%d}\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency:percentile(99.9) / 1e3, latency.max / 1e3, latency.mean / 1e3,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
