-- wrk script: POST one signed body with a new delivery id per request, so every request is a new
-- event (GitHub-style signatures cover the body only; the delivery id is the dedupe key).
local counter = 0
local prefix = tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))

function init(args)
  local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Hub-Signature-256"] = os.getenv("BENCH_SIGNATURE")
end

-- BENCH_DELAY_MS > 0: each connection waits that long between requests, to hold a rate below
-- the peak (the half-load pass of bench/ingest.sh).
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if pause > 0 then
  function delay()
    return pause
  end
end

function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. "-" .. counter
  return wrk.format(nil, nil)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
