-- wrk script: POST pre-signed Retell call_ended events, each thread its own slice, no event sent twice
-- (until the file runs out). Lines of the file: "<x-retell-signature>\t<json body>".
local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  events = {}
  local index = 0
  for line in io.lines(args[1]) do
    if index % tonumber(args[2]) == id - 1 then
      local tab = line:find("\t")
      events[#events + 1] = { line:sub(1, tab - 1), line:sub(tab + 1) }
    end
    index = index + 1
  end
  position = 0
end

function request()
  position = position % #events + 1
  local event = events[position]
  return wrk.format("POST", "/api/retell/webhook",
    { ["Content-Type"] = "application/json", ["x-retell-signature"] = event[1] }, event[2])
end
