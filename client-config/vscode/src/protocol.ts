/**
 * The extension's side of the opendev-snapshot protocol, free of the `vscode`
 * module: method and command names, wire types, and every request the
 * extension sends. `extension.ts` calls these with its LanguageClient; the
 * end-to-end test (tests/e2e/editors/vscode_e2e.js) calls the very same
 * functions with a bare `vscode-jsonrpc` connection to the real server.
 */
import {
  ExecuteCommandRequest,
  ProgressType,
  RequestType,
  RequestType0,
  WorkDoneProgressBegin,
  WorkDoneProgressEnd,
  WorkDoneProgressReport,
} from 'vscode-languageserver-protocol';

export const RECOVERABLE_SESSIONS = 'opendev/recoverableSessions';
export const RECOVER_SESSION = 'opendev/recoverSession';
export const COMMAND_RECOVER = 'opendev.snapshot.recover';
export const COMMAND_DISCARD = 'opendev.snapshot.discard';
/** JSON-RPC error codes of the contract. */
export const NOT_FOUND = -32001;
export const RUNNING = -32003;

export interface ToolResult {
  toolName: string;
  callId: string;
  outputPreview: string;
  success: boolean;
}

export interface Listing {
  sessionId: string;
  messageCount: number;
  lastToolResults: ToolResult[];
  snapshotTimestampMs: number;
  completed: boolean;
  projectDir: string;
  costUsd: number;
  status: 'running' | 'interrupted' | 'completed';
  path: string;
  /** `opendev` (an agent session) or `ipython` (a notebook kernel's). */
  kind?: 'opendev' | 'ipython';
  /** The notebook of an `ipython` session, when its kernel knew it. */
  notebook?: string | null;
}

export interface TrashEntry {
  sessionId: string;
  removedAtMs: number;
  snapshot: Omit<Listing, 'status' | 'path' | 'kind' | 'notebook'> | null;
}

export interface ListIncompleteParams {
  projectDir?: string;
  status?: 'running' | 'interrupted';
  limit?: number;
}

export interface ListIncompleteResult {
  sessions: Listing[];
  skipped: { file: string; reason: string }[];
}

export interface CleanupParams {
  maxAgeMs: number;
  dryRun?: boolean;
  includeIncomplete?: boolean;
  workDoneToken?: string | number;
}

export interface CleanupResult {
  removedCount: number;
  sessionIds: string[];
  dryRun: boolean;
}

export interface RecoverableSessionsParams {
  workspaceFolder: { uri: string; name: string };
  sessions: Listing[];
}

export interface RecoverSessionParams {
  session: Listing;
}

/** `opendev/snapshot.listIncomplete` with params ... */
export const ListIncomplete = new RequestType<ListIncompleteParams, ListIncompleteResult, void>(
  'opendev/snapshot.listIncomplete',
);
/** ... and the same method sent with no `params` key at all (every project). */
export const ListIncompleteAll = new RequestType0<ListIncompleteResult, void>('opendev/snapshot.listIncomplete');
export const Cleanup = new RequestType<CleanupParams, CleanupResult, void>('opendev/snapshot.cleanup');
export const Restore = new RequestType<{ sessionId: string }, Listing, void>('opendev/snapshot.restore');
export const ListTrash = new RequestType<Record<string, never>, { entries: TrashEntry[] }, void>(
  'opendev/snapshot.listTrash',
);

type Progress = WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd;
const WorkDoneProgress = new ProgressType<Progress>();

/** What both a LanguageClient and a vscode-jsonrpc MessageConnection offer. */
export interface Rpc {
  sendRequest<R, E>(type: RequestType0<R, E>): Promise<R>;
  sendRequest<P, R, E>(type: RequestType<P, R, E>, params: P): Promise<R>;
  onProgress<P>(type: ProgressType<P>, token: string | number, handler: (value: P) => void): { dispose(): void };
}

/** The extension's settings, as `contributes.configuration` declares them. */
export interface Settings {
  /** An installed server to run instead of the bundled one (empty: the bundled one). */
  serverPath: string;
  serverArgs: string[];
  /** The Python that runs the bundled server (empty: the Python extension's, else python3). */
  interpreter: string[];
  snapshotDir: string;
  prompt: boolean;
  maxPrompts: number;
  staleAfterMs: number;
  resumeCommand: string;
  showAllProjects: boolean;
}

export const DEFAULT_RESUME_COMMAND = 'opendev --resume ${sessionId}';

/** `initializationOptions` for the server: only what the user may set here. */
export function initializationOptions(s: Settings): Record<string, unknown> {
  const options: Record<string, unknown> = {
    prompt: s.prompt,
    maxPrompts: s.maxPrompts,
    staleAfterMs: s.staleAfterMs,
  };
  if (s.snapshotDir.trim() !== '') {
    options.snapshotDir = s.snapshotDir;
  }
  return options;
}

// ------------------------------------------------------------------ text shown to people
//
// What a snapshot holds (project and notebook paths, a holder's host, the
// server's error messages that quote them) is shown only through
// `printable`, as the command line shows it (opendev_snapshot.core.text):
// an escape sequence, a newline or a bidi override (which would reorder the
// line) becomes a visible escape. Money goes through `formatCost`, as
// everywhere in OpenDev. Both are checked against tests/text_cases.py.

// C0, DEL, C1, line/paragraph separators, bidi embeddings/overrides/isolates,
// the BOM, and lone surrogates (with the `u` flag a pair is one code point
// and does not match).
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]|[\ud800-\udfff]/gu;
const NAMED: Record<string, string> = { '\t': '\\t', '\n': '\\n', '\r': '\\r', '\u001b': '\\e' };

/** `text` with every control character made visible: `\e`, `\n`, `\x9b`, `\u202e`, `\udcff`. */
export function printable(text: unknown): string {
  const value = text === undefined || text === null ? '' : String(text);
  return value.replace(UNSAFE, (ch) => {
    const code = ch.charCodeAt(0);
    return NAMED[ch] ?? (code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`);
  });
}

/**
 * `x` (finite, >= 0.01) with two decimals, rounded as C's and Python's
 * "%.2f" round: on the exact binary value, ties to even. (`toFixed(2)`
 * rounds the exact ties 0.125, 0.375, ... up, and gives "1e+21" from 1e21.)
 */
function fixed2(x: number): string {
  if (x >= 1e21) {
    return `${BigInt(x)}.00`; // an integer (beyond 2**53 every double is)
  }
  // a double >= 0.01 has at most 59 decimals: toFixed(100) is its exact value
  const [whole, decimals] = x.toFixed(100).split('.');
  let cents = BigInt(whole + decimals.slice(0, 2));
  const rest = decimals.slice(2);
  const tie = rest[0] === '5' && /^0*$/.test(rest.slice(1));
  if (rest[0] > '5' || (rest[0] === '5' && !tie) || (tie && cents % 2n === 1n)) {
    cents += 1n;
  }
  const digits = cents.toString().padStart(3, '0');
  return `${digits.slice(0, -2)}.${digits.slice(-2)}`;
}

/** Dollars as everywhere in OpenDev: `$0.00`, `<$0.01`, `$0.42`, `$1,234.50`, `-$3.25`. */
export function formatCost(usd: unknown): string {
  if (typeof usd !== 'number') {
    return '$?';
  }
  if (Number.isNaN(usd)) {
    return '$nan';
  }
  if (usd === 0) {
    return '$0.00';
  }
  const sign = usd < 0 ? '-' : '';
  const value = Math.abs(usd);
  if (value === Infinity) {
    return `${sign}$inf`;
  }
  if (value < 0.01) {
    return `${sign}<$0.01`;
  }
  const [whole, cents] = fixed2(value).split('.');
  return `${sign}$${whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',')}.${cents}`;
}

/**
 * Notification text: printable, and a `[label](command:...)` (or `https:`,
 * `file:`) in it, which VS Code would render as a link that runs the command
 * when clicked, shown as text instead (its `(` as `\x28`).
 */
export function notificationText(text: unknown): string {
  return printable(text).replace(/\]\(/g, ']\\x28');
}

/** Quick pick text: printable, and `$(name)`, which VS Code would draw as an icon, escaped as VS Code's `escapeIcons` does. */
export function pickText(text: unknown): string {
  return printable(text).replace(/(\\)?\$\((\w[\w-]*(~[\w-]+)?)\)/g, (match, escaped) => (escaped ? match : `\\${match}`));
}

/** POSIX shell quoting (session ids need none; project paths may). */
export function shellQuote(value: string): string {
  return /^[A-Za-z0-9_.\/:=@%+-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The resume command line for a session: `${sessionId}` and `${projectDir}` replaced, quoted. */
export function resumeCommandLine(template: string, session: Listing): string {
  return (template || DEFAULT_RESUME_COMMAND)
    .replace(/\$\{sessionId\}/g, shellQuote(session.sessionId))
    .replace(/\$\{projectDir\}/g, shellQuote(session.projectDir));
}

/** The program a command line runs: its first word after `VAR=value` words and `env`. */
export function commandProgram(line: string): string | undefined {
  const words = line.match(/'[^']*'|"[^"]*"|\S+/g) ?? [];
  for (const raw of words) {
    const word = raw.replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1');
    if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(word) && word !== 'env') {
      return word.startsWith('~/') && process.env.HOME ? process.env.HOME + word.slice(1) : word;
    }
  }
  return undefined;
}

/** What to paste into a notebook to get a dead kernel's code back. */
export function ipythonRecoverCommand(session: Pick<Listing, 'sessionId'>): string {
  return `%opendev recover ${session.sessionId}`;
}

/**
 * The known session a message names: the longest id that appears in it as
 * a word (the server's question names its session; ids may share prefixes).
 */
export function sessionIn(message: string, known: Iterable<Listing>): Listing | undefined {
  let best: Listing | undefined;
  for (const s of known) {
    const escaped = s.sessionId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    if (new RegExp(`(^|[^A-Za-z0-9_.-])${escaped}($|[^A-Za-z0-9_-])`).test(message)) {
      if (!best || s.sessionId.length > best.sessionId.length) {
        best = s;
      }
    }
  }
  return best;
}

/** The question asked about an interrupted session (printable). */
export function question(s: Listing, now = Date.now()): string {
  const count = s.messageCount;
  const base = (p: string) => p.replace(/[\\/]+$/, '').split(/[\\/]/).pop() || p;
  const what =
    s.kind === 'ipython'
      ? `Notebook session ${s.sessionId} (${s.notebook ? base(s.notebook) : 'IPython'})`
      : `OpenDev session ${s.sessionId} (${base(s.projectDir)})`;
  return printable(
    `${what} was interrupted ${describeAge(now - s.snapshotTimestampMs)} ago: ` +
      `${count} message${count === 1 ? '' : 's'}, ${formatCost(s.costUsd)}. Recover it?`,
  );
}

/** The holder named in a -32003 error's data, for a message (printable). */
export function holderText(data: unknown): string {
  const holder = (data as { holder?: { pid?: number; host?: string } } | undefined)?.holder;
  if (!holder || holder.pid === undefined) {
    return '';
  }
  return printable(` (pid ${holder.pid}${holder.host ? ` on ${holder.host}` : ''})`);
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90s`, `30m`, `12h`, `7d` (as the command line takes them) to milliseconds; undefined if malformed. */
export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+)\s*([smhd])\s*$/.exec(text);
  return m ? Number(m[1]) * UNITS[m[2]] : undefined;
}

export function describeAge(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  for (const [unit, size] of [['day', 86400], ['hour', 3600], ['minute', 60]] as const) {
    if (seconds >= size) {
      const n = Math.floor(seconds / size);
      return `${n} ${unit}${n === 1 ? '' : 's'}`;
    }
  }
  return `${seconds} second${seconds === 1 ? '' : 's'}`;
}

/** One QuickPick row: label, description, detail (made safe for a quick pick). */
export function describe(session: Listing, now = Date.now()): { label: string; description: string; detail: string } {
  const count = session.messageCount;
  const kind = session.kind === 'ipython' ? ' notebook' : '';
  return {
    label: pickText(session.sessionId),
    description: pickText(`${session.status}${kind}, ${describeAge(now - session.snapshotTimestampMs)} ago`),
    detail: pickText(
      `${session.notebook || session.projectDir} · ${count} message${count === 1 ? '' : 's'} · ${formatCost(session.costUsd)}`,
    ),
  };
}

/**
 * The incomplete sessions behind "OpenDev: Show interrupted sessions", newest
 * first: those of the given folders (paths or file:// URIs), or of every
 * project when `folders` is null (a request without params).
 */
export async function listSessions(rpc: Rpc, folders: string[] | null): Promise<Listing[]> {
  const results =
    folders === null
      ? [await rpc.sendRequest(ListIncompleteAll)]
      : await Promise.all(folders.map((projectDir) => rpc.sendRequest(ListIncomplete, { projectDir })));
  const byId = new Map<string, Listing>();
  for (const result of results) {
    for (const session of result.sessions) {
      byId.set(session.sessionId, session);
    }
  }
  return [...byId.values()].sort((a, b) => b.snapshotTimestampMs - a.snapshotTimestampMs);
}

/** Recover: the server answers with the Listing and sends `opendev/recoverSession`. */
export function recover(rpc: Rpc, sessionId: string): Promise<Listing> {
  return rpc.sendRequest(ExecuteCommandRequest.type, { command: COMMAND_RECOVER, arguments: [sessionId] });
}

/** Discard: to the trash; a running session is refused with RUNNING (-32003). */
export function discard(rpc: Rpc, sessionId: string): Promise<{ removed: boolean }> {
  return rpc.sendRequest(ExecuteCommandRequest.type, { command: COMMAND_DISCARD, arguments: [sessionId] });
}

/** Undo a Discard: the snapshot back from the trash (NOT_FOUND / RUNNING when it cannot be). */
export function restore(rpc: Rpc, sessionId: string): Promise<Listing> {
  return rpc.sendRequest(Restore, { sessionId });
}

export async function listTrash(rpc: Rpc): Promise<TrashEntry[]> {
  return (await rpc.sendRequest(ListTrash, {})).entries;
}

/** The interrupted sessions of one project (for the status bar). */
export async function interruptedOf(rpc: Rpc, projectDir: string): Promise<Listing[]> {
  return (await rpc.sendRequest(ListIncomplete, { projectDir, status: 'interrupted' })).sessions;
}

let tokenCounter = 0;

/**
 * `opendev/snapshot.cleanup` with a fresh workDoneToken; `onProgress` gets
 * each `$/progress` value (begin, report with a percentage, end).
 */
export async function cleanup(
  rpc: Rpc,
  maxAgeMs: number,
  dryRun: boolean,
  onProgress: (value: Progress) => void,
): Promise<CleanupResult> {
  const token = `opendev-cleanup-${process.pid}-${++tokenCounter}`;
  const subscription = rpc.onProgress(WorkDoneProgress, token, onProgress);
  try {
    return await rpc.sendRequest(Cleanup, { maxAgeMs, dryRun, workDoneToken: token });
  } finally {
    subscription.dispose();
  }
}
