/**
 * The Python that runs the bundled server: the `opendevSnapshot.interpreter`
 * setting, else the interpreter selected in the Python extension (found
 * through its API, as Microsoft's Python tools extension template does)
 * when it is installed and 3.11 or newer, else `python3`.
 */
import { PythonExtension } from '@vscode/python-extension';
import * as vscode from 'vscode';

import { BundleInfo, checkPython, PythonCheck } from './launch';

export const PYTHON_EXTENSION = 'ms-python.python';

export interface FoundPython {
  command: string[];
  source: 'setting' | 'python extension' | 'python3';
  check: PythonCheck;
}

async function fromPythonExtension(resource?: vscode.Uri): Promise<string | undefined> {
  if (!vscode.extensions.getExtension(PYTHON_EXTENSION)) {
    return undefined;
  }
  try {
    const api = await PythonExtension.api();
    const env = await api.environments.resolveEnvironment(api.environments.getActiveEnvironmentPath(resource));
    const v = env?.version;
    if (env?.executable.uri && v && (v.major > 3 || (v.major === 3 && v.minor >= 11))) {
      return env.executable.uri.fsPath;
    }
  } catch {
    // no usable answer from the Python extension: fall back to python3
  }
  return undefined;
}

export async function findPython(setting: string[], bundle: BundleInfo | undefined, resource?: vscode.Uri): Promise<FoundPython> {
  if (setting.length > 0 && setting[0].trim() !== '') {
    return { command: setting, source: 'setting', check: checkPython(setting, bundle) };
  }
  const fromExtension = await fromPythonExtension(resource);
  if (fromExtension) {
    const check = checkPython([fromExtension], bundle);
    if (check.ok) {
      return { command: [fromExtension], source: 'python extension', check };
    }
  }
  const python3 = process.platform === 'win32' ? ['py', '-3'] : ['python3'];
  return { command: python3, source: 'python3', check: checkPython(python3, bundle) };
}

/** Calls `listener` when the interpreter selected in the Python extension changes. */
export async function onPythonChange(listener: () => void): Promise<vscode.Disposable | undefined> {
  if (!vscode.extensions.getExtension(PYTHON_EXTENSION)) {
    return undefined;
  }
  try {
    const api = await PythonExtension.api();
    return api.environments.onDidChangeActiveEnvironmentPath(() => listener());
  } catch {
    return undefined;
  }
}
