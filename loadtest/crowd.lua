-- Flash crowd: every request is a new user trying to buy one unit.
-- wrk -s loadtest/crowd.lua http://127.0.0.1:8080 -- SALE_ID [PREFIX]
local sale, prefix = "1", nil
local counter, thread_id = 0, 0
local statuses = {}

function init(args)
  sale = args[1] or "1"
  prefix = (args[2] or "crowd") .. "-" .. tostring(math.random(1, 1e9))
  wrk.method = "POST"
  wrk.path = "/api/v1/sales/" .. sale .. "/orders"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, '{"user_id":"' .. prefix .. "-" .. counter .. '"}')
end
