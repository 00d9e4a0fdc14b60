/**
 * How the extension starts its server, free of the `vscode` module (the
 * test runs it from the packaged .vsix): the server bundled in the
 * extension (`bundled/`, made by scripts/bundle_server.py) run by a Python
 * 3.11+ the caller found, or the executable named by `serverPath`.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

export const MIN_PYTHON: [number, number] = [3, 11];

/** The same shape as vscode-languageclient's `Executable`. No `transport`:
 * with `TransportKind.stdio` the client appends `--stdio`, which
 * `opendev-snapshot serve` does not take; without one it still speaks stdio. */
export interface ServerExecutable {
  command: string;
  args: string[];
  options?: { env?: NodeJS.ProcessEnv; cwd?: string };
}

export function bundledLauncher(extensionPath: string): string {
  return path.join(extensionPath, 'bundled', 'tool', 'opendev_snapshot_server.py');
}

export interface BundleInfo {
  target?: string;
  pythons?: string[];
  opendevSnapshot?: string;
}

export function bundleInfo(extensionPath: string): BundleInfo | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(extensionPath, 'bundled', 'BUNDLE.json'), 'utf8'));
  } catch {
    return undefined;
  }
}

/** The server to start: `serverPath` when set, else the bundled one run by `python`. */
export function serverExecutable(
  settings: { serverPath: string; serverArgs: string[] },
  extensionPath: string,
  python: string[] | undefined,
): ServerExecutable {
  if (settings.serverPath.trim() !== '') {
    return { command: expandHome(settings.serverPath.trim()), args: settings.serverArgs };
  }
  if (!python || python.length === 0) {
    throw new Error('no Python interpreter to run the bundled server');
  }
  // -I: the user's PYTHONPATH and site-packages cannot shadow the bundled packages.
  return { command: python[0], args: [...python.slice(1), '-I', bundledLauncher(extensionPath), 'serve'] };
}

export function expandHome(p: string): string {
  return p.startsWith('~/') && process.env.HOME ? path.join(process.env.HOME, p.slice(2)) : p;
}

export interface PythonCheck {
  ok: boolean;
  version?: string;
  /** Why it cannot run the bundled server, for a message. */
  problem?: string;
}

/** Run `python -c ...` to learn its version; ok when it is 3.11 or newer. */
export function checkPython(python: string[], bundle?: BundleInfo): PythonCheck {
  const proc = spawnSync(python[0], [...python.slice(1), '-c', 'import sys; print("%d.%d" % sys.version_info[:2])'], {
    encoding: 'utf8',
    timeout: 15000,
  });
  if (proc.error || proc.status !== 0) {
    return { ok: false, problem: `cannot run ${python.join(' ')}: ${proc.error?.message ?? proc.stderr.trim()}` };
  }
  const version = proc.stdout.trim();
  const [major, minor] = version.split('.').map(Number);
  if (major < MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor < MIN_PYTHON[1])) {
    return { ok: false, version, problem: `${python.join(' ')} is Python ${version}; the server needs 3.11 or newer` };
  }
  if (bundle?.pythons && !bundle.pythons.includes(version)) {
    return {
      ok: false,
      version,
      problem: `${python.join(' ')} is Python ${version}; this build bundles the server for Python ${bundle.pythons.join(', ')}`,
    };
  }
  return { ok: true, version };
}

/** Is `program` (a name or a path) an executable file, as a shell would find it on `PATH`? */
export function findOnPath(program: string, envPath = process.env.PATH ?? ''): string | undefined {
  const isExe = (p: string) => {
    try {
      const st = fs.statSync(p);
      if (!st.isFile()) {
        return false;
      }
      fs.accessSync(p, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (program.includes('/') || program.includes(path.sep)) {
    return isExe(program) ? program : undefined;
  }
  const exts = process.platform === 'win32' ? ['', '.exe', '.cmd', '.bat'] : [''];
  for (const dir of envPath.split(path.delimiter)) {
    for (const ext of exts) {
      const candidate = path.join(dir || '.', program + ext);
      if (dir && isExe(candidate)) {
        return candidate;
      }
    }
  }
  return undefined;
}
