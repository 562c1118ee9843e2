-- wrk script: POST the bytes of the file named by $BENCH_BODY to the URL
-- given on wrk's command line (path and query included).
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/octet-stream"
