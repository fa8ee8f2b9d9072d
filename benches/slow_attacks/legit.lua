-- Legitimate load for benches/slow_attacks.sh: wrk -s legit.lua -- DELAY_MS US_IP BLOCKED_IP
-- Every tenth request comes from BLOCKED_IP (RU: geogate answers 451 itself), the others from
-- US_IP (tagged and forwarded: 200). A status other than 2xx and 451 is a legitimate error.
-- DELAY_MS > 0 paces each connection (wrk waits that long before each request; the wait is not
-- part of the measured latency), so the load leaves CPU to spare instead of saturating.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  delay_ms = tonumber(args[1]) or 0
  local us, blocked = args[2] or "8.8.8.8", args[3] or "77.88.8.8"
  reqs = {
    wrk.format("GET", "/bench", { ["X-Forwarded-For"] = us }),
    wrk.format("GET", "/bench", { ["X-Forwarded-For"] = blocked }),
  }
  n, ok, blocked_n, bad = 0, 0, 0, 0
end

function request()
  n = n + 1
  if n % 10 == 0 then return reqs[2] end
  return reqs[1]
end

function delay()
  return delay_ms
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  elseif status == 451 then
    blocked_n = blocked_n + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local o, b, x = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    b = b + t:get("blocked_n")
    x = x + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d ok=%d blocked=%d bad_status=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d max_us=%d duration_us=%d\n",
    summary.requests, o, b, x, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, summary.duration))
end
