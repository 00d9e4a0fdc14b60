-- opendev_snapshot: recovery of interrupted OpenDev sessions in Neovim.
--
-- Works with Neovim 0.7 (vim.lsp.start_client) and 0.10+ (vim.lsp.start).
--
--   require('opendev_snapshot').setup({
--     cmd = { 'opendev-snapshot', 'serve' },   -- the server (or an absolute path to it)
--     snapshot_dir = nil,                      -- default: $OPENDEV_SNAPSHOT_DIR, then ~/.opendev/data/recovery
--     resume_command = 'opendev --resume ${sessionId}',
--   })
--
-- Starts one server per project root. The server's Recover / Discard / Later
-- question is never put in front of keys you are typing: it waits until you
-- are idle in Normal mode (no key for prompt_idle_ms, nothing typed ahead,
-- no pending operator or command line), then asks through vim.ui.select.
-- Recover depends on the session's kind: an OpenDev session opens a terminal
-- running resume_command (after checking that its program exists); a notebook
-- kernel's session puts `%opendev recover ID` in a register. Discard moves the
-- snapshot to the trash and says how to undo it (:OpenDevRestore ID).
--
-- Commands: :OpenDevSessions[!], :OpenDevRestore [ID], :OpenDevTrash,
-- :OpenDevCleanup[!] [AGE]. Status line: require('opendev_snapshot').statusline().
local M = {}

local uv = vim.uv or vim.loop

local NAME = 'opendev_snapshot'
local RECOVERABLE = 'opendev/recoverableSessions'
local RECOVER = 'opendev/recoverSession'
local LIST = 'opendev/snapshot.listIncomplete'
local CLEANUP = 'opendev/snapshot.cleanup'
local RESTORE = 'opendev/snapshot.restore'
local LIST_TRASH = 'opendev/snapshot.listTrash'
local CMD_RECOVER = 'opendev.snapshot.recover'
local CMD_DISCARD = 'opendev.snapshot.discard'
local ACTIONS = { 'Recover', 'Discard', 'Later' }
-- JSON-RPC error codes of the contract
local NOT_FOUND = -32001
local RUNNING = -32003

local defaults = {
  cmd = { 'opendev-snapshot', 'serve' },
  snapshot_dir = nil,
  prompt = true,
  max_prompts = 3,
  stale_after_ms = 120000,
  resume_command = 'opendev --resume ${sessionId}',
  root_markers = { '.git', '.hg', 'pyproject.toml', 'package.json', 'Cargo.toml', 'go.mod', '.opendev' },
  autostart = true,
  -- A question waits until no key was pressed for this long in Normal mode.
  prompt_idle_ms = 1000,
  -- Registers that receive `%opendev recover ID` for a notebook session
  -- ('+' only when a clipboard provider is available).
  registers = { '"', '+' },
  -- called with the params of opendev/recoverableSessions after the default notice
  on_recoverable = nil,
}

M.config = vim.deepcopy(defaults)
-- What happened, for status lines and tests.
M.state = {
  recoverable = {}, -- folder URI -> sessions announced
  known = {}, -- session id -> latest Listing seen
  counts = {}, -- project root -> number of interrupted sessions
  queue = {}, -- questions waiting for an idle moment: { session, client_id }
  asking = false, -- a question is on screen
  -- What the last answer did (Discard's Undo hint, Recover's guidance), said
  -- again at the top of the next question, which would hide it otherwise;
  -- awaiting: uv.now() of an answer whose outcome has not arrived yet.
  outcome = nil,
  awaiting = nil,
  prompts = {}, -- questions asked (for tests): { id, mode, idle_ms }
  -- Waiting for Normal mode: the interrupted sessions announced outside it
  -- (folder URI -> { name, ids = { id -> true } }, first come first), and the
  -- latest other notice { msg, level }.
  pending_sessions = {},
  pending_order = {},
  pending_notice = nil,
  recovered = {}, -- session ids whose Recover was carried out, in order
  last_key_ms = 0,
  started_with = nil,
  by_root = {},
}

-- ---------------------------------------------------------------- text
--
-- What a snapshot holds (project paths, notebook paths, a holder's host, the
-- server's error messages that quote them) is shown only through
-- M.printable, as the command line shows it (opendev_snapshot.core.text):
-- an escape sequence (an OSC 52 clipboard write), a newline (which would
-- open a "Press ENTER" prompt and take the next key) or a bidi override
-- never reaches the screen raw. Money is shown by M.format_cost, as
-- everywhere else. Both are checked against the cases of tests/text_cases.py.

local NAMED = { [0x09] = '\\t', [0x0a] = '\\n', [0x0d] = '\\r', [0x1b] = '\\e' }

-- C0, DEL, C1, the line/paragraph separators, bidi embeddings, overrides
-- and isolates, the BOM, and surrogates (a lone "\udcff" that Neovim's JSON
-- decoder keeps as ED B3 BF).
local function unsafe(cp)
  return cp < 0x20
    or (cp >= 0x7f and cp <= 0x9f)
    or cp == 0x2028
    or cp == 0x2029
    or (cp >= 0x202a and cp <= 0x202e)
    or (cp >= 0x2066 and cp <= 0x2069)
    or cp == 0xfeff
    or (cp >= 0xd800 and cp <= 0xdfff)
end

local function escape(cp)
  return NAMED[cp] or (cp < 0x100 and string.format('\\x%02x', cp)) or string.format('\\u%04x', cp)
end

-- One UTF-8 sequence at byte i: its code point and length, or nil if the
-- bytes there are not UTF-8 (surrogates ED A0..BF .. are taken as such).
local function utf8_at(s, i)
  local b = s:byte(i)
  local n, cp, lo, hi
  if b < 0x80 then
    return b, 1
  elseif b >= 0xc2 and b <= 0xdf then
    n, cp = 1, b - 0xc0
  elseif b >= 0xe0 and b <= 0xef then
    n, cp = 2, b - 0xe0
    lo = b == 0xe0 and 0xa0 or 0x80
  elseif b >= 0xf0 and b <= 0xf4 then
    n, cp = 3, b - 0xf0
    lo = b == 0xf0 and 0x90 or 0x80
    hi = b == 0xf4 and 0x8f or 0xbf
  else
    return nil
  end
  for k = 1, n do
    local c = s:byte(i + k)
    if not c or c < (k == 1 and lo or 0x80) or c > (k == 1 and hi or 0xbf) then
      return nil
    end
    cp = cp * 64 + (c - 0x80)
  end
  return cp, n + 1
end

--- `text` with every control character made visible: `\e` for ESC, `\n`,
--- `\x9b` (C1), `\u202e` (bidi override), `\udcff` for a byte that is not
--- UTF-8 (as Python shows a file name that is not). nil shows as ''.
function M.printable(text)
  if text == nil or text == vim.NIL then
    return ''
  end
  text = tostring(text)
  if not text:find('[%z\1-\31\127-\255]') then
    return text -- printable ASCII: the usual case
  end
  local out, i, n = {}, 1, #text
  while i <= n do
    local cp, len = utf8_at(text, i)
    if not cp then
      table.insert(out, string.format('\\udc%02x', text:byte(i)))
      i = i + 1
    else
      table.insert(out, unsafe(cp) and escape(cp) or text:sub(i, i + len - 1))
      i = i + len
    end
  end
  return table.concat(out)
end

--- Dollars as everywhere in OpenDev: `$0.00`, `<$0.01`, `$0.42`, `$1,234.50`, `-$3.25`.
function M.format_cost(usd)
  local v = tonumber(usd)
  if v == nil then
    return '$?'
  elseif v ~= v then
    return '$nan'
  elseif v == 0 then
    return '$0.00'
  end
  local sign = v < 0 and '-' or ''
  v = math.abs(v)
  if v == math.huge then
    return sign .. '$inf'
  elseif v < 0.01 then
    return sign .. '<$0.01'
  end
  local fixed
  local eighths = v * 8 -- exact: a power of two
  if eighths < 2 ^ 53 and eighths == math.floor(eighths) and eighths % 2 == 1 then
    -- x.125, x.375, x.625, x.875: the only exact ties at two decimals. To
    -- even, as C and Python round them; LuaJIT's own '%.2f' rounds them up.
    fixed = string.format('%.3f', v):sub(1, -2):gsub('7$', '8')
  else
    fixed = string.format('%.2f', v)
  end
  local whole, cents = fixed:match('^(%d+)%.(%d%d)$')
  whole = whole:reverse():gsub('(%d%d%d)', '%1,'):reverse():gsub('^,', '')
  return sign .. '$' .. whole .. '.' .. cents
end

-- ---------------------------------------------------------------- helpers

local function notify(msg, level)
  vim.notify(M.printable('OpenDev: ' .. msg), level or vim.log.levels.INFO)
end

local function show_notice(msg, level)
  msg = M.printable('OpenDev: ' .. msg)
  local room = (vim.v.echospace or 80) - 1
  if vim.fn.strdisplaywidth(msg) > room and room > 10 then
    -- (never half an escape: "\u20…" would read as something else)
    msg = vim.fn.strcharpart(msg, 0, room - 1):gsub('\\[xu]?%x*$', '') .. '…'
  end
  vim.notify(msg, level or vim.log.levels.INFO)
end

-- Normal mode (also a terminal's), nothing half typed: a message stays on
-- screen. In Insert, Replace or Visual mode the mode message ("-- INSERT --")
-- replaces it at once; on the command line it would cover what is typed.
local function message_stays()
  local mode = vim.api.nvim_get_mode()
  return not mode.blocking and (mode.mode == 'n' or mode.mode == 'nt')
end

-- A notice shown while the user may be typing: one line that fits the
-- message area, so Neovim never opens a "Press ENTER" prompt (which would
-- take the next key). Outside Normal mode it waits until the user is back in
-- Normal mode (M.show_pending_notice, on ModeChanged); one line is shown
-- then, as two at once would open that prompt.
local function notice(msg, level)
  if message_stays() then
    show_notice(msg, level)
  else
    M.state.pending_notice = { msg = msg, level = level }
  end
end

-- How long the next question waits for the outcome of the last answer
-- (the server's reply) before it is asked anyway.
local OUTCOME_WAIT_MS = 3000

-- A notice of several lines (each made printable): it opens a "Press
-- ENTER" prompt, so only for what the user must read before going on.
local function notify_lines(lines, level)
  local shown = {}
  for _, line in ipairs(lines) do
    table.insert(shown, M.printable(line))
  end
  vim.notify(table.concat(shown, '\n'), level or vim.log.levels.INFO)
end

-- Keep `text` (printable) for the top of the next question, if one waits.
local function keep_outcome(text)
  M.state.outcome = #M.state.queue > 0 and text or nil
  M.state.awaiting = nil
end

-- The outcome of an answer: said now (notify), and `recap` (default: the
-- same text) again at the top of the next question, so that the question
-- does not hide it.
local function outcome(msg, level, recap)
  notify(msg, level)
  keep_outcome(M.printable('OpenDev: ' .. (recap or msg)))
end

local function shell_quote(s)
  if s:match('^[%w_%./:=@%%+%-]+$') then
    return s
  end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function plural(n, word)
  return string.format('%d %s%s', n, word, n == 1 and '' or 's')
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

--- The program a command line runs: its first word after `VAR=value` and `env`.
function M.command_program(line)
  for word in line:gmatch('%S+') do
    word = word:gsub("^'(.*)'$", '%1'):gsub('^"(.*)"$', '%1')
    if not word:match('^[%a_][%w_]*=') and word ~= 'env' then
      return vim.fn.expand(word)
    end
  end
  return nil
end

--- What to paste into a notebook to get a dead kernel's code back.
function M.ipython_recover_command(session)
  return '%opendev recover ' .. session.sessionId
end

local function describe_age(ms)
  local s = math.max(0, math.floor(ms / 1000))
  for _, u in ipairs({ { 'day', 86400 }, { 'hour', 3600 }, { 'minute', 60 } }) do
    if s >= u[2] then
      return plural(math.floor(s / u[2]), u[1])
    end
  end
  return plural(s, 'second')
end

local function now_ms()
  local sec, usec = uv.gettimeofday()
  return sec * 1000 + math.floor(usec / 1000)
end

local function basename(path)
  return vim.fn.fnamemodify((path or ''):gsub('/+$', ''), ':t')
end

--- One line describing a Listing (used by :OpenDevSessions), printable.
function M.format_session(s)
  return M.printable(string.format(
    '%s  %s%s, %s ago, %s, %s  %s',
    s.sessionId,
    s.status,
    s.kind == 'ipython' and ' notebook' or '',
    describe_age(now_ms() - s.snapshotTimestampMs),
    plural(s.messageCount, 'message'),
    M.format_cost(s.costUsd),
    s.notebook ~= nil and s.notebook ~= vim.NIL and s.notebook or s.projectDir
  ))
end

--- The question asked for an interrupted session, printable.
function M.question(s)
  local what
  if s.kind == 'ipython' then
    local nb = (s.notebook ~= nil and s.notebook ~= vim.NIL) and basename(s.notebook) or 'IPython'
    what = string.format('Notebook session %s (%s)', s.sessionId, nb)
  else
    what = string.format('OpenDev session %s (%s)', s.sessionId, basename(s.projectDir))
  end
  return M.printable(string.format(
    '%s was interrupted %s ago: %s, %s. Recover it?',
    what,
    describe_age(now_ms() - s.snapshotTimestampMs),
    plural(s.messageCount, 'message'),
    M.format_cost(s.costUsd)
  ))
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

local function request_sync(client, method, params, timeout)
  if vim.fn.has('nvim-0.11') == 1 then
    return client:request_sync(method, params, timeout)
  end
  return client.request_sync(method, params, timeout)
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
    return uv.cwd()
  end
  dir = vim.fn.fnamemodify(dir, ':p')
  if vim.fn.isdirectory(dir) == 0 then
    dir = vim.fn.fnamemodify(dir, ':h')
  end
  dir = dir:gsub('/+$', '')
  local probe = dir
  while probe ~= '' do
    for _, marker in ipairs(M.config.root_markers) do
      if uv.fs_stat(probe .. '/' .. marker) then
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
  local cwd = uv.cwd()
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

local function error_text(err)
  return (type(err) == 'table' and err.message) or vim.inspect(err)
end

local function holder_text(err)
  local holder = type(err) == 'table' and type(err.data) == 'table' and err.data.holder
  if type(holder) ~= 'table' then
    return ''
  end
  local parts = {}
  if holder.pid then
    table.insert(parts, 'pid ' .. tostring(holder.pid))
  end
  if holder.host then
    table.insert(parts, 'on ' .. tostring(holder.host))
  end
  return #parts > 0 and (' (' .. table.concat(parts, ' ') .. ')') or ''
end

-- ---------------------------------------------------------------- indicator

local function refresh_count(client)
  if not client or not client.config or not client.config.root_dir then
    return
  end
  local root = client.config.root_dir
  request(client, LIST, { projectDir = root, status = 'interrupted' }, function(err, result)
    if err or type(result) ~= 'table' then
      return
    end
    M.state.counts[root] = #(result.sessions or {})
    for _, s in ipairs(result.sessions or {}) do
      M.state.known[s.sessionId] = s
    end
    pcall(vim.cmd, 'redrawstatus!')
  end)
end

local function refresh_all()
  for _, c in ipairs(clients()) do
    refresh_count(c)
  end
end

--- A status line component: `OpenDev: 2 interrupted` while the current
--- project (else any open one) has interrupted sessions, else ''.
local root_cache = {} -- buffer name -> project root (the status line is drawn often)

function M.statusline()
  local name = vim.api.nvim_buf_get_name(0)
  local root = root_cache[name]
  if root == nil and vim.bo.buftype == '' and name ~= '' then
    root = root_of(name)
    root_cache[name] = root
  end
  local n = root and M.state.counts[root]
  if n == nil then
    n = 0
    for _, c in pairs(M.state.counts) do
      n = n + c
    end
  end
  if n == 0 then
    return ''
  end
  return string.format('OpenDev: %d interrupted', n)
end

-- ---------------------------------------------------------------- actions

local function execute(client, command, session_id, on_done, on_error)
  request(client, 'workspace/executeCommand', { command = command, arguments = { session_id } }, function(err, result)
    if err then
      if on_error and on_error(err) then
        return
      end
      outcome(string.format('%s %s failed: %s', command, session_id, error_text(err)), vim.log.levels.ERROR)
    elseif on_done then
      on_done(result)
    end
  end)
end

local function open_terminal(session, line)
  vim.cmd('botright new')
  local opts = {}
  if session.projectDir and vim.fn.isdirectory(session.projectDir) == 1 then
    opts.cwd = session.projectDir
  end
  vim.fn.termopen(line, opts)
  vim.b.opendev_session = session.sessionId
end

local function recover_notebook(session)
  local text = M.ipython_recover_command(session)
  local filled = {}
  for _, reg in ipairs(M.config.registers or {}) do
    if (reg ~= '+' and reg ~= '*') or vim.fn.has('clipboard') == 1 then
      if pcall(vim.fn.setreg, reg, text) then
        table.insert(filled, reg)
      end
    end
  end
  local where, short
  if session.notebook ~= nil and session.notebook ~= vim.NIL and session.notebook ~= '' then
    where, short = 'the notebook ' .. session.notebook, basename(session.notebook)
  else
    where, short = 'IPython in ' .. (session.projectDir or '?'), 'IPython'
  end
  local pasted = #filled > 0 and (' (in register ' .. table.concat(filled, ' and ') .. ': p pastes it)') or ''
  -- three lines, the command on its own: a wrapped line would cut it in two
  notify_lines({
    string.format('OpenDev: %s was the kernel of %s.', session.sessionId, where),
    'To get its code back, run this in a new kernel there' .. pasted .. ':',
    '    ' .. text,
  }, vim.log.levels.WARN)
  keep_outcome(M.printable(string.format('OpenDev: run %s in a new kernel of %s%s', text, short, pasted)))
  return text
end

--- Carry out Recover for a Listing (what opendev/recoverSession asks for).
function M.recover(session)
  if session.kind == 'ipython' then
    table.insert(M.state.recovered, session.sessionId)
    return recover_notebook(session)
  end
  local line = M.resume_command_line(session)
  local program = M.command_program(line)
  if not program or vim.fn.executable(program) ~= 1 then
    -- lines of their own: a wrapped line would cut the setting in two
    notify_lines({
      string.format('OpenDev: cannot resume %s: `%s` is not installed (not found on PATH). The snapshot is kept.', session.sessionId, program or line),
      'Install the OpenDev agent, or set resume_command:',
      "    require('opendev_snapshot').setup({ resume_command = '/path/to/opendev --resume ${sessionId}' })",
    }, vim.log.levels.WARN) -- (0.7's ERROR notify shows the last of several lines only after Press ENTER)
    keep_outcome(M.printable(string.format(
      'OpenDev: cannot resume %s: `%s` is not installed; the snapshot is kept (:messages says how to fix it)',
      session.sessionId,
      program or line
    )))
    return nil
  end
  table.insert(M.state.recovered, session.sessionId)
  M.state.awaiting = nil -- the terminal is the outcome
  open_terminal(session, line)
  return line
end

--- Discard (to the trash), then say how to undo it, or why nothing happened.
function M.discard(client, session_id)
  execute(client, CMD_DISCARD, session_id, function(r)
    if r and r.removed then
      outcome(string.format('discarded %s (moved to the trash). Undo: :OpenDevRestore %s', session_id, session_id))
    else
      outcome(session_id .. ' was already gone')
    end
    refresh_count(client)
  end, function(err)
    if err.code == RUNNING then
      outcome(
        string.format('%s is running%s: nothing was discarded', session_id, holder_text(err)),
        vim.log.levels.WARN
      )
      refresh_count(client)
      return true
    end
  end)
end

--- Restore a session from the trash.
function M.restore(client, session_id, on_done)
  request(client, RESTORE, { sessionId = session_id }, function(err, listing)
    if err then
      local why = error_text(err)
      if err.code == NOT_FOUND then
        why = session_id .. ' is not in the trash (:OpenDevTrash lists it)'
      elseif err.code == RUNNING then
        why = 'a session ' .. session_id .. ' exists again; the trashed copy stays in the trash'
      end
      notify('cannot restore: ' .. why, vim.log.levels.ERROR)
      return
    end
    notify(string.format('restored %s (%s)', session_id, listing and listing.status or 'back'))
    refresh_count(client)
    if on_done then
      on_done(listing)
    end
  end)
end

local function act(client, session, choice)
  if choice == 'Recover' or choice == 'Discard' then
    M.state.awaiting = uv.now() -- the next question waits for what this does
  end
  if choice == 'Recover' then
    execute(client, CMD_RECOVER, session.sessionId) -- the server then sends opendev/recoverSession
  elseif choice == 'Discard' then
    M.discard(client, session.sessionId)
  end
end

-- ---------------------------------------------------------------- questions
--
-- The server's window/showMessageRequest is answered at once (null, "not
-- now"): a Neovim request handler cannot wait for the user, and asking there
-- would take whatever keys are being typed. The question goes into a queue
-- and is asked when the user is idle in Normal mode; the answer is carried
-- out with the server's commands, which do what Recover and Discard do.

local timer = nil

local function idle_ms()
  return uv.now() - M.state.last_key_ms
end

--- Can a question be put on screen now without taking a key the user typed?
function M.can_ask()
  local mode = vim.api.nvim_get_mode()
  if mode.blocking or mode.mode ~= 'n' then
    return false -- Insert, Visual, a pending operator, the command line, a prompt
  end
  if vim.fn.getchar(1) ~= 0 then
    return false -- keys typed ahead
  end
  if vim.fn.reg_executing() ~= '' or vim.fn.reg_recording() ~= '' then
    return false
  end
  return idle_ms() >= (M.config.prompt_idle_ms or 0)
end

local function stop_timer()
  if timer then
    timer:stop()
    timer:close()
    timer = nil
  end
end

local ask_next

local function ensure_timer()
  if timer or #M.state.queue == 0 then
    return
  end
  timer = uv.new_timer()
  timer:start(200, 200, vim.schedule_wrap(function()
    ask_next()
  end))
end

-- Neovim's own vim.ui.select (an inputlist) shows a prompt of two lines as
-- two lines; a picker plugin gets one line (a window title).
local function builtin_select()
  local info = debug.getinfo(vim.ui.select, 'S')
  return info ~= nil and info.source:match('vim[/\\]ui%.lua$') ~= nil
end

--- The text of the question about a session: what the last answer did
--- first (once), then the question.
function M.prompt_text(session)
  local question = M.question(session)
  local before = M.state.outcome
  M.state.outcome = nil
  if not before then
    return question
  end
  return before .. (builtin_select() and '\n' or '  |  ') .. question
end

local function ask(client, session)
  M.state.asking = true
  table.insert(M.state.prompts, {
    id = session.sessionId,
    mode = vim.api.nvim_get_mode().mode,
    idle_ms = idle_ms(),
    typeahead = vim.fn.getchar(1) ~= 0,
  })
  vim.ui.select(ACTIONS, { prompt = M.prompt_text(session), kind = 'opendev_snapshot.prompt' }, function(choice)
    M.state.asking = false
    pcall(vim.cmd, 'redraw')
    act(client, session, choice)
    -- the next question waits for the next idle moment
    M.state.last_key_ms = uv.now()
    ensure_timer()
  end)
end

ask_next = function()
  if M.state.asking then
    return
  end
  if #M.state.queue == 0 then
    stop_timer()
    return
  end
  if M.state.awaiting and uv.now() - M.state.awaiting < OUTCOME_WAIT_MS then
    return -- what the last answer did comes first
  end
  if not M.can_ask() then
    return
  end
  local item = table.remove(M.state.queue, 1)
  local client = vim.lsp.get_client_by_id(item.client_id)
  if not client then
    return
  end
  -- Ask only if it is still interrupted (it may have been resumed, or
  -- discarded elsewhere, while the question waited), with fresh numbers.
  M.state.asking = true
  request(client, LIST, { projectDir = client.config.root_dir, status = 'interrupted' }, function(err, result)
    M.state.asking = false
    local fresh
    for _, s in ipairs((not err and result and result.sessions) or {}) do
      if s.sessionId == item.session.sessionId then
        fresh = s
      end
    end
    if err then
      fresh = item.session
    end
    if fresh and M.can_ask() then
      ask(client, fresh)
    elseif fresh then
      table.insert(M.state.queue, 1, item) -- the user started typing meanwhile
    end
  end)
end

--- Queue a question about a session (deduplicated).
function M.enqueue(client_id, session)
  for _, item in ipairs(M.state.queue) do
    if item.session.sessionId == session.sessionId then
      return
    end
  end
  table.insert(M.state.queue, { client_id = client_id, session = session })
  ensure_timer()
end

-- The known session named in a message (the longest id that appears as a word).
local function session_in(message)
  local best
  for id, s in pairs(M.state.known) do
    local i, j = message:find(id, 1, true)
    while i do
      local before = i > 1 and message:sub(i - 1, i - 1) or ' '
      local after = message:sub(j + 1, j + 1)
      if not before:match('[%w_%.%-]') and not after:match('[%w_%-]') then
        if not best or #id > #best.sessionId then
          best = s
        end
        break
      end
      i, j = message:find(id, j + 1, true)
    end
  end
  return best
end
M.session_in = session_in

-- ---------------------------------------------------------------- handlers

local handlers = {}

handlers[RECOVERABLE] = function(_, params, ctx)
  local folder = params.workspaceFolder or {}
  M.state.recoverable[folder.uri or '?'] = params.sessions
  for _, s in ipairs(params.sessions or {}) do
    M.state.known[s.sessionId] = s
  end
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  if client then
    M.state.counts[client.config.root_dir] = math.max(M.state.counts[client.config.root_dir] or 0, #(params.sessions or {}))
    refresh_count(client)
  end
  -- one short line: a longer one would open a "Press ENTER" prompt
  if message_stays() then
    show_notice(
      string.format(
        '%s in %s (:OpenDevSessions)',
        plural(#(params.sessions or {}), 'interrupted session'),
        basename(folder.name or '?')
      ),
      vim.log.levels.WARN
    )
  else
    -- the user is typing: said once back in Normal mode, with what else comes meanwhile
    local uri = folder.uri or '?'
    local pending = M.state.pending_sessions[uri]
    if not pending then
      pending = { ids = {} }
      M.state.pending_sessions[uri] = pending
      table.insert(M.state.pending_order, uri)
    end
    pending.name = basename(folder.name or '?')
    for _, s in ipairs(params.sessions or {}) do
      pending.ids[s.sessionId] = true
    end
  end
  if M.config.on_recoverable then
    M.config.on_recoverable(params)
  end
end

--- Show what waited for Normal mode, if it is Normal mode now: the sessions
--- announced meanwhile, else the latest other notice (one line either way).
function M.show_pending_notice()
  if not message_stays() then
    return
  end
  local n, names = 0, {}
  for _, uri in ipairs(M.state.pending_order) do
    local pending = M.state.pending_sessions[uri]
    table.insert(names, pending.name)
    for _ in pairs(pending.ids) do
      n = n + 1
    end
  end
  local other = M.state.pending_notice
  M.state.pending_sessions, M.state.pending_order, M.state.pending_notice = {}, {}, nil
  if #names > 0 then
    show_notice(
      string.format('%s in %s (:OpenDevSessions)', plural(n, 'interrupted session'), table.concat(names, ', ')),
      vim.log.levels.WARN
    )
  elseif other then
    show_notice(other.msg, other.level)
  end
end

handlers[RECOVER] = function(_, params)
  local session = params.session
  vim.schedule(function()
    M.recover(session)
  end)
end

handlers['window/showMessageRequest'] = function(_, params, ctx)
  local session = session_in(params.message or '')
  if session then
    M.enqueue(ctx.client_id, session)
  else
    vim.schedule(function()
      notice((params.message or '') .. ' (:OpenDevSessions)', vim.log.levels.WARN)
    end)
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
    vim.api.nvim_echo({ { M.printable('OpenDev cleanup: ' .. text) } }, false, {})
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

local warned_cmd = false

--- Start (or reuse) the server for a project root; returns the client id.
function M.start(root, bufnr)
  root = root or root_of(nil)
  local cmd = vim.deepcopy(M.config.cmd)
  cmd[1] = vim.fn.expand(cmd[1])
  if vim.fn.executable(cmd[1]) ~= 1 then
    if not warned_cmd then
      warned_cmd = true
      notify(
        string.format(
          '`%s` is not installed or not on PATH, so interrupted sessions cannot be found. Install it '
            .. '(pip install /path/to/opendev-snapshot) or point cmd at it: '
            .. "require('opendev_snapshot').setup({ cmd = { '/path/to/.venv/bin/opendev-snapshot', 'serve' } })",
          cmd[1]
        ),
        vim.log.levels.ERROR
      )
    end
    return nil
  end
  local config = {
    name = NAME,
    cmd = cmd,
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
    notify('cannot start ' .. table.concat(cmd, ' '), vim.log.levels.ERROR)
  else
    M.state.by_root[root] = id
  end
  return id
end

-- ---------------------------------------------------------------- commands

local function running_client()
  local client = M.client()
  if not client then
    notify('the snapshot server is not running', vim.log.levels.ERROR)
  end
  return client
end

--- :OpenDevSessions (this project) / :OpenDevSessions! (every project).
function M.sessions(all)
  local client = running_client()
  if not client then
    return
  end
  -- every project: no projectDir (an empty object, not null)
  local params = all and vim.empty_dict() or { projectDir = client.config.root_dir }
  request(client, LIST, params, function(err, result)
    if err then
      notify('listing failed: ' .. error_text(err), vim.log.levels.ERROR)
      return
    end
    local sessions = result.sessions or {}
    if #sessions == 0 then
      notify('no incomplete sessions')
      return
    end
    for _, s in ipairs(sessions) do
      M.state.known[s.sessionId] = s
    end
    vim.ui.select(
      sessions,
      { prompt = 'OpenDev sessions', format_item = M.format_session, kind = 'opendev_snapshot.sessions' },
      function(session)
        if not session then
          return
        end
        -- a fresh screen first: the built-in picker would print the next
        -- list right after the answer to this one
        vim.schedule(function()
          pcall(vim.cmd, 'redraw')
          vim.ui.select(
            { 'Recover', 'Discard' },
            { prompt = M.printable('Session ' .. session.sessionId), kind = 'opendev_snapshot.action' },
            function(action)
              act(client, session, action)
            end
          )
        end)
      end
    )
  end)
end

local function trash_entries(client, on_entries)
  request(client, LIST_TRASH, vim.empty_dict(), function(err, result)
    if err then
      notify('cannot list the trash: ' .. error_text(err), vim.log.levels.ERROR)
      return
    end
    on_entries((result and result.entries) or {})
  end)
end

local function format_trash_entry(e)
  local s = type(e.snapshot) == 'table' and e.snapshot or {}
  return M.printable(string.format(
    '%s  discarded %s ago%s  %s',
    e.sessionId,
    describe_age(now_ms() - (e.removedAtMs or now_ms())),
    type(s.costUsd) == 'number' and (', ' .. M.format_cost(s.costUsd)) or '',
    s.projectDir or ''
  ))
end

--- :OpenDevTrash: pick a discarded session and restore it.
function M.trash()
  local client = running_client()
  if not client then
    return
  end
  trash_entries(client, function(entries)
    if #entries == 0 then
      notify('the trash is empty')
      return
    end
    vim.ui.select(entries, {
      prompt = 'Restore a discarded session',
      format_item = format_trash_entry,
      kind = 'opendev_snapshot.trash',
    }, function(entry)
      if entry then
        M.restore(client, entry.sessionId)
      end
    end)
  end)
end

--- :OpenDevRestore [ID]: restore ID (or a unique prefix of one) from the trash;
--- without ID, the picker of :OpenDevTrash.
function M.restore_command(text)
  if not text or text == '' then
    return M.trash()
  end
  local client = running_client()
  if not client then
    return
  end
  trash_entries(client, function(entries)
    local matches, seen = {}, {}
    for _, e in ipairs(entries) do
      if e.sessionId == text then
        matches = { e.sessionId }
        break
      end
      if e.sessionId:sub(1, #text) == text and not seen[e.sessionId] then
        seen[e.sessionId] = true
        table.insert(matches, e.sessionId)
      end
    end
    if #matches == 1 then
      M.restore(client, matches[1])
    elseif #matches == 0 then
      M.restore(client, text) -- the server says why (not in the trash)
    else
      notify(string.format('%s matches %s: give more of the id', text, table.concat(matches, ', ')), vim.log.levels.ERROR)
    end
  end)
end

local function complete_trash(arglead)
  local client = M.client()
  if not client then
    return {}
  end
  local response = request_sync(client, LIST_TRASH, vim.empty_dict(), 1000)
  local out, seen = {}, {}
  for _, e in ipairs((response and response.result and response.result.entries) or {}) do
    if e.sessionId:sub(1, #arglead) == arglead and not seen[e.sessionId] then
      seen[e.sessionId] = true
      table.insert(out, e.sessionId)
    end
  end
  return out
end

local token_counter = 0

local function cleanup(client, max_age_ms, dry_run, on_result)
  token_counter = token_counter + 1
  local token = string.format('opendev-cleanup-%d-%d', vim.fn.getpid(), token_counter)
  request(client, CLEANUP, { maxAgeMs = max_age_ms, dryRun = dry_run, workDoneToken = token }, function(err, result)
    if err then
      notify('cleanup failed: ' .. error_text(err), vim.log.levels.ERROR)
      return
    end
    on_result(result)
  end)
end

--- :OpenDevCleanup [AGE] asks for the age when missing, shows what would go, asks, removes.
--- :OpenDevCleanup! AGE removes without asking.
function M.cleanup(age, force)
  local client = running_client()
  if not client then
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
        notify(
          string.format('moved %d snapshot(s) older than %s to the trash (:OpenDevTrash to restore)', r.removedCount, text)
        )
        refresh_count(client)
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
        prompt = M.printable(string.format(
          'Move %d snapshot(s) older than %s to the trash? %s',
          preview.removedCount,
          text,
          table.concat(preview.sessionIds, ', ')
        )),
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

local key_ns = nil
local refresh_timer = nil

function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(defaults), opts or {})
  vim.api.nvim_create_user_command('OpenDevSessions', function(o)
    M.sessions(o.bang)
  end, { bang = true, desc = 'OpenDev: interrupted sessions (! for every project)' })
  vim.api.nvim_create_user_command('OpenDevRestore', function(o)
    M.restore_command(o.args)
  end, { nargs = '?', complete = complete_trash, desc = 'OpenDev: restore a discarded session from the trash' })
  vim.api.nvim_create_user_command('OpenDevTrash', function()
    M.trash()
  end, { desc = 'OpenDev: pick a discarded session to restore' })
  vim.api.nvim_create_user_command('OpenDevCleanup', function(o)
    M.cleanup(o.args, o.bang)
  end, { bang = true, nargs = '?', desc = 'OpenDev: move snapshots older than AGE to the trash' })
  -- Every key the user presses: a question waits until they pause.
  key_ns = key_ns or vim.api.nvim_create_namespace('opendev_snapshot_keys')
  vim.on_key(function()
    M.state.last_key_ms = uv.now()
  end, key_ns)
  -- The indicator follows sessions that are resumed or die while Neovim runs.
  if not refresh_timer then
    refresh_timer = uv.new_timer()
    refresh_timer:start(15000, 15000, vim.schedule_wrap(refresh_all))
  end
  -- A notice that came outside Normal mode is shown once the user is back in
  -- it, after Neovim has cleared the mode message (hence vim.schedule).
  vim.api.nvim_create_autocmd('ModeChanged', {
    group = vim.api.nvim_create_augroup('opendev_snapshot_notice', { clear = true }),
    pattern = '*:n*',
    callback = function()
      if M.state.pending_notice or #M.state.pending_order > 0 then
        vim.schedule(M.show_pending_notice)
      end
    end,
  })
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
