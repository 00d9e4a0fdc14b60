/**
 * OpenDev Snapshot for VS Code: runs the opendev-snapshot server bundled in
 * the extension (or the one `opendevSnapshot.serverPath` names) for the open
 * folders, asks Recover / Discard / Later for each interrupted session in a
 * non-modal notification, recovers by the session's kind (a terminal running
 * the resume command, or the notebook and its `%opendev recover ID`),
 * offers Undo after Discard, and shows the count in the status bar.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as vscode from 'vscode';
import {
  LanguageClient,
  LanguageClientOptions,
  MessageActionItem,
  MessageType,
  ResponseError,
  ShowMessageRequest,
  ShowMessageRequestParams,
} from 'vscode-languageclient/node';

import { bundleInfo, findOnPath, serverExecutable, ServerExecutable } from './launch';
import {
  DEFAULT_RESUME_COMMAND,
  Listing,
  NOT_FOUND,
  RECOVERABLE_SESSIONS,
  RECOVER_SESSION,
  RUNNING,
  RecoverableSessionsParams,
  RecoverSessionParams,
  Settings,
  cleanup,
  commandProgram,
  describe,
  describeAge,
  discard,
  formatCost,
  holderText,
  initializationOptions,
  interruptedOf,
  ipythonRecoverCommand,
  listSessions,
  notificationText,
  pickText,
  printable,
  listTrash,
  parseDuration,
  question,
  recover,
  restore,
  resumeCommandLine,
  sessionIn,
} from './protocol';
import { findPython, onPythonChange, PYTHON_EXTENSION } from './python';

const SECTION = 'opendevSnapshot';
const RECOVER = 'Recover';
const DISCARD = 'Discard';
const LATER = 'Later';
const REFRESH_MS = 30_000;

let client: LanguageClient | undefined;
let status: vscode.StatusBarItem | undefined;
let output: vscode.OutputChannel | undefined;
let refreshTimer: NodeJS.Timeout | undefined;
let pythonWatch: vscode.Disposable | undefined;
/** Every session the server told us about, by id (to recognise its questions). */
const known = new Map<string, Listing>();
/** Interrupted sessions per open folder, for the status bar. */
const counts = new Map<string, number>();

function settings(): Settings {
  const c = vscode.workspace.getConfiguration(SECTION);
  return {
    serverPath: c.get<string>('serverPath', ''),
    serverArgs: c.get<string[]>('serverArgs', ['serve']),
    interpreter: c.get<string[]>('interpreter', []),
    snapshotDir: c.get<string>('snapshotDir', ''),
    prompt: c.get<boolean>('prompt', true),
    maxPrompts: c.get<number>('maxPrompts', 3),
    staleAfterMs: c.get<number>('staleAfterMs', 120000),
    resumeCommand: c.get<string>('resumeCommand', DEFAULT_RESUME_COMMAND),
    showAllProjects: c.get<boolean>('showAllProjects', false),
  };
}

function log(line: string): void {
  output?.appendLine(printable(line));
}

/**
 * Every notification goes through here: its text made printable, and any
 * `[label](command:...)` in it shown as text, never as a link VS Code would
 * run (a project directory may be named like one).
 */
function notifier(show: (message: string, ...items: any[]) => Thenable<any>) {
  return <T extends string | vscode.MessageItem>(message: string, ...items: T[]): Thenable<T | undefined> =>
    show(notificationText(message), ...items);
}
const say = {
  info: notifier(vscode.window.showInformationMessage),
  warning: notifier(vscode.window.showWarningMessage),
  error: notifier(vscode.window.showErrorMessage),
};

function errorCode(err: unknown): number | undefined {
  return err instanceof ResponseError ? err.code : (err as { code?: number } | undefined)?.code;
}

function errorData(err: unknown): unknown {
  return err instanceof ResponseError ? err.data : (err as { data?: unknown } | undefined)?.data;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ------------------------------------------------------------------ status bar

async function refreshCounts(): Promise<void> {
  const c = client;
  const folders = vscode.workspace.workspaceFolders ?? [];
  if (!c || !status) {
    return;
  }
  for (const folder of folders) {
    try {
      const sessions = await interruptedOf(c, folder.uri.fsPath);
      sessions.forEach((s) => known.set(s.sessionId, s));
      counts.set(folder.uri.toString(), sessions.length);
    } catch (err) {
      log(`listing interrupted sessions of ${folder.uri.fsPath} failed: ${errorMessage(err)}`);
    }
  }
  updateStatus();
}

function updateStatus(): void {
  if (!status) {
    return;
  }
  let n = 0;
  counts.forEach((c) => (n += c));
  status.text = `$(history) OpenDev: ${n} interrupted`;
  status.tooltip = 'Interrupted OpenDev sessions of the open folders: click to recover or discard them';
  if (n > 0) {
    status.show();
  } else {
    status.hide();
  }
}

// ------------------------------------------------------------------ actions

async function openSettings(key: string): Promise<void> {
  await vscode.commands.executeCommand('workbench.action.openSettings', `${SECTION}.${key}`);
}

/** Recover as the session's kind asks (what `opendev/recoverSession` means). */
async function recoverByKind(session: Listing): Promise<void> {
  const id = session.sessionId;
  if (session.kind === 'ipython') {
    const command = ipythonRecoverCommand(session);
    const notebook = session.notebook ?? undefined;
    if (notebook && fs.existsSync(notebook)) {
      await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(notebook));
    }
    const where = notebook ? `the notebook ${path.basename(notebook)}` : `IPython in ${session.projectDir}`;
    const pick = await say.info(
      `OpenDev: ${id} was the kernel of ${where}. To get its code back, run "${command}" in a cell of a new kernel there.`,
      'Copy Command',
    );
    if (pick === 'Copy Command') {
      await vscode.env.clipboard.writeText(command);
    }
    return;
  }
  const line = resumeCommandLine(settings().resumeCommand, session);
  const program = commandProgram(line);
  if (!program || !findOnPath(program)) {
    const pick = await say.error(
      `OpenDev: cannot resume ${id}: "${program ?? line}" is not installed (not found on PATH). ` +
        'Install the OpenDev agent, or set "opendevSnapshot.resumeCommand" (e.g. to its full path). The snapshot is kept.',
      'Open Settings',
    );
    if (pick === 'Open Settings') {
      await openSettings('resumeCommand');
    }
    return;
  }
  const cwd = fs.existsSync(session.projectDir) ? session.projectDir : undefined;
  const terminal = vscode.window.createTerminal({ name: `OpenDev ${id}`, cwd });
  terminal.show();
  terminal.sendText(line, true);
}

async function restoreSession(c: LanguageClient, sessionId: string): Promise<void> {
  try {
    const listing = await restore(c, sessionId);
    known.set(listing.sessionId, listing);
    void say.info(`OpenDev: restored ${sessionId} (${listing.status}).`);
  } catch (err) {
    const why =
      errorCode(err) === NOT_FOUND
        ? 'it is not in the trash'
        : errorCode(err) === RUNNING
          ? 'a session with that id exists again; the trashed copy stays in the trash'
          : errorMessage(err);
    void say.error(`OpenDev: cannot restore ${sessionId}: ${why}.`);
  }
  await refreshCounts();
}

/** Discard (to the trash), then a message with Undo, or why nothing happened. */
async function discardWithUndo(c: LanguageClient, sessionId: string): Promise<void> {
  try {
    const { removed } = await discard(c, sessionId);
    if (removed) {
      // not awaited: the next question must not wait for this message
      void say
        .info(`OpenDev: discarded ${sessionId} (moved to the trash).`, 'Undo')
        .then((pick) => (pick === 'Undo' ? restoreSession(c, sessionId) : undefined));
    } else {
      void say.info(`OpenDev: ${sessionId} was already gone.`);
    }
  } catch (err) {
    if (errorCode(err) === RUNNING) {
      void say.warning(
        `OpenDev: ${sessionId} is running${holderText(errorData(err))}: nothing was discarded.`,
      );
    } else {
      void say.error(`OpenDev: discarding ${sessionId} failed: ${errorMessage(err)}`);
    }
  }
  await refreshCounts();
}

async function act(c: LanguageClient, session: Listing, choice: string | undefined): Promise<void> {
  if (choice === RECOVER) {
    try {
      await recover(c, session.sessionId); // the server then sends opendev/recoverSession
    } catch (err) {
      void say.error(`OpenDev: recovering ${session.sessionId} failed: ${errorMessage(err)}`);
    }
  } else if (choice === DISCARD) {
    await discardWithUndo(c, session.sessionId);
  }
}

/**
 * The server's question about a session: a non-modal notification; the
 * choice is carried out with the server's commands (so the outcome can be
 * shown, with Undo), and the server gets null. The server sends the next
 * question after this answer: one notification at a time.
 */
async function onQuestion(c: LanguageClient, params: ShowMessageRequestParams): Promise<MessageActionItem | null> {
  const session = sessionIn(params.message, known.values());
  if (!session) {
    const show = params.type === MessageType.Error ? say.error : params.type === MessageType.Warning ? say.warning : say.info;
    return (await show(params.message, ...(params.actions ?? []))) ?? null;
  }
  const choice = await say.warning(question(session), RECOVER, DISCARD, LATER);
  await act(c, session, choice);
  return null;
}

// ------------------------------------------------------------------ the server

async function serverToRun(context: vscode.ExtensionContext, s: Settings): Promise<ServerExecutable | undefined> {
  if (s.serverPath.trim() !== '') {
    log(`Server: ${s.serverPath} ${s.serverArgs.join(' ')} (opendevSnapshot.serverPath)`);
    return serverExecutable(s, context.extensionPath, undefined);
  }
  const bundle = bundleInfo(context.extensionPath);
  if (!bundle) {
    void say.error(
      'OpenDev Snapshot: this copy of the extension has no bundled server (run scripts/bundle_server.py), ' +
        'and opendevSnapshot.serverPath is not set.',
    );
    return undefined;
  }
  const python = await findPython(s.interpreter, bundle, vscode.workspace.workspaceFolders?.[0]?.uri);
  if (!python.check.ok) {
    const actions = vscode.extensions.getExtension(PYTHON_EXTENSION) ? ['Select Interpreter', 'Open Settings'] : ['Open Settings'];
    const pick = await say.error(
      `OpenDev Snapshot cannot start its server: ${python.check.problem}. Select a Python 3.11+ interpreter, ` +
        'or set opendevSnapshot.interpreter (or opendevSnapshot.serverPath to an installed opendev-snapshot).',
      ...actions,
    );
    if (pick === 'Select Interpreter') {
      await vscode.commands.executeCommand('python.setInterpreter');
    } else if (pick === 'Open Settings') {
      await openSettings('interpreter');
    }
    return undefined;
  }
  log(
    `Server: bundled opendev-snapshot ${bundle.opendevSnapshot ?? '?'} run by ${python.command.join(' ')} ` +
      `(Python ${python.check.version}, from ${python.source})`,
  );
  return serverExecutable(s, context.extensionPath, python.command);
}

async function startClient(context: vscode.ExtensionContext): Promise<void> {
  const s = settings();
  const executable = await serverToRun(context, s);
  if (!executable) {
    return;
  }
  const clientOptions: LanguageClientOptions = {
    documentSelector: [],
    initializationOptions: initializationOptions(s),
    outputChannel: output,
  };
  const c = new LanguageClient(SECTION, 'OpenDev Snapshot', executable, clientOptions);
  c.onNotification(RECOVERABLE_SESSIONS, (params: RecoverableSessionsParams) => {
    for (const session of params.sessions) {
      known.set(session.sessionId, session);
    }
    counts.set(params.workspaceFolder.uri, Math.max(counts.get(params.workspaceFolder.uri) ?? 0, params.sessions.length));
    updateStatus();
    void refreshCounts();
  });
  c.onNotification(RECOVER_SESSION, (params: RecoverSessionParams) => {
    void recoverByKind(params.session).then(refreshCounts);
  });
  c.onRequest(ShowMessageRequest.type, (params) => onQuestion(c, params));
  client = c;
  try {
    await c.start();
  } catch (err) {
    client = undefined;
    void say.error(
      `OpenDev Snapshot: cannot start "${executable.command} ${executable.args.join(' ')}": ${errorMessage(err)}. ` +
        'See the "OpenDev Snapshot" output.',
    );
    return;
  }
  await refreshCounts();
}

async function stopClient(): Promise<void> {
  const c = client;
  client = undefined;
  counts.clear();
  updateStatus();
  if (c) {
    await c.stop();
  }
}

function running(): LanguageClient | undefined {
  if (!client) {
    void say.warning('OpenDev Snapshot: the server is not running (open a folder first).');
  }
  return client;
}

// ------------------------------------------------------------------ commands

async function showSessions(): Promise<void> {
  const c = running();
  if (!c) {
    return;
  }
  const folders = vscode.workspace.workspaceFolders;
  const scope = settings().showAllProjects || !folders ? null : folders.map((f) => f.uri.toString());
  const sessions = await listSessions(c, scope);
  sessions.forEach((s) => known.set(s.sessionId, s));
  if (sessions.length === 0) {
    void say.info('OpenDev: no incomplete sessions.');
    return;
  }
  type Item = vscode.QuickPickItem & { session: Listing };
  const picked = await vscode.window.showQuickPick<Item>(
    sessions.map((session) => ({ ...describe(session), session })),
    { title: 'OpenDev: incomplete sessions', placeHolder: 'Choose a session to recover or discard', matchOnDetail: true },
  );
  if (!picked) {
    return;
  }
  const action = await vscode.window.showQuickPick([RECOVER, DISCARD], {
    title: pickText(`OpenDev session ${picked.session.sessionId}`),
  });
  await act(c, picked.session, action);
}

async function restoreCommand(): Promise<void> {
  const c = running();
  if (!c) {
    return;
  }
  const entries = await listTrash(c);
  if (entries.length === 0) {
    void say.info('OpenDev: the trash is empty.');
    return;
  }
  type Item = vscode.QuickPickItem & { sessionId: string };
  const now = Date.now();
  const picked = await vscode.window.showQuickPick<Item>(
    entries.map((e) => ({
      label: pickText(e.sessionId),
      description: `discarded ${describeAge(now - e.removedAtMs)} ago`,
      detail: e.snapshot ? pickText(`${e.snapshot.projectDir} · ${formatCost(e.snapshot.costUsd)}`) : undefined,
      sessionId: e.sessionId,
    })),
    { title: 'OpenDev: restore a discarded session', placeHolder: 'Choose a session to bring back' },
  );
  if (picked) {
    await restoreSession(c, picked.sessionId);
  }
}

async function cleanupCommand(): Promise<void> {
  const c = running();
  if (!c) {
    return;
  }
  const answer = await vscode.window.showInputBox({
    title: 'OpenDev: clean up old snapshots',
    prompt: 'Move snapshots older than this to the trash (e.g. 90s, 30m, 12h, 7d). Running sessions are never touched.',
    value: '7d',
    validateInput: (v) => (parseDuration(v) === undefined ? 'A number followed by s, m, h or d' : undefined),
  });
  const maxAgeMs = answer === undefined ? undefined : parseDuration(answer);
  if (maxAgeMs === undefined) {
    return;
  }
  const run = (dryRun: boolean) =>
    vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'OpenDev: cleaning up snapshots' },
      async (progress) => {
        let last = 0;
        return cleanup(c, maxAgeMs, dryRun, (value) => {
          if (value.kind === 'report' && value.percentage !== undefined) {
            progress.report({ message: value.message === undefined ? undefined : printable(value.message), increment: value.percentage - last });
            last = value.percentage;
          }
        });
      },
    );
  const preview = await run(true);
  if (preview.removedCount === 0) {
    void say.info(`OpenDev: no snapshot older than ${answer}.`);
    return;
  }
  const confirm = await vscode.window.showWarningMessage(
    printable(`Move ${preview.removedCount} snapshot(s) older than ${answer} to the trash?`),
    { modal: true, detail: printable(preview.sessionIds.join(', ')) },
    'Move to Trash',
  );
  if (confirm !== 'Move to Trash') {
    return;
  }
  const result = await run(false);
  await refreshCounts();
  void say.info(
    `OpenDev: moved ${result.removedCount} snapshot(s) to the trash ("OpenDev: Restore a discarded session" brings one back).`,
  );
}

// ------------------------------------------------------------------ activation

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel('OpenDev Snapshot');
  status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 0);
  status.command = 'opendevSnapshot.showSessions';
  const restart = async () => {
    await stopClient();
    await startClient(context);
  };
  context.subscriptions.push(
    output,
    status,
    vscode.commands.registerCommand('opendevSnapshot.showSessions', showSessions),
    vscode.commands.registerCommand('opendevSnapshot.restore', restoreCommand),
    vscode.commands.registerCommand('opendevSnapshot.cleanup', cleanupCommand),
    vscode.commands.registerCommand('opendevSnapshot.restartServer', restart),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      const serverSettings = ['serverPath', 'serverArgs', 'interpreter', 'snapshotDir', 'prompt', 'maxPrompts', 'staleAfterMs'];
      if (client && serverSettings.some((key) => e.affectsConfiguration(`${SECTION}.${key}`))) {
        await restart();
      }
    }),
    { dispose: () => refreshTimer && clearInterval(refreshTimer) },
    { dispose: () => pythonWatch?.dispose() },
  );
  // The count follows sessions resumed or discarded elsewhere.
  refreshTimer = setInterval(() => void refreshCounts(), REFRESH_MS);
  // A different interpreter selected in the Python extension: run the bundled server with it.
  pythonWatch = await onPythonChange(() => {
    const s = settings();
    if (client && s.serverPath.trim() === '' && s.interpreter.length === 0) {
      void restart();
    }
  });
  // Start when a folder is open; the language client then reports folders
  // added later with workspace/didChangeWorkspaceFolders.
  if (vscode.workspace.workspaceFolders?.length) {
    await startClient(context);
  } else {
    const once = vscode.workspace.onDidChangeWorkspaceFolders(async () => {
      if (!client && vscode.workspace.workspaceFolders?.length) {
        once.dispose();
        await startClient(context);
      }
    });
    context.subscriptions.push(once);
  }
}

export function deactivate(): Promise<void> | undefined {
  return client ? stopClient() : undefined;
}
