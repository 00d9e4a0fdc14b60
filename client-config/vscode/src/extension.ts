/**
 * OpenDev Snapshot for VS Code: runs `opendev-snapshot serve` for the open
 * folders, lets the server's own Recover / Discard / Later prompt appear
 * (VS Code shows `window/showMessageRequest` natively), opens a terminal
 * running the resume command on `opendev/recoverSession`, and adds two
 * palette commands.
 */
import * as fs from 'fs';
import * as vscode from 'vscode';
import { LanguageClient, LanguageClientOptions, ServerOptions, TransportKind } from 'vscode-languageclient/node';

import {
  DEFAULT_RESUME_COMMAND,
  Listing,
  RECOVERABLE_SESSIONS,
  RECOVER_SESSION,
  RecoverableSessionsParams,
  RecoverSessionParams,
  Settings,
  cleanup,
  describe,
  discard,
  initializationOptions,
  listSessions,
  parseDuration,
  recover,
  resumeCommandLine,
} from './protocol';

const SECTION = 'opendevSnapshot';
let client: LanguageClient | undefined;
let status: vscode.StatusBarItem | undefined;
const interrupted = new Map<string, Listing>();

function settings(): Settings {
  const c = vscode.workspace.getConfiguration(SECTION);
  return {
    serverPath: c.get<string>('serverPath', 'opendev-snapshot'),
    serverArgs: c.get<string[]>('serverArgs', ['serve']),
    snapshotDir: c.get<string>('snapshotDir', ''),
    prompt: c.get<boolean>('prompt', true),
    maxPrompts: c.get<number>('maxPrompts', 3),
    staleAfterMs: c.get<number>('staleAfterMs', 120000),
    resumeCommand: c.get<string>('resumeCommand', DEFAULT_RESUME_COMMAND),
    showAllProjects: c.get<boolean>('showAllProjects', false),
  };
}

function openResumeTerminal(session: Listing): void {
  const cwd = fs.existsSync(session.projectDir) ? session.projectDir : undefined;
  const terminal = vscode.window.createTerminal({ name: `OpenDev ${session.sessionId}`, cwd });
  terminal.show();
  terminal.sendText(resumeCommandLine(settings().resumeCommand, session), true);
}

function updateStatus(): void {
  if (!status) {
    return;
  }
  const n = interrupted.size;
  status.text = `$(history) OpenDev: ${n} interrupted`;
  status.tooltip = 'Show interrupted OpenDev sessions';
  if (n > 0) {
    status.show();
  } else {
    status.hide();
  }
}

async function startClient(context: vscode.ExtensionContext): Promise<void> {
  const s = settings();
  const serverOptions: ServerOptions = {
    command: s.serverPath,
    args: s.serverArgs,
    transport: TransportKind.stdio,
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [],
    initializationOptions: initializationOptions(s),
    outputChannelName: 'OpenDev Snapshot',
  };
  const c = new LanguageClient(SECTION, 'OpenDev Snapshot', serverOptions, clientOptions);
  c.onNotification(RECOVERABLE_SESSIONS, (params: RecoverableSessionsParams) => {
    for (const session of params.sessions) {
      interrupted.set(session.sessionId, session);
    }
    updateStatus();
  });
  c.onNotification(RECOVER_SESSION, (params: RecoverSessionParams) => {
    interrupted.delete(params.session.sessionId);
    updateStatus();
    openResumeTerminal(params.session);
  });
  client = c;
  try {
    await c.start();
  } catch (err) {
    client = undefined;
    void vscode.window.showErrorMessage(
      `OpenDev Snapshot: cannot start "${s.serverPath} ${s.serverArgs.join(' ')}": ${err}. ` +
        'Set opendevSnapshot.serverPath to the opendev-snapshot executable.',
    );
  }
  context.subscriptions.push({ dispose: () => void c.stop() });
}

async function stopClient(): Promise<void> {
  const c = client;
  client = undefined;
  if (c) {
    await c.stop();
  }
}

function running(): LanguageClient | undefined {
  if (!client) {
    void vscode.window.showWarningMessage('OpenDev Snapshot: the server is not running (open a folder first).');
  }
  return client;
}

async function showSessions(): Promise<void> {
  const c = running();
  if (!c) {
    return;
  }
  const folders = vscode.workspace.workspaceFolders;
  const scope = settings().showAllProjects || !folders ? null : folders.map((f) => f.uri.toString());
  const sessions = await listSessions(c, scope);
  if (sessions.length === 0) {
    void vscode.window.showInformationMessage('OpenDev: no incomplete sessions.');
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
  const action = await vscode.window.showQuickPick(['Recover', 'Discard'], {
    title: `OpenDev session ${picked.session.sessionId}`,
  });
  if (action === 'Recover') {
    await recover(c, picked.session.sessionId); // the server then sends opendev/recoverSession
  } else if (action === 'Discard') {
    const { removed } = await discard(c, picked.session.sessionId);
    interrupted.delete(picked.session.sessionId);
    updateStatus();
    void vscode.window.showInformationMessage(
      removed ? `OpenDev: discarded ${picked.session.sessionId}.` : `OpenDev: ${picked.session.sessionId} was already gone.`,
    );
  }
}

async function cleanupCommand(): Promise<void> {
  const c = running();
  if (!c) {
    return;
  }
  const answer = await vscode.window.showInputBox({
    title: 'OpenDev: clean up old snapshots',
    prompt: 'Remove snapshots older than (e.g. 90s, 30m, 12h, 7d). Running sessions are never removed.',
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
            progress.report({ message: value.message, increment: value.percentage - last });
            last = value.percentage;
          }
        });
      },
    );
  const preview = await run(true);
  if (preview.removedCount === 0) {
    void vscode.window.showInformationMessage(`OpenDev: no snapshot older than ${answer}.`);
    return;
  }
  const confirm = await vscode.window.showWarningMessage(
    `Remove ${preview.removedCount} snapshot(s) older than ${answer}?`,
    { modal: true, detail: preview.sessionIds.join(', ') },
    'Remove',
  );
  if (confirm !== 'Remove') {
    return;
  }
  const result = await run(false);
  for (const id of result.sessionIds) {
    interrupted.delete(id);
  }
  updateStatus();
  void vscode.window.showInformationMessage(`OpenDev: removed ${result.removedCount} snapshot(s).`);
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 0);
  status.command = 'opendevSnapshot.showSessions';
  context.subscriptions.push(
    status,
    vscode.commands.registerCommand('opendevSnapshot.showSessions', showSessions),
    vscode.commands.registerCommand('opendevSnapshot.cleanup', cleanupCommand),
    vscode.commands.registerCommand('opendevSnapshot.restartServer', async () => {
      await stopClient();
      await startClient(context);
    }),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      const serverSettings = ['serverPath', 'serverArgs', 'snapshotDir', 'prompt', 'maxPrompts', 'staleAfterMs'];
      if (client && serverSettings.some((key) => e.affectsConfiguration(`${SECTION}.${key}`))) {
        await stopClient();
        await startClient(context);
      }
    }),
  );
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
