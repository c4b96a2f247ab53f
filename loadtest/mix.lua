-- Mix: nine refreshes of the sale for every purchase attempt by a new user.
--   wrk -s loadtest/mix.lua URL -- SALE_ID [RUN_ID]
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local counter, sale, prefix = 0, "1", nil
function init(args)
  sale = args[1] or "1"
  prefix = "m" .. (args[2] or tostring(os.time())) .. "-" .. tostring(tid or 0) .. "-"
end

function request()
  counter = counter + 1
  if counter % 10 == 0 then
    return wrk.format("POST", "/api/v1/sales/" .. sale .. "/orders", {["Content-Type"] = "application/json"},
                      '{"user_id":"' .. prefix .. counter .. '"}')
  end
  return wrk.format("GET", "/api/v1/sales/" .. sale)
end
