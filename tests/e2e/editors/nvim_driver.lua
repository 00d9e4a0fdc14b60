-- Test driver for headless Neovim, loaded with --cmd before the user's
-- init.lua. It stands in for the user: it types with nvim_input (the keys
-- go through Neovim's input queue as typed keys do), answers pickers from
-- the test's config (vim.ui.select / vim.ui.input, as a picker plugin
-- would), captures vim.notify, and runs the scenario of
-- tests/e2e/test_editor_neovim.py as a coroutine that sleeps on timers, so
-- Neovim's main loop processes input and server messages in between.
-- Results go to a JSON file; any failure writes {error = ...} and exits non-zero.
local uv = vim.uv or vim.loop
local cfg = vim.fn.json_decode(os.getenv('OPENDEV_TEST_CONFIG'))
local R = { notices = {}, notice_modes = {}, asked = {}, steps = {}, selects = {} }
local picks = {}

vim.notify = function(msg)
  table.insert(R.notices, msg)
  -- (in Insert mode, Neovim's "-- INSERT --" replaces a message at once)
  table.insert(R.notice_modes, vim.api.nvim_get_mode().mode)
end

-- The session a question is about: the id named last (a question may start
-- with what the previous answer did, naming the previous session).
local function id_in(text)
  local best, best_at
  for sid, _ in pairs(cfg.answers_all) do
    local at = text:find(sid, 1, true)
    local last = at
    while at do
      last = at
      at = text:find(sid, at + 1, true)
    end
    if last and (not best_at or last > best_at) then
      best, best_at = sid, last
    end
  end
  return best
end

vim.ui.select = function(items, opts, on_choice)
  -- what a picker would show: the prompt and each item as formatted
  local shown = {}
  for _, item in ipairs(items) do
    table.insert(shown, opts.format_item and opts.format_item(item) or tostring(item))
  end
  table.insert(R.selects, { prompt = opts.prompt, items = shown })
  if opts.kind == 'opendev_snapshot.prompt' then
    local id = id_in(opts.prompt)
    local answer = id and cfg.answers_all[id] or nil
    table.insert(R.asked, {
      id = id,
      items = items,
      answer = answer,
      prompt = opts.prompt,
      mode = vim.api.nvim_get_mode().mode,
      at_ms = uv.now(),
      notices_before = #R.notices,
    })
    on_choice(answer)
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

-- ---------------------------------------------------------------- coroutine plumbing
local co
local function fail(err)
  R.error = tostring(err)
  write(R)
  vim.cmd('cquit 1')
end

local function resume()
  local ok, err = coroutine.resume(co)
  if not ok then
    fail(err)
  end
end

local function sleep(ms)
  vim.defer_fn(resume, ms)
  coroutine.yield()
end

local function wait(what, cond, ms)
  local deadline = uv.now() + (ms or 30000)
  while not cond() do
    if uv.now() > deadline then
      error('timed out waiting for ' .. what, 2)
    end
    sleep(25)
  end
end

local function exists(path)
  return uv.fs_stat(path) ~= nil
end

local function noticed(text)
  for _, n in ipairs(R.notices) do
    if n:find(text, 1, true) then
      return n
    end
  end
  return nil
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

local function queued(id)
  for _, item in ipairs(require('opendev_snapshot').state.queue) do
    if item.session.sessionId == id then
      return true
    end
  end
  return false
end

local function asked(id)
  for _, a in ipairs(R.asked) do
    if a.id == id then
      return a
    end
  end
end

-- ---------------------------------------------------------------- the scenario
local function scenario()
  local od = require('opendev_snapshot')
  local I = cfg.ids
  local typed = {}
  local keys = cfg.keys -- one typed key per entry
  local k = 0
  local function type_one()
    k = k % #keys + 1
    vim.api.nvim_input(keys[k])
    table.insert(typed, keys[k])
    sleep(40)
  end

  -- 1. The user starts typing at once; the server starts, finds four
  --    interrupted sessions and asks about each: every question is queued.
  vim.api.nvim_input('i')
  wait('insert mode', function()
    return vim.api.nvim_get_mode().mode == 'i'
  end)
  local deadline = uv.now() + 30000
  local start = #typed
  while #typed - start < #keys or not (queued(I.recover) and queued(I.discard) and queued(I.notebook) and queued(I.later)) do
    if uv.now() > deadline then
      error('the on-open questions were not queued; queue: ' .. vim.inspect(od.state.queue))
    end
    type_one()
  end
  R.steps.on_open_queued_in_mode = vim.api.nvim_get_mode().mode
  R.statusline_on_open = od.statusline()

  -- 2. A session dies while the user types: its question is queued too.
  uv.kill(cfg.dies_pid, 'sigkill')
  deadline = uv.now() + 30000
  start = #typed
  while #typed - start < #keys or not queued(I.dies) do
    if uv.now() > deadline then
      error('the question about the session that died was not queued')
    end
    type_one()
  end
  R.steps.dies_queued_in_mode = vim.api.nvim_get_mode().mode
  -- answers an inputlist would have taken, then a pause, still in Insert mode
  for _, key in ipairs({ '2', '<CR>', '1', '<CR>' }) do
    vim.api.nvim_input(key)
    table.insert(typed, key)
    sleep(40)
  end
  sleep(3 * cfg.idle_ms)
  R.asked_while_inserting = #R.asked
  R.notices_while_inserting = #R.notices
  R.prompts_while_inserting = #od.state.prompts
  R.files_while_inserting = {}
  for name, path in pairs(cfg.files) do
    R.files_while_inserting[name] = exists(path)
  end

  -- 3. Back to Normal mode: the questions come one at a time, each once the
  --    user has been idle.
  vim.api.nvim_input('<Esc>')
  local esc_at = uv.now()
  R.typed = typed
  wait('five questions', function()
    return #R.asked >= 5
  end)
  R.first_question_after_ms = R.asked[1].at_ms - esc_at
  -- each Recover / Discard said what it did before the next question came
  R.outcome_before_next_question = true
  for i = 2, 5 do
    local prev = R.asked[i - 1]
    if prev.answer == 'Recover' or prev.answer == 'Discard' then
      local said = false
      for j = 1, R.asked[i].notices_before do
        said = said or R.notices[j]:find(prev.id, 1, true) ~= nil
      end
      R.outcome_before_next_question = R.outcome_before_next_question and said
    end
  end
  R.buffer = vim.api.nvim_buf_get_lines(0, 0, -1, false)
  R.plugin_prompts = od.state.prompts

  -- Recover, resume program missing: guidance, the snapshot stays.
  wait('the missing-program guidance', function()
    return noticed('cannot resume ' .. I.recover) ~= nil
  end)
  R.guidance = noticed('cannot resume ' .. I.recover)
  -- Discard: to the trash, with the way back.
  wait('Discard to remove ' .. I.discard, function()
    return not exists(cfg.files.discard)
  end)
  wait('the discard notice', function()
    return noticed('discarded ' .. I.discard) ~= nil
  end)
  R.discard_notice = noticed('discarded ' .. I.discard)
  -- Recover of the notebook session: the recover command, in a register.
  wait('the notebook recover notice', function()
    return noticed('%opendev recover ' .. I.notebook) ~= nil
  end)
  R.notebook_notice = noticed('%opendev recover ' .. I.notebook)
  R.register = vim.fn.getreg('"')
  R.terminals_after_prompts = terminals()

  -- 4. Undo the Discard.
  vim.cmd('OpenDevRestore ' .. I.discard)
  wait('restore of ' .. I.discard, function()
    return exists(cfg.files.discard)
  end)
  wait('the restore notice', function()
    return noticed('restored ' .. I.discard) ~= nil
  end)

  -- 5. Install the resume program, then Recover from :OpenDevSessions.
  local f = assert(io.open(cfg.fake_program, 'w'))
  f:write(cfg.fake_program_text)
  f:close()
  uv.fs_chmod(cfg.fake_program, 493) -- 0755
  table.insert(picks, pick_session(I.recover, 'listed'))
  table.insert(picks, function(items)
    R.actions = items
    return 'Recover'
  end)
  vim.cmd('OpenDevSessions')
  wait('the resume program to run', function()
    return exists(cfg.fake_marker)
  end)
  R.terminals = terminals()

  -- 6. Discard of a session that is running: refused, and said so.
  table.insert(picks, pick_session(I.held))
  table.insert(picks, function()
    return 'Discard'
  end)
  vim.cmd('OpenDevSessions')
  wait('the running-session refusal', function()
    return noticed(I.held .. ' is running') ~= nil
  end)
  R.running_notice = noticed(I.held .. ' is running')

  -- 7. Discard the Later session, then bring it back through :OpenDevTrash.
  table.insert(picks, pick_session(I.later))
  table.insert(picks, function()
    return 'Discard'
  end)
  vim.cmd('OpenDevSessions')
  wait('Discard to remove ' .. I.later, function()
    return not exists(cfg.files.later)
  end)
  table.insert(picks, function(items, opts)
    R.trash_listed = {}
    local chosen
    for _, e in ipairs(items) do
      table.insert(R.trash_listed, opts.format_item(e))
      if e.sessionId == I.later then
        chosen = chosen or e
      end
    end
    return chosen
  end)
  vim.cmd('OpenDevTrash')
  wait('restore of ' .. I.later, function()
    return exists(cfg.files.later)
  end)

  -- 8. :OpenDevSessions! lists every project (params {}); cancel the pick.
  table.insert(picks, function(items)
    R.listed_all = ids(items)
    return nil
  end)
  vim.cmd('OpenDevSessions!')
  wait(':OpenDevSessions! to list', function()
    return R.listed_all ~= nil
  end)

  -- 9. :OpenDevCleanup without an age: asks (7d), previews, confirms, moves to the trash.
  vim.ui.input = function(opts, on_confirm)
    R.input_prompt = opts.prompt
    on_confirm('7d')
  end
  table.insert(picks, function(_, opts)
    R.confirm = opts.prompt
    return 'Remove'
  end)
  vim.cmd('OpenDevCleanup')
  wait('cleanup to remove ' .. I.other, function()
    return not exists(cfg.files.other)
  end)

  sleep(200)
  local client = od.client()
  R.root = client.config.root_dir
  R.clients = #(vim.lsp.get_clients and vim.lsp.get_clients({ name = 'opendev_snapshot' }) or vim.lsp.get_active_clients())
  R.recovered = od.state.recovered
  R.pending_picks = #picks
  R.statusline_end = od.statusline()
  R.version = tostring(vim.version().major) .. '.' .. tostring(vim.version().minor) .. '.' .. tostring(vim.version().patch)
  R.lsp_start = vim.lsp.start ~= nil
  R.started_with = od.state.started_with
end

-- ---------------------------------------------------------------- the hostile project
-- Questions on open (Discard the agent session, Recover the notebook's),
-- every project's sessions, Discard of the held one (refused, naming its
-- host), the trash. What was shown is in R.notices and R.selects.
local function hostile()
  local I = cfg.ids
  wait('two questions', function()
    return #R.asked >= 2
  end)
  wait('the discard notice', function()
    return noticed('discarded ' .. I.agent) ~= nil
  end)
  wait('the notebook recover notice', function()
    return noticed('%opendev recover ' .. I.notebook) ~= nil
  end)
  table.insert(picks, pick_session(I.held, 'listed_all'))
  table.insert(picks, function()
    return 'Discard'
  end)
  vim.cmd('OpenDevSessions!')
  wait('the running-session refusal', function()
    return noticed(I.held .. ' is running') ~= nil
  end)
  table.insert(picks, function(items, opts)
    R.trash_listed = {}
    for _, e in ipairs(items) do
      table.insert(R.trash_listed, opts.format_item(e))
    end
    return nil
  end)
  vim.cmd('OpenDevTrash')
  wait('the trash picker', function()
    return R.trash_listed ~= nil
  end)
  R.statusline_end = require('opendev_snapshot').statusline()
  R.messages = vim.fn.execute('messages')
end

local function run()
  co = coroutine.create(function()
    local ok, err = xpcall(cfg.scenario == 'hostile' and hostile or scenario, debug.traceback)
    if not ok then
      fail(err)
      return
    end
    write(R)
    vim.cmd('qall!')
  end)
  resume()
end

vim.api.nvim_create_autocmd('VimEnter', {
  once = true,
  callback = function()
    vim.schedule(run)
  end,
})
