-- Browse: everyone refreshes the sale page.
--   wrk -s loadtest/browse.lua URL -- SALE_ID
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

function init(args)
  wrk.method = "GET"
  wrk.path = "/api/v1/sales/" .. (args[1] or "1")
end
