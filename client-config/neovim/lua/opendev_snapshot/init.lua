-- opendev_snapshot: recovery prompts for interrupted OpenDev sessions in Neovim.
--
-- Works with Neovim 0.7 (vim.lsp.start_client) and 0.10+ (vim.lsp.start).
--
--   require('opendev_snapshot').setup({
--     cmd = { 'opendev-snapshot', 'serve' },   -- the server
--     snapshot_dir = nil,                      -- default: $OPENDEV_SNAPSHOT_DIR, then ~/.opendev/data/recovery
--     resume_command = 'opendev --resume ${sessionId}',
--   })
--
-- Starts one server per project root (found from root_markers, else the
-- current directory), answers the server's Recover / Discard / Later prompt
-- through vim.ui.select (instead of the blocking inputlist), opens a terminal
-- split running resume_command on Recover, and adds :OpenDevSessions[!] and
-- :OpenDevCleanup[!] [AGE].
local M = {}

local NAME = 'opendev_snapshot'
local RECOVERABLE = 'opendev/recoverableSessions'
local RECOVER = 'opendev/recoverSession'
local LIST = 'opendev/snapshot.listIncomplete'
local CLEANUP = 'opendev/snapshot.cleanup'

local defaults = {
  cmd = { 'opendev-snapshot', 'serve' },
  snapshot_dir = nil,
  prompt = true,
  max_prompts = 3,
  stale_after_ms = 120000,
  resume_command = 'opendev --resume ${sessionId}',
  root_markers = { '.git', '.hg', 'pyproject.toml', 'package.json', 'Cargo.toml', 'go.mod', '.opendev' },
  autostart = true,
  -- called with the params of opendev/recoverableSessions after the default notice
  on_recoverable = nil,
}

M.config = vim.deepcopy(defaults)
-- What happened, for status lines and tests: sessions announced per folder
-- URI, sessions recovered (in order), prompts shown.
M.state = { recoverable = {}, recovered = {}, prompts = {}, started_with = nil, by_root = {} }

local function notify(msg, level)
  vim.notify('OpenDev: ' .. msg, level or vim.log.levels.INFO)
end

local function shell_quote(s)
  if s:match('^[%w_%./:=@%%+%-]+$') then
    return s
  end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- The resume command for a session, ${sessionId} and ${projectDir} replaced (shell-quoted).
function M.resume_command_line(session)
  local template = M.config.resume_command or defaults.resume_command
  local line = template:gsub('%${sessionId}', function()
    return shell_quote(session.sessionId)
  end)
  line = line:gsub('%${projectDir}', function()
    return shell_quote(session.projectDir or '')
  end)
  return line
end

local function describe_age(ms)
  local s = math.max(0, math.floor(ms / 1000))
  for _, u in ipairs({ { 'day', 86400 }, { 'hour', 3600 }, { 'minute', 60 } }) do
    if s >= u[2] then
      local n = math.floor(s / u[2])
      return string.format('%d %s%s', n, u[1], n == 1 and '' or 's')
    end
  end
  return string.format('%d second%s', s, s == 1 and '' or 's')
end

local function now_ms()
  return os.time() * 1000
end

--- One line describing a Listing (used by :OpenDevSessions).
function M.format_session(s)
  return string.format(
    '%s  %s, %s ago, %d message%s, $%.2f  %s',
    s.sessionId,
    s.status,
    describe_age(now_ms() - s.snapshotTimestampMs),
    s.messageCount,
    s.messageCount == 1 and '' or 's',
    s.costUsd,
    s.projectDir
  )
end

local function durations(text)
  local n, unit = tostring(text or ''):match('^%s*(%d+)%s*([smhd])%s*$')
  if not n then
    return nil
  end
  return tonumber(n) * ({ s = 1000, m = 60000, h = 3600000, d = 86400000 })[unit]
end
M.parse_duration = durations

-- Neovim 0.11 made client methods colon calls; 0.7 and 0.10 use dot calls.
local function request(client, method, params, handler)
  if vim.fn.has('nvim-0.11') == 1 then
    return client:request(method, params, handler)
  end
  return client.request(method, params, handler)
end

local function clients()
  if vim.lsp.get_clients then
    return vim.lsp.get_clients({ name = NAME })
  end
  local found = {}
  for _, c in pairs(vim.lsp.get_active_clients()) do
    if c.name == NAME then
      table.insert(found, c)
    end
  end
  return found
end

local function root_of(path)
  local dir = path
  if dir == nil or dir == '' then
    return vim.loop.cwd()
  end
  dir = vim.fn.fnamemodify(dir, ':p')
  if vim.fn.isdirectory(dir) == 0 then
    dir = vim.fn.fnamemodify(dir, ':h')
  end
  dir = dir:gsub('/+$', '')
  local probe = dir
  while probe ~= '' do
    for _, marker in ipairs(M.config.root_markers) do
      if vim.loop.fs_stat(probe .. '/' .. marker) then
        return probe
      end
    end
    local parent = vim.fn.fnamemodify(probe, ':h')
    if parent == probe then
      break
    end
    probe = parent
  end
  -- No marker: the current directory when the file lies in it, else the file's directory.
  local cwd = vim.loop.cwd()
  if dir == cwd or dir:sub(1, #cwd + 1) == cwd .. '/' then
    return cwd
  end
  return dir
end
M.root_of = root_of

--- The client for a buffer's project (or the current directory's), else any running one.
function M.client(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local name = vim.bo[bufnr].buftype == '' and vim.api.nvim_buf_get_name(bufnr) or ''
  local root = root_of(name ~= '' and name or nil)
  local all = clients()
  for _, c in ipairs(all) do
    if c.config.root_dir == root then
      return c
    end
  end
  return all[1]
end

local function open_terminal(session)
  local line = M.resume_command_line(session)
  vim.cmd('botright new')
  local opts = {}
  if session.projectDir and vim.fn.isdirectory(session.projectDir) == 1 then
    opts.cwd = session.projectDir
  end
  vim.fn.termopen(line, opts)
  vim.b.opendev_session = session.sessionId
  return line
end

local function execute(client, command, session_id, on_done)
  request(client, 'workspace/executeCommand', { command = command, arguments = { session_id } }, function(err, result)
    if err then
      notify(string.format('%s %s failed: %s', command, session_id, err.message or vim.inspect(err)), vim.log.levels.ERROR)
    elseif on_done then
      on_done(result)
    end
  end)
end

-- ---------------------------------------------------------------- handlers

local handlers = {}

handlers[RECOVERABLE] = function(_, params)
  local folder = params.workspaceFolder or {}
  M.state.recoverable[folder.uri or '?'] = params.sessions
  local ids = {}
  for _, s in ipairs(params.sessions or {}) do
    table.insert(ids, s.sessionId)
  end
  notify(
    string.format(
      '%d interrupted session%s in %s: %s (:OpenDevSessions)',
      #ids,
      #ids == 1 and '' or 's',
      folder.name or '?',
      table.concat(ids, ', ')
    ),
    vim.log.levels.WARN
  )
  if M.config.on_recoverable then
    M.config.on_recoverable(params)
  end
end

handlers[RECOVER] = function(_, params)
  local session = params.session
  table.insert(M.state.recovered, session.sessionId)
  vim.schedule(function()
    open_terminal(session)
  end)
end

-- The stock handler blocks on inputlist(); this one asks through vim.ui.select.
-- A picker that answers at once (the built-in one, or a test's) answers the
-- request itself. One that answers later (telescope, fzf-lua, dressing) gets
-- "dismissed" sent back at once, and its choice is carried out with the
-- server's commands, which do exactly what Recover and Discard do.
handlers['window/showMessageRequest'] = function(_, params, ctx)
  local titles = {}
  for _, action in ipairs(params.actions or {}) do
    table.insert(titles, action.title)
  end
  table.insert(M.state.prompts, params.message)
  local session_id = params.message:match('session ([%w_%.%-]+) ')
  local answered, choice, returned = false, nil, false
  vim.ui.select(titles, { prompt = params.message, kind = 'opendev_snapshot.prompt' }, function(item)
    if returned then
      local client = vim.lsp.get_client_by_id(ctx.client_id)
      if client and session_id and (item == 'Recover' or item == 'Discard') then
        execute(client, 'opendev.snapshot.' .. item:lower(), session_id)
      end
      return
    end
    answered, choice = true, item
  end)
  returned = true
  if answered and choice then
    return { title = choice }
  end
  return vim.NIL
end

handlers['$/progress'] = function(err, params, ctx, config)
  if type(params.token) == 'string' and params.token:match('^opendev%-cleanup%-') then
    local v = params.value or {}
    local text = v.title or v.message or ''
    if v.percentage then
      text = string.format('%s (%d%%)', text, v.percentage)
    end
    vim.api.nvim_echo({ { 'OpenDev cleanup: ' .. text } }, false, {})
    return vim.NIL
  end
  return vim.lsp.handlers['$/progress'](err, params, ctx, config)
end

-- ---------------------------------------------------------------- start

local function init_options()
  local o = {
    prompt = M.config.prompt,
    maxPrompts = M.config.max_prompts,
    staleAfterMs = M.config.stale_after_ms,
  }
  if M.config.snapshot_dir then
    o.snapshotDir = vim.fn.expand(M.config.snapshot_dir)
  end
  return o
end

--- Start (or reuse) the server for a project root; returns the client id.
function M.start(root, bufnr)
  root = root or root_of(nil)
  local config = {
    name = NAME,
    cmd = M.config.cmd,
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = vim.fn.fnamemodify(root, ':t') } },
    init_options = init_options(),
    handlers = handlers,
  }
  if vim.lsp.start then -- 0.8+: reuses a client with the same name and root_dir
    M.state.started_with = 'vim.lsp.start'
    return vim.lsp.start(config, { bufnr = bufnr or vim.api.nvim_get_current_buf() })
  end
  for _, c in ipairs(clients()) do
    if c.config.root_dir == root then
      return c.id
    end
  end
  -- 0.7 lists a client only once it has initialized: remember the ones we
  -- started, so a second BufEnter/VimEnter does not start a second server.
  local known = M.state.by_root[root]
  if known and vim.lsp.get_client_by_id(known) then
    return known
  end
  M.state.started_with = 'vim.lsp.start_client'
  local id = vim.lsp.start_client(config)
  if not id then
    notify('cannot start ' .. table.concat(M.config.cmd, ' '), vim.log.levels.ERROR)
  else
    M.state.by_root[root] = id
  end
  return id
end

-- ---------------------------------------------------------------- commands

--- :OpenDevSessions (this project) / :OpenDevSessions! (every project).
function M.sessions(all)
  local client = M.client()
  if not client then
    notify('the snapshot server is not running', vim.log.levels.ERROR)
    return
  end
  -- every project: no projectDir (an empty object, not null)
  local params = all and vim.empty_dict() or { projectDir = client.config.root_dir }
  request(client, LIST, params, function(err, result)
    if err then
      notify('listing failed: ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
      return
    end
    local sessions = result.sessions or {}
    if #sessions == 0 then
      notify('no incomplete sessions')
      return
    end
    vim.ui.select(
      sessions,
      { prompt = 'OpenDev sessions', format_item = M.format_session, kind = 'opendev_snapshot.sessions' },
      function(session)
        if not session then
          return
        end
        vim.ui.select(
          { 'Recover', 'Discard' },
          { prompt = 'Session ' .. session.sessionId, kind = 'opendev_snapshot.action' },
          function(action)
            if action == 'Recover' then
              execute(client, 'opendev.snapshot.recover', session.sessionId) -- then opendev/recoverSession
            elseif action == 'Discard' then
              execute(client, 'opendev.snapshot.discard', session.sessionId, function(r)
                notify(r.removed and ('discarded ' .. session.sessionId) or (session.sessionId .. ' was already gone'))
              end)
            end
          end
        )
      end
    )
  end)
end

local token_counter = 0

local function cleanup(client, max_age_ms, dry_run, on_result)
  token_counter = token_counter + 1
  local token = string.format('opendev-cleanup-%d-%d', vim.fn.getpid(), token_counter)
  request(client, CLEANUP, { maxAgeMs = max_age_ms, dryRun = dry_run, workDoneToken = token }, function(err, result)
    if err then
      notify('cleanup failed: ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
      return
    end
    on_result(result)
  end)
end

--- :OpenDevCleanup [AGE] asks for the age when missing, shows what would go, asks, removes.
--- :OpenDevCleanup! AGE removes without asking.
function M.cleanup(age, force)
  local client = M.client()
  if not client then
    notify('the snapshot server is not running', vim.log.levels.ERROR)
    return
  end
  local function run(text)
    local ms = durations(text)
    if not ms then
      if text and text ~= '' then
        notify('not an age: ' .. text .. ' (use 90s, 30m, 12h, 7d)', vim.log.levels.ERROR)
      end
      return
    end
    local function remove()
      cleanup(client, ms, false, function(r)
        notify(string.format('removed %d snapshot(s) older than %s', r.removedCount, text))
      end)
    end
    if force then
      return remove()
    end
    cleanup(client, ms, true, function(preview)
      if preview.removedCount == 0 then
        notify('no snapshot older than ' .. text)
        return
      end
      vim.ui.select({ 'Remove', 'Cancel' }, {
        prompt = string.format(
          'Remove %d snapshot(s) older than %s? %s',
          preview.removedCount,
          text,
          table.concat(preview.sessionIds, ', ')
        ),
        kind = 'opendev_snapshot.confirm',
      }, function(choice)
        if choice == 'Remove' then
          remove()
        end
      end)
    end)
  end
  if age and age ~= '' then
    run(age)
  else
    vim.ui.input({ prompt = 'Remove snapshots older than (90s, 30m, 12h, 7d): ', default = '7d' }, run)
  end
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(defaults), opts or {})
  vim.api.nvim_create_user_command('OpenDevSessions', function(o)
    M.sessions(o.bang)
  end, { bang = true, desc = 'OpenDev: interrupted sessions (! for every project)' })
  vim.api.nvim_create_user_command('OpenDevCleanup', function(o)
    M.cleanup(o.args, o.bang)
  end, { bang = true, nargs = '?', desc = 'OpenDev: remove snapshots older than AGE' })
  if not M.config.autostart then
    return
  end
  local group = vim.api.nvim_create_augroup('opendev_snapshot', { clear = true })
  vim.api.nvim_create_autocmd({ 'BufReadPost', 'BufNewFile' }, {
    group = group,
    callback = function(ev)
      if vim.bo[ev.buf].buftype == '' and ev.file ~= '' then
        M.start(root_of(ev.file), ev.buf)
      end
    end,
  })
  if vim.v.vim_did_enter == 1 then
    M.start(root_of(vim.api.nvim_buf_get_name(0)))
  else
    vim.api.nvim_create_autocmd('VimEnter', {
      group = group,
      once = true,
      callback = function()
        if #clients() == 0 and next(M.state.by_root) == nil then
          M.start(root_of(vim.api.nvim_buf_get_name(0)))
        end
      end,
    })
  end
end

return M
