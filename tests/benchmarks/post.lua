-- wrk script: POST the JSON body in $WRK_BODY to the URL's path with the
-- User-Agent and X-User-Id in $WRK_USER_AGENT and $WRK_USER_ID, and print one
-- result line that run.py parses (wrk's own report has no machine format).
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = os.getenv("WRK_USER_AGENT")
wrk.headers["X-User-Id"] = os.getenv("WRK_USER_ID")

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration,
    errors.connect + errors.read + errors.write + errors.status + errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
