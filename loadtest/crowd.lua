-- Flash crowd: every request is a new user trying to buy one unit.
--   wrk -s loadtest/crowd.lua http://127.0.0.1:8080 -- SALE_ID [RUN_ID]
-- User ids are "u<run>-<thread>-<n>", so reruns and threads never collide.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local counter, prefix = 0, nil
function init(args)
  local run = args[2] or string.format("%d%06d", os.time(), math.floor(os.clock() * 1e6) % 1000000)
  prefix = "u" .. run .. "-" .. tostring(tid or 0) .. "-"
  wrk.method = "POST"
  wrk.path = "/api/v1/sales/" .. (args[1] or "1") .. "/orders"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, '{"user_id":"' .. prefix .. counter .. '"}')
end
