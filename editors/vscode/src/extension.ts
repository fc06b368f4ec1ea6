// aiguilleur for VS Code and VSCodium: starts `aiguilleur serve` over stdio. No proprietary
// API is used, so it runs in VSCodium as well.
import * as vscode from 'vscode';
import {
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  TransportKind,
} from 'vscode-languageclient/node';

let client: LanguageClient | undefined;
let status: vscode.StatusBarItem | undefined;

interface UsageReport {
  total_usd: number;
  rows: { day: string; cost_usd: number; pending_usd: number }[];
  budgets: { key: string; period: string; left_usd: number; limit_usd: number }[];
}

// A cloned repository can carry workspace settings (.vscode/settings.json): until the
// user trusts the workspace, only their own (user-level) values are used. VS Code's
// restrictedConfigurations does the same; this holds even where it is not honoured.
function userOrTrusted<T>(key: string): T | undefined {
  const config = vscode.workspace.getConfiguration('aiguilleur');
  return vscode.workspace.isTrusted ? config.get<T>(key) : config.inspect<T>(key)?.globalValue;
}

function settings(): Record<string, unknown> {
  return userOrTrusted<Record<string, unknown>>('settings') ?? {};
}

interface ServerStatus {
  model: { name: string } | null;
  model_problem: string | null;
}

// Returns true while the local model is still loading, so the caller asks again soon.
async function refreshStatus(): Promise<boolean> {
  if (!client || !status) {
    return false;
  }
  try {
    const [serverStatus, usage] = await Promise.all([
      client.sendRequest<ServerStatus>('aiguilleur/status', {}),
      client.sendRequest<UsageReport>('workspace/executeCommand', {
        command: 'aiguilleur.usage',
        arguments: [{ quiet: true }],
      }),
    ]);
    const today = new Date().toISOString().slice(0, 10);
    const spent = (usage?.rows ?? [])
      .filter((r) => r.day === today)
      .reduce((sum, r) => sum + r.cost_usd + r.pending_usd, 0);
    const loading = !serverStatus?.model && !serverStatus?.model_problem;
    const model = serverStatus?.model?.name ?? (loading ? 'loading model…' : 'no local model');
    status.text = `$(rocket) ${model} · $${spent.toFixed(4)} today`;
    const budgets = (usage?.budgets ?? [])
      .map((b) => `${b.key} ${b.period}: $${b.left_usd.toFixed(2)} of $${b.limit_usd.toFixed(2)} left`)
      .join('\n');
    const problem = serverStatus?.model_problem ? `local model: ${serverStatus.model_problem}\n` : '';
    status.tooltip = problem + (budgets || 'aiguilleur: no budgets configured');
    return loading;
  } catch {
    status.text = '$(rocket) aiguilleur';
    return false;
  }
}

async function refreshWhileLoading(): Promise<void> {
  for (let i = 0; i < 300 && (await refreshStatus()); i++) {
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function sendSettings(): void {
  if (client) {
    void client.sendNotification('workspace/didChangeConfiguration', { settings: settings() });
  }
}

function selectionArgs(): Record<string, unknown> | undefined {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    return undefined;
  }
  const sel = editor.selection;
  const empty = sel.isEmpty;
  return {
    uri: editor.document.uri.toString(),
    start_line: empty ? 0 : sel.start.line,
    end_line: empty ? -1 : sel.end.line,
    question: '',
  };
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const command = userOrTrusted<string[]>('command') ?? ['aiguilleur', 'serve'];
  const serverOptions: ServerOptions = {
    command: command[0],
    args: command.slice(1),
    transport: TransportKind.stdio,
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
    // Settings go as initializationOptions, then by our own didChangeConfiguration below
    // (not `synchronize`, which would also send the extension's own keys to the server).
    initializationOptions: settings(),
  };
  client = new LanguageClient('aiguilleur', 'aiguilleur', serverOptions, clientOptions);
  // vscode-languageclient 9.x ships inline completion as a proposed feature.
  client.registerProposedFeatures();

  status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  status.command = 'aiguilleur.showUsage';
  status.text = '$(rocket) aiguilleur';
  status.show();

  context.subscriptions.push(
    status,
    vscode.commands.registerCommand('aiguilleur.chatNew', async () => {
      const args = selectionArgs();
      if (client && args) {
        await client.sendRequest('workspace/executeCommand', {
          command: 'aiguilleur.chat.new',
          arguments: [args],
        });
      }
    }),
    vscode.commands.registerCommand('aiguilleur.chatSend', async () => {
      const uri = vscode.window.activeTextEditor?.document.uri.toString();
      if (client && uri) {
        await client.sendRequest('workspace/executeCommand', {
          command: 'aiguilleur.chat',
          arguments: [uri],
        });
      }
    }),
    vscode.commands.registerCommand('aiguilleur.showUsage', async () => {
      if (client) {
        await client.sendRequest('workspace/executeCommand', { command: 'aiguilleur.usage' });
        await refreshStatus();
      }
    }),
    vscode.commands.registerCommand('aiguilleur.doctor', () => {
      const terminal = vscode.window.createTerminal('aiguilleur doctor');
      terminal.sendText(`${command[0]} doctor`);
      terminal.show();
    }),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('aiguilleur.settings')) {
        sendSettings();
      }
    }),
    // Trusting the workspace lets its settings apply from now on.
    vscode.workspace.onDidGrantWorkspaceTrust(() => sendSettings()),
  );

  try {
    await client.start();
  } catch (err) {
    // Most often `aiguilleur` is not on the PATH the editor was started with.
    const fix = 'Open Settings';
    void vscode.window
      .showErrorMessage(
        `aiguilleur: could not start \`${command.join(' ')}\` (${String(err)}). ` +
          'Install it (`pipx install \'.[local]\'` in a clone of aiguilleur) or set ' +
          '`aiguilleur.command` to its full path, then reload the window.',
        fix,
      )
      .then((choice) => {
        if (choice === fix) {
          void vscode.commands.executeCommand('workbench.action.openSettings', 'aiguilleur.command');
        }
      });
    status.text = '$(error) aiguilleur: not running';
    return;
  }
  void refreshWhileLoading();
  const timer = setInterval(() => void refreshStatus(), 60_000);
  context.subscriptions.push({ dispose: () => clearInterval(timer) });
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
