// Run the packaged VS Code extension in node, in place of VS Code (which
// cannot run here): a scripted stand-in for the `vscode` module plays the
// user (answers notifications and quick picks, records terminals, the
// clipboard, opened files and the status bar), while everything else is
// real: the extension's compiled code and its node_modules as unpacked from
// the .vsix, vscode-languageclient's own process launch and transport, the
// bundled server run by a real Python, the snapshot directory on disk.
//
// usage: node vscode_host.js CONFIG_JSON
//   {extensionDir, workspaceFolder, settings, python: {path, version} | null,
//    scenario: "handshake" | "full", answers: {sessionId: choice}, ids, files,
//    fakeProgram, fakeProgramText, fakeMarker, env, timeoutMs}
// Prints one JSON line with what happened; exits non-zero on a failed check.
'use strict';
const cp = require('child_process');
const fs = require('fs');
const Module = require('module');
const path = require('path');

const config = JSON.parse(process.argv[2]);
const T = config.timeoutMs || 30000;
const R = { messages: [], commands: [], opened: [], terminals: [], quickPicks: [], statusTexts: [], outputLines: [] };
let clipboard = '';

function check(cond, what, detail) {
  if (!cond) {
    throw new Error(`check failed: ${what}${detail === undefined ? '' : ': ' + JSON.stringify(detail)}`);
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, cond, ms = T) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await sleep(20);
  }
}

// ------------------------------------------------------------------ the stand-in for `vscode`
const disposable = () => ({ dispose() {} });
class EventEmitter {
  constructor() {
    this.listeners = [];
    this.event = (l) => {
      this.listeners.push(l);
      return { dispose: () => (this.listeners = this.listeners.filter((x) => x !== l)) };
    };
  }
  fire(e) {
    for (const l of [...this.listeners]) l(e);
  }
  dispose() {}
}
class Disposable {
  constructor(f) {
    this.f = f;
  }
  dispose() {
    if (this.f) this.f();
  }
  static from(...ds) {
    return new Disposable(() => ds.forEach((d) => d && d.dispose && d.dispose()));
  }
}
class CancellationTokenSource {
  constructor() {
    this.token = { isCancellationRequested: false, onCancellationRequested: () => disposable() };
  }
  cancel() {}
  dispose() {}
}
const Uri = {
  file: (p) => ({ scheme: 'file', fsPath: p, path: p, toString: () => 'file://' + encodeURI(p) }),
  parse: (s) => ({ scheme: s.split(':')[0], fsPath: decodeURI(s.replace(/^file:\/\//, '')), toString: () => s }),
};

// The user: answers to notifications and quick picks.
let pendingQuestions = 0;
let maxPendingQuestions = 0;
const picks = []; // functions (items, options) -> item
function answerMessage(level, message, items) {
  const titles = items.filter((i) => typeof i === 'string' || (i && i.title)).map((i) => (typeof i === 'string' ? i : i.title));
  const isQuestion = titles.join() === 'Recover,Discard,Later';
  const entry = { level, message, items: titles, answer: undefined, at: Date.now() };
  R.messages.push(entry);
  const id = Object.keys(config.answers || {}).find((sid) => message.includes(sid));
  let answer;
  if (isQuestion) {
    answer = id ? config.answers[id] : undefined;
  } else if (titles.includes('Undo')) {
    answer = (config.undo || []).some((sid) => message.includes(sid)) ? 'Undo' : undefined;
  } else if (titles.includes('Copy Command') || titles.includes('Open Settings') || titles.includes('Move to Trash')) {
    answer = titles.find((t) => ['Copy Command', 'Open Settings', 'Move to Trash'].includes(t));
  }
  entry.answer = answer;
  if (isQuestion) {
    pendingQuestions += 1;
    maxPendingQuestions = Math.max(maxPendingQuestions, pendingQuestions);
  }
  // a person takes a moment to read and click
  return new Promise((resolve) =>
    setTimeout(() => {
      if (isQuestion) pendingQuestions -= 1;
      const item = items.find((i) => (typeof i === 'string' ? i : i && i.title) === answer);
      resolve(item);
    }, isQuestion ? 150 : 20),
  );
}
const showMessage = (level) => (message, ...rest) => answerMessage(level, message, rest.filter((x) => !(x && x.modal !== undefined && !x.title)));

const settings = config.settings || {};
const registered = new Map();
const folders = config.workspaceFolder ? [{ uri: Uri.file(config.workspaceFolder), name: path.basename(config.workspaceFolder), index: 0 }] : [];
const outputChannel = (name) => ({
  name,
  appendLine: (s) => R.outputLines.push(s),
  append: (s) => R.outputLines.push(s),
  show() {},
  hide() {},
  clear() {},
  replace() {},
  dispose() {},
  info: (s) => R.outputLines.push(s),
  warn: (s) => R.outputLines.push(s),
  error: (s) => R.outputLines.push(s),
  debug() {},
  trace() {},
});

const pythonExtension = config.python
  ? {
      id: 'ms-python.python',
      isActive: true,
      activate: async () => pythonExtension.exports,
      exports: {
        environments: {
          getActiveEnvironmentPath: () => ({ id: config.python.path, path: config.python.path }),
          resolveEnvironment: async () => {
            const [major, minor, micro] = config.python.version.split('.').map(Number);
            return { executable: { uri: Uri.file(config.python.path) }, version: { major, minor, micro } };
          },
          onDidChangeActiveEnvironmentPath: () => disposable(),
        },
      },
    }
  : undefined;

const api = {
  version: '1.95.0',
  EventEmitter,
  Disposable,
  CancellationTokenSource,
  CancellationError: class CancellationError extends Error {},
  Uri,
  StatusBarAlignment: { Left: 1, Right: 2 },
  ProgressLocation: { SourceControl: 1, Window: 10, Notification: 15 },
  env: {
    language: 'en',
    appName: 'Visual Studio Code',
    machineId: 'test',
    sessionId: 'test',
    clipboard: { writeText: async (t) => void (clipboard = t), readText: async () => clipboard },
    openExternal: async () => true,
  },
  window: {
    createOutputChannel: outputChannel,
    showInformationMessage: showMessage('info'),
    showWarningMessage: showMessage('warning'),
    showErrorMessage: showMessage('error'),
    createStatusBarItem: () => {
      const item = {
        text: '',
        visible: false,
        show() {
          item.visible = true;
          R.statusTexts.push(item.text);
        },
        hide() {
          item.visible = false;
        },
        dispose() {},
      };
      R.statusItem = item;
      return item;
    },
    createTerminal: (opts) => {
      const t = { name: opts.name, cwd: opts.cwd, sent: [] };
      R.terminals.push(t);
      return {
        show() {},
        dispose() {},
        // the integrated terminal runs the line in a shell, in its cwd
        sendText: (text) => {
          t.sent.push(text);
          cp.spawn('/bin/sh', ['-c', text], { cwd: opts.cwd, stdio: 'ignore', env: process.env });
        },
      };
    },
    showQuickPick: async (items, options) => {
      const list = await items;
      const pick = picks.shift();
      if (!pick) throw new Error('unexpected quick pick: ' + JSON.stringify(options));
      R.quickPicks.push({
        title: options && options.title,
        placeHolder: options && options.placeHolder,
        labels: list.map((i) => (typeof i === 'string' ? i : i.label)),
        descriptions: list.map((i) => (typeof i === 'string' ? '' : i.description || '')),
        details: list.map((i) => (typeof i === 'string' ? '' : i.detail || '')),
      });
      return pick(list, options);
    },
    showInputBox: async (options) => {
      R.inputBox = options.prompt;
      return config.inputBoxAnswer;
    },
    withProgress: async (_opts, task) => task({ report() {} }, new CancellationTokenSource().token),
    onDidChangeActiveTextEditor: () => disposable(),
    showTextDocument: async () => undefined,
    visibleTextEditors: [],
  },
  workspace: {
    workspaceFolders: folders,
    getConfiguration: (section) => ({
      get: (key, dflt) => {
        const full = section ? `${section}.${key}` : key;
        return full in settings ? settings[full] : dflt;
      },
      has: (key) => `${section}.${key}` in settings,
      inspect: () => undefined,
      update: async () => undefined,
    }),
    onDidChangeConfiguration: () => disposable(),
    onDidChangeWorkspaceFolders: () => disposable(),
    onDidOpenTextDocument: () => disposable(),
    onDidCloseTextDocument: () => disposable(),
    onDidChangeTextDocument: () => disposable(),
    onDidSaveTextDocument: () => disposable(),
    onWillSaveTextDocument: () => disposable(),
    onDidOpenNotebookDocument: () => disposable(),
    onDidCloseNotebookDocument: () => disposable(),
    onDidChangeNotebookDocument: () => disposable(),
    onDidSaveNotebookDocument: () => disposable(),
    textDocuments: [],
    notebookDocuments: [],
    createFileSystemWatcher: () => ({ onDidCreate: disposable, onDidChange: disposable, onDidDelete: disposable, dispose() {} }),
  },
  languages: { createDiagnosticCollection: () => ({ set() {}, clear() {}, dispose() {}, delete() {} }) },
  commands: {
    registerCommand: (id, fn) => {
      registered.set(id, fn);
      return { dispose: () => registered.delete(id) };
    },
    executeCommand: async (id, ...args) => {
      R.commands.push({ id, args: args.map((a) => (a && a.fsPath ? a.fsPath : a)) });
      if (id === 'vscode.open') R.opened.push(args[0].fsPath);
      const fn = registered.get(id);
      return fn ? fn(...args) : undefined;
    },
  },
  extensions: { getExtension: (id) => (id === 'ms-python.python' ? pythonExtension : undefined) },
};
// Anything else vscode-languageclient touches while loading: inert.
const classes = {};
function inert(name) {
  return new Proxy(function () {}, {
    get: (_t, k) => (k === 'then' || typeof k === 'symbol' ? undefined : inert(`${name}.${String(k)}`)),
    apply: () => disposable(),
    construct: () => ({}),
  });
}
const vscode = new Proxy(api, {
  get(t, k) {
    if (k in t) return t[k];
    if (typeof k === 'string' && /^[A-Z]/.test(k)) return (classes[k] = classes[k] || class {});
    return inert(String(k));
  },
});
const FAKE = path.join(__dirname, '__vscode_stand_in__.js');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  return request === 'vscode' ? FAKE : resolve.call(this, request, ...rest);
};
require.cache[FAKE] = { id: FAKE, filename: FAKE, loaded: true, exports: vscode };

// ------------------------------------------------------------------ scenarios
function message(level, text) {
  return R.messages.find((m) => m.level === level && m.message.includes(text));
}
function pickLabel(label) {
  return (items) => {
    const item = items.find((i) => (typeof i === 'string' ? i : i.label) === label);
    if (!item) throw new Error(`${label} not offered: ${JSON.stringify(items.map((i) => i.label || i))}`);
    return item;
  };
}
const exists = (p) => fs.existsSync(p);

async function handshake() {
  // The extension started the server and it answered the status bar's
  // listing, or the extension said why it could not start one.
  await until('the server to answer, or a message', () => (R.statusItem && R.statusItem.text !== '') || message('error', ''));
  R.answered = !!(R.statusItem && R.statusItem.text !== '');
}

async function full() {
  const I = config.ids;
  const F = config.files;
  // 1. Four questions, one at a time, answered as the test says.
  await until('four questions', () => R.messages.filter((m) => m.items.join() === 'Recover,Discard,Later').length >= 4);
  await until('the missing-program message', () => message('error', `cannot resume ${I.recover}`));
  await until('the discard message with Undo', () => message('info', `discarded ${I.discard}`));
  await until('Undo to restore', () => message('info', `restored ${I.discard}`));
  check(exists(F.discard), 'Undo brought the discarded file back');
  await until('the notebook to open', () => R.opened.length > 0);
  await until('the copied recover command', () => clipboard !== '');
  R.clipboard = clipboard;
  R.statusOnOpen = R.statusItem.text;
  R.terminalsAfterQuestions = R.terminals.length;
  // 2. Install the resume program, then Recover from "Show interrupted sessions".
  fs.writeFileSync(config.fakeProgram, config.fakeProgramText, { mode: 0o755 });
  picks.push(pickLabel(I.recover), pickLabel('Recover'));
  await vscode.commands.executeCommand('opendevSnapshot.showSessions');
  await until('the resume program to run', () => exists(config.fakeMarker));
  // 3. Discard of a running session: refused, and said so.
  picks.push(pickLabel(I.held), pickLabel('Discard'));
  await vscode.commands.executeCommand('opendevSnapshot.showSessions');
  await until('the running refusal', () => message('warning', `${I.held} is running (`));
  // 4. Discard the Later session (no Undo), then "Restore a discarded session".
  picks.push(pickLabel(I.later), pickLabel('Discard'));
  await vscode.commands.executeCommand('opendevSnapshot.showSessions');
  await until('Discard of the Later session', () => !exists(F.later));
  picks.push((items) => {
    R.trashLabels = items.map((i) => i.label);
    return pickLabel(I.later)(items);
  });
  await vscode.commands.executeCommand('opendevSnapshot.restore');
  await until('the Later session restored', () => exists(F.later));
  // 5. Clean up: 7d, confirm, the other project's old session goes to the trash.
  await vscode.commands.executeCommand('opendevSnapshot.cleanup');
  await until('the cleanup', () => !exists(F.other));
  await until('the status bar to settle', () => R.statusItem.text.includes('interrupted'));
  R.statusEnd = R.statusItem.text;
  R.maxPendingQuestions = maxPendingQuestions;
}

// The hostile project: questions on open (Discard the agent session, Recover
// the notebook's), "Show interrupted sessions" and Discard of the held one
// (refused, naming its host), "Restore a discarded session". What was shown
// is in R.messages, R.quickPicks, R.statusItem and R.outputLines.
async function hostile() {
  const I = config.ids;
  await until('two questions', () => R.messages.filter((m) => m.items.join() === 'Recover,Discard,Later').length >= 2);
  await until('the discard message', () => message('info', `discarded ${I.agent}`));
  await until('the notebook message', () => message('info', `${I.notebook} was the kernel of`));
  await until('the copied recover command', () => clipboard !== '');
  picks.push(pickLabel(I.held), pickLabel('Discard'));
  await vscode.commands.executeCommand('opendevSnapshot.showSessions');
  await until('the running refusal', () => message('warning', `${I.held} is running (`));
  picks.push(pickLabel(I.agent));
  await vscode.commands.executeCommand('opendevSnapshot.restore');
  await until('the restore', () => message('info', `restored ${I.agent}`));
  R.clipboard = clipboard;
}

async function main() {
  const pkg = JSON.parse(fs.readFileSync(path.join(config.extensionDir, 'package.json'), 'utf8'));
  const ext = require(path.join(config.extensionDir, pkg.main));
  const context = { subscriptions: [], extensionPath: config.extensionDir, extensionUri: Uri.file(config.extensionDir) };
  await ext.activate(context);
  if (config.scenario === 'full') {
    await full();
  } else if (config.scenario === 'hostile') {
    await hostile();
  } else {
    await handshake();
  }
  await ext.deactivate();
  for (const d of context.subscriptions) d.dispose && d.dispose();
  R.clipboard = clipboard;
  process.stdout.write(JSON.stringify(R) + '\n');
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${err.stack || err}\n${JSON.stringify(R)}\n`);
    process.exit(1);
  },
);
