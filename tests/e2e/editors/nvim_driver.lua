-- Test driver for headless Neovim, loaded with --cmd before the user's
-- init.lua. It stands in for the user: a vim.ui.select / vim.ui.input that
-- answers from the test's config (as a picker plugin would), vim.notify
-- captured, then, once Neovim has started, the scenario of
-- tests/e2e/test_editor_neovim.py. Results go to a JSON file; any failure
-- writes {error = ...} and exits non-zero.
local cfg = vim.fn.json_decode(os.getenv('OPENDEV_TEST_CONFIG'))
local R = { notices = {}, prompts = {}, events = {} }
local picks = {}

vim.notify = function(msg)
  table.insert(R.notices, msg)
end

vim.ui.select = function(items, opts, on_choice)
  if opts.kind == 'opendev_snapshot.prompt' then
    local id
    for sid, _ in pairs(cfg.answers) do
      if opts.prompt:find('session ' .. sid .. ' ', 1, true) then
        id = sid
      end
    end
    local answer = id and cfg.answers[id] or nil
    table.insert(R.prompts, { id = id, items = items, answer = answer, async = cfg.async[id] == true })
    if cfg.async[id] then -- a picker that answers later
      vim.defer_fn(function()
        on_choice(answer)
      end, 30)
    else
      on_choice(answer)
    end
    return
  end
  local pick = table.remove(picks, 1)
  if not pick then
    error('unexpected vim.ui.select: ' .. tostring(opts.prompt))
  end
  on_choice(pick(items, opts))
end

local function write(result)
  local f = assert(io.open(cfg.result, 'w'))
  f:write(vim.fn.json_encode(result))
  f:close()
end

local function wait(what, cond, ms)
  if not vim.wait(ms or 10000, cond, 20) then
    error('timed out waiting for ' .. what, 2)
  end
end

local function exists(path)
  return vim.loop.fs_stat(path) ~= nil
end

local function terminals()
  local names = {}
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.bo[b].buftype == 'terminal' then
      table.insert(names, vim.api.nvim_buf_get_name(b))
    end
  end
  return names
end

local function terminal_for(id)
  for _, name in ipairs(terminals()) do
    if name:find('opendev --resume ' .. id, 1, true) then
      return true
    end
  end
  return false
end

local function ids(items)
  local out = {}
  for _, s in ipairs(items) do
    table.insert(out, s.sessionId)
  end
  return out
end

local function pick_session(id, record)
  return function(items)
    if record then
      R[record] = ids(items)
    end
    for _, s in ipairs(items) do
      if s.sessionId == id then
        return s
      end
    end
    error('session ' .. id .. ' not offered: ' .. table.concat(ids(items), ', '))
  end
end

local function scenario()
  local od = require('opendev_snapshot')
  local ids_ = cfg.ids
  -- 1. On open: the notification reaches the handler, every prompt is answered.
  wait('opendev/recoverableSessions', function()
    return next(od.state.recoverable) ~= nil
  end)
  wait('three prompts', function()
    return #R.prompts >= 3
  end)
  R.recoverable = od.state.recoverable
  wait('a terminal resuming ' .. ids_.recover, function()
    return terminal_for(ids_.recover)
  end)
  wait('Discard to remove ' .. ids_.discard, function()
    return not exists(cfg.files.discard)
  end)

  -- 2. :OpenDevSessions -> the Later session -> Recover
  table.insert(picks, pick_session(ids_.later, 'listed'))
  table.insert(picks, function(items)
    R.actions = items
    return 'Recover'
  end)
  vim.cmd('OpenDevSessions')
  wait('a terminal resuming ' .. ids_.later, function()
    return terminal_for(ids_.later)
  end)

  -- 3. :OpenDevSessions -> the Later session -> Discard
  table.insert(picks, pick_session(ids_.later))
  table.insert(picks, function()
    return 'Discard'
  end)
  vim.cmd('OpenDevSessions')
  wait('Discard to remove ' .. ids_.later, function()
    return not exists(cfg.files.later)
  end)

  -- 4. :OpenDevSessions! lists every project (params {}); cancel the pick.
  table.insert(picks, function(items)
    R.listed_all = ids(items)
    return nil
  end)
  vim.cmd('OpenDevSessions!')
  wait(':OpenDevSessions! to list', function()
    return R.listed_all ~= nil
  end)

  -- 5. :OpenDevCleanup without an age: asks (7d), previews, confirms, removes.
  vim.ui.input = function(opts, on_confirm)
    R.input_prompt = opts.prompt
    on_confirm('7d')
  end
  table.insert(picks, function(items, opts)
    R.confirm = opts.prompt
    return 'Remove'
  end)
  vim.cmd('OpenDevCleanup')
  wait('cleanup to remove ' .. ids_.other, function()
    return not exists(cfg.files.other)
  end)
  wait('the cleanup notice', function()
    for _, n in ipairs(R.notices) do
      if n:find('removed 1 snapshot', 1, true) then
        return true
      end
    end
    return false
  end)

  local client = od.client()
  R.root = client.config.root_dir
  R.clients = #(vim.lsp.get_clients and vim.lsp.get_clients({ name = 'opendev_snapshot' }) or vim.lsp.get_active_clients())
  R.recovered = od.state.recovered
  R.terminals = terminals()
  R.pending_picks = #picks
  R.version = tostring(vim.version().major) .. '.' .. tostring(vim.version().minor) .. '.' .. tostring(vim.version().patch)
  R.lsp_start = vim.lsp.start ~= nil
  R.started_with = od.state.started_with
end

local function run()
  local ok, err = xpcall(scenario, debug.traceback)
  if not ok then
    R.error = err
    write(R)
    vim.cmd('cquit 1')
  else
    write(R)
    vim.cmd('qall!')
  end
end

vim.api.nvim_create_autocmd('VimEnter', {
  once = true,
  callback = function()
    vim.schedule(run)
  end,
})
