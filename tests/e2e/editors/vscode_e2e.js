// Drive the real `opendev-snapshot serve` with vscode-jsonrpc (the JSON-RPC
// stack of VS Code's language client) through the message sequence the
// extension in client-config/vscode sends, using the extension's own compiled
// protocol module for every opendev request.
//
// usage: node vscode_e2e.js CONFIG_JSON
//   {extensionDir, protocolJs, serverPath, serverArgs, snapshotDir, projectDir,
//    answers: {sessionId: "Recover" | "Discard" | "Later"}, otherSession, timeoutMs}
// Prints one JSON line with what happened; exits non-zero on a failed check.
'use strict';
const { spawn } = require('child_process');
const { createRequire } = require('module');
const path = require('path');
const { pathToFileURL } = require('url');

const config = JSON.parse(process.argv[2]);
const requireExt = createRequire(path.join(config.extensionDir, 'package.json'));
const rpc = requireExt('vscode-jsonrpc/node');
const protocol = require(config.protocolJs);

const log = [];
let child;
function check(cond, what, detail) {
  if (!cond) {
    throw new Error(`check failed: ${what}${detail === undefined ? '' : ': ' + JSON.stringify(detail)}`);
  }
}
function withTimeout(promise, what, ms = config.timeoutMs || 10000) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// Waiters on everything the server sends us.
const seen = { recoverable: [], recover: [], prompts: [], showMessage: [], progress: [] };
const waiters = [];
function record(kind, value) {
  seen[kind].push(value);
  log.push({ kind, value });
  for (const w of [...waiters]) {
    if (w.predicate()) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  }
}
function until(predicate, what) {
  if (predicate()) return Promise.resolve();
  return withTimeout(new Promise((resolve) => waiters.push({ predicate, resolve })), what);
}

async function main() {
  const settings = {
    serverPath: config.serverPath,
    serverArgs: config.serverArgs,
    snapshotDir: config.snapshotDir,
    prompt: true,
    maxPrompts: 3,
    staleAfterMs: 120000,
    resumeCommand: protocol.DEFAULT_RESUME_COMMAND,
    showAllProjects: false,
  };
  // No OPENDEV_SNAPSHOT_DIR: the directory reaches the server the way the
  // extension passes it, as initializationOptions.snapshotDir.
  const env = { ...process.env };
  delete env.OPENDEV_SNAPSHOT_DIR;
  child = spawn(settings.serverPath, settings.serverArgs, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));

  const conn = rpc.createMessageConnection(
    new rpc.StreamMessageReader(child.stdout),
    new rpc.StreamMessageWriter(child.stdin),
  );
  conn.onRequest('window/showMessageRequest', (params) => {
    const id = Object.keys(config.answers).find((sid) => params.message.includes(sid));
    const title = id === undefined ? null : config.answers[id];
    record('prompts', { message: params.message, type: params.type, actions: params.actions.map((a) => a.title), answer: title });
    // VS Code answers with the chosen MessageActionItem, or null when dismissed.
    return title === null || title === 'dismiss' ? null : params.actions.find((a) => a.title === title);
  });
  conn.onNotification(protocol.RECOVERABLE_SESSIONS, (p) => record('recoverable', p));
  conn.onNotification(protocol.RECOVER_SESSION, (p) => record('recover', p));
  conn.onNotification('window/showMessage', (p) => record('showMessage', p));
  conn.onNotification('window/logMessage', () => {});
  conn.onRequest('client/registerCapability', () => null);
  conn.onRequest('window/workDoneProgress/create', () => null);
  conn.onRequest('workspace/configuration', (p) => p.items.map(() => null));
  // vscode-jsonrpc's own trace shows what went on the wire.
  const traces = [];
  conn.trace(rpc.Trace.Verbose, { log: (message, data) => traces.push(`${message}\n${data || ''}`) });
  conn.listen();

  // 1. initialize, as vscode-languageclient 9 sends it for one open folder.
  const folderUri = pathToFileURL(config.projectDir).toString();
  const init = await withTimeout(
    conn.sendRequest('initialize', {
      processId: process.pid,
      clientInfo: { name: 'Visual Studio Code', version: '1.82.0' },
      locale: 'en',
      rootPath: config.projectDir,
      rootUri: folderUri,
      capabilities: {
        workspace: {
          applyEdit: true,
          workspaceFolders: true,
          configuration: true,
          didChangeConfiguration: { dynamicRegistration: true },
          executeCommand: { dynamicRegistration: true },
        },
        window: {
          workDoneProgress: true,
          showMessage: { messageActionItem: { additionalPropertiesSupport: true } },
          showDocument: { support: true },
        },
        general: { positionEncodings: ['utf-16'] },
      },
      initializationOptions: protocol.initializationOptions(settings),
      trace: 'off',
      workspaceFolders: [{ uri: folderUri, name: path.basename(config.projectDir) }],
    }),
    'initialize',
  );
  const commands = init.capabilities.executeCommandProvider.commands;
  check(commands.includes(protocol.COMMAND_RECOVER) && commands.includes(protocol.COMMAND_DISCARD), 'commands advertised', commands);
  conn.sendNotification('initialized', {});

  // 2. The server's native prompts and the folder notification.
  const promptIds = Object.keys(config.answers);
  await until(() => seen.recoverable.length >= 1, 'opendev/recoverableSessions');
  await until(() => seen.prompts.length >= promptIds.length, `${promptIds.length} prompts`);
  const recoverId = promptIds.find((id) => config.answers[id] === 'Recover');
  const discardId = promptIds.find((id) => config.answers[id] === 'Discard');
  const laterId = promptIds.find((id) => config.answers[id] === 'Later');
  await until(() => seen.recover.some((p) => p.session.sessionId === recoverId), `recoverSession ${recoverId}`);
  const recovered = seen.recover.find((p) => p.session.sessionId === recoverId).session;
  const terminalCommand = protocol.resumeCommandLine(settings.resumeCommand, recovered);
  check(terminalCommand === `opendev --resume ${recoverId}`, 'resume command', terminalCommand);

  // 3. "OpenDev: Show interrupted sessions" for the open folder (until the
  // Discard answered above has gone through).
  let listed;
  const deadline = Date.now() + 5000;
  for (;;) {
    listed = await withTimeout(protocol.listSessions(conn, [folderUri]), 'listIncomplete');
    if (!listed.some((s) => s.sessionId === discardId) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const listedIds = listed.map((s) => s.sessionId);
  check(!listedIds.includes(discardId), 'discarded session no longer listed', listedIds);
  check(listedIds.includes(laterId) && listedIds.includes(recoverId), 'Later and Recover sessions stay', listedIds);
  check(!listedIds.includes(config.otherSession), 'folder scope', listedIds);

  // ... and over every project: a request without params (RequestType0).
  const all = await withTimeout(protocol.listSessions(conn, null), 'listIncomplete without params');
  const allIds = all.map((s) => s.sessionId);
  check(allIds.includes(config.otherSession), 'no-params listing covers every project', allIds);
  const sent = traces.filter((t) => t.startsWith("Sending request 'opendev/snapshot.listIncomplete"));
  check(sent.filter((t) => !t.includes('Params:')).length === 1, 'the listing of every project went without params', sent);

  // 4. QuickPick -> Recover (workspace/executeCommand), then -> Discard.
  const listing = await withTimeout(protocol.recover(conn, laterId), 'recover command');
  check(listing.sessionId === laterId, 'recover returns the Listing', listing);
  await until(() => seen.recover.some((p) => p.session.sessionId === laterId), `recoverSession ${laterId}`);
  const discarded = await withTimeout(protocol.discard(conn, laterId), 'discard command');
  check(discarded.removed === true, 'discard removes', discarded);

  // 5. "OpenDev: Clean up old snapshots": dry run, then for real, with progress.
  const preview = await withTimeout(protocol.cleanup(conn, protocol.parseDuration('7d'), true, (v) => record('progress', v)), 'cleanup dry run');
  check(preview.dryRun === true && preview.sessionIds.includes(config.otherSession), 'dry run lists the old session', preview);
  const cleaned = await withTimeout(protocol.cleanup(conn, protocol.parseDuration('7d'), false, (v) => record('progress', v)), 'cleanup');
  check(cleaned.removedCount === preview.removedCount, 'cleanup removes what the dry run showed', { preview, cleaned });
  const kinds = seen.progress.map((v) => v.kind);
  check(kinds.includes('begin') && kinds.includes('end'), '$/progress on our workDoneToken', kinds);

  // 6. deactivate: shutdown (no params) and exit.
  await withTimeout(conn.sendRequest(new rpc.RequestType0('shutdown')), 'shutdown');
  conn.sendNotification('exit');
  const status = await withTimeout(exited, 'server exit');
  conn.dispose();
  process.stdout.write(
    JSON.stringify({
      ok: true,
      exit: status,
      prompts: seen.prompts,
      recoverable: seen.recoverable,
      recovered: seen.recover.map((p) => p.session.sessionId),
      terminalCommand,
      listedIds,
      allIds,
      preview,
      cleaned,
      progressKinds: kinds,
      showMessage: seen.showMessage,
      stderr,
    }) + '\n',
  );
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${err.stack || err}\nlog: ${JSON.stringify(log)}\n`);
    if (child && child.exitCode === null) child.kill('SIGKILL');
    process.exit(1);
  },
);
