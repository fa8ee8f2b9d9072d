-- wrk script for benches/compare/run.sh: every request carries the next client address of the
-- sampled list (file named by $GEO_IPS) in X-Forwarded-For, cycling through the list.
local requests = {}
local next_index = 0

function init(args)
  local path = os.getenv("GEO_IPS") or "ips.txt"
  for address in io.lines(path) do
    if address ~= "" then
      requests[#requests + 1] = wrk.format("GET", "/bench", { ["X-Forwarded-For"] = address })
    end
  end
  assert(#requests > 0, "no addresses in " .. path)
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
