-- Retry storm: the same USERS users hammer the buy button again and again
-- (most answers are limit_exceeded or sold_out; each user gets at most the limit).
--   wrk -s loadtest/retry.lua URL -- SALE_ID [USERS] [RUN_ID]
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local counter, users, prefix = 0, 1000, nil
function init(args)
  users = tonumber(args[2] or "1000")
  prefix = "r" .. (args[3] or tostring(os.time())) .. "-"
  counter = (tid or 0) * 7919 -- threads start at different users
  wrk.method = "POST"
  wrk.path = "/api/v1/sales/" .. (args[1] or "1") .. "/orders"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, '{"user_id":"' .. prefix .. (counter % users) .. '"}')
end
