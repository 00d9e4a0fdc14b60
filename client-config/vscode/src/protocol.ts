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
  serverPath: string;
  serverArgs: string[];
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

/** One QuickPick row: label, description, detail. */
export function describe(session: Listing, now = Date.now()): { label: string; description: string; detail: string } {
  const count = session.messageCount;
  return {
    label: session.sessionId,
    description: `${session.status}, ${describeAge(now - session.snapshotTimestampMs)} ago`,
    detail: `${session.projectDir} · ${count} message${count === 1 ? '' : 's'} · $${session.costUsd.toFixed(2)}`,
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

export function discard(rpc: Rpc, sessionId: string): Promise<{ removed: boolean }> {
  return rpc.sendRequest(ExecuteCommandRequest.type, { command: COMMAND_DISCARD, arguments: [sessionId] });
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
