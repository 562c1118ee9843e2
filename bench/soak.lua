-- wrk script for the soak (bench/soak.py): every request picks one of the
-- bodies listed in $SOAK_BODIES ("path|file" pairs separated by ';') at
-- random, so valid, corrupt and oversized inputs are interleaved on every
-- connection. The responses are counted by status.
local bodies = {}
for entry in string.gmatch(os.getenv("SOAK_BODIES"), "[^;]+") do
    local path, file = string.match(entry, "([^|]+)|(.+)")
    local f = assert(io.open(file, "rb"))
    table.insert(bodies, { path = path, body = f:read("*a") })
    f:close()
end

local counts = {}
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    math.randomseed(os.time() + math.floor(os.clock() * 1000000))
    statuses = {}
end

function request()
    local b = bodies[math.random(#bodies)]
    return wrk.format("POST", b.path, { ["Content-Type"] = "application/octet-stream" }, b.body)
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
        local s = t:get("statuses")
        for k, v in pairs(s) do
            total[k] = (total[k] or 0) + v
        end
    end
    local parts = {}
    for k, v in pairs(total) do
        table.insert(parts, k .. "=" .. v)
    end
    io.write("statuses " .. table.concat(parts, " ") .. "\n")
end
